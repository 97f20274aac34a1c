"""The core needs only numpy, scipy and PyYAML: `import cadence` (and the forecaster) must work with
none of torch, transformers, lightning or tensorboard installed."""

import subprocess
import sys
import textwrap


def test_core_imports_without_the_extras():
    code = textwrap.dedent("""
        import sys
        class Refuse:  # what an environment without the extras looks like: these packages cannot be imported
            BLOCKED = ("torch", "transformers", "accelerate", "lightning", "pytorch_lightning", "tensorboard")
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in self.BLOCKED:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        sys.meta_path.insert(0, Refuse())
        import cadence, cadence.guards, cadence.forecast, cadence.controllers, cadence.integrations
        from cadence import Plan
        plan = Plan({"lr": "cosine(peak=1e-3)"}, horizon=10, guards={"loss_spike": {}})
        assert plan.guard({"train_loss": 1.0}) == "apply"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in Refuse.BLOCKED)
        assert not loaded, loaded
        try:
            import cadence.integrations.hf
        except ModuleNotFoundError as e:
            print("hf:", e)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")

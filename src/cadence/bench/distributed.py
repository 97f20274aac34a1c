"""The runner under torchrun: one process per rank, every decision taken once for all.

``torchrun --standalone --nproc_per_node=N -m cadence run WORKLOAD ...`` starts N copies of
the runner. :func:`join` sees torchrun's environment (``WORLD_SIZE``, ``RANK``) and opens a
gloo process group: the multi-process runner trains on the CPU (a CUDA device with more than
one process is refused). The rules (docs/integrations.md, "torchrun"):

* the global batch is what the plan sets; each step's ``batch / micro_batch`` micro-batches
  are dealt out round-robin, micro-batch ``i`` of the step to rank ``i % N``, so the run sees
  the same data as a one-process run with the same global batch and micro-batch;
* gradients are summed across ranks before clipping and the optimizer step (each rank
  divides its micro-batches' losses by the global count, so the sum is the global mean);
* every signal a controller or guard reads is reduced across ranks first (losses: mean over
  all micro-batches; the noise scale: every micro-batch's own gradient norm; monitors:
  max), so every rank takes the same decision from the same numbers;
* rank 0 alone takes the folder lock and writes files; the others read the checkpoint.

Messages between ranks are JSON (never pickles): a rank that reads them runs no code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from cadence.errors import CadenceError, RunError

__all__ = ["Group", "join", "world_size"]


def world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise RunError(f"WORLD_SIZE is {os.environ.get('WORLD_SIZE')!r}, not a whole number") from None


@dataclass
class Group:
    """This process's place in a torchrun launch, and the reductions the runner needs."""

    rank: int
    world: int
    owned: bool  # this module opened the process group (and closes it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return tensor

    def sum_gradients(self, params: list) -> None:
        """Sum every parameter's gradient across ranks in one flat buffer (missing ones count as zero)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.sum_(flat)
        at = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[at:at + n].view_as(g).clone() if p.grad is None else p.grad.copy_(flat[at:at + n].view_as(g))
            at += n

    def share(self, value, what: str):
        """Rank 0's JSON-safe ``value`` (or the cadence error it raised) on every rank.

        Rank 0 passes a callable; the others pass None. An error on rank 0 is raised on every
        rank with the same message, so no rank waits for a step the others will not take.
        """
        if self.main:
            try:
                message = {"ok": value()}
            except CadenceError as e:
                message = {"error": type(e).__name__, "message": str(e), "field": e.field}
            except BaseException as e:
                message = {"error": "RunError", "message": f"rank 0 failed while {what}: {type(e).__name__}: {e}",
                           "field": None}
                self._send(message)
                raise
            self._send(message)
        else:
            message = self._receive()
        if "error" in message:
            import cadence.errors as errors

            kind = getattr(errors, message["error"], RunError)
            if not (isinstance(kind, type) and issubclass(kind, CadenceError)):
                kind = RunError
            if kind.__name__ == "ExistsError":
                kind = RunError
            raise kind(message["message"], field=message["field"])
        return message["ok"]

    def _send(self, message: dict) -> None:
        data = torch.frombuffer(bytearray(json.dumps(message).encode()), dtype=torch.uint8)
        size = torch.tensor([data.numel()], dtype=torch.int64)
        torch.distributed.broadcast(size, src=0)
        torch.distributed.broadcast(data, src=0)

    def _receive(self) -> dict:
        size = torch.zeros(1, dtype=torch.int64)
        torch.distributed.broadcast(size, src=0)
        data = torch.empty(int(size.item()), dtype=torch.uint8)
        torch.distributed.broadcast(data, src=0)
        return json.loads(bytes(data.tolist()).decode())

    def same_everywhere(self, model: torch.nn.Module) -> bool:
        """Whether every rank holds bit-identical parameters (a check for tests and the end of a run)."""
        with torch.no_grad():
            mine = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
            low, high = mine.clone(), mine.clone()
            torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
            torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
        return bool(torch.equal(low, high))

    def close(self) -> None:
        if self.owned and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def join(device: str = "cpu") -> Group | None:
    """The process group of this torchrun launch (opened here if needed), or None for one process."""
    world = world_size()
    if world == 1:
        return None
    import torch.distributed as dist

    if not dist.is_available():
        raise RunError("this torch build has no torch.distributed: run one process")
    owned = False
    if not dist.is_initialized():
        for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise RunError(f"WORLD_SIZE is {world} but {key} is not set: start the processes with torchrun")
        dist.init_process_group("gloo")  # the runner's collectives are on CPU tensors
        owned = True
    if dist.get_world_size() != world:
        raise RunError(f"WORLD_SIZE is {world} but the process group has {dist.get_world_size()} processes")
    return Group(rank=dist.get_rank(), world=world, owned=owned)

# Two entry points for a fresh clone (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean-venv

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench,dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: train tiny-lm under cosine, linear, WSD and REX at equal budget and compare.
# Re-running it resumes or reuses the finished runs in out/bench-tiny-lm-quick.
demo: $(STAMP)
	$(BIN)/cadence bench tiny-lm --quick

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

clean-venv:
	rm -rf $(VENV)

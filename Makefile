# The two quick-start commands: `make demo` trains the main job on the embedded
# synthetic set, `make test` runs the test suite. Each builds its own virtual
# environment on first use. GPU users: `make demo EXTRA=cu112` (or cu117).
PYTHON ?= python3
VENV ?= .venv
EXTRA ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRA),test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rpn train --data synthetic --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV) runs

# The two quick-start commands: `make demo` trains the main job on the embedded
# synthetic set, `make test` runs the test suite. Each builds its own virtual
# environment on first use. GPU users: `make demo EXTRA=cu112` (or cu117).
#
# The interpreter that builds $(VENV): PYTHON if given (`make PYTHON=python3.10`),
# else the first of PYTHON_CANDIDATES whose version is one of PYTHON_VERSIONS
# (pyproject's requires-python: d2l 1.0.3 pins NumPy 1.23.5 and SciPy 1.10.1,
# which have no wheels past 3.11).
PYTHON_CANDIDATES ?= python3 python3.11 python3.10 python3.9 python3.8
PYTHON_VERSIONS := 3.8 3.9 3.10 3.11
_PY_VERSION = import sys; print("%d.%d" % sys.version_info[:2])
_FIND_PYTHON = for py in $(PYTHON_CANDIDATES); do \
    case " $(PYTHON_VERSIONS) " in \
      *" $$($$py -c '$(_PY_VERSION)' 2>/dev/null) "*) echo $$py; break;; \
    esac; \
  done
_NO_PYTHON = rpn needs Python 3.8 to 3.11 and none of $(PYTHON_CANDIDATES) is one \
  (python3 is $(or $(shell python3 -c '$(_PY_VERSION)' 2>/dev/null),missing)): install 3.11 \
  (`uv python install 3.11`, `pyenv install 3.11`, or `apt install python3.11-venv` from the \
  deadsnakes PPA) and run make again, or choose one with `make PYTHON=/path/to/python3.11`
ifeq ($(strip $(PYTHON)),)
PYTHON = $(or $(shell $(_FIND_PYTHON)),$(error $(_NO_PYTHON)))
endif
VENV ?= .venv
EXTRA ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: demo test docs bench bench-peer notebook clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRA),test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rpn train --data synthetic --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

# the documentation site (Sphinx: the README, docs/, the notebook and an API
# reference from the docstrings) into build/docs/html, warnings as errors
DOCS_STAMP := $(VENV)/.installed-docs-$(EXTRA)
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(EXTRA),test,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf build/docs docs/site/generated
	$(PY) -m sphinx -b html -W --keep-going -c docs/site . build/docs/html
	@echo "open build/docs/html/docs/site/index.html"

# execute notebooks/rpn.ipynb and store it with its outputs (about 5 minutes
# on 2 cores); tests/test_notebook.py fails when a cell changed since
notebook: $(STAMP)
	$(PY) notebooks/execute.py

bench: $(STAMP) .venv-gluoncv/bin/python
	$(PY) benchmarks/bench.py

# GluonCV 0.10.5.post0 beside MXNet 1.9.1 in an environment of its own: the
# peer bench.py compares the labeler with (it cannot share rpn's process)
bench-peer .venv-gluoncv/bin/python: $(STAMP)
	PYTHON=$(PY) bash benchmarks/peer_env.sh

clean:
	rm -rf $(VENV) .venv-gluoncv runs build docs/site/generated

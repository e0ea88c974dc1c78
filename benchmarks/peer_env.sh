#!/usr/bin/env bash
# Creates .venv-gluoncv: GluonCV 0.10.5.post0 beside MXNet 1.9.1, the peer the
# benchmark compares the labeler with. GluonCV refuses MXNet's numpy mode,
# which `import rpn` switches on, so it runs in a process (and environment)
# of its own. Its opencv-python requirement is met by opencv-python-headless.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(ls .venv/bin/python 2>/dev/null || command -v python3)}"
VENV=.venv-gluoncv
if [ ! -x "$VENV/bin/python" ]; then
    "$("$PYTHON" -c 'import sys; print(sys.executable)')" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "numpy>=1.21,<1.24" mxnet==1.9.1 \
    opencv-python-headless scipy tqdm requests matplotlib Pillow pandas portalocker pyyaml
"$VENV/bin/python" -m pip install --quiet --no-deps gluoncv==0.10.5.post0 autocfg yacs
"$VENV/bin/python" -c "import gluoncv; print('gluoncv', gluoncv.__version__)"

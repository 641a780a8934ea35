#!/usr/bin/env bash
# Install torchvision's pure-Python model code as a reference for tests/test_torchvision_parity.py.
# --no-deps into its own directory: it never touches the venv's torch (and there is no CPU build of
# torchvision here; its C extension fails to load, which the model code does not need).
# Usage: bash .ci/install-torchvision-ref.sh [TARGET_DIR]   (default .cache/torchvision-ref; PYTHON picks the python)
set -euo pipefail
"${PYTHON:-python}" -m pip install --no-deps --target "${1:-.cache/torchvision-ref}" "torchvision==0.28.0"

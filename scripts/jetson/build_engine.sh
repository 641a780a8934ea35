#!/usr/bin/env bash
# Build the TensorRT engine of an edgecnn Jetson artifact, on the Jetson itself.
#
#   scripts/jetson/build_engine.sh ARTIFACT [--dry-run] [--builder auto|trtexec|python]
#                                  [--min-batch 1 --opt-batch 1 --max-batch 64] [--out ENGINE]
#
# The same as `edgecnn build-engine ARTIFACT ...` (see `edgecnn build-engine --help`): checks
# the artifact's files against the sha256 in its metadata.json, then runs trtexec (on PATH or
# JetPack's /usr/src/tensorrt/bin/trtexec) or, without trtexec, the TensorRT Python builder.
# Writes ARTIFACT/model.engine with its model.engine.json sidecar (TensorRT version, GPU,
# compute capability) and stores it in $EDGECNN_HOME/engines, where `edgecnn evaluate/bench`
# find it. --dry-run prints the command only. Needs edgecnn installed (pip install --no-deps
# edgecnn; pip install numpy click; JetPack brings TensorRT).
set -euo pipefail
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" -m edgecnn build-engine "$@"

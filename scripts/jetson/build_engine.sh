#!/usr/bin/env bash
# Build the TensorRT engine of an edgecnn Jetson artifact, on the Jetson itself.
#
#   scripts/jetson/build_engine.sh ARTIFACT [--dry-run] [--builder auto|trtexec|python]
#                                  [--min-batch 1 --opt-batch 1 --max-batch 64] [--out ENGINE]
#
# Checks the artifact's files against the sha256 in its metadata.json, then runs trtexec
# (on PATH or JetPack's /usr/src/tensorrt/bin/trtexec; --int8 --fp16 for an int8 QDQ
# artifact, --fp16 for fp16, min/opt/max shapes for input "input") or, without trtexec,
# the TensorRT Python builder. Writes ARTIFACT/model.engine with its model.engine.json
# sidecar (TensorRT version, GPU, compute capability) and stores it in
# $EDGECNN_HOME/engines, where `edgecnn evaluate/bench` find it. --dry-run prints the
# command only. Needs edgecnn installed (pip install edgecnn; JetPack brings TensorRT).
set -euo pipefail
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" -m edgecnn.tensorrt_build "$@"

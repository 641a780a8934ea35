#!/usr/bin/env bash
# Every GPU check of edgecnn in one unattended run (at most --budget-s, default 600 s), on a fresh
# machine with an NVIDIA GPU, Python 3.10+ and PyPI reachable (nothing else needs the network:
# Fashion-MNIST comes from $EDGECNN_HOME, Debian's dataset-fashion-mnist, or .cache/fashion-mnist
# carried with the checkout).
#
#   bash scripts/gpu/check.sh [--budget-s 600] [--out benchmarks/results] [--skip-install] [--dry-run]
#
# Steps, each timed, each logged to OUT/gpu_check_logs/STEP.log; a failing step is recorded and
# the rest go on:
#   gpu       nvidia-smi: GPU, driver, the CUDA version the driver supports
#   install   .venv: torch 2.13.0 (constrained), edgecnn[onnx,openvino,test], TensorRT tensorrt-cuNN>=10.0,<12
#             and cuda-python for the driver's CUDA major (pip's `tensorrt` metapackage picks one itself)
#   dataset   Fashion-MNIST where edgecnn finds it
#   pytest    pytest -m needs_tensorrt (tests/test_tensorrt.py, tests/test_runtimes.py)
#   engines   benchmarks/gpu_tensorrt.py: INT8, FP16 and FP32 engines of the four networks (tiny
#             training budget), top-1 and agreement with the fake-quant graph over the whole test
#             split, edgecnn bench at batch 1 and 32, trtexec on the same engine where one exists
# TRT_SPEC picks the TensorRT wheel (default tensorrt-cuNN>=10.0,<12, today an 11.x; for the 10.x
# path: TRT_SPEC='tensorrt-cu12>=10.0,<11').
# Writes OUT/gpu_check.json (the steps) and OUT/gpu_tensorrt.json/.md (the figures). Exit status:
# 0 when every step passed, 1 otherwise (the files are written either way).
set -euo pipefail
cd "$(dirname "$0")/../.."

BUDGET=600
OUT=benchmarks/results
INSTALL=1
DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --budget-s) BUDGET="${2:?--budget-s needs a number of seconds}"; shift 2 ;;
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --skip-install) INSTALL=0; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) awk 'NR > 1 && /^set -euo/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$BUDGET" in ''|*[!0-9]*) echo "error: --budget-s takes whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac

START=$(date +%s)
LOGS="$OUT/gpu_check_logs"
STEPS_FILE="$LOGS/steps.tsv"
PY="${PYTHON:-.venv/bin/python}"
export EDGECNN_HOME="${EDGECNN_HOME:-$PWD/.cache/gpu-home}"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME SECONDS CMD...: run CMD with a timeout, log it, record name, status, seconds.
step() {
  local name=$1 limit=$2; shift 2
  local t0 rc status budget
  budget=$(left)
  [ "$limit" -gt "$budget" ] && limit=$budget
  if [ "$limit" -le 5 ]; then
    printf '%s\tnot run\t0\ttime budget spent\n' "$name" >> "$STEPS_FILE"
    echo "== $name: not run (time budget spent)"
    return 0
  fi
  echo "== $name (up to ${limit} s)"
  t0=$(date +%s)
  set +e
  timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  set -e
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  printf '%s\t%s\t%s\texit %s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" "$rc" >> "$STEPS_FILE"
  echo "== $name: $status ($(( $(date +%s) - t0 )) s)"
  [ "$status" = ok ] || tail -n 5 "$LOGS/$name.log" | sed 's/^/   /'
  return 0
}

cuda_major() {  # the CUDA major the driver supports (nvidia-smi's header), 12 when unknown
  local v
  v=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\..*/\1/p' | head -n 1)
  echo "${v:-12}"
}

# shellcheck disable=SC2329  # run through bash -c by step
do_install() {
  local cu
  cu=$(cuda_major)
  [ "$cu" -ge 13 ] && cu=13 || cu=12
  if [ ! -x .venv/bin/python ] && ! python3 -m venv .venv; then  # no ensurepip: virtualenv from PyPI
    rm -rf .venv
    python3 -m pip install -q --user virtualenv || python3 -m pip install -q --break-system-packages virtualenv
    python3 -m virtualenv -q .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[onnx,openvino,test]"
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
    "${TRT_SPEC:-tensorrt-cu${cu}>=10.0,<12}" "cuda-python>=${cu},<$((cu + 1))"
  .venv/bin/python -m pip check || echo "pip check reports the conflicts above (not fatal here)"
  .venv/bin/python -c "import tensorrt, edgecnn; print('tensorrt', tensorrt.__version__, 'edgecnn', edgecnn.__file__)"
}

# shellcheck disable=SC2329  # run through bash -c by step
do_dataset() {
  local dest="$EDGECNN_HOME/datasets/fashion-mnist"
  if [ -f "$dest/t10k-labels-idx1-ubyte.gz" ] || [ -f "$dest/fashion-mnist.npz" ] \
     || [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    echo "Fashion-MNIST found"; return 0
  fi
  if [ -f .cache/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    mkdir -p "$dest" && cp .cache/fashion-mnist/*.gz "$dest/" && echo "Fashion-MNIST from .cache/fashion-mnist"
    return 0
  fi
  apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }
}

# shellcheck disable=SC2329  # run through bash -c by step
do_pytest() {  # the needs_tensorrt tests must run, not skip (they skip without a CUDA torch or TensorRT)
  "$PY" -m pytest -m needs_tensorrt -q -rs -p no:cacheprovider tests/test_tensorrt.py tests/test_runtimes.py \
    | tee "$LOGS/pytest.out"
  if grep -q "skipped" "$LOGS/pytest.out"; then echo "needs_tensorrt tests were skipped: see above" >&2; return 1; fi
}
export -f cuda_major do_install do_dataset do_pytest
export PY LOGS

if [ "$DRY_RUN" = 1 ]; then
  echo "dry run: budget ${BUDGET} s, results in $OUT, python ${PYTHON:-python3}"
  echo "steps: gpu, install (CUDA $(cuda_major) wheels), dataset, pytest -m needs_tensorrt, engines:"
  "${PYTHON:-python3}" benchmarks/gpu_tensorrt.py --dry-run --out "$OUT/gpu_tensorrt"
  exit 0
fi

mkdir -p "$LOGS"
: > "$STEPS_FILE"
step gpu 30 nvidia-smi
if [ "$INSTALL" = 1 ]; then step install 300 bash -c 'set -euo pipefail; do_install'; fi
step dataset 60 bash -c 'set -euo pipefail; do_dataset'
step pytest 150 bash -c 'set -euo pipefail; do_pytest'
# the engines step stops starting new work 20 s before the budget, so its results are written
ENGINES_BUDGET=$(( $(left) - 20 ))
step engines "$(left)" "$PY" benchmarks/gpu_tensorrt.py --out "$OUT/gpu_tensorrt" --budget-s "$ENGINES_BUDGET"

"${PY}" - "$STEPS_FILE" "$OUT/gpu_check.json" "$BUDGET" "$(( $(date +%s) - START ))" <<'PYEOF' || true
import json, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
steps = [{"step": r[0], "status": r[1], "seconds": int(r[2]), "detail": r[3]} for r in rows]
doc = {"schema": "edgecnn.gpu-check/1", "budget_s": int(sys.argv[3]), "elapsed_s": int(sys.argv[4]), "steps": steps}
open(sys.argv[2], "w").write(json.dumps(doc, indent=2) + "\n")
PYEOF
echo "steps: $STEPS_FILE; figures: $OUT/gpu_tensorrt.md; total $(( $(date +%s) - START )) s"
if grep -qv $'\tok\t' "$STEPS_FILE"; then exit 1; fi
exit 0

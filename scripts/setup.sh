#!/usr/bin/env bash
# Set up edgecnn in ./.venv: the Fashion-MNIST package, torch 2.13 (CPU), every CPU backend.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian's dataset-fashion-mnist"
    $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
  else
    echo "setup: no apt-get; edgecnn will download Fashion-MNIST on first use" >&2
  fi
fi

# OpenSSH client and server: tests/test_remote.py benches over SSH against an sshd it starts itself.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian's openssh-server and openssh-client"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq >/dev/null \
           && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null; }
  else
    echo "setup: no apt-get; tests/test_remote.py skips without OpenSSH (sshd, ssh, ssh-keygen)" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, pinned, so nothing below can pull a CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[all,test]"
# torchvision's own model code, used only by the tests as the reference the four networks must match.
[ -d .cache/torchvision-ref/torchvision ] || PYTHON=.venv/bin/python bash .ci/install-torchvision-ref.sh .cache/torchvision-ref
echo "setup: ready (.venv/bin/edgecnn)"

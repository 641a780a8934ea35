#!/usr/bin/env bash
# Build an emulated Raspberry Pi: an arm64 Debian (bookworm) userland run by QEMU user-mode,
# with Python 3.11, numpy, click, ai-edge-litert (aarch64 wheels) and openssh-server.
#
#   sudo scripts/emulated-pi/make.sh ROOT [--mirror URL]
#
# Idempotent: a finished ROOT is left as it is (a half-built one is started again). The CPU
# model (cortex-a72 = Pi 4, cortex-a76 = Pi 5) is chosen when the root runs (run.sh, sshd.sh).
# About 10 minutes and 430 MB; it tests correctness on ARM's kernels, never latency.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

root="" mirror=""
while [ $# -gt 0 ]; do
    case "$1" in
        --mirror) mirror=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (make.sh ROOT [--mirror URL])" ;;
        *) [ -z "$root" ] || die "one ROOT only"; root=$1; shift ;;
    esac
done
[ -n "$root" ] || die "usage: make.sh ROOT [--mirror URL]"
need_root make.sh
root=$(realpath -m "$root")

if [ -f "$root/$PI_OK" ]; then
    echo "emulated Pi already built at $root ($(head -n 1 "$root/$PI_OK"))"
    exit 0
fi

# The Debian mirror apt uses on this host (a deb822 .sources file or a sources.list line).
host_mirror() {
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1)
    [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n 1)
    echo "${uri:-http://deb.debian.org/debian}"
}

host_packages() {
    local missing=()
    for p in qemu-user-static binfmt-support debootstrap; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "install ${missing[*]} (Debian/Ubuntu packages): apt-get is missing here"
    echo "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed (try apt-get update)"
}

# debootstrap in a private mount namespace: the /proc etc. it mounts vanish with it.
bootstrap() {
    if [ -e "$root" ] && [ -n "$(ls -A "$root")" ] && [ ! -e "$root/.edgecnn-building" ]; then
        die "$root exists and is not an emulated-Pi root: give an empty or new folder"
    fi
    rm -rf "$root" && mkdir -p "$root" && touch "$root/.edgecnn-building"
    echo "debootstrap $PI_SUITE arm64 from ${mirror} into $root (the second stage runs under QEMU: ~10 min)"
    unshare -m -- debootstrap --arch=arm64 --variant=minbase \
        --include=python3,openssh-server,procps \
        "$PI_SUITE" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
        || die "debootstrap failed: see $root.debootstrap.log ($(tail -n 1 "$root.debootstrap.log"))"
    touch "$root/.edgecnn-building"  # debootstrap may have cleaned the folder
}

# numpy, click and ai-edge-litert as aarch64 wheels, fetched and unpacked by the host's pip
# (no pip and no compiler run under emulation).
wheels() {
    local pip=(${PIP:-python3 -m pip}) wheeldir="$root.wheels"
    # pip takes a --platform literally: name every manylinux tag bookworm's glibc (2.36) runs
    local plat=(--python-version "$PI_PYTHON_VERSION" --implementation cp --only-binary=:all:) v
    for v in $(seq 36 -1 17); do plat+=(--platform "manylinux_2_${v}_aarch64"); done
    plat+=(--platform manylinux2014_aarch64)
    local pkgs=(ai-edge-litert==2.3.0 numpy==2.4.6 click==8.5.1)
    echo "pip download ${pkgs[*]} (aarch64 wheels) into $wheeldir"
    "${pip[@]}" download -q "${plat[@]}" -d "$wheeldir" "${pkgs[@]}" \
        || die "pip download of the aarch64 wheels failed (is PyPI reachable? set PIP to a pip that is)"
    "${pip[@]}" install -q --root-user-action=ignore --no-index --find-links "$wheeldir" "${plat[@]}" --upgrade \
        --target "$root/usr/local/lib/python$PI_PYTHON_VERSION/dist-packages" "${pkgs[@]}" \
        || die "pip install --target of the aarch64 wheels failed"
}

configure() {
    # password '*': no password login, but not a locked account (sshd refuses those without PAM)
    chroot "$root" /bin/sh -c "id pi >/dev/null 2>&1 || useradd -m -s /bin/sh pi; usermod -p '*' pi" \
        || die "cannot add the user pi inside the root (does QEMU run arm64 binaries?)"
    mkdir -p "$root/run/sshd" "$root$PI_SRC"
    printf 'emulated=qemu-user\nqemu=%s\n' "$(qemu-aarch64-static --version | head -n 1)" >"$root/$PI_MARK"
}

host_packages
ensure_binfmt
mirror=${mirror:-$(host_mirror)}
[ -f "$root/usr/bin/python3" ] && [ -e "$root/.edgecnn-building" ] && [ ! -d "$root/debootstrap" ] \
    || bootstrap
wheels
configure
"$here/run.sh" "$root" --cpu cortex-a76 --no-src -- python3 -c \
    'import numpy, click; from ai_edge_litert.interpreter import Interpreter; print("python, numpy", numpy.__version__, "and ai-edge-litert import")' \
    || die "the finished root does not run Python with ai-edge-litert (see above)"
printf 'built %s: debian %s arm64, python %s, ai-edge-litert 2.3.0\n' "$(date -u +%FT%TZ)" "$PI_SUITE" \
    "$PI_PYTHON_VERSION" >"$root/$PI_OK"
rm -f "$root/.edgecnn-building"
echo "emulated Pi built at $root"

#!/usr/bin/env bash
# Run a command inside an emulated-Pi root (made by make.sh) under QEMU user-mode.
#
#   sudo scripts/emulated-pi/run.sh ROOT [--cpu cortex-a76|cortex-a72] [--user pi] [--src DIR|--no-src] [--] CMD ...
#
# --cpu pins QEMU's CPU model (QEMU_CPU, which every arm64 process started inside inherits):
# cortex-a76 (default) is a Raspberry Pi 5 (dotprod), cortex-a72 a Raspberry Pi 4 (no dotprod);
# never QEMU's default "max" (SVE, SME, i8mm: no Pi has them). The command runs in a private
# mount namespace where a Raspberry Pi /proc/cpuinfo, cpu sysfs tree and device-tree model
# are bind-mounted, and this checkout (or --src DIR) is shown read-only at /opt/edgecnn-src,
# on PYTHONPATH. /etc/edgecnn-emulated in the root tells edgecnn that the machine is emulated.
# Without CMD: a shell. Emulation is ~100x slower than a Pi: correctness, never latency.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

root="" cpu=cortex-a76 user=root src=$(cd "$here/../.." && pwd)
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) cpu=${2:?}; shift 2 ;;
        --user) user=${2:?}; shift 2 ;;
        --src) src=$(realpath "${2:?}"); shift 2 ;;
        --no-src) src=""; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (run.sh ROOT [--cpu cortex-a76|cortex-a72] [--user pi] [--] CMD ...)" ;;
        *) if [ -z "$root" ]; then root=$1; shift; else break; fi ;;
    esac
done
[ $# -gt 0 ] || set -- /bin/sh
check_cpu "$cpu"
need_root run.sh
[ -n "$root" ] || die "usage: run.sh ROOT [--cpu cortex-a76|cortex-a72] [--] CMD ..."
root=$(realpath -m "$root")
[ -e "$root/.edgecnn-building" ] || need_built_root "$root"   # make.sh checks its root before it is marked
ids=$(awk -F: -v u="$user" '$1 == u {print $3 ":" $4 ":" $6}' "$root/etc/passwd")
[ -n "$ids" ] || die "no user '$user' in $root/etc/passwd"

if [ -z "${EDGECNN_PI_NAMESPACE:-}" ]; then
    ensure_binfmt
    fake=$(fake_cpu "$root" "$cpu")
    # Again, inside a private mount namespace: every mount below vanishes with its last process.
    if [ -n "$src" ]; then set -- --src "$src" -- "$@"; else set -- --no-src -- "$@"; fi
    exec env EDGECNN_PI_NAMESPACE="$fake" unshare -m --propagation private -- "$0" "$root" --cpu "$cpu" --user "$user" "$@"
fi

fake=$EDGECNN_PI_NAMESPACE   # the fake CPU tree of --cpu, made above
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount --bind "$fake/cpuinfo" "$root/proc/cpuinfo"
mount --bind "$fake/cpu" "$root/sys/devices/system/cpu"
mount -t tmpfs -o size=1m,mode=755 tmpfs "$root/sys/firmware"
mkdir -p "$root/sys/firmware/devicetree" && cp -r "$fake/devicetree/base" "$root/sys/firmware/devicetree/"
if [ -n "$src" ]; then
    mkdir -p "$root$PI_SRC"
    mount --bind "$src" "$root$PI_SRC" && mount -o remount,bind,ro "$root$PI_SRC"
fi
export QEMU_CPU=$cpu   # read by qemu-aarch64 at each exec: the binfmt handler takes no -cpu flag
exec chroot --userspec="${ids%:*}" "$root" /usr/bin/env -i QEMU_CPU="$cpu" HOME="${ids##*:}" USER="$user" \
    LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 ${src:+PYTHONPATH=$PI_SRC} TMPDIR=/tmp "$@"

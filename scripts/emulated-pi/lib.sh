# Shared by make.sh, run.sh and sshd.sh (sourced, not run). Every failure is one line on
# stderr starting "error:" and exit status 2.

PI_SUITE=bookworm
PI_PYTHON_VERSION=3.11          # bookworm's python3: the aarch64 wheels are fetched for it
PI_OK=.edgecnn-emulated-pi      # in ROOT once make.sh finished; holds what was built
PI_MARK=etc/edgecnn-emulated    # in ROOT: tells edgecnn on the "device" that it is emulated
PI_SRC=/opt/edgecnn-src         # where run.sh shows the checkout (read-only) inside ROOT
PI_CPUS="cortex-a72 cortex-a76"

die() { echo "error: $*" >&2; exit 2; }

need_root() {
    [ "$(id -u)" = 0 ] || die "$1 needs root (debootstrap, mount, chroot, unshare): run it with sudo"
}

# binfmt_misc mounted and qemu-aarch64 enabled, with the F (fix-binary) flag, so that an
# arm64 binary runs inside a chroot that has no qemu of its own.
ensure_binfmt() {
    local bm=/proc/sys/fs/binfmt_misc
    if [ ! -e "$bm/register" ]; then
        mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null \
            || die "cannot mount binfmt_misc on $bm (a container without CAP_SYS_ADMIN?): run on a host or a privileged container"
    fi
    if [ ! -e "$bm/qemu-aarch64" ]; then
        command -v update-binfmts >/dev/null \
            || die "update-binfmts is missing: apt-get install binfmt-support qemu-user-static (or run make.sh)"
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 \
            || die "update-binfmts --enable qemu-aarch64 failed: is qemu-user-static installed?"
    fi
    grep -qx enabled "$bm/qemu-aarch64" || die "binfmt qemu-aarch64 is registered but disabled: update-binfmts --enable qemu-aarch64"
    grep -q '^flags:.*F' "$bm/qemu-aarch64" \
        || die "binfmt qemu-aarch64 lacks the F (fix-binary) flag: use Debian's qemu-user-static"
}

need_built_root() {
    [ -n "${1:-}" ] || die "give the root folder made by make.sh"
    [ -f "$1/$PI_OK" ] || die "$1 is not a finished emulated-Pi root: run scripts/emulated-pi/make.sh $1"
}

check_cpu() {
    case " $PI_CPUS " in
        *" $1 "*) ;;
        *) die "--cpu $1: choose cortex-a72 (Raspberry Pi 4, no dotprod) or cortex-a76 (Raspberry Pi 5, dotprod)" ;;
    esac
}

# What a Raspberry Pi shows in /proc/cpuinfo, the cpu sysfs tree and the device tree: the folder
# $1/var/lib/edgecnn-emulated-pi/$2-<hash of this file>, printed. LiteRT's CPU detection (cpuinfo)
# reads them; under QEMU 7.2 it would otherwise read the x86 host's and crash in Interpreter().
# A tree is written once, then never touched: a running sshd keeps it bind-mounted, and emptying
# it under a running LiteRT changes the kernels it picks (and so its int8 outputs).
fake_cpu() {
    local d tmp
    d="$1/var/lib/edgecnn-emulated-pi/$2-$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
    if [ ! -f "$d/cpuinfo" ]; then
        mkdir -p "${d%/*}" && tmp=$(mktemp -d "$d.XXXXXX")
        _write_fake_cpu "$tmp" "$2"
        chmod 755 "$tmp"
        mv -T "$tmp" "$d" 2>/dev/null || rm -rf "$tmp"   # another run.sh may have won the race
    fi
    echo "$d"
}

_write_fake_cpu() {
    local d=$1 cpu=$2 features part variant rev midr maxf minf model l1i l1d l2 l3=""
    if [ "$cpu" = cortex-a76 ]; then      # Raspberry Pi 5: BCM2712, Cortex-A76 r4p1
        features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
        part=0xd0b variant=0x4 rev=1 midr=0x00000000414fd0b1 maxf=2400000 minf=1500000
        model="Raspberry Pi 5 Model B Rev 1.0" l1i=64K l1d=64K l2=512K l3=2048K
    else                                  # Raspberry Pi 4: BCM2711, Cortex-A72 r0p3
        features="fp asimd evtstrm crc32 cpuid"
        part=0xd08 variant=0x0 rev=3 midr=0x00000000410fd083 maxf=1800000 minf=600000
        model="Raspberry Pi 4 Model B Rev 1.4" l1i=48K l1d=32K l2=1024K
    fi
    mkdir -p "$d/cpu" "$d/devicetree/base"
    {
        for n in 0 1 2 3; do
            printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\n' "$n" "$features"
            printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\n' "$variant" "$part"
            printf 'CPU revision\t: %s\n\n' "$rev"
        done
        printf 'Hardware\t: BCM2835\nModel\t\t: %s (emulated: QEMU user-mode %s)\n' "$model" "$cpu"
    } >"$d/cpuinfo"
    printf '%s\0' "$model" >"$d/devicetree/base/model"
    local c=$d/cpu
    for f in possible present online; do echo 0-3 >"$c/$f"; done
    echo 3 >"$c/kernel_max"
    for n in 0 1 2 3; do
        local p=$c/cpu$n
        mkdir -p "$p/regs/identification" "$p/cpufreq" "$p/topology" "$p/cache"
        echo 1 >"$p/online"
        echo "$midr" >"$p/regs/identification/midr_el1"
        echo "$maxf" >"$p/cpufreq/cpuinfo_max_freq"
        echo "$minf" >"$p/cpufreq/cpuinfo_min_freq"
        echo "$maxf" >"$p/cpufreq/scaling_cur_freq"
        echo ondemand >"$p/cpufreq/scaling_governor"
        echo "$n" >"$p/topology/core_id"
        echo 0 >"$p/topology/physical_package_id"
        echo 0 >"$p/topology/cluster_id"
        for f in core_siblings_list package_cpus_list cluster_cpus_list; do echo 0-3 >"$p/topology/$f"; done
        for f in thread_siblings_list core_cpus_list; do echo "$n" >"$p/topology/$f"; done
        local i=0 spec
        for spec in "1 Data $l1d $n" "1 Instruction $l1i $n" "2 Unified $l2 $( [ -n "$l3" ] && echo "$n" || echo 0-3)" \
                    ${l3:+"3 Unified $l3 0-3"}; do
            set -- $spec
            mkdir -p "$p/cache/index$i"
            echo "$1" >"$p/cache/index$i/level"; echo "$2" >"$p/cache/index$i/type"
            echo "$3" >"$p/cache/index$i/size"; echo "$4" >"$p/cache/index$i/shared_cpu_list"
            echo 64 >"$p/cache/index$i/coherency_line_size"
            i=$((i + 1))
        done
    done
}

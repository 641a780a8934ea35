#!/usr/bin/env bash
# Start (or --stop) sshd inside an emulated-Pi root, on 127.0.0.1 only, so that
# `edgecnn bench ARTIFACT --host` and `edgecnn evaluate ARTIFACT --host` reach it.
#
#   sudo scripts/emulated-pi/sshd.sh ROOT [--cpu cortex-a76|cortex-a72] [--port N] [--name ALIAS] [--stop]
#
# The host alias is emulated-pi5 (cortex-a76, default port 2205) or emulated-pi4 (cortex-a72,
# port 2204), or --name ALIAS; several can run at once. Writes, in ROOT.ssh/: a client key it generates (id_ed25519),
# known_hosts (the root's own host key: host-key checking stays on) and ALIAS.ssh_config. Then:
#   edgecnn bench ARTIFACT --host emulated-pi5 --ssh-config ROOT.ssh/emulated-pi5.ssh_config
# The user is pi; edgecnn there is this checkout (read-only, on PYTHONPATH). Every latency it
# reports is labelled "emulated": QEMU is about 100x slower than a Pi.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

root="" cpu=cortex-a76 port="" stop="" alias=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) cpu=${2:?}; shift 2 ;;
        --port) port=${2:?}; shift 2 ;;
        --stop) stop=1; shift ;;
        --name) alias=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (sshd.sh ROOT [--cpu cortex-a76|cortex-a72] [--port N] [--name ALIAS] [--stop])" ;;
        *) [ -z "$root" ] || die "one ROOT only"; root=$1; shift ;;
    esac
done
check_cpu "$cpu"
need_root sshd.sh
need_built_root "$root"
root=$(realpath "$root")
if [ "$cpu" = cortex-a76 ]; then alias=${alias:-emulated-pi5}; port=${port:-2205}
else alias=${alias:-emulated-pi4}; port=${port:-2204}; fi
case "$alias" in *[!A-Za-z0-9_.-]*|'') die "--name $alias: use letters, digits, '.', '_' and '-'" ;; esac
case "$port" in ''|*[!0-9]*) die "--port $port is not a port number" ;; esac
state=$root.ssh
pidfile=$root/run/edgecnn-$alias.pid
conf=/etc/ssh/edgecnn-$alias.conf

running() {  # the pid in the pid file is an sshd (under qemu) that still runs
    [ -f "$pidfile" ] && pid=$(cat "$pidfile") && [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q sshd
}

if [ -n "$stop" ]; then
    if running; then kill "$pid" && echo "stopped $alias (pid $pid)"; else echo "$alias is not running"; fi
    rm -f "$pidfile"
    exit 0
fi

mkdir -p "$state" && chmod 700 "$state"
[ -f "$state/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C edgecnn-emulated-pi -f "$state/id_ed25519"
hostkey=$root/etc/ssh/edgecnn_host_ed25519_key
[ -f "$hostkey" ] || ssh-keygen -q -t ed25519 -N '' -C edgecnn-emulated-pi-host -f "$hostkey"
home=$root/home/pi
install -d -m 700 -o "$(stat -c %u "$home")" -g "$(stat -c %g "$home")" "$home/.ssh"
install -m 600 -o "$(stat -c %u "$home")" -g "$(stat -c %g "$home")" "$state/id_ed25519.pub" "$home/.ssh/authorized_keys"
cat >"$root$conf" <<CONF
# written by scripts/emulated-pi/sshd.sh: $alias, QEMU CPU model $cpu
ListenAddress 127.0.0.1:$port
HostKey /etc/ssh/edgecnn_host_ed25519_key
PidFile /run/edgecnn-$alias.pid
AllowUsers pi
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
# sshd gives a session a fresh environment: QEMU_CPU must be set again for its processes
SetEnv QEMU_CPU=$cpu PYTHONPATH=$PI_SRC PYTHONDONTWRITEBYTECODE=1
CONF
echo "$alias $(cut -d' ' -f1-2 "$hostkey.pub")" >"$state/known_hosts.$alias"
cat "$state"/known_hosts.* >"$state/known_hosts"
cat >"$state/$alias.ssh_config" <<CONF
# written by scripts/emulated-pi/sshd.sh: an emulated Raspberry Pi (QEMU $cpu), never a latency figure
Host $alias
  HostName 127.0.0.1
  Port $port
  User pi
  IdentityFile $state/id_ed25519
  IdentitiesOnly yes
  HostKeyAlias $alias
  UserKnownHostsFile $state/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  PasswordAuthentication no
CONF
# under sudo, the user who runs edgecnn owns the client side (ssh refuses a key it cannot keep private)
[ -z "${SUDO_USER:-}" ] || chown -R "$SUDO_USER" "$state"

if running; then
    echo "$alias already runs (pid $pid); restarting it with the current configuration"
    kill "$pid"; sleep 1
fi
"$here/run.sh" "$root" --cpu "$cpu" -- /usr/sbin/sshd -f "$conf" -E "/var/log/edgecnn-$alias.log" \
    || die "sshd did not start: see $root/var/log/edgecnn-$alias.log"
for _ in $(seq 120); do
    if ssh -F "$state/$alias.ssh_config" -o BatchMode=yes -o ConnectTimeout=30 "$alias" true 2>/dev/null; then
        echo "$alias ($cpu) listens on 127.0.0.1:$port; for example:"
        echo "  edgecnn bench ARTIFACT --host $alias --ssh-config $state/$alias.ssh_config"
        exit 0
    fi
    sleep 1
done
running && kill "$pid"
die "sshd in $root does not let pi in on 127.0.0.1:$port after 2 minutes (stopped it): $(tail -n 1 "$root/var/log/edgecnn-$alias.log" 2>/dev/null)"

#!/usr/bin/env bash
# Start (or stop) a private Open vSwitch for megabus where no system one runs.
#
#   ops/ovs.sh [start]   start ovsdb-server and ovs-vswitchd (idempotent)
#   ops/ovs.sh stop      stop the ones this script started
#   ops/ovs.sh status    say which switch a node would use
#
# Machines without the openvswitch kernel module (containers, CI) cannot run
# Debian's openvswitch-switch service, but the daemons work with the userspace
# datapath: megabus creates its bridges with datapath_type=netdev there. The
# daemons keep their database, sockets, pid files and logs in one run
# directory, $MEGABUS_OVS_RUNDIR (default /run/megabus-ovs), so they never
# touch a system installation. Needs root and the openvswitch-switch package.
set -euo pipefail

rundir="${MEGABUS_OVS_RUNDIR:-/run/megabus-ovs}"
system_sock="/run/openvswitch/db.sock"
schema="/usr/share/openvswitch/vswitch.ovsschema"
action="${1:-start}"

# Every OVS tool finds its sockets through these, so ovs-vsctl, ovs-ofctl and
# ovs-appctl run from this script (or a shell that exports them) see our switch.
export OVS_RUNDIR="$rundir" OVS_DBDIR="$rundir" OVS_LOGDIR="$rundir"

die() { echo "ovs.sh: $*" >&2; exit 1; }

# alive SOCKET: whether an ovsdb-server answers on SOCKET.
alive() {
    [ -S "$1" ] && ovs-vsctl --db="unix:$1" --timeout=5 --no-wait show >/dev/null 2>&1
}

# running PIDFILE: whether the process named in PIDFILE lives.
running() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

usage() {
    cat <<EOF
ovs.sh: Open vSwitch is ready in $rundir (userspace datapath).
  megabus finds it by itself (or set MEGABUS_OVS_RUNDIR=$rundir).
  For the OVS tools in a shell: export OVS_RUNDIR=$rundir
  e.g. OVS_RUNDIR=$rundir ovs-vsctl show
  Stop it with: $0 stop
EOF
}

start() {
    [ "$(id -u)" -eq 0 ] || die "run as root"
    command -v ovsdb-server >/dev/null && command -v ovs-vswitchd >/dev/null \
        || die "Open vSwitch is not installed: apt-get install -y openvswitch-switch"
    if alive "$rundir/db.sock" && running "$rundir/ovs-vswitchd.pid"; then
        usage
        return 0
    fi
    if [ "$rundir/db.sock" != "$system_sock" ] && alive "$system_sock" \
        && [ -z "${MEGABUS_OVS_RUNDIR:-}" ]; then
        echo "ovs.sh: the system Open vSwitch runs ($system_sock); megabus uses it"
        return 0
    fi
    mkdir -p "$rundir"
    chmod 0750 "$rundir"
    if [ ! -f "$rundir/conf.db" ]; then
        ovsdb-tool create "$rundir/conf.db" "$schema"
    fi
    if ! running "$rundir/ovsdb-server.pid"; then
        rm -f "$rundir/db.sock"
        ovsdb-server "$rundir/conf.db" \
            --remote="punix:$rundir/db.sock" \
            --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
            --pidfile="$rundir/ovsdb-server.pid" \
            --unixctl="$rundir/ovsdb-server.ctl" \
            --log-file="$rundir/ovsdb-server.log" \
            -vconsole:off --detach
    fi
    ovs-vsctl --db="unix:$rundir/db.sock" --timeout=10 --no-wait init
    if ! running "$rundir/ovs-vswitchd.pid"; then
        ovs-vswitchd "unix:$rundir/db.sock" \
            --pidfile="$rundir/ovs-vswitchd.pid" \
            --unixctl="$rundir/ovs-vswitchd.ctl" \
            --log-file="$rundir/ovs-vswitchd.log" \
            -vconsole:off --detach
    fi
    # ovs-vswitchd is up once it has applied the database's configuration.
    ovs-vsctl --db="unix:$rundir/db.sock" --timeout=30 set Open_vSwitch . \
        other_config:vlan-limit=2
    usage
}

stop() {
    local daemon
    for daemon in ovs-vswitchd ovsdb-server; do
        if running "$rundir/$daemon.pid"; then
            ovs-appctl -t "$rundir/$daemon.ctl" exit >/dev/null 2>&1 \
                || kill "$(cat "$rundir/$daemon.pid")"
            for _ in $(seq 50); do
                running "$rundir/$daemon.pid" || break
                sleep 0.1
            done
            running "$rundir/$daemon.pid" && die "$daemon does not stop"
        fi
        rm -f "$rundir/$daemon.pid"
    done
    rm -f "$rundir/db.sock"
    echo "ovs.sh: stopped the Open vSwitch in $rundir (its database stays in $rundir/conf.db)"
}

status() {
    if alive "$rundir/db.sock" && running "$rundir/ovs-vswitchd.pid"; then
        echo "ovs.sh: running in $rundir"
    elif alive "$system_sock"; then
        echo "ovs.sh: the system Open vSwitch runs ($system_sock)"
    else
        echo "ovs.sh: not running"
        return 3
    fi
}

case "$action" in
start) start ;;
stop) stop ;;
status) status ;;
*) die "usage: $0 [start|stop|status]" ;;
esac

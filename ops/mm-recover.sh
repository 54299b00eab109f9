#!/bin/sh
# Start a megabus node the way minimega 2.8's container start script starts
# minimega: settings come from MM_* environment variables. With
# MM_RECOVER=true the node gets 2.8's -recover flag and rebuilds the VMs a
# killed node left running (see handlers/vms/recovery.py).
#
#   MM_BASE      base directory            (default /tmp/minimega)
#   MM_FILEPATH  files directory           (default <base>/files)
#   MM_LOGLEVEL  debug|info|warn|error     (default info)
#   MM_LOGFILE   log file                  (default none)
#   MM_RECOVER   true|false                (default false)
#   MM_FORCE     accepted for 2.8 scripts; megabus needs no -force
#   MM_NAME      node name                 (default the host name)
#   MM_NATS      NATS server URL(s)        (default the node's own server)
#   MM_APPEND    further node flags, split on spaces
#   MEGABUS      the megabus program       (default megabus on PATH)
set -eu

: "${MM_BASE:=/tmp/minimega}"
: "${MM_FILEPATH:=}"
: "${MM_LOGLEVEL:=info}"
: "${MM_LOGFILE:=}"
: "${MM_RECOVER:=false}"
: "${MM_FORCE:=true}"
: "${MM_NAME:=}"
: "${MM_NATS:=}"
: "${MM_APPEND:=}"
: "${MEGABUS:=megabus}"

set -- -base "$MM_BASE" -level "$MM_LOGLEVEL"
[ -n "$MM_FILEPATH" ] && set -- "$@" -filepath "$MM_FILEPATH"
[ -n "$MM_LOGFILE" ] && set -- "$@" -logfile "$MM_LOGFILE"
[ -n "$MM_NAME" ] && set -- "$@" -name "$MM_NAME"
[ -n "$MM_NATS" ] && set -- "$@" -nats "$MM_NATS"
case "$MM_RECOVER" in
    true|1|yes) set -- "$@" -recover ;;
    false|0|no|"") ;;
    *) echo "mm-recover.sh: MM_RECOVER must be true or false, not '$MM_RECOVER'" >&2; exit 2 ;;
esac
# MM_APPEND is split on purpose, as 2.8's script does
# shellcheck disable=SC2086
exec "$MEGABUS" node "$@" $MM_APPEND

#!/usr/bin/env bash
# Set up megabus on a Debian 12 machine: system packages, then .venv in the repo.
#
# Idempotent: packages already installed are not fetched again, an existing
# .venv is reused, and the editable install is refreshed. Run as root (or with
# sudo available) from anywhere; it always works on the repo it lives in.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# What the node and the tests use, now and for the VM/network work to come:
# OVS bridges, qemu guests, dnsmasq, iptables NAT, ip/ping, busybox images for
# guests and containers, debootstrap roots, capture and the vm_screenshot script;
# the router daemon's programs (BIRD 2, dhclient, nslookup, route, sysctl, depmod);
# libfuse 3 and fusermount3 for `cc mount` of KVM guests (FUSE, via mfusepy);
# openssl, whose CLI makes the throw-away CAs of the TLS tests and the bench;
# the web UI's noVNC 1.3 and graphviz (viz pictures), and chromium to test the page.
packages=(
    python3 python3-venv python3-pip git
    openvswitch-switch qemu-system-x86 qemu-utils dnsmasq-base iptables iproute2
    iputils-ping busybox-static cpio debootstrap tcpdump xxd
    openssh-server openssh-client binutils
    bird2 isc-dhcp-client dnsutils net-tools procps kmod
    openssl
    fuse3 e2fsprogs
    novnc graphviz chromium
)

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: run as root (no sudo found)" >&2; exit 1; }
    sudo="sudo"
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
fi

# The newest python3 >= 3.11 on PATH (Debian 12's own is 3.11).
python=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        python="$(command -v "$candidate")"
        break
    fi
done
[ -n "$python" ] || { echo "setup.sh: need Python >= 3.11" >&2; exit 1; }

if [ ! -x .venv/bin/python ] \
    || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup.sh: creating .venv with $python"
    rm -rf .venv
    "$python" -m venv .venv
fi

# A lenient editable install: edits, new modules and new subpackages are seen
# without reinstalling. mypy cannot follow its import hook (style.md section 4
# row 8), so ops/test.sh type-checks through a symlink tree instead.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "setup.sh: ready: $(.venv/bin/python --version), megabus at .venv/bin/megabus"

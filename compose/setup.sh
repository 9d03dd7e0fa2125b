#!/usr/bin/env bash
# Installs what VIOLIN needs on Debian 12 (run as root). Idempotent: a no-op when all is there.
# Swift itself (6.x, https://swift.org) must already be on PATH.
set -euo pipefail
packages=(libzmq3-dev libvirt-dev pkg-config iproute2 procps iputils-ping tshark
          libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients busybox-static xz-utils
          docker-compose dnsmasq-base iptables iperf3
          ethtool openvswitch-switch   # Open vSwitch: a peer of the interop test
          prometheus curl chromium python3-websocket)   # observability: the tests' real Prometheus and browser
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "setup: run as root to install: ${missing[*]}" >&2; exit 1; }
  apt-get update -q
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# pyzmq: the interoperability test and the benchmark's reference loop.
if ! python3 -c 'import zmq' 2>/dev/null; then
  python3 -m pip install --quiet pyzmq 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages pyzmq 2>/dev/null \
    || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-zmq; }
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (install Swift 6.x)" >&2; exit 1; }

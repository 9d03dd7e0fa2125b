#!/usr/bin/env bash
# A real libvirt + QEMU host for the monitor's system test (see shared/docs/LIBVIRT-LAB.md):
#   qemu-guest.sh guest CACHE          build (once) a tiny guest: Debian cloud kernel + busybox
#                                       initramfs whose init loads virtio_balloon and burns CPU
#   qemu-guest.sh daemon DIR           start libvirtd (QEMU driver, TCG) in a private mount
#                                       namespace, its socket at DIR/sock/libvirt-sock; prints its pid
#   qemu-guest.sh boot DIR CACHE NAME  define and start guest NAME (128 MiB, 1 vCPU, balloon)
#   qemu-guest.sh stop DIR             destroy the guests, stop libvirtd, kill what is left
set -euo pipefail
cmd=$1; shift

guest() {
  local cache=$1
  mkdir -p "$cache"
  [ -f "$cache/initrd.gz" ] && [ -f "$cache/vmlinuz" ] && return 0
  local work; work=$(mktemp -d)
  local pkg; pkg=$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-cloud-amd64$' | awk '{print $1}' | sort -V | tail -1)
  (cd "$work" && apt-get download -q "$pkg" >/dev/null)
  dpkg -x "$work"/*.deb "$work/k"
  cp "$work"/k/boot/vmlinuz-* "$cache/vmlinuz"
  local root="$work/root"
  mkdir -p "$root"/{bin,proc,sys,dev,lib}
  cp /bin/busybox "$root/bin/busybox"
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon; do
    f=$(find "$work/k/lib/modules" -name "$m.ko*" | head -1)
    case "$f" in
      *.xz) xz -dc "$f" > "$root/lib/$m.ko" ;;
      *.zst) zstd -dqc "$f" > "$root/lib/$m.ko" ;;
      *) cp "$f" "$root/lib/$m.ko" ;;
    esac
  done
  cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon; do insmod /lib/$m.ko 2>/dev/null; done
echo VIOLIN-GUEST-UP
while :; do :; done
INIT
  chmod +x "$root/init"
  (cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$cache/initrd.gz")
  rm -rf "$work"
}

daemon() {
  local dir=$1
  mkdir -p "$dir"/{sock,etc,lib,log,cache,run}
  cat > "$dir/etc/libvirtd.conf" <<CONF
listen_tls = 0
listen_tcp = 0
unix_sock_dir = "$dir/sock"
auth_unix_rw = "none"
auth_unix_ro = "none"
CONF
  cat > "$dir/etc/qemu.conf" <<CONF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
CONF
  cp /etc/passwd "$dir/passwd"; cp /etc/group "$dir/group"
  grep -q '^libvirt-qemu:' "$dir/passwd" || echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> "$dir/passwd"
  grep -q '^libvirt-qemu:' "$dir/group" || echo 'libvirt-qemu:x:64055:' >> "$dir/group"
  grep -q '^kvm:' "$dir/group" || echo 'kvm:x:64056:' >> "$dir/group"
  mkdir -p /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt
  # The daemon outlives this script: it must hold none of our caller's descriptors (a test
  # harness waits for its pipes to close).
  (
  for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
  exec unshare -m --propagation private sh -c "
    mount --bind '$dir/run' /run && mkdir -p /run/libvirt &&
    mount --bind '$dir/etc' /etc/libvirt && mount --bind '$dir/lib' /var/lib/libvirt &&
    mount --bind '$dir/log' /var/log/libvirt && mount --bind '$dir/cache' /var/cache/libvirt &&
    mount --bind '$dir/passwd' /etc/passwd && mount --bind '$dir/group' /etc/group &&
    exec libvirtd -f /etc/libvirt/libvirtd.conf"
  ) < /dev/null > "$dir/libvirtd.out" 2>&1 &
  echo $! > "$dir/libvirtd.pid"
  for _ in $(seq 600); do
    virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" version >/dev/null 2>&1 && { cat "$dir/libvirtd.pid"; return 0; }
    sleep 0.1
  done
  echo "libvirtd did not come up: $(tail -5 "$dir/libvirtd.out")" >&2
  return 1
}

boot() {
  local dir=$1 cache=$2 name=$3
  cat > "$dir/$name.xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <currentMemory unit='MiB'>128</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$cache/vmlinuz</kernel><initrd>$cache/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet</cmdline></os>
  <devices>
    <serial type='file'><source path='$dir/$name.console'/><target port='0'/></serial>
    <memballoon model='virtio'/>
  </devices>
</domain>
XML
  virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" create "$dir/$name.xml" >/dev/null
}

stop() {
  local dir=$1
  for d in $(virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" list --name 2>/dev/null); do
    virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" destroy "$d" >/dev/null 2>&1 || true
  done
  [ -f "$dir/libvirtd.pid" ] && kill "$(cat "$dir/libvirtd.pid")" 2>/dev/null || true
  pkill -9 -f "qemu-system.*$dir" 2>/dev/null || true
  pkill -9 -f "libvirtd -f /etc/libvirt/libvirtd.conf" 2>/dev/null || true
}

"$cmd" "$@"

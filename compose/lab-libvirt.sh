#!/usr/bin/env bash
# libvirt "hosts" and tiny QEMU guests on one machine (see shared/docs/LIBVIRT-LAB.md), for the
# local demo and the system tests:
#   lab-libvirt.sh guest CACHE            build (once) a tiny guest: Debian cloud kernel + busybox
#                                          initramfs with virtio net/balloon (kernel command line:
#                                          violin.ip=A.B.C.D/N sets eth0, violin.burn=1 burns CPU,
#                                          violin.dirty=1 rewrites 32 MiB of memory over and over
#                                          (saying VIOLIN-DIRTYING on its console first),
#                                          violin.fill=N fills its memory until N MiB are available
#                                          (then says VIOLIN-FILLED);
#                                          with an address it serves TCP echo on 5000 and a shell
#                                          on 2323 — a lab guest inside an isolated VIOLIN)
#   lab-libvirt.sh daemon DIR [ADDR]      start libvirtd (QEMU driver, TCG) in a private mount
#                                          namespace, its socket at DIR/sock/libvirt-sock; with ADDR
#                                          it also listens on tcp ADDR:16509 and migrates on ADDR
#                                          (run it inside the host's network namespace); prints its pid.
#                                          VIOLIN_LAB_CGROUPS=cpu puts each guest in a cgroup v1
#                                          "cpu" group, so CPU weights take effect (default: none),
#                                          under the daemon's own partition of the hierarchy
#                                          (its path in DIR/cgroup; removed by `stop`);
#                                          VIOLIN_LAB_CA=CADIR (with ADDR): TLS too, on ADDR:16514, with a
#                                          certificate for ADDR from that CA, and QEMU's migration
#                                          stream over TLS (migrate_tls_force)
#   lab-libvirt.sh ca CADIR               make the lab's small CA (once: ca.pem, ca.key)
#   lab-libvirt.sh boot DIR CACHE NAME [--cpus LIST] [--memory MAX[/NOW]] [--cmdline WORDS]
#                                          define and start guest NAME: 1 vCPU, 128 MiB, burning
#                                          (--cmdline, default violin.burn=1); --cpus: its threads
#                                          on those host CPUs only (e.g. 0); --memory: MAX MiB with
#                                          the balloon at NOW; balloon statistics every 2 s
#   lab-libvirt.sh stop DIR               destroy the guests, stop libvirtd, kill what is left
#   lab-libvirt.sh crash DIR              SIGKILL libvirtd alone (its guests run on; `daemon` again
#                                          restarts it, and it takes them back)
set -euo pipefail
cmd=$1; shift
GUEST_VERSION=10
CAPS=/var/cache/violin-test-guest/libvirt-caps

guest() {
  local cache=$1
  mkdir -p "$cache"
  exec 9>"$cache/.lock"; flock 9          # tests build it concurrently
  [ -f "$cache/initrd.gz" ] && [ -f "$cache/vmlinuz" ] && [ "$(cat "$cache/version" 2>/dev/null)" = $GUEST_VERSION ] && return 0
  local work; work=$(mktemp -d)
  local pkg; pkg=$(apt-cache search --names-only '^linux-image-[0-9.]+-[0-9]+-cloud-amd64$' | awk '{print $1}' | sort -V | tail -1)
  (cd "$work" && apt-get download -q "$pkg" >/dev/null)
  dpkg -x "$work"/*.deb "$work/k"
  cp "$work"/k/boot/vmlinuz-* "$cache/vmlinuz"
  local root="$work/root"
  mkdir -p "$root"/{bin,proc,sys,dev,lib,tmp}
  cp /bin/busybox "$root/bin/busybox"
  local mods="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon failover net_failover virtio_net"
  for m in $mods; do
    f=$(find "$work/k/lib/modules" -name "$m.ko*" | head -1)
    case "$f" in
      *.xz) xz -dc "$f" > "$root/lib/$m.ko" ;;
      *.zst) zstd -dqc "$f" > "$root/lib/$m.ko" ;;
      *) cp "$f" "$root/lib/$m.ko" ;;
    esac
  done
  cat > "$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null || mknod /dev/ttyS0 c 4 64
for m in $mods; do insmod /lib/\$m.ko 2>/dev/null; done
ip=; burn=; dirty=; fill=
for x in \$(cat /proc/cmdline); do
  case \$x in violin.ip=*) ip=\${x#violin.ip=} ;; violin.burn=1) burn=1 ;; violin.dirty=1) dirty=1 ;; violin.fill=*) fill=\${x#violin.fill=} ;; esac
done
ip link set lo up
if [ -n "\$ip" ]; then
  ip link set eth0 up && ip addr add "\$ip" dev eth0
  nc -ll -p 5000 -e /bin/cat &
  nc -ll -p 2323 -e /bin/sh &
fi
# A second NIC is the head node's uplink (a NAT network of its host): configured by DHCP.
if [ -e /sys/class/net/eth1 ]; then
  printf '#!/bin/sh\ncase "\$1" in bound|renew) ip addr flush dev "\$interface"; ip addr add "\$ip/\${mask:-24}" dev "\$interface"; [ -n "\$router" ] && ip route replace default via "\${router%%%% *}" dev "\$interface";; esac\n' > /bin/uplink.script
  chmod +x /bin/uplink.script
  ip link set eth1 up && udhcpc -i eth1 -s /bin/uplink.script -b -q -t 20 >/dev/null 2>&1
fi
echo VIOLIN-GUEST-UP
# A virtio ring the device broke ("... is not a head!", seen after TCG migrations in the chaos
# soaks) leaves the guest up but deaf for good, and no panic setting catches it: the guest
# reboots itself, as a watchdog would (its console keeps the line).
(grep -q 'is not a head' /dev/kmsg && sleep 1 && reboot -f) &
# A shell on the serial console (violin console), started again whenever it exits.
(while :; do setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'; done) &
# A guest that keeps rewriting its memory (for post-copy).
# 16 MiB of random bytes copied back and forth: memory rewritten fast, and not zero pages
# (which a migration sends as mere markers).
# (/dev/urandom is slow under TCG: 1 MiB of it, repeated.)
if [ -n "\$dirty" ]; then
  dd if=/dev/urandom of=/tmp/r bs=1M count=1 2>/dev/null
  cat /tmp/r /tmp/r /tmp/r /tmp/r > /tmp/q && cat /tmp/q /tmp/q /tmp/q /tmp/q > /tmp/a
  echo VIOLIN-DIRTYING
  while :; do cp /tmp/a /tmp/b; cp /tmp/b /tmp/a; done
fi
# A guest that fills its memory (files in its RAM root) until only violin.fill=N MiB are
# available, then says so on its console.
if [ -n "\$fill" ]; then
  i=0
  while [ "\$(awk '/^MemAvailable:/ {print \$2}' /proc/meminfo)" -gt \$((fill * 1024)) ]; do
    dd if=/dev/zero of=/tmp/fill\$i bs=1M count=1 2>/dev/null; i=\$((i + 1))
  done
  echo VIOLIN-FILLED \$i
fi
[ -n "\$burn" ] && while :; do :; done
while :; do sleep 3600; done
INIT
  chmod +x "$root/init"
  (cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$cache/initrd.gz")
  echo $GUEST_VERSION > "$cache/version"
  rm -rf "$work"
}

# A host's certificates from the lab's CA (VIOLIN_LAB_CA: a directory with ca.pem and
# ca.key, made once per lab): one EC key and one certificate for ADDR, as server and client,
# laid out where libvirtd (/etc/pki/libvirt, /etc/pki/CA) and QEMU's migration TLS
# (/etc/pki/qemu) look for them in the daemon's mount namespace.
host_certs() {  # dir addr
  local pki=$1/pki ca=$VIOLIN_LAB_CA addr=$2
  mkdir -p "$pki"/{CA,libvirt/private,qemu,client}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/key.pem" -subj "/CN=$addr" \
    -out "$pki/req.pem" 2>/dev/null
  openssl x509 -req -in "$pki/req.pem" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial -days 30 -out "$pki/cert.pem" \
    -extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' "$addr") 2>/dev/null
  cp "$ca/ca.pem" "$pki/CA/cacert.pem"; cp "$ca/ca.pem" "$pki/qemu/ca-cert.pem"
  # The executor's own client directory (libvirt's pkipath layout), outside the daemon.
  cp "$ca/ca.pem" "$pki/client/cacert.pem"; cp "$pki/cert.pem" "$pki/client/clientcert.pem"; cp "$pki/key.pem" "$pki/client/clientkey.pem"
  for role in server client; do
    cp "$pki/cert.pem" "$pki/libvirt/${role}cert.pem"; cp "$pki/key.pem" "$pki/libvirt/private/${role}key.pem"
    cp "$pki/cert.pem" "$pki/qemu/$role-cert.pem"; cp "$pki/key.pem" "$pki/qemu/$role-key.pem"
  done
  chmod -R go-rwx "$pki"
}

# The lab's CA: made once (mode 0700), for every host's libvirt TLS.
ca() {  # dir
  local dir=$1
  [ -f "$dir/ca.pem" ] && return 0
  mkdir -p "$dir" && chmod 700 "$dir"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" \
    -days 30 -subj "/CN=VIOLIN lab CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# Shell words that mount the cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu where it is not (the
# /sys of a network namespace, from `ip netns exec`, has no cgroups), in a private mount namespace.
cpu_cgroup_mount() {
  echo "{ [ -d /sys/fs/cgroup/cpu ] || { mount -t tmpfs violin-cg /sys/fs/cgroup && mkdir /sys/fs/cgroup/cpu && mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu; }; }"
}
with_cpu_cgroup() {  # shell words, run where the cpu hierarchy is at /sys/fs/cgroup/cpu
  unshare -m --propagation private sh -c "$(cpu_cgroup_mount) && $1"
}

daemon() {
  local dir=$1 addr=${2:-}
  mkdir -p "$dir"/{sock,etc,lib,log,cache/qemu/capabilities,run}
  # With a CA and an address: libvirt's link and QEMU's migration stream both over TLS.
  local tls=0 pki_step=
  if [ -n "$addr" ] && [ -n "${VIOLIN_LAB_CA:-}" ]; then
    tls=1
    host_certs "$dir" "$addr"
    mkdir -p /etc/pki
    pki_step="mount --bind '$dir/pki' /etc/pki &&"
  fi
  cp "$CAPS"/*.xml "$dir/cache/qemu/capabilities/" 2>/dev/null || true   # skips the 8 s QEMU probe
  local uuid; uuid=$(cat /proc/sys/kernel/random/uuid)
  cat > "$dir/etc/libvirtd.conf" <<CONF
listen_tls = $tls
listen_tcp = $([ -n "$addr" ] && echo 1 || echo 0)
listen_addr = "${addr:-127.0.0.1}"
auth_tcp = "none"
auth_tls = "none"
unix_sock_dir = "$dir/sock"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "$uuid"
CONF
  cat > "$dir/etc/qemu.conf" <<CONF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ $([ "${VIOLIN_LAB_CGROUPS:-}" = cpu ] && echo '"cpu"' || true) ]
namespaces = [ ]
stdio_handler = "file"
CONF
  [ -n "$addr" ] && printf 'migration_address = "%s"\nmigration_host = "%s"\n' "$addr" "$addr" >> "$dir/etc/qemu.conf"
  [ $tls = 1 ] && printf 'migrate_tls_x509_cert_dir = "/etc/pki/qemu"\nmigrate_tls_x509_verify = 1\nmigrate_tls_force = 1\n' >> "$dir/etc/qemu.conf"
  cp /etc/passwd "$dir/passwd"; cp /etc/group "$dir/group"
  grep -q '^libvirt-qemu:' "$dir/passwd" || echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> "$dir/passwd"
  grep -q '^libvirt-qemu:' "$dir/group" || echo 'libvirt-qemu:x:64055:' >> "$dir/group"
  grep -q '^kvm:' "$dir/group" || echo 'kvm:x:64056:' >> "$dir/group"
  mkdir -p /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt
  local listen=; [ -n "$addr" ] && listen=--listen
  # With cgroups: libvirt picks cgroup v2 when it sees the hybrid layout's empty unified
  # hierarchy; hidden in the daemon's own mount namespace, it uses v1's cpu controller. Each
  # daemon gets its own partition of the cpu hierarchy, bound over the hierarchy's root in its
  # namespace: two daemons' guests never share a group (a migrating VM is on both at once, and
  # libvirt names groups by domain id and name).
  local cgroup_step=
  if [ "${VIOLIN_LAB_CGROUPS:-}" = cpu ]; then
    local rel; rel=violin-lab/$(printf %s "$(realpath -m "$dir")" | cksum | cut -d' ' -f1)
    with_cpu_cgroup "mkdir -p /sys/fs/cgroup/cpu/$rel"
    echo "/sys/fs/cgroup/cpu/$rel" > "$dir/cgroup"
    cgroup_step="$(cpu_cgroup_mount) && { ! mountpoint -q /sys/fs/cgroup/unified || umount /sys/fs/cgroup/unified; } && mount --bind /sys/fs/cgroup/cpu/$rel /sys/fs/cgroup/cpu &&"
  fi
  # The daemon outlives this script: it must hold none of our caller's descriptors (a test
  # harness waits for its pipes to close).
  (
  for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done
  exec unshare -m --propagation private sh -c "
    mount --bind '$dir/run' /run && mkdir -p /run/libvirt /run/lock && $cgroup_step $pki_step
    mount --bind '$dir/etc' /etc/libvirt && mount --bind '$dir/lib' /var/lib/libvirt &&
    mount --bind '$dir/log' /var/log/libvirt && mount --bind '$dir/cache' /var/cache/libvirt &&
    mount --bind '$dir/passwd' /etc/passwd && mount --bind '$dir/group' /etc/group &&
    exec libvirtd $listen -f /etc/libvirt/libvirtd.conf"
  ) < /dev/null > "$dir/libvirtd.out" 2>&1 &
  echo $! > "$dir/libvirtd.pid"
  for _ in $(seq 600); do
    if virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" version >/dev/null 2>&1; then
      # Keep the probed capabilities for the next daemons.
      if ! ls "$CAPS"/*.xml >/dev/null 2>&1; then
        for _ in $(seq 100); do ls "$dir/cache/qemu/capabilities/"*.xml >/dev/null 2>&1 && break; sleep 0.1; done
        mkdir -p "$CAPS" && cp "$dir/cache/qemu/capabilities/"*.xml "$CAPS/" 2>/dev/null || true
      fi
      # Inside a host's namespace: its NAT network for head nodes' uplinks (violin-nat, 192.168.150.0/24).
      [ -n "$addr" ] && uplink_network "$dir"
      cat "$dir/libvirtd.pid"; return 0
    fi
    sleep 0.1
  done
  echo "libvirtd did not come up: $(tail -5 "$dir/libvirtd.out")" >&2
  return 1
}

boot() {
  local dir=$1 cache=$2 name=$3 cpus= memory=128 words=violin.burn=1
  shift 3
  while [ $# -gt 0 ]; do
    case $1 in
      --cpus) cpus=$2 ;; --memory) memory=$2 ;; --cmdline) words=$2 ;;
      *) echo "boot: unknown option $1" >&2; return 64 ;;
    esac
    shift 2
  done
  cat > "$dir/$name.xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>${memory%/*}</memory>
  <currentMemory unit='MiB'>${memory#*/}</currentMemory>
  <vcpu$([ -n "$cpus" ] && echo " cpuset='$cpus'")>1</vcpu>
  $([ -n "$cpus" ] && echo "<cputune><emulatorpin cpuset='$cpus'/></cputune>")
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$cache/vmlinuz</kernel><initrd>$cache/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet $words</cmdline></os>
  <devices>
    <serial type='file'><source path='$dir/$name.console'/><target port='0'/></serial>
    <memballoon model='virtio'><stats period='2'/></memballoon>
  </devices>
</domain>
XML
  virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" create "$dir/$name.xml" >/dev/null
}

uplink_network() {
  local dir=$1
  cat > "$dir/violin-nat.xml" <<NET
<network>
  <name>violin-nat</name>
  <forward mode='nat'/>
  <bridge name='vnat0' stp='off'/>
  <ip address='192.168.150.1' netmask='255.255.255.0'><dhcp><range start='192.168.150.10' end='192.168.150.250'/></dhcp></ip>
</network>
NET
  # A restarted daemon still has it (its state lives on in DIR/run).
  virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" net-info violin-nat >/dev/null 2>&1 \
    || virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" net-create "$dir/violin-nat.xml" >/dev/null
}

crash() {
  local dir=$1
  [ -f "$dir/libvirtd.pid" ] && kill -9 "$(cat "$dir/libvirtd.pid")" 2>/dev/null || true
  for _ in $(seq 100); do [ -f "$dir/libvirtd.pid" ] && kill -0 "$(cat "$dir/libvirtd.pid")" 2>/dev/null || break; sleep 0.05; done
  rm -f "$dir/sock/libvirt-sock" "$dir/run/libvirtd.pid"
}

stop() {
  local dir=$1
  for d in $(virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" list --name 2>/dev/null); do
    virsh -c "qemu+unix:///system?socket=$dir/sock/libvirt-sock" destroy "$d" >/dev/null 2>&1 || true
  done
  [ -f "$dir/libvirtd.pid" ] && kill "$(cat "$dir/libvirtd.pid")" 2>/dev/null || true
  pkill -9 -f "qemu-system.*$dir" 2>/dev/null || true
  # The daemon's own process (unshare execs sh execs libvirtd: the pid is libvirtd's).
  [ -f "$dir/libvirtd.pid" ] && kill -9 "$(cat "$dir/libvirtd.pid")" 2>/dev/null || true
  # Its cpu partition, once the guests' threads have left it (groups go leaves first).
  if [ -f "$dir/cgroup" ]; then
    with_cpu_cgroup "for i in \$(seq 50); do find $(cat "$dir/cgroup") -depth -type d -exec rmdir {} + 2>/dev/null; [ -d $(cat "$dir/cgroup") ] || break; sleep 0.1; done" || true
    rm -f "$dir/cgroup"
  fi
}

"$cmd" "$@"

#ifndef VIOLIN_NETSHIM_H
#define VIOLIN_NETSHIM_H
/* The data plane's syscalls, each wrapped once: TAP devices, UDP sockets, and batches of
 * datagrams for recvmmsg/sendmmsg with preallocated buffers. Errors are returned as -errno. */
#include <stdint.h>
#include <stddef.h>

/* Opens (creating if needed) TAP device `name`, nonblocking. Writes the kernel's name into
 * name_out (IFNAMSIZ bytes). Returns the fd or -errno. */
int vn_tap_open(const char *name, char *name_out);
/* The same with a 10-octet virtio_net_hdr before every frame and the kernel's checksum and
 * TCPv4 segmentation offloads on: reads may then be 64 KB TSO frames with partial checksums. */
int vn_tap_open_offload(const char *name, char *name_out);
/* `queues` queues of multi-queue TAP `name` into fds (with offloads: virtio_net_hdr, CSUM, TSO4). */
int vn_tap_open_mq(const char *name, int queues, int offload, int *fds, char *name_out);
/* Lets a UDP socket receive coalesced datagram trains (UDP_GRO); gso size per slot below. */
int vn_udp_set_gro(int fd);
/* writev of `count` pieces (at most 1024): one TAP packet gathered from several buffers. */
int vn_writev(int fd, const uint8_t *const *ptrs, const size_t *lens, int count);
/* sendmsg of `count` gathered pieces as one UDP send to addr:port; with `segment` > 0 the
 * kernel cuts it into datagrams of that size (UDP_SEGMENT). Retries on EAGAIN up to timeout_ms. */
int vn_udp_send_gather(int fd, const uint8_t *const *ptrs, const size_t *lens, int count,
                       uint32_t addr_be, uint16_t port, uint16_t segment, int timeout_ms);
/* One UDP send of `len` octets from one buffer, as datagrams of `segment` octets (UDP GSO) when
 * `segment` > 0 and the buffer is longer; waits up to `timeout_ms` for room. Octets sent or -errno. */
int vn_udp_send_gso(int fd, const uint8_t *buf, size_t len, uint32_t addr_be, uint16_t port,
                    uint16_t segment, int timeout_ms);
/* writev of two pieces: a virtio_net_hdr and a frame, as one TAP packet. */
int vn_writev2(int fd, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
/* Sets a link up with an MTU (0: leave it) and, if mac is not NULL, its 6-byte address. */
int vn_link_configure(const char *name, int mtu, const uint8_t *mac);
/* Reads the 6-byte hardware address of a link. */
int vn_link_mac(const char *name, uint8_t *mac_out);
/* A nonblocking IPv4 UDP socket bound to addr:port (host order port; addr in network order).
 * Returns the fd or -errno. */
int vn_udp_open(uint32_t addr_be, uint16_t port, int bufsize);
/* Underlay addresses of either family: `hi`, `lo` hold the 16 bytes in memory order, an IPv4
 * address as ::ffff:a.b.c.d (its socket is AF_INET); an IPv6 socket is IPv6 only. */
int vn_udp_open16(uint64_t hi, uint64_t lo, uint16_t port, int bufsize);
/* `count` SO_REUSEPORT sockets on one address, datagrams steered by inner flow (see netshim.c). */
int vn_udp_open_group(uint64_t hi, uint64_t lo, uint16_t port, int bufsize, int count, int *fds);
int vn_udp_send_gso16(int fd, const uint8_t *buf, size_t len, uint64_t hi, uint64_t lo, uint16_t port,
                      uint16_t segment, int timeout_ms);
int vn_udp_send16(int fd, const uint8_t *data, size_t len, uint64_t hi, uint64_t lo, uint16_t port);
int vn_udp_send_gather16(int fd, const uint8_t *const *ptrs, const size_t *lens, int count,
                         uint64_t hi, uint64_t lo, uint16_t port, uint16_t segment, int timeout_ms);
/* The locally bound port of a socket (host order), or -errno. */
int vn_udp_local_port(int fd);
/* Parses dotted-quad IPv4 text into network order; returns 0 on success, -1 otherwise. */
int vn_parse_ipv4(const char *text, uint32_t *out_be);
void vn_format_ipv4(uint32_t addr_be, char *out16);

int vn_read(int fd, uint8_t *buf, size_t len);
int vn_write(int fd, const uint8_t *buf, size_t len);
int vn_close(int fd);
/* Waits until fd is writable or timeout_ms passes. 1 writable, 0 timeout, -errno. */
int vn_wait_writable(int fd, int timeout_ms);
/* poll() for readability over fds; sets ready[i] to 1 for readable entries. Returns count or -errno. */
int vn_poll_readable(const int *fds, uint8_t *ready, int count, int timeout_ms);

/* A batch of up to `capacity` datagrams. Receive: every slot owns a buffer of `bufsize` bytes.
 * Send: each slot points at any memory (vn_batch_set_send). All memory is allocated once. */
typedef struct vn_batch vn_batch;
void vn_batch_addr16(const vn_batch *b, int i, uint64_t *hi, uint64_t *lo);
void vn_batch_set_send16(vn_batch *b, int i, const uint8_t *data, size_t len, uint64_t hi, uint64_t lo, uint16_t port);
void vn_batch_set_send_gso16(vn_batch *b, int i, const uint8_t *data, size_t len, uint64_t hi, uint64_t lo, uint16_t port, uint16_t segment);
void vn_batch_set_recv16(vn_batch *b, int i, int len, uint64_t hi, uint64_t lo, uint16_t port);
vn_batch *vn_batch_new(int capacity, int bufsize);
void vn_batch_free(vn_batch *b);
uint8_t *vn_batch_buffer(vn_batch *b, int i);
int vn_batch_length(const vn_batch *b, int i);
uint32_t vn_batch_addr(const vn_batch *b, int i);       /* network order */
uint16_t vn_batch_port(const vn_batch *b, int i);       /* host order */
void vn_batch_set_send(vn_batch *b, int i, const uint8_t *data, size_t len, uint32_t addr_be, uint16_t port);
/* A send slot whose datagram the kernel cuts into `segment`-octet pieces (UDP_SEGMENT). */
void vn_batch_set_send_gso(vn_batch *b, int i, const uint8_t *data, size_t len, uint32_t addr_be, uint16_t port, uint16_t segment);
/* After a receive: the size of the datagrams coalesced into slot i (UDP_GRO), 0 when single. */
int vn_batch_gso_size(const vn_batch *b, int i);
/* For an in-memory network (tests): the slots as sendmmsg would read them, and a received
 * datagram placed in slot i as recvmmsg would (its bytes already in vn_batch_buffer). */
int vn_batch_capacity(const vn_batch *b);
const uint8_t *vn_batch_send_data(const vn_batch *b, int i);
size_t vn_batch_send_len(const vn_batch *b, int i);
void vn_batch_set_recv(vn_batch *b, int i, int len, uint32_t addr_be, uint16_t port);
/* recvmmsg, MSG_DONTWAIT: returns datagrams received (0 when none) or -errno. */
int vn_udp_recv_batch(int fd, vn_batch *b);
/* sendmmsg of slots [0, count): retries on EAGAIN up to timeout_ms in all. Returns slots sent or -errno. */
int vn_udp_send_batch(int fd, vn_batch *b, int count, int timeout_ms);
/* sendto of one datagram. */
int vn_udp_send(int fd, const uint8_t *data, size_t len, uint32_t addr_be, uint16_t port);
/* connect a UDP socket to addr:port, so plain read/write work on it (QEMU udp ports). */
int vn_udp_connect(int fd, uint32_t addr_be, uint16_t port);
/* An epoll set whose entries carry a caller's tag: the forwarding loop waits on it instead of
 * poll(), so a wake-up does not re-register every descriptor. -errno on failure. */
int vn_epoll_new(void);
int vn_epoll_add(int ep, int fd, uint32_t tag);
int vn_epoll_del(int ep, int fd);
/* Waits up to timeout_ms; writes the tags of up to `max` (<= 256) ready entries. Count or -errno. */
int vn_epoll_wait(int ep, uint32_t *tags, int max, int timeout_ms);
/* Schedules the calling thread: SCHED_BATCH if `batch` (throughput work: its wake-ups do not
 * preempt the running thread) or SCHED_OTHER, the nice value `nice` (-20..19; raising it needs
 * no privilege) and, unless `slice_us` is 0, an EEVDF time slice of `slice_us` microseconds
 * (100-100,000; Linux 6.12+: with a shorter slice its wake-ups preempt busy threads sooner).
 * 0 or -errno. */
int vn_thread_schedule(int batch, int nice, unsigned slice_us);
/* Thread `tid`'s time slice in microseconds as the kernel reports it (sched_getattr), or -errno. */
int vn_thread_slice_us(int tid);
/* Makes the calling thread real-time: SCHED_FIFO at `priority` (1-99). 0 or -errno (EPERM in a
 * CPU cgroup without a real-time budget when the kernel groups real-time time). */
int vn_thread_realtime(int priority);
/* The calling thread's CPU time, time runnable but waiting for a CPU (ns), and times it was put
 * on a CPU (/proc/thread-self/schedstat). 0 or -errno. */
int vn_thread_schedstat(uint64_t *cpu_ns, uint64_t *wait_ns, uint64_t *runs);
/* The host's idle time (idle and iowait) summed over its CPUs, in ns (/proc/stat), and its
 * CPU count. 0 or -errno. */
int vn_host_idle(uint64_t *idle_ns, int *cpus);
/* A packet socket on network device `ifname` (AF_PACKET, every protocol, non-blocking): each
 * read is one frame the device received (from its other end: a VM's TAP NIC, a veth), each
 * write one frame sent out of it, each behind a virtio_net_hdr (PACKET_VNET_HDR: TSO frames
 * whole, as on a TAP with offloads); the frames it sends itself are not read back. The device
 * is set up. The fd or -errno. */
int vn_packet_open(const char *ifname, int rcvbuf);
/* `count` packet sockets on `ifname` in one fanout group steered by flow (see netshim.c); how many. */
int vn_packet_open_group(const char *ifname, int rcvbuf, int count, int *fds);
/* A persistent TAP device `name` for a VM's NIC (QEMU opens it: libvirt's <interface
 * type='ethernet'> with managed='no'), up, with `mtu` (0: leave it). 0: made; 1: it exists as a
 * TAP held by someone (a VM) and is left as it is; -errno otherwise (-EINVAL: a device of that
 * name that is no TAP). */
int vn_vmtap_make(const char *name, int mtu);
/* Removes persistent TAP `name` when nothing holds it. 0: removed or absent; -EBUSY: held. */
int vn_vmtap_remove(const char *name);
#endif

#define _GNU_SOURCE
#include "netshim.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/uio.h>
#include <netinet/udp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

_Static_assert(sizeof(struct ifreq) >= IFNAMSIZ, "ifreq");

int vn_tap_open(const char *name, char *name_out) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (name) strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { int e = errno; close(fd); return -e; }
    if (name_out) { memcpy(name_out, ifr.ifr_name, IFNAMSIZ); name_out[IFNAMSIZ - 1] = 0; }
    return fd;
}

int vn_tap_open_offload(const char *name, char *name_out) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (name) strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int hdr = 10;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4)) < 0) {
        int e = errno; close(fd); return -e;
    }
    if (name_out) { memcpy(name_out, ifr.ifr_name, IFNAMSIZ); name_out[IFNAMSIZ - 1] = 0; }
    return fd;
}

/* Opens `queues` queues of multi-queue TAP `name` (IFF_MULTI_QUEUE), each with a virtio_net_hdr
 * and the checksum and TCPv4 segmentation offloads when `offload` is set. The kernel spreads the
 * frames it sends to the device over the queues by a symmetric flow hash, and remembers the queue
 * a flow's frames were last written to (so its replies come back on it). Fills fds[0..queues). */
int vn_tap_open_mq(const char *name, int queues, int offload, int *fds, char *name_out) {
    if (queues < 1 || queues > 16) return -EINVAL;
    char actual[IFNAMSIZ];
    memset(actual, 0, sizeof actual);
    if (name) strncpy(actual, name, IFNAMSIZ - 1);
    for (int q = 0; q < queues; q++) {
        int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | (offload ? IFF_VNET_HDR : 0);
        memcpy(ifr.ifr_name, actual, IFNAMSIZ);
        int hdr = 10;
        int bad = fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0 ||
            (offload && (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
                         ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4)) < 0));
        if (bad) {
            int e = errno;
            if (fd >= 0) close(fd);
            for (int k = 0; k < q; k++) close(fds[k]);
            return -e;
        }
        memcpy(actual, ifr.ifr_name, IFNAMSIZ);
        fds[q] = fd;
    }
    if (name_out) { memcpy(name_out, actual, IFNAMSIZ); name_out[IFNAMSIZ - 1] = 0; }
    return 0;
}

int vn_udp_set_gro(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on) < 0 ? -errno : 0;
}

int vn_writev(int fd, const uint8_t *const *ptrs, const size_t *lens, int count) {
    if (count <= 0 || count > 1024) return -EINVAL;
    struct iovec iov[count];
    for (int i = 0; i < count; i++) { iov[i].iov_base = (void *)ptrs[i]; iov[i].iov_len = lens[i]; }
    for (;;) {
        ssize_t n = writev(fd, iov, count);
        if (n >= 0) return (int)n;
        if (errno != EINTR) return -errno;
    }
}

static socklen_t fill_addr16(struct sockaddr_in6 *slot, uint64_t hi, uint64_t lo, uint16_t port);

int vn_udp_send_gather(int fd, const uint8_t *const *ptrs, const size_t *lens, int count,
                       uint32_t addr_be, uint16_t port, uint16_t segment, int timeout_ms) {
    return vn_udp_send_gather16(fd, ptrs, lens, count, 0, ((uint64_t)addr_be << 32) | 0xFFFF0000u, port, segment, timeout_ms);
}

int vn_udp_send_gather16(int fd, const uint8_t *const *ptrs, const size_t *lens, int count,
                         uint64_t hi, uint64_t lo, uint16_t port, uint16_t segment, int timeout_ms) {
    if (count <= 0 || count > 1024) return -EINVAL;
    struct iovec iov[count];
    size_t total = 0;
    for (int i = 0; i < count; i++) { iov[i].iov_base = (void *)ptrs[i]; iov[i].iov_len = lens[i]; total += lens[i]; }
    struct sockaddr_in6 sa;
    socklen_t salen = fill_addr16(&sa, hi, lo, port);
    char ctrl[CMSG_SPACE(sizeof(uint16_t))];
    struct msghdr h;
    memset(&h, 0, sizeof h);
    h.msg_name = &sa;
    h.msg_namelen = salen;
    h.msg_iov = iov;
    h.msg_iovlen = count;
    if (segment > 0 && total > segment) {
        memset(ctrl, 0, sizeof ctrl);
        h.msg_control = ctrl;
        h.msg_controllen = sizeof ctrl;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&h);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        memcpy(CMSG_DATA(cm), &segment, sizeof segment);
    }
    for (;;) {
        ssize_t n = sendmsg(fd, &h, 0);
        if (n >= 0) return (int)n;
        if (errno == EINTR) continue;
        if ((errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) && vn_wait_writable(fd, timeout_ms) > 0) continue;
        return -errno;
    }
}

int vn_udp_send_gso(int fd, const uint8_t *buf, size_t len, uint32_t addr_be, uint16_t port,
                    uint16_t segment, int timeout_ms) {
    return vn_udp_send_gather(fd, &buf, &len, 1, addr_be, port, segment, timeout_ms);
}

int vn_udp_send_gso16(int fd, const uint8_t *buf, size_t len, uint64_t hi, uint64_t lo, uint16_t port,
                      uint16_t segment, int timeout_ms) {
    return vn_udp_send_gather16(fd, &buf, &len, 1, hi, lo, port, segment, timeout_ms);
}

int vn_writev2(int fd, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
    struct iovec iov[2] = { { (void *)a, alen }, { (void *)b, blen } };
    for (;;) {
        ssize_t n = writev(fd, iov, 2);
        if (n >= 0) return (int)n;
        if (errno != EINTR) return -errno;
    }
}

int vn_link_configure(const char *name, int mtu, const uint8_t *mac) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int rc = 0;
    if (mac) {
        ifr.ifr_hwaddr.sa_family = 1; /* ARPHRD_ETHER */
        memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
        if (ioctl(s, SIOCSIFHWADDR, &ifr) < 0) rc = -errno;
    }
    if (rc == 0 && mtu > 0) {
        ifr.ifr_mtu = mtu;
        if (ioctl(s, SIOCSIFMTU, &ifr) < 0) rc = -errno;
    }
    if (rc == 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) rc = -errno;
    } else if (rc == 0) rc = -errno;
    close(s);
    return rc;
}

int vn_link_mac(const char *name, uint8_t *mac_out) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int rc = ioctl(s, SIOCGIFHWADDR, &ifr) < 0 ? -errno : 0;
    if (rc == 0) memcpy(mac_out, ifr.ifr_hwaddr.sa_data, 6);
    close(s);
    return rc;
}

int vn_udp_open(uint32_t addr_be, uint16_t port, int bufsize) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bufsize > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
        /* As root, go past rmem_max/wmem_max. Failing is fine. */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof bufsize);
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = addr_be;
    sa.sin_port = htons(port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { int e = errno; close(fd); return -e; }
    return fd;
}

int vn_udp_local_port(int fd) {
    struct sockaddr_in6 sa;   /* either family: the port is at the same offset */
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) return -errno;
    return ntohs(sa.sin6_port);
}

int vn_udp_connect(int fd, uint32_t addr_be, uint16_t port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = addr_be;
    sa.sin_port = htons(port);
    return connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
}

int vn_udp_open16(uint64_t hi, uint64_t lo, uint16_t port, int bufsize) {
    struct sockaddr_in6 sa;
    socklen_t len = fill_addr16(&sa, hi, lo, port);
    int fd = socket(sa.sin6_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (sa.sin6_family == AF_INET6) { int only = 1; setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only); }
    if (bufsize > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof bufsize);
    }
    if (bind(fd, (struct sockaddr *)&sa, len) < 0) { int e = errno; close(fd); return -e; }
    return fd;
}

#include <linux/filter.h>

enum { STEERING_LENGTH = 33 };

/* The program that steers a frame to one of `count` sockets by its flow: a hash of (source port +
 * destination port) for TCP and UDP over IPv4 (any header length) or IPv6 (no extension
 * headers), of (source + destination address) for other IPv4, socket 0 for the rest (ARP). The
 * sum is symmetric: a flow and its replies get the same socket. The Ethernet type is loaded from
 * `type_at` (an offset, or SKF_AD_OFF + SKF_AD_PROTOCOL for the skb's), the IP header starts at
 * `ip`. Jumps are relative to the next instruction; a load of M[0] follows a store on every path
 * the kernel's checker walks (it does not end a path at a return, hence the last instruction). */
static void steering_program(struct sock_filter *code, uint32_t type_at, uint32_t ip, uint32_t count) {
    struct sock_filter p[STEERING_LENGTH] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, type_at),            /* 0: Ethernet type */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, 0, 14),     /* 1: IPv4? else 16 */
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, ip + 9),             /* 2: IPv4 protocol */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 1, 0),           /* 3: TCP -> 5 */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, 7),          /* 4: UDP -> 5, else 12 */
        BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, ip),                /* 5: X = IPv4 header length */
        BPF_STMT(BPF_LD | BPF_H | BPF_IND, ip),                 /* 6: source port */
        BPF_STMT(BPF_ST, 0),                                    /* 7 */
        BPF_STMT(BPF_LD | BPF_H | BPF_IND, ip + 2),             /* 8: destination port */
        BPF_STMT(BPF_LDX | BPF_MEM, 0),                         /* 9 */
        BPF_STMT(BPF_ALU | BPF_ADD | BPF_X, 0),                 /* 10 */
        BPF_JUMP(BPF_JMP | BPF_JA, 16, 0, 0),                   /* 11: -> 28 (mix) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ip + 12),            /* 12: IPv4 source */
        BPF_STMT(BPF_ST, 0),                                    /* 13 */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ip + 16),            /* 14: IPv4 destination */
        BPF_JUMP(BPF_JMP | BPF_JA, 10, 0, 0),                   /* 15: -> 26 (add, mix) */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x86dd, 0, 15),     /* 16: IPv6? else 32 */
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, ip + 6),             /* 17: next header */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 6, 1, 0),           /* 18: TCP -> 20 */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, 12),         /* 19: UDP -> 20, else 32 */
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, ip + 40),            /* 20: source port */
        BPF_STMT(BPF_ST, 0),                                    /* 21 */
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, ip + 42),            /* 22: destination port */
        BPF_STMT(BPF_LDX | BPF_MEM, 0),                         /* 23 */
        BPF_STMT(BPF_ALU | BPF_ADD | BPF_X, 0),                 /* 24 */
        BPF_JUMP(BPF_JMP | BPF_JA, 2, 0, 0),                    /* 25: -> 28 (mix) */
        BPF_STMT(BPF_LDX | BPF_MEM, 0),                         /* 26 */
        BPF_STMT(BPF_ALU | BPF_ADD | BPF_X, 0),                 /* 27 */
        /* Mixed before the modulo: Linux gives connect() even ports and servers listen on
         * odd ones as often as not, so the sum's low bits alone would put all on one socket. */
        BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x9E3779B1u),       /* 28 */
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),                /* 29 */
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, count),             /* 30 */
        BPF_STMT(BPF_RET | BPF_A, 0),                           /* 31 */
        BPF_STMT(BPF_RET | BPF_K, 0),                           /* 32: anything else: socket 0 */
    };
    memcpy(code, p, sizeof p);
}

/* `count` UDP sockets bound to one address with SO_REUSEPORT, and a classic BPF program that
 * picks the socket for each VXLAN datagram by its inner flow: a hash of (source port +
 * destination port) for TCP and UDP over IPv4 (any header length) or IPv6 (no extension headers),
 * of (source + destination address) for other IPv4, socket 0 for the rest (ARP). The sum
 * is symmetric, so a flow's data and its replies land on the same socket on every host, whatever
 * UDP source port the sender used. The kernel runs the program with the data past the UDP header.
 * Fills fds[0..count); port 0 binds the first to a free port and the rest to the same one. */
int vn_udp_open_group(uint64_t hi, uint64_t lo, uint16_t port, int bufsize, int count, int *fds) {
    if (count < 1 || count > 16) return -EINVAL;
    uint16_t bound = port;
    for (int k = 0; k < count; k++) {
        struct sockaddr_in6 sa;
        socklen_t len = fill_addr16(&sa, hi, lo, bound);
        int fd = socket(sa.sin6_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1, e = 0;
        if (fd < 0) { e = errno; goto fail; }
        if (sa.sin6_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bufsize > 0) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
            setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize);
            setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof bufsize);
        }
        if (count > 1 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) { e = errno; close(fd); goto fail; }
        if (bind(fd, (struct sockaddr *)&sa, len) < 0) { e = errno; close(fd); goto fail; }
        fds[k] = fd;
        if (k == 0) { int p = vn_udp_local_port(fd); if (p > 0) bound = (uint16_t)p; }
        continue;
    fail:
        for (int j = 0; j < k; j++) close(fds[j]);
        return -e;
    }
    if (count == 1) return 0;
    /* From the UDP payload: VXLAN 8, inner Ethernet 14; the inner type at 20, IP at 22. */
    struct sock_filter code[STEERING_LENGTH];
    steering_program(code, 20, 22, (uint32_t)count);
    struct sock_fprog prog = { .len = STEERING_LENGTH, .filter = code };
    if (setsockopt(fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) < 0) {
        int e = errno;
        for (int j = 0; j < count; j++) close(fds[j]);
        return -e;
    }
    return 0;
}

int vn_udp_send16(int fd, const uint8_t *data, size_t len, uint64_t hi, uint64_t lo, uint16_t port) {
    struct sockaddr_in6 sa;
    socklen_t salen = fill_addr16(&sa, hi, lo, port);
    for (;;) {
        ssize_t n = sendto(fd, data, len, 0, (struct sockaddr *)&sa, salen);
        if (n >= 0) return (int)n;
        if (errno != EINTR) return -errno;
    }
}

int vn_parse_ipv4(const char *text, uint32_t *out_be) {
    struct in_addr a;
    if (inet_pton(AF_INET, text, &a) != 1) return -1;
    *out_be = a.s_addr;
    return 0;
}

void vn_format_ipv4(uint32_t addr_be, char *out16) {
    struct in_addr a = { .s_addr = addr_be };
    inet_ntop(AF_INET, &a, out16, 16);
}

int vn_read(int fd, uint8_t *buf, size_t len) {
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0) return (int)n;
        if (errno != EINTR) return -errno;
    }
}

int vn_write(int fd, const uint8_t *buf, size_t len) {
    for (;;) {
        ssize_t n = write(fd, buf, len);
        if (n >= 0) return (int)n;
        if (errno != EINTR) return -errno;
    }
}

int vn_close(int fd) { return close(fd) < 0 ? -errno : 0; }

int vn_wait_writable(int fd, int timeout_ms) {
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    for (;;) {
        int rc = poll(&p, 1, timeout_ms);
        if (rc >= 0) return rc;
        if (errno != EINTR) return -errno;
    }
}

int vn_poll_readable(const int *fds, uint8_t *ready, int count, int timeout_ms) {
    struct pollfd p[count > 0 ? count : 1];
    for (int i = 0; i < count; i++) { p[i].fd = fds[i]; p[i].events = POLLIN; p[i].revents = 0; }
    for (;;) {
        int rc = poll(p, count, timeout_ms);
        if (rc >= 0) {
            for (int i = 0; i < count; i++) ready[i] = (p[i].revents & (POLLIN | POLLERR | POLLHUP)) ? 1 : 0;
            return rc;
        }
        if (errno != EINTR) return -errno;
    }
}

/* An underlay address as two words holding its 16 bytes in memory order, IPv4 as
 * ::ffff:a.b.c.d: written into a socket address of its own family; its length returned. */
static socklen_t fill_addr16(struct sockaddr_in6 *slot, uint64_t hi, uint64_t lo, uint16_t port) {
    /* ::ffff:a.b.c.d: bytes 0-9 zero, 10-11 0xff; the two words hold them in memory order. */
    uint8_t l[8];
    memcpy(l, &lo, 8);
    if (hi == 0 && l[0] == 0 && l[1] == 0 && l[2] == 0xff && l[3] == 0xff) {
        struct sockaddr_in *sa = (struct sockaddr_in *)slot;
        sa->sin_family = AF_INET;
        sa->sin_port = htons(port);
        memcpy(&sa->sin_addr, l + 4, 4);
        memset(sa->sin_zero, 0, sizeof sa->sin_zero);
        return sizeof *sa;
    }
    slot->sin6_family = AF_INET6;
    slot->sin6_port = htons(port);
    slot->sin6_flowinfo = 0;
    memcpy(&slot->sin6_addr, &hi, 8);
    memcpy((uint8_t *)&slot->sin6_addr + 8, &lo, 8);
    slot->sin6_scope_id = 0;
    return sizeof *slot;
}

static void read_addr16(const struct sockaddr_in6 *slot, uint64_t *hi, uint64_t *lo) {
    uint8_t a[16] = { 0 };
    if (slot->sin6_family == AF_INET6) {
        memcpy(a, &slot->sin6_addr, 16);
    } else {
        a[10] = 0xff; a[11] = 0xff;
        memcpy(a + 12, &((const struct sockaddr_in *)slot)->sin_addr, 4);
    }
    memcpy(hi, a, 8);
    memcpy(lo, a + 8, 8);
}

struct vn_batch {
    int capacity;
    int bufsize;
    struct mmsghdr *msgs;
    struct iovec *iovs;
    struct sockaddr_in6 *addrs;   /* room for either family; IPv4 slots hold a sockaddr_in */
    uint8_t *data;
    char *ctrl;            /* CTRL_SIZE per slot: UDP_GRO on receive, UDP_SEGMENT on send */
};
#define CTRL_SIZE 64

vn_batch *vn_batch_new(int capacity, int bufsize) {
    vn_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->capacity = capacity;
    b->bufsize = bufsize;
    b->msgs = calloc(capacity, sizeof *b->msgs);
    b->iovs = calloc(capacity, sizeof *b->iovs);
    b->addrs = calloc(capacity, sizeof *b->addrs);
    b->ctrl = calloc(capacity, CTRL_SIZE);
    if (!b->ctrl) { vn_batch_free(b); return NULL; }
    b->data = bufsize > 0 ? aligned_alloc(64, (size_t)capacity * bufsize) : NULL;
    if (!b->msgs || !b->iovs || !b->addrs || (bufsize > 0 && !b->data)) { vn_batch_free(b); return NULL; }
    for (int i = 0; i < capacity; i++) {
        b->iovs[i].iov_base = bufsize > 0 ? b->data + (size_t)i * bufsize : NULL;
        b->iovs[i].iov_len = bufsize;
        b->msgs[i].msg_hdr.msg_iov = &b->iovs[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_hdr.msg_name = &b->addrs[i];
        b->msgs[i].msg_hdr.msg_namelen = sizeof b->addrs[i];
    }
    return b;
}

void vn_batch_free(vn_batch *b) {
    if (!b) return;
    free(b->msgs); free(b->iovs); free(b->addrs); free(b->data); free(b->ctrl); free(b);
}

uint8_t *vn_batch_buffer(vn_batch *b, int i) { return b->data + (size_t)i * b->bufsize; }
int vn_batch_length(const vn_batch *b, int i) { return (int)b->msgs[i].msg_len; }
uint32_t vn_batch_addr(const vn_batch *b, int i) { return ((const struct sockaddr_in *)&b->addrs[i])->sin_addr.s_addr; }
uint16_t vn_batch_port(const vn_batch *b, int i) { return ntohs(b->addrs[i].sin6_port); }   /* same offset in both families */

void vn_batch_addr16(const vn_batch *b, int i, uint64_t *hi, uint64_t *lo) { read_addr16(&b->addrs[i], hi, lo); }

void vn_batch_set_send(vn_batch *b, int i, const uint8_t *data, size_t len, uint32_t addr_be, uint16_t port) {
    vn_batch_set_send16(b, i, data, len, 0, ((uint64_t)addr_be << 32) | 0xFFFF0000u, port);
}

void vn_batch_set_send16(vn_batch *b, int i, const uint8_t *data, size_t len, uint64_t hi, uint64_t lo, uint16_t port) {
    b->iovs[i].iov_base = (void *)data;
    b->iovs[i].iov_len = len;
    b->msgs[i].msg_hdr.msg_namelen = fill_addr16(&b->addrs[i], hi, lo, port);
    b->msgs[i].msg_hdr.msg_control = NULL;
    b->msgs[i].msg_hdr.msg_controllen = 0;
}

void vn_batch_set_send_gso(vn_batch *b, int i, const uint8_t *data, size_t len, uint32_t addr_be, uint16_t port, uint16_t segment) {
    vn_batch_set_send_gso16(b, i, data, len, 0, ((uint64_t)addr_be << 32) | 0xFFFF0000u, port, segment);
}

void vn_batch_set_send_gso16(vn_batch *b, int i, const uint8_t *data, size_t len, uint64_t hi, uint64_t lo, uint16_t port, uint16_t segment) {
    vn_batch_set_send16(b, i, data, len, hi, lo, port);
    if (segment == 0 || len <= segment) return;
    char *c = b->ctrl + (size_t)i * CTRL_SIZE;
    memset(c, 0, CTRL_SIZE);
    struct msghdr *h = &b->msgs[i].msg_hdr;
    h->msg_control = c;
    h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
    struct cmsghdr *cm = CMSG_FIRSTHDR(h);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(cm), &segment, sizeof segment);
}

int vn_batch_capacity(const vn_batch *b) { return b->capacity; }
const uint8_t *vn_batch_send_data(const vn_batch *b, int i) { return b->iovs[i].iov_base; }
size_t vn_batch_send_len(const vn_batch *b, int i) { return b->iovs[i].iov_len; }

void vn_batch_set_recv(vn_batch *b, int i, int len, uint32_t addr_be, uint16_t port) {
    vn_batch_set_recv16(b, i, len, 0, ((uint64_t)addr_be << 32) | 0xFFFF0000u, port);
}

void vn_batch_set_recv16(vn_batch *b, int i, int len, uint64_t hi, uint64_t lo, uint16_t port) {
    b->msgs[i].msg_len = (unsigned)len;
    fill_addr16(&b->addrs[i], hi, lo, port);
    b->msgs[i].msg_hdr.msg_controllen = 0;
}

int vn_batch_gso_size(const vn_batch *b, int i) {
    const struct msghdr *h = &b->msgs[i].msg_hdr;
    if (h->msg_controllen == 0) return 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)h); cm; cm = CMSG_NXTHDR((struct msghdr *)h, cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
            int v;
            memcpy(&v, CMSG_DATA(cm), sizeof v);
            return v;
        }
    }
    return 0;
}

int vn_udp_recv_batch(int fd, vn_batch *b) {
    for (int i = 0; i < b->capacity; i++) {
        b->iovs[i].iov_len = b->bufsize;
        b->msgs[i].msg_hdr.msg_namelen = sizeof b->addrs[i];
        b->msgs[i].msg_hdr.msg_flags = 0;
        b->msgs[i].msg_hdr.msg_control = b->ctrl + (size_t)i * CTRL_SIZE;
        b->msgs[i].msg_hdr.msg_controllen = CTRL_SIZE;
    }
    for (;;) {
        int n = recvmmsg(fd, b->msgs, b->capacity, MSG_DONTWAIT, NULL);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -errno;
    }
}

int vn_udp_send_batch(int fd, vn_batch *b, int count, int timeout_ms) {
    int sent = 0;
    while (sent < count) {
        int n = sendmmsg(fd, b->msgs + sent, count - sent, 0);
        if (n > 0) { sent += n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            if (vn_wait_writable(fd, timeout_ms) <= 0) return sent;
            continue;
        }
        /* A datagram the kernel refuses (e.g. no route): skip it, keep the rest. */
        if (n < 0) { sent += 1; continue; }
    }
    return sent;
}

int vn_udp_send(int fd, const uint8_t *data, size_t len, uint32_t addr_be, uint16_t port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = addr_be;
    sa.sin_port = htons(port);
    for (;;) {
        ssize_t n = sendto(fd, data, len, 0, (struct sockaddr *)&sa, sizeof sa);
        if (n >= 0) return (int)n;
        if (errno != EINTR) return -errno;
    }
}

#include <sys/epoll.h>

int vn_epoll_new(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int vn_epoll_add(int ep, int fd, uint32_t tag) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = EPOLLIN;
    e.data.u64 = tag;
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

int vn_epoll_del(int ep, int fd) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    return epoll_ctl(ep, EPOLL_CTL_DEL, fd, &e) < 0 ? -errno : 0;
}

int vn_epoll_wait(int ep, uint32_t *tags, int max, int timeout_ms) {
    if (max <= 0 || max > 256) return -EINVAL;
    struct epoll_event ev[max];
    for (;;) {
        int n = epoll_wait(ep, ev, max, timeout_ms);
        if (n >= 0) {
            for (int i = 0; i < n; i++) tags[i] = (uint32_t)ev[i].data.u64;
            return n;
        }
        if (errno != EINTR) return -errno;
    }
}

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

/* struct sched_attr (glibc 2.36 has neither it nor a sched_setattr wrapper). */
struct vn_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

int vn_thread_schedule(int batch, int nice, unsigned slice_us) {
    if (nice < -20 || nice > 19) return -EINVAL;
    if (slice_us != 0 && (slice_us < 100 || slice_us > 100000)) return -EINVAL;
    struct vn_sched_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.policy = batch ? SCHED_BATCH : SCHED_OTHER;
    a.nice = nice;
    a.runtime = (uint64_t)slice_us * 1000;   /* 0: the kernel's slice */
    return syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0;
}

int vn_thread_slice_us(int tid) {
    struct vn_sched_attr a;
    memset(&a, 0, sizeof a);
    if (syscall(SYS_sched_getattr, tid, &a, sizeof a, 0) < 0) return -errno;
    return (int)(a.runtime / 1000);
}


int vn_thread_realtime(int priority) {
    if (priority < 1 || priority > 99) return -EINVAL;
    struct vn_sched_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.policy = SCHED_FIFO;
    a.priority = (uint32_t)priority;
    return syscall(SYS_sched_setattr, 0, &a, 0) < 0 ? -errno : 0;
}

/* Reads up to `cap - 1` bytes of a small /proc file into `buf` (NUL-terminated). */
static int vn_read_small(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = read(fd, buf, cap - 1);
    int err = errno;
    close(fd);
    if (n < 0) return -err;
    buf[n] = 0;
    return 0;
}

int vn_thread_schedstat(uint64_t *cpu_ns, uint64_t *wait_ns, uint64_t *runs) {
    char buf[128];
    int rc = vn_read_small("/proc/thread-self/schedstat", buf, sizeof buf);
    if (rc < 0) return rc;
    unsigned long long a, b, c;
    if (sscanf(buf, "%llu %llu %llu", &a, &b, &c) != 3) return -EINVAL;
    *cpu_ns = a; *wait_ns = b; *runs = c;
    return 0;
}

int vn_host_idle(uint64_t *idle_ns, int *cpus) {
    char buf[256];
    int rc = vn_read_small("/proc/stat", buf, sizeof buf);
    if (rc < 0) return rc;
    unsigned long long v[5];
    if (sscanf(buf, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5) return -EINVAL;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0) hz = 100;
    *idle_ns = (uint64_t)(v[3] + v[4]) * (1000000000ULL / (uint64_t)hz);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    *cpus = n > 0 ? (int)n : 1;
    return 0;
}

#include <linux/if_packet.h>
#include <linux/if_ether.h>

int vn_packet_open(const char *ifname, int rcvbuf) {
    if (strlen(ifname) >= IFNAMSIZ) return -ENAMETOOLONG;
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) goto fail;
    int idx = ifr.ifr_ifindex;
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) goto fail;
    /* Each frame with a virtio_net_hdr, as on a TAP with offloads: a VM's TSO frames come whole. */
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) goto fail;
    if (rcvbuf > 0) (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_ll a;
    memset(&a, 0, sizeof a);
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(ETH_P_ALL);
    a.sll_ifindex = idx;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) goto fail;
    int rc = vn_link_configure(ifname, 0, NULL);
    if (rc < 0) { close(fd); return rc; }
    return fd;
fail: {
        int err = errno;
        close(fd);
        return -err;
    }
}

/* `count` packet sockets on device `ifname` (each as vn_packet_open) in one fanout group
 * whose classic BPF program picks the socket for each frame the device receives by its flow,
 * with the same function as vn_udp_open_group's (a hash of the sum of the TCP/UDP ports, of the
 * addresses for other IPv4, socket 0 for the rest), so a flow from a VM meets the forwarding
 * thread its replies from the tunnel meet. The kernel runs it with the data at the network
 * header (the Ethernet type from the skb). Fills fds[0..count). */
#ifndef PACKET_FANOUT_FLAG_IGNORE_OUTGOING
#define PACKET_FANOUT_FLAG_IGNORE_OUTGOING 0x4000   /* Linux 6.7; Debian 12's headers lack it */
#endif
#define VN_FANOUT_IGNORE_OUTGOING PACKET_FANOUT_FLAG_IGNORE_OUTGOING

int vn_packet_open_group(const char *ifname, int rcvbuf, int count, int *fds) {
    if (count < 1 || count > 16) return -EINVAL;
    for (int k = 0; k < count; k++) {
        int fd = vn_packet_open(ifname, rcvbuf);
        if (fd < 0) { for (int j = 0; j < k; j++) close(fds[j]); return fd; }
        fds[k] = fd;
    }
    if (count == 1) return 1;
    struct sock_filter code[STEERING_LENGTH];
    steering_program(code, SKF_AD_OFF + SKF_AD_PROTOCOL, 0, (uint32_t)count);
    struct sock_fprog prog = { .len = STEERING_LENGTH, .filter = code };
    /* A fanout group hears what goes out of the device too (its own hook replaces the sockets'
     * PACKET_IGNORE_OUTGOING) unless told not to: without it every frame the switch writes to
     * the VM would come back as one from the VM. */
    int arg = (PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID | VN_FANOUT_IGNORE_OUTGOING) << 16;
    int e = 0;
    if (setsockopt(fds[0], SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0) {
        /* A kernel before 6.7 knows no such flag: one socket, read by the first thread alone. */
        if (errno == EINVAL) { for (int j = 1; j < count; j++) close(fds[j]); return 1; }
        e = errno; goto fail;
    }
    int got = 0;
    socklen_t len = sizeof got;
    if (getsockopt(fds[0], SOL_PACKET, PACKET_FANOUT, &got, &len) < 0) { e = errno; goto fail; }
    arg = (got & 0xFFFF) | ((PACKET_FANOUT_CBPF | VN_FANOUT_IGNORE_OUTGOING) << 16);
    for (int k = 1; k < count; k++) {
        if (setsockopt(fds[k], SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0) { e = errno; goto fail; }
    }
    if (setsockopt(fds[0], SOL_PACKET, PACKET_FANOUT_DATA, &prog, sizeof prog) < 0) { e = errno; goto fail; }
    return count;
fail:
    for (int j = 0; j < count; j++) close(fds[j]);
    return -e;
}

/* Whether network device `name` is a TUN/TAP device (the kernel lists its tun_flags). */
static int vmtap_is_tap(const char *name) {
    char path[64];
    snprintf(path, sizeof path, "/sys/class/net/%s/tun_flags", name);
    return access(path, F_OK) == 0;
}

/* Attaches a new descriptor to TAP `name` (made if absent): the fd, or -errno. TUNSETIFF on a
 * name that another kind of device has fails (EINVAL; EBUSY for a TAP someone holds), so a
 * device the switch did not make is never adopted by mistake. */
static int vmtap_attach(const char *name) {
    if (!name || !*name || strlen(name) >= IFNAMSIZ) return -EINVAL;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { int e = errno; close(fd); return -e; }
    return fd;
}

int vn_vmtap_make(const char *name, int mtu) {
    int fd = vmtap_attach(name);
    /* Held: a TAP only if the kernel says it is one. */
    if (fd == -EBUSY) return vmtap_is_tap(name) ? 1 : -EINVAL;
    if (fd < 0) return fd;
    if (ioctl(fd, TUNSETPERSIST, 1) < 0) { int e = errno; close(fd); return -e; }
    close(fd);
    int rc = vn_link_configure(name, mtu, NULL);
    if (rc < 0) { (void)vn_vmtap_remove(name); return rc; }
    return 0;
}

int vn_vmtap_remove(const char *name) {
    if (!name || !*name || strlen(name) >= IFNAMSIZ) return -EINVAL;
    if (!vmtap_is_tap(name)) return 0;
    int fd = vmtap_attach(name);
    if (fd < 0) return fd;
    if (ioctl(fd, TUNSETPERSIST, 0) < 0) { int e = errno; close(fd); return -e; }
    close(fd);   /* the last holder gone and not persistent: the kernel removes the device */
    return 0;
}

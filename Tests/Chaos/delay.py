#!/usr/bin/env python3
"""Delays every packet of an NFQUEUE queue by a fixed time: the chaos harness's slow link
between domains. This machine's kernel has no `netem` qdisc (CONFIG_NET_SCH_NETEM is off), but
it has nfnetlink_queue: an iptables rule hands the router's forwarded packets to this program,
which gives each its verdict (accept) `--ms` after it arrived, in order.

  delay.py --queue N --ms MS        run until SIGTERM/SIGINT, inside the router's namespace;
                                    prints "ready" once bound

  iptables -I FORWARD -i d1 -o d2 -j NFQUEUE --queue-num N --queue-bypass

Only the packets' metadata is copied out (NFQNL_COPY_META). Verdicts go in batches
(NFQNL_MSG_VERDICT_BATCH accepts every packet up to an id), so a busy link costs one message
per batch, not one per packet. The queue holds up to 65,536 packets; beyond that the kernel
lets packets through undelayed (NFQA_CFG_F_FAIL_OPEN) rather than drop them.
"""
import argparse
import collections
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 1, 2, 3
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2


def attr(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(kind, queue, attrs, seq):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, NLM_F_REQUEST, seq, 0) + body


def packet_ids(data):
    """The ids of the packet messages in one netlink read."""
    out = []
    off = 0
    while off + 16 <= len(data):
        length, kind, _, _, _ = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if kind == NLMSG_ERROR:
            err = struct.unpack_from("=i", data, off + 16)[0]
            if err != 0:
                print("delay: netlink error %d" % err, file=sys.stderr)
        elif kind & 0xFF == NFQNL_MSG_PACKET:
            a = off + 20
            end = off + length
            while a + 4 <= end:
                alen, akind = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if akind & 0x7FFF == NFQA_PACKET_HDR:
                    out.append(struct.unpack_from(">I", data, a + 4)[0])
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return out


def main():
    ap = argparse.ArgumentParser(description="Delay an NFQUEUE queue's packets by a fixed time.")
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--ms", type=float, required=True)
    a = ap.parse_args()
    if not 0 <= a.queue <= 65535 or not 0 < a.ms <= 10_000:
        print("delay: --queue 0-65535, --ms 0-10000", file=sys.stderr)
        return 64
    delay = a.ms / 1000
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((0, 0))
    seq = 1
    for attrs in ([attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, socket.htons(socket.AF_INET)))],
                  [attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META) + b"\0\0\0"),
                   attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 65536)),
                   attr(NFQA_CFG_MASK, struct.pack(">I", NFQA_CFG_F_FAIL_OPEN)),
                   attr(NFQA_CFG_FLAGS, struct.pack(">I", NFQA_CFG_F_FAIL_OPEN))]):
        s.send(message(NFQNL_MSG_CONFIG, a.queue, attrs, seq))
        seq += 1
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("ready", flush=True)
    held = collections.deque()        # (due, id), in arrival order
    while not stop:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
        try:
            readable, _, _ = select.select([s], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        if readable:
            try:
                data = s.recv(1 << 20)
            except OSError as e:             # ENOBUFS: the kernel dropped notifications; go on
                print("delay: %s" % e, file=sys.stderr)
                continue
            for pid in packet_ids(data):
                held.append((now + delay, pid))
        last = None
        while held and held[0][0] <= now:
            last = held.popleft()[1]
        if last is not None:
            s.send(message(NFQNL_MSG_VERDICT_BATCH, a.queue, [attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, last))], seq))
            seq += 1
    # Whatever is still held goes now.
    if held:
        s.send(message(NFQNL_MSG_VERDICT_BATCH, a.queue, [attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, held[-1][1]))], seq))
    return 0


if __name__ == "__main__":
    sys.exit(main())

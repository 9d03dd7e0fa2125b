#!/usr/bin/env python3
"""Raw Ethernet helpers for the switch's system tests, run inside a "VM" namespace.

listen IFACE --ethertype 0x88b5 --until PREFIX --duration S
                                                print 'ready', then 'frame PAYLOAD' for each matching
                                                frame as it comes, until one whose payload starts
                                                with PREFIX (the sender's end marker, not counted);
                                                then 'count N PAYLOADS'. If S seconds pass first:
                                                'deadline count N PAYLOADS'.
send IFACE --ethertype 0x88b5 --payload TEXT [--dst MAC]   send one frame
garp IFACE --ip A.B.C.D --timeout S            send a gratuitous ARP, then wait for the first
                                                IPv4 frame addressed to this interface; print
                                                the time between the two in ms
flood HOST PORT --count N --vni V --seed S      send N random and malformed datagrams
"""
import argparse
import os
import random
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003


def mac_of(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def listen(a):
    et = int(a.ethertype, 16)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(et))
    s.bind((a.iface, et))
    print("ready", flush=True)
    count, payloads = 0, []
    end = time.monotonic() + a.duration
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            break
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        if struct.unpack("!H", frame[12:14])[0] != et:
            continue
        payload = frame[14:].rstrip(b"\0").decode(errors="replace")
        if a.until and payload.startswith(a.until):
            print(f"count {count} {' '.join(sorted(set(payloads)))}", flush=True)
            return
        count += 1
        payloads.append(payload)
        print(f"frame {payload}", flush=True)
    print(f"deadline count {count} {' '.join(sorted(set(payloads)))}", flush=True)


def send(a):
    et = int(a.ethertype, 16)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    dst = bytes.fromhex(a.dst.replace(":", ""))
    payload = a.payload.encode().ljust(46, b"\0")
    s.send(dst + mac_of(a.iface) + struct.pack("!H", et) + payload)


def garp(a):
    mac = mac_of(a.iface)
    ip = socket.inet_aton(a.ip)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((a.iface, 0))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\xff" * 6 + ip
    frame = b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp
    t0 = time.monotonic()
    s.send(frame)
    end = t0 + a.timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            print("timeout", flush=True)
            sys.exit(1)
        s.settimeout(left)
        data, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        if data[0:6] == mac and struct.unpack("!H", data[12:14])[0] == 0x0800:
            print(f"first_frame_ms {(time.monotonic() - t0) * 1000:.2f}", flush=True)
            return


def flood(a):
    rnd = random.Random(a.seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    kinds = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    for i in range(a.count):
        k = i % 5
        if k == 0:      # random bytes of random length
            d = rnd.randbytes(rnd.randrange(0, 200))
        elif k == 1:    # too short for VXLAN + Ethernet
            d = bytes([8, 0, 0, 0]) + a.vni.to_bytes(3, "big") + b"\0" + rnd.randbytes(rnd.randrange(0, 14))
        elif k == 2:    # another VNI
            d = bytes([8, 0, 0, 0]) + ((a.vni + 1 + rnd.randrange(1000)) & 0xFFFFFF).to_bytes(3, "big") + b"\0" + rnd.randbytes(64)
        elif k == 3:    # I flag missing
            d = bytes([0, 0, 0, 0]) + a.vni.to_bytes(3, "big") + b"\0" + rnd.randbytes(64)
        else:           # right header, garbage frame (random, often multicast, source MACs)
            d = bytes([8, 0, 0, 0]) + a.vni.to_bytes(3, "big") + b"\0" + rnd.randbytes(rnd.randrange(14, 300))
        kinds[k] += 1
        while True:
            try:
                s.sendto(d, (a.host, a.port))
                break
            except BlockingIOError:
                time.sleep(0.001)
    print("sent", a.count, flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("listen"); p.add_argument("iface"); p.add_argument("--ethertype", default="0x88b5"); p.add_argument("--duration", type=float, default=30); p.add_argument("--until", default="")
    p = sub.add_parser("send"); p.add_argument("iface"); p.add_argument("--ethertype", default="0x88b5"); p.add_argument("--payload", default="x"); p.add_argument("--dst", default="ff:ff:ff:ff:ff:ff")
    p = sub.add_parser("garp"); p.add_argument("iface"); p.add_argument("--ip", required=True); p.add_argument("--timeout", type=float, default=10)
    p = sub.add_parser("flood"); p.add_argument("host"); p.add_argument("port", type=int); p.add_argument("--count", type=int, default=100000); p.add_argument("--vni", type=int, required=True); p.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    {"listen": listen, "send": send, "garp": garp, "flood": flood}[a.cmd](a)

#!/usr/bin/env python3
"""A VIOLIN client written from Shared/VIOLINProtocol/PROTOCOL.md alone, with pyzmq.

Pings a service, sends it an unknown request, and reads one event from the bus.
Exits 0 when all three behave as the protocol document says; non-zero otherwise.
"""
import argparse
import datetime
import json
import sys
import uuid

import zmq

SESSION = str(uuid.uuid4())
PROTOCOL = b"VIOLIN/1"


def header(msg_type, seq):
    return {
        "msg_id": str(uuid.uuid4()), "msg_type": msg_type, "version": "1.0", "sender": "interop-py",
        "session": SESSION, "parent_id": "", "seq": seq,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


def request(ctx, endpoint, msg_type, body, seq, timeout_ms):
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(endpoint)
    h = header(msg_type, seq)
    sock.send_multipart([PROTOCOL, json.dumps(h).encode(), json.dumps(body).encode()])
    if not sock.poll(timeout_ms):
        sock.close()
        raise SystemExit(f"no reply to {msg_type} within {timeout_ms} ms")
    frames = sock.recv_multipart()
    sock.close()
    if len(frames) != 3 or frames[0] != PROTOCOL:
        raise SystemExit(f"bad reply frames: {frames!r}")
    rh, rb = json.loads(frames[1]), json.loads(frames[2])
    if rh.get("parent_id") != h["msg_id"]:
        raise SystemExit(f"reply parent_id {rh.get('parent_id')} != {h['msg_id']}")
    return rh, rb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--service", required=True)
    ap.add_argument("--bus", required=True, help="the bus's subscriber endpoint")
    ap.add_argument("--topic", default="")
    ap.add_argument("--timeout", type=int, default=10000, help="ms")
    a = ap.parse_args()
    ctx = zmq.Context()
    try:
        rh, rb = request(ctx, a.service, "ping_request", {}, 1, a.timeout)
        if rh["msg_type"] != "ping_reply" or rb.get("status") != "ok":
            raise SystemExit(f"bad ping reply: {rh} {rb}")
        print(f"ping ok: {rb['service']}")

        rh, rb = request(ctx, a.service, "no_such_thing_request", {}, 2, a.timeout)
        if rb.get("status") != "error" or rb.get("code") != "unknown_message_type":
            raise SystemExit(f"expected unknown_message_type, got {rb}")
        print(f"error ok: {rb['code']}")

        sub = ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, a.topic.encode())
        sub.connect(a.bus)
        if not sub.poll(a.timeout):
            raise SystemExit(f"no event on '{a.topic}' within {a.timeout} ms")
        topic, proto, h, body = sub.recv_multipart()
        eh = json.loads(h)
        json.loads(body)
        if proto != PROTOCOL or eh["msg_type"] != topic.decode() or not isinstance(eh.get("seq"), int):
            raise SystemExit(f"bad event: {topic!r} {proto!r} {eh}")
        print(f"event ok: {topic.decode()} seq={eh['seq']}")
        sub.close()
    finally:
        ctx.destroy(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

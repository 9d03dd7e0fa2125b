#!/usr/bin/env python3
"""pyzmq reference loops for bus-bench.sh, measured in the same run as violin's.

rpc:    a REQ client and a REP echo server (separate processes) exchange 3-frame messages
        of the protocol's shape; prints round trips per second.
events: a PUB sends 4-frame events into violin-bus's publisher endpoint and a SUB reads them
        from its subscriber endpoint; prints events per second.
"""
import argparse
import json
import multiprocessing
import time
import uuid

import zmq

FRAMES = [b"VIOLIN/1",
          json.dumps({"msg_id": str(uuid.uuid4()), "msg_type": "ping_request", "version": "1.0",
                      "sender": "py", "session": "s", "parent_id": "", "seq": 1, "time": ""}).encode(),
          b"{}"]


def echo_server(endpoint, ready):
    ctx = zmq.Context()
    s = ctx.socket(zmq.REP)
    s.linger = 0
    s.bind(endpoint)
    ready.set()
    while True:
        msg = s.recv_multipart()
        if msg[0] == b"STOP":
            s.send(b"bye")
            break
        s.send_multipart(msg)
    ctx.destroy(linger=0)


def rpc(endpoint, seconds):
    ready = multiprocessing.Event()
    p = multiprocessing.Process(target=echo_server, args=(endpoint, ready), daemon=True)
    p.start()
    ready.wait(10)
    ctx = zmq.Context()
    c = ctx.socket(zmq.REQ)
    c.linger = 0
    c.connect(endpoint)
    for _ in range(200):
        c.send_multipart(FRAMES); c.recv_multipart()
    n, start = 0, time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        c.send_multipart(FRAMES)
        c.recv_multipart()
        n += 1
    elapsed = time.monotonic() - start
    c.send_multipart([b"STOP"]); c.recv_multipart()
    ctx.destroy(linger=0)
    p.join(5)
    print(f"rpc_round_trips_per_s {n / elapsed:.0f} (n={n}, {elapsed:.2f} s)")


def events(publishers, subscribers, count):
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB); sub.rcvhwm = 0; sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"pybench.ticked")
    sub.connect(subscribers)
    pub = ctx.socket(zmq.PUB); pub.sndhwm = 0; pub.linger = 0
    pub.connect(publishers)
    frames = [b"pybench.ticked", b"VIOLIN/1", FRAMES[1], b'{"n":0}']
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:       # wait for the subscription to cross the bus
        pub.send_multipart(frames)
        if sub.poll(50):
            break
    while sub.poll(100):
        sub.recv_multipart()
    import threading
    t = threading.Thread(target=lambda: [pub.send_multipart(frames) for _ in range(count)])
    start = time.monotonic()
    t.start()
    received, last = 0, start
    while received < count and sub.poll(2000):
        sub.recv_multipart()
        received += 1
        last = time.monotonic()
    t.join()
    elapsed = max(1e-6, last - start)
    print(f"bus_events_per_s {received / elapsed:.0f} (received {received} of {count}, {elapsed:.2f} s)")
    ctx.destroy(linger=0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["rpc", "events"])
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:7799")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--publishers", default="tcp://127.0.0.1:7710")
    ap.add_argument("--subscribers", default="tcp://127.0.0.1:7711")
    ap.add_argument("--count", type=int, default=200000)
    a = ap.parse_args()
    if a.mode == "rpc":
        rpc(a.endpoint, a.seconds)
    else:
        events(a.publishers, a.subscribers, a.count)

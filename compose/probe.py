#!/usr/bin/env python3
"""A probe on a VIOLIN (run it inside a namespace holding one of the VIOLIN's ports).

  probe.py sh IP COMMAND [--timeout S]      run COMMAND in a lab guest (its shell on port 2323),
                                            print what it prints
  probe.py stream IP --seconds S [--port P] a TCP stream through the guest's echo server (port
                                            5000): 100 numbered 1 KiB messages a second, every
                                            echo checked; prints one JSON object: sent, echoed,
                                            corrupt, longest_stall_ms, survived
  probe.py arp IP                           print the MAC this namespace resolved IP to
  probe.py bulk IP[,IP...] --mbytes M       a communication-heavy job: M MiB through each guest's
                                            echo server, all at once; prints "running" when a
                                            tenth is through, then one JSON object: seconds
"""
import json
import socket
import subprocess
import sys
import threading
import time


def sh(ip, command, timeout):
    s = socket.create_connection((ip, 2323), timeout=timeout)
    s.sendall(command.encode() + b"\nexit\n")
    out = b""
    s.settimeout(timeout)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        print("probe: the guest's shell did not finish within %ss" % timeout, file=sys.stderr)
        sys.stdout.write(out.decode(errors="replace"))
        return 3
    sys.stdout.write(out.decode(errors="replace"))
    return 0


def stream(ip, port, seconds):
    result = {"sent": 0, "echoed": 0, "corrupt": 0, "longest_stall_ms": 0, "survived": False, "error": ""}
    try:
        s = socket.create_connection((ip, port), timeout=5)
    except OSError as e:
        result["error"] = "connect: %s" % e
        print(json.dumps(result))
        return 1
    s.settimeout(0.01)
    size = 1024
    pending = b""
    expect = 0
    end = time.monotonic() + seconds
    next_send = time.monotonic()
    last_echo = time.monotonic()
    try:
        while time.monotonic() < end or (expect < result["sent"] and time.monotonic() < end + 30):
            now = time.monotonic()
            if now >= next_send and now < end:
                n = result["sent"]
                msg = (b"%010d" % n) * (size // 10) + b"\n" * (size % 10)
                s.settimeout(30)
                s.sendall(msg)
                s.settimeout(0.01)
                result["sent"] += 1
                next_send += 0.01
            try:
                chunk = s.recv(65536)
                if not chunk:
                    result["error"] = "the connection was closed"
                    break
                pending += chunk
            except socket.timeout:
                pass
            while len(pending) >= size:
                msg, pending = pending[:size], pending[size:]
                if msg[:10] != b"%010d" % expect:
                    result["corrupt"] += 1
                expect += 1
                result["echoed"] += 1
                t = time.monotonic()
                result["longest_stall_ms"] = max(result["longest_stall_ms"], int((t - last_echo) * 1000))
                last_echo = t
        result["survived"] = not result["error"] and result["corrupt"] == 0 and result["echoed"] == result["sent"] > 0
    except OSError as e:
        result["error"] = str(e)
    finally:
        s.close()
    print(json.dumps(result))
    return 0 if result["survived"] else 1


def arp(ip):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (ip, 9))
    for _ in range(50):
        out = subprocess.run(["ip", "neigh", "show", ip], capture_output=True, text=True).stdout.split()
        if "lladdr" in out:
            print(out[out.index("lladdr") + 1])
            return 0
        time.sleep(0.1)
    return 1


def bulk(ips, mbytes):
    total = int(mbytes * 1048576)
    done = {}
    echoed = {ip: 0 for ip in ips}
    errors = []
    chunk = bytes(range(256)) * 64          # 16 KiB

    def one(ip):
        try:
            s = socket.create_connection((ip, 5000), timeout=60)
            def reader():
                while echoed[ip] < total:
                    b = s.recv(262144)
                    if not b:
                        errors.append("%s closed" % ip)
                        return
                    echoed[ip] += len(b)
            r = threading.Thread(target=reader)
            r.start()
            sent = 0
            while sent < total:
                n = min(len(chunk), total - sent)
                s.sendall(chunk[:n])
                sent += n
            r.join()
            s.close()
            done[ip] = time.monotonic()
        except OSError as e:
            errors.append("%s: %s" % (ip, e))

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(ip,)) for ip in ips]
    for t in threads:
        t.start()
    announced = False
    while any(t.is_alive() for t in threads):
        if not announced and all(v >= total // 10 for v in echoed.values()):
            print("running", flush=True)
            announced = True
        time.sleep(0.01)
    for t in threads:
        t.join()
    result = {"seconds": round(max(done.values(), default=start) - start, 3), "vms": len(ips),
              "mbytes_each": mbytes, "errors": errors}
    print(json.dumps(result), flush=True)
    return 0 if not errors else 1


def main(argv):
    if len(argv) < 3 or argv[1] not in ("sh", "stream", "arp", "bulk"):
        print(__doc__, file=sys.stderr)
        return 64
    opts = {"--timeout": "30", "--seconds": "10", "--port": "5000", "--mbytes": "8"}
    args = []
    i = 2
    while i < len(argv):
        if argv[i] in opts and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if argv[1] == "sh":
        return sh(args[0], " ".join(args[1:]), float(opts["--timeout"]))
    if argv[1] == "stream":
        return stream(args[0], int(opts["--port"]), float(opts["--seconds"]))
    if argv[1] == "bulk":
        return bulk(args[0].split(","), float(opts["--mbytes"]))
    return arp(args[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

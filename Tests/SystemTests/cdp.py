#!/usr/bin/python3
"""Headless Chromium driven over the DevTools protocol, for the web view's system test.

    cdp.py URL OUTDIR STEP...      STEP: NAME=JS-EXPRESSION

Opens URL in a fresh headless Chromium (its own profile under OUTDIR), then for each step in
order waits until the expression is true in the page (after its scripts ran, as events arrive),
prints "STEP NAME" and saves OUTDIR/NAME.png (a screenshot) and OUTDIR/NAME.html (the rendered
DOM). Exits 1 naming the step that did not come true within --timeout seconds (default 120)
per step; Chromium is stopped on every path. Needs Debian's chromium and python3-websocket.
"""
import json, os, shutil, subprocess, sys, tempfile, time, urllib.request, base64

import websocket


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--timeout=")]
    timeout = float(next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--timeout=")), "120"))
    url, out, steps = args[0], args[1], [s.split("=", 1) for s in args[2:]]
    os.makedirs(out, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="cdp-", dir=out)
    browser = subprocess.Popen(
        [shutil.which("chromium") or "/usr/bin/chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
         "--no-first-run", "--disable-dev-shm-usage", "--window-size=1400,900", "--remote-debugging-port=0", "--user-data-dir=" + profile, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        end = time.time() + 30
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.time() > end or browser.poll() is not None:
                sys.exit("cdp.py: chromium did not open its debugging port")
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%s/json" % port))
        page = next(t for t in targets if t.get("type") == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        ids = iter(range(1, 1 << 30))

        def call(method, **params):
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                m = json.loads(ws.recv())
                if m.get("id") == i:
                    if "error" in m:
                        raise RuntimeError("%s: %s" % (method, m["error"]))
                    return m.get("result", {})

        def evaluate(expr):
            r = call("Runtime.evaluate", expression=expr, returnByValue=True)
            return r.get("result", {}).get("value")

        call("Page.enable")
        call("Page.navigate", url=url)
        for name, expr in steps:
            end = time.time() + timeout
            while evaluate("Boolean(%s)" % expr) is not True:
                if time.time() > end:
                    open(os.path.join(out, name + "-timeout.html"), "w").write(evaluate("document.documentElement.outerHTML") or "")
                    print("TIMEOUT " + name, flush=True)
                    sys.exit(1)
                time.sleep(0.1)
            shot = call("Page.captureScreenshot", format="png")
            open(os.path.join(out, name + ".png"), "wb").write(base64.b64decode(shot["data"]))
            open(os.path.join(out, name + ".html"), "w").write(evaluate("document.documentElement.outerHTML") or "")
            print("STEP " + name, flush=True)
        ws.close()
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()

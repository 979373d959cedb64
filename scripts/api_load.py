#!/usr/bin/env python3
"""A steady load on the daemon's HTTP API for the benchmark (scripts/bench.sh, BENCH_API_RPS):
RPS requests a second for SECS seconds, half `GET /api/v1/recordings`, half a 64 KiB range of
a live recording's file, over keep-alive connections from a few threads. Writes what it did
(requests, statuses, latency percentiles) as JSON to OUT."""
import argparse
import http.client
import json
import threading
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", default="127.0.0.1:9469")
    p.add_argument("--rps", type=float, default=500)
    p.add_argument("--secs", type=float, default=60)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    host, port = a.addr.split(":")
    ids = []
    lock = threading.Lock()
    stats = {"requests": 0, "statuses": {}, "latencies_ms": []}

    def record(status, ms):
        with lock:
            stats["requests"] += 1
            stats["statuses"][str(status)] = stats["statuses"].get(str(status), 0) + 1
            stats["latencies_ms"].append(ms)

    def worker(k):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        period = a.threads / a.rps
        start = time.monotonic() + k * period / a.threads
        end = time.monotonic() + a.secs
        i = 0
        while True:
            due = start + i * period
            now = time.monotonic()
            if due > end:
                break
            if due > now:
                time.sleep(due - now)
            t0 = time.monotonic()
            try:
                if i % 2 == 0 or not ids:
                    conn.request("GET", "/api/v1/recordings?limit=100")
                    r = conn.getresponse()
                    body = r.read()
                    if r.status == 200:
                        found = [x["id"] for x in json.loads(body)["recordings"] if x["state"] == "recording"]
                        if found:
                            with lock:
                                ids[:] = found
                else:
                    with lock:
                        rid = ids[i % len(ids)]
                    conn.request("GET", f"/api/v1/recordings/{rid}/file", headers={"Range": "bytes=0-65535"})
                    r = conn.getresponse()
                    r.read()
                record(r.status, (time.monotonic() - t0) * 1000)
            except Exception as e:  # a dropped connection: counted, and a new one
                record(type(e).__name__, (time.monotonic() - t0) * 1000)
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
            i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.threads)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - began
    lat = sorted(stats["latencies_ms"])
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * (len(lat) - 1)))], 1) if lat else None
    out = {
        "requests": stats["requests"],
        "rps": round(stats["requests"] / took, 1),
        "statuses": stats["statuses"],
        "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)},
    }
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()

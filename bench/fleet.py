#!/usr/bin/env python3
"""Helpers of bench/fleet.sh.

  fleet.py proxy DELAY_MS TARGET_PORT LISTEN_ADDR:PORT...
      A TCP relay to 127.0.0.1:TARGET_PORT on every LISTEN address, delaying each byte by
      DELAY_MS in each direction (order kept): a round trip of 2 x DELAY_MS. This kernel has
      no netem qdisc, so the delay is made here.

  fleet.py drive SECONDS RATE MOUNT...
      For SECONDS, every mount gets RATE sessions per second (jittered start): a new file
      written and fsynced (mounts run with --push sync, so fsync returns once the session is
      on the remote). Each session runs in its own thread. Writes JSON lines (mount, path,
      content, ok, latency) to stdout.

  fleet.py cpu GROUP=PID,PID... ...
      Prints one line "GROUP SELF CHILDREN" per group: CPU seconds (user + system) the
      processes used themselves and in children they have reaped (git daemon reaps the git
      processes it starts; a master reaps its pack-merge children).

  fleet.py check REMOTE_GIT_DIR RESULTS METRICS_DIR
      Checks every acknowledged session with git (its file on main with its bytes, in exactly
      one non-merge commit) and prints the markdown table.
"""
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time


def proxy(delay_ms, target_port, listens):
    delay = delay_ms / 1000.0

    async def pump(reader, writer):
        queue = asyncio.Queue()

        async def read_side():
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    return

        async def write_side():
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    try:
                        writer.write_eof()
                    except OSError:
                        pass
                    return
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(read_side(), write_side())
        except (ConnectionError, OSError):
            pass

    async def handle(creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pump(creader, swriter), pump(sreader, cwriter))
        for w in (cwriter, swriter):
            try:
                w.close()
            except OSError:
                pass

    async def main():
        servers = []
        for l in listens:
            host, port = l.rsplit(":", 1)
            servers.append(await asyncio.start_server(handle, host, int(port)))
        print("ready", flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(main())


def drive(seconds, rate, mounts):
    lock = threading.Lock()
    threads = []
    out = sys.stdout

    def session(mi, k):
        m = mounts[mi]
        rel = f"fleet/m{mi:02}/s{k:05}.yml"
        content = f"master: {mi}\nsession: {k}\nnonce: {random.getrandbits(64):016x}\n"
        t0 = time.monotonic()
        ok, err = True, ""
        try:
            fd = os.open(os.path.join(m, rel), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, content.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            ok, err = False, str(e)
        rec = {"mount": mi, "path": rel, "content": content, "ok": ok,
               "latency": time.monotonic() - t0, "error": err}
        with lock:
            out.write(json.dumps(rec) + "\n")
            out.flush()

    for mi, m in enumerate(mounts):
        os.makedirs(os.path.join(m, f"fleet/m{mi:02}"), exist_ok=True)
    start = time.monotonic()
    offsets = [random.random() / rate for _ in mounts]
    k = 0
    while True:
        tick = start + k / rate
        if tick - start >= seconds:
            break
        for mi in range(len(mounts)):
            due = tick + offsets[mi]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            t = threading.Thread(target=session, args=(mi, k))
            t.start()
            threads.append(t)
        k += 1
    for t in threads:
        t.join()


def cpu(groups):
    tick = os.sysconf("SC_CLK_TCK")
    for g in groups:
        name, pids = g.split("=", 1)
        own = kids = 0
        for pid in filter(None, pids.split(",")):
            try:
                stat = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            # Fields after the command name, which may hold spaces: utime is field 14.
            f = stat.rsplit(")", 1)[1].split()
            own += int(f[11]) + int(f[12])
            kids += int(f[13]) + int(f[14])
        print(f"{name} {own / tick:.2f} {kids / tick:.2f}")


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def check(git_dir, results, metrics_dir):
    recs = [json.loads(l) for l in open(results) if l.strip()]
    acked = [r for r in recs if r["ok"]]
    failed = [r for r in recs if not r["ok"]]
    # One pass over the remote: every non-merge commit's touched paths, and the tree.
    log = subprocess.run(["git", "-C", git_dir, "log", "--no-merges", "--format=%H", "--name-only", "main"],
                         capture_output=True, text=True, check=True).stdout
    touched = {}
    for line in log.splitlines():
        if line.startswith("fleet/"):
            touched[line] = touched.get(line, 0) + 1
    lost, dup, wrong = [], [], []
    for r in acked:
        n = touched.get(r["path"], 0)
        if n == 0:
            lost.append(r["path"])
            continue
        if n > 1:
            dup.append(r["path"])
        shown = subprocess.run(["git", "-C", git_dir, "show", f"main:{r['path']}"],
                               capture_output=True, text=True).stdout
        if shown != r["content"]:
            wrong.append(r["path"])
    per = {}
    for r in acked:
        per[r["mount"]] = per.get(r["mount"], 0) + 1
    masters = sorted({r["mount"] for r in recs})
    attempts, pushes, push_s, push_n, inbox, helped = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    per_master_attempts = []
    for mi in masters:
        p = os.path.join(metrics_dir, f"m{mi:02}.prom")
        text = open(p).read() if os.path.exists(p) else ""
        a = metric(text, "valuesfs_push_attempts_total")
        attempts += a
        pushes += metric(text, "valuesfs_pushes_total")
        push_s += metric(text, "valuesfs_push_seconds_sum")
        push_n += metric(text, "valuesfs_push_seconds_count")
        inbox += metric(text, "valuesfs_inbox_pushes_total")
        helped += metric(text, "valuesfs_sessions_helped_total")
        per_master_attempts.append(a)
    lat = [r["latency"] for r in acked]
    landed = [per.get(mi, 0) for mi in masters]
    print(f"| masters | sessions | landed | failed | lost | duplicated | wrong bytes | p50 s | p99 s | max/min landed per master | push attempts per session | per master (min-max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {len(masters)} | {len(recs)} | {len(acked)} | {len(failed)} | {len(lost)} | {len(dup)} | {len(wrong)} "
          f"| {statistics.median(lat) if lat else float('nan'):.2f} | {pct(lat, 99):.2f} "
          f"| {max(landed) / max(1, min(landed)):.2f} | {attempts / max(1, len(acked)):.2f} "
          f"| {min(per_master_attempts or [0]):.0f}-{max(per_master_attempts or [0]):.0f} |")
    print(f"\npushes that landed: {pushes:.0f} ({len(acked) / max(1, pushes):.1f} sessions each); "
          f"mean push attempt {push_s / max(1, push_n) * 1000:.0f} ms; inbox publications {inbox:.0f}; "
          f"sessions carried by another master's push target {helped:.0f}")
    if failed:
        print(f"\nfirst failure: {failed[0]['path']}: {failed[0]['error']}")
    bad = lost or dup or wrong
    if bad:
        print(f"\nLOST {lost[:5]} DUPLICATED {dup[:5]} WRONG {wrong[:5]}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "proxy":
        proxy(float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    elif cmd == "drive":
        drive(float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
    elif cmd == "cpu":
        cpu(sys.argv[2:])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown command {cmd}")

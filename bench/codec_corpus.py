#!/usr/bin/env python3
"""Run the codec_diff checks on real files: valuesfs against sops 3.11, file by file.

Usage: codec_corpus.py DIR [--jobs J] [--failures OUT] [--valuesfs PATH] [--sops PATH]
                           [--limit N]

Walks DIR for *.yaml, *.yml, *.json and *.env files. A file `sops -e --age R` refuses (or
whose sops-made file `sops -d` cannot read back) is skipped and counted. For the others it
prints a table of how many files pass each check (see codec_diff.py for the checks):

  sops-made file: valuesfs decrypt == sops -d          (check decrypt-sops-file)
  sops-made file: valuesfs says "MAC mismatch"         (the worst kind of that failure)
  valuesfs-encrypted file: sops -d, no warning, no ENC (encrypt, sops-reads-ours,
                                                        sops-warning, enc-in-output)
  ... and the same bytes as for sops's own file        (sops-output too)
  one-value edit: same changed lines as sops set       (edit-*, on files with a target)
  valuesfs round trip of its own encryption            (roundtrip)

--failures OUT writes one line per failed check: file, check, short reason.
"""
import argparse
import concurrent.futures
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codec_diff as cd  # noqa: E402  (the checks live there, so both tools agree)

STORE_OF = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".env": "dotenv"}


def walk(root):
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            # splitext(".env") has no extension, but a file called .env is a dotenv file.
            ext = ".env" if name == ".env" else os.path.splitext(name)[1].lower()
            if ext in STORE_OF:
                yield os.path.join(d, name), STORE_OF[ext]


def check_file(tools, path, store):
    with open(path, "rb") as f:
        data = f.read()
    return cd.run_case(tools, store, data)


ROWS = [
    ("sops-made file decrypts with valuesfs to exactly `sops -d`",
     lambda o, names: "decrypt-sops-file" not in names),
    ("sops-made file refused by valuesfs with \"MAC mismatch\"",
     lambda o, names: any(f.check == "decrypt-sops-file" and "MAC mismatch" in f.kind
                          for f in o.failures)),
    ("valuesfs-encrypted file: `sops -d` reads it, no warning, no ENC[ in output",
     lambda o, names: not names & {"encrypt", "sops-reads-ours", "sops-warning", "enc-in-output"}),
    ("  ... and prints the same bytes as for sops's own encryption",
     lambda o, names: not names & {"encrypt", "sops-reads-ours", "sops-warning", "enc-in-output",
                                   "sops-output"}),
    ("valuesfs round trip of its own encryption, byte for byte",
     lambda o, names: not names & {"encrypt", "roundtrip"}),
]
EDIT_ROW = "one-value `valuesfs edit` changes as many lines as `sops set` (files with a target)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--failures", metavar="OUT", help="write the per-file failure list here")
    ap.add_argument("--valuesfs", default=cd.DEFAULT_VALUESFS)
    ap.add_argument("--sops", default=None)
    ap.add_argument("--key", default=cd.DEFAULT_KEY)
    ap.add_argument("--recipient", default=cd.DEFAULT_RECIPIENT)
    ap.add_argument("--limit", type=int, default=0, help="only the first N files")
    args = ap.parse_args()
    sops = args.sops or cd.find_sops()
    tools = cd.Tools(sops, os.path.abspath(args.valuesfs), args.key, args.recipient)
    files = list(walk(args.dir))
    if args.limit:
        files = files[:args.limit]
    t0 = time.time()
    stores = ["yaml", "json", "dotenv"]
    seen, accepted, refused = Counter(), Counter(), Counter()
    passed = {label: Counter() for label, _ in ROWS}
    edit_ran, edit_ok = Counter(), Counter()
    failures = []
    try:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futs = {pool.submit(check_file, tools, p, s): (p, s) for p, s in files}
            for fut in concurrent.futures.as_completed(futs):
                path, store = futs[fut]
                seen[store] += 1
                o = fut.result()
                rel = os.path.relpath(path, args.dir)
                if o.status == "refused":
                    refused[store] += 1
                    continue
                accepted[store] += 1
                names = {f.check for f in o.failures}
                for label, test in ROWS:
                    if test(o, names):
                        passed[label][store] += 1
                # "sops-unstable": sops set changed lines a no-op sops set changes too.
                if o.edit in ("done", "sops-unstable"):
                    edit_ran[store] += 1
                    if not any(n.startswith("edit") for n in names):
                        edit_ok[store] += 1
                for f in o.failures:
                    failures.append((rel, f.check, f.kind))
    finally:
        tools.cleanup()

    def cell(n, d):
        return "%d/%d (%.1f%%)" % (n, d, 100.0 * n / d) if d else "-"

    total = lambda c: sum(c[s] for s in stores)  # noqa: E731
    print("| %s | %s | all |" % ("check", " | ".join(stores)))
    print("|---|" + "---|" * (len(stores) + 1))
    print("| files found | %s | %d |" % (" | ".join(str(seen[s]) for s in stores), total(seen)))
    print("| refused by sops (skipped) | %s | %d |" % (" | ".join(str(refused[s]) for s in stores),
                                                      total(refused)))
    for label, _ in ROWS:
        c = passed[label]
        print("| %s | %s | %s |" % (label, " | ".join(cell(c[s], accepted[s]) for s in stores),
                                    cell(total(c), total(accepted))))
    print("| %s | %s | %s |" % (EDIT_ROW, " | ".join(cell(edit_ok[s], edit_ran[s]) for s in stores),
                                cell(total(edit_ok), total(edit_ran))))
    print("codec_corpus: %d files, %d accepted by sops, %d failed checks in %d files (%.0fs)" % (
        total(seen), total(accepted), len(failures), len({f[0] for f in failures}),
        time.time() - t0))
    if args.failures:
        with open(args.failures, "w") as f:
            for rel, check, kind in sorted(failures):
                f.write("%s\t%s\t%s\n" % (rel, check, kind))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

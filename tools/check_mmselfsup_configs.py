#!/usr/bin/env python3
"""Converts every MMSelfSup config under a folder and checks it: the README's table.

    tools/check_mmselfsup_configs.py SELFSUP_BIN CONFIGS_DIR [--package mmcls=DIR] [--data]

For each `*.py` outside `_base_/`: `selfsup convert-config`, then `selfsup config --check
--no-data` (or with the data, `--data`). Prints one line per config: `ok`, or what the check
found, shortened to the missing types (with the plugin that provides them) and the other
faulty keys; then a summary per algorithm folder.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

UNKNOWN = re.compile(r"unknown \w+ type '([^']+)'")
PLUGIN = re.compile(r"provided by the plugin '([^']+)'|(the engine's|selfsup's engine)")


def summarize(problems):
    out = []
    for p in problems:
        path, _, what = p.partition(": ")
        m = UNKNOWN.search(what)
        if m:
            plugin = PLUGIN.search(what)
            where = ("plugin " + plugin.group(1) if plugin and plugin.group(1) else
                     "engine" if plugin else "?")
            out.append(f"{m.group(1)} [{where}]")
        else:
            out.append(f"{path}: {what[:60]}")
    return out


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("selfsup")
    parser.add_argument("configs")
    parser.add_argument("--package", action="append", default=[])
    parser.add_argument("--data", action="store_true")
    args = parser.parse_args(argv)
    files = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(args.configs) for f in fs
        if f.endswith(".py") and "_base_" not in d.split(os.sep))
    by_folder = collections.defaultdict(lambda: [0, 0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            rel = os.path.relpath(f, args.configs)
            folder = rel.split(os.sep)[0]
            by_folder[folder][0] += 1
            out = os.path.join(tmp, "c.json")
            cmd = [args.selfsup, "convert-config", f, "-o", out]
            for p in args.package:
                cmd += ["--package", p]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"convert-failed  {rel}  {r.stderr.strip().splitlines()[-1]}")
                continue
            by_folder[folder][1] += 1
            check = [args.selfsup, "config", out, "--check"] + ([] if args.data else ["--no-data"])
            r = subprocess.run(check, capture_output=True, text=True)
            if r.returncode == 0:
                by_folder[folder][2] += 1
                print(f"ok              {rel}")
                continue
            problems = [line[2:] for line in r.stderr.splitlines() if line.startswith("  ") and
                        not line.startswith("    ")]
            print(f"check-failed    {rel}  {'; '.join(summarize(problems))}")
    print("\nfolder: configs, converted, checked ok")
    total = [0, 0, 0]
    for folder, (n, c, k) in sorted(by_folder.items()):
        print(f"  {folder}: {n}, {c}, {k}")
        total = [total[0] + n, total[1] + c, total[2] + k]
    print(f"  all: {total[0]}, {total[1]}, {total[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Instructions s3backup executes in the comparison's scenarios (a)-(d), counted by valgrind.

Wall time on a shared 2-core machine drifts by more than the few per cent a
refactor may cost; an instruction count does not. This runs each given
s3backup binary under `valgrind --tool=cachegrind --cache-sim=no` (which
counts every instruction of every thread of the process, not the server's)
through the scenarios of benches/compare.py on a smaller tree:

  a  first backup of N small files (1-16 KiB, nested) to an empty bucket
  b  re-run with nothing changed
  c  re-run after 1% of the files were modified and 0.1% renamed
  d  restore of the result into an empty directory

against the same s3s-fs server on 127.0.0.1 that compare.py uses (installed
by it on first use), alternating the binaries within each repetition. Every
run must exit 0, and the restored tree is checked against the source.

Usage:
  python3 benches/instructions.py --bin base=/path/to/old --bin new=target/release/s3backup
  python3 benches/instructions.py --bin new=target/release/s3backup --files 5000 --reps 2

Prints a Markdown table: median instructions per scenario and binary, and
each binary's difference from the first one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (the comparison harness: server, data sets, environment)

SCENARIOS = ["a", "b", "c", "d"]
LABEL = {
    "a": "(a) first backup",
    "b": "(b) unchanged re-run",
    "c": "(c) 1% changed",
    "d": "(d) restore",
}
I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def counted(cmd: list[str], env: dict, log: Path) -> int:
    """Run cmd under cachegrind; its instruction count. Exits on a failed run."""
    full = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
            "--cachegrind-out-file=/dev/null", *cmd]
    with open(log, "ab") as out:
        out.write(("$ " + " ".join(full) + "\n").encode())
        out.flush()
        proc = subprocess.run(full, env=env, stdout=out, stderr=subprocess.PIPE)
        out.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}: {' '.join(cmd)} (log: {log})")
    found = I_REFS.findall(proc.stderr.decode(errors="replace"))
    if not found:
        raise SystemExit(f"no instruction count from valgrind (log: {log})")
    return int(found[-1].replace(",", ""))


def one_rep(name: str, binary: Path, rep: int, args, server, work: Path) -> dict[str, int]:
    """Scenarios a-d with one binary, from a fresh tree, bucket and state file."""
    src = work / "src"
    compare.gen_small_tree(src, args.files, compare.SEED)
    bucket = "instr"
    server.create_bucket(bucket)
    state = work / f"{name}-{rep}.db"
    state.unlink(missing_ok=True)
    env = dict(compare.clean_env(), AWS_ACCESS_KEY_ID=compare.ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=compare.SECRET_KEY, AWS_REGION=compare.REGION)
    common = ["--endpoint-url", server.url, "--jobs", str(args.jobs), "--state", str(state)]
    url = f"s3://{bucket}/{compare.PREFIX}"
    log = work / f"{name}.log"
    got = {}
    backup = [str(binary), "backup", str(src), url, *common]
    got["a"] = counted(backup, env, log)
    got["b"] = counted(backup, env, log)
    compare.modify_tree(src, rep, 0.01, 0.001)
    got["c"] = counted(backup, env, log)
    dest = work / "dest"
    shutil.rmtree(dest, ignore_errors=True)
    got["d"] = counted([str(binary), "restore", url, str(dest), *common], env, log)
    want, have = compare.walk(src), compare.walk(dest)
    # Renamed files' old names stay in the bucket (no --delete), so DEST may hold more.
    if any(have.get(rel) != meta for rel, meta in want.items()):
        raise SystemExit(f"{name}: the restored tree differs from the source")
    return got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", action="append", required=True, metavar="NAME=PATH",
                   help="a binary to measure (repeatable; the first is the baseline)")
    p.add_argument("--files", type=int, default=5000, help="files in the tree (default 5000)")
    p.add_argument("--reps", type=int, default=2, help="repetitions per binary (default 2)")
    p.add_argument("--jobs", type=int, default=16, help="--jobs for s3backup (default 16)")
    p.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    args = p.parse_args()
    bins = []
    for spec in args.bin:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--bin {spec!r}: expected NAME=PATH to an existing binary")
        bins.append((name, Path(path).resolve()))
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="s3backup-instr-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    compare.TRASH.place(work)
    s3s_fs = compare.ensure_cargo_tool(
        "s3s-fs", "s3s-fs", [f"s3s-fs@{compare.S3S_FS_VERSION}", "--features", "binary"])
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    server = compare.Server(s3s_fs, work / "server", logs)
    counts: dict[str, dict[str, list[int]]] = {n: {s: [] for s in SCENARIOS} for n, _ in bins}
    try:
        for rep in range(args.reps):
            order = bins if rep % 2 == 0 else list(reversed(bins))
            for name, binary in order:
                got = one_rep(name, binary, rep, args, server, work)
                compare.log(f"rep {rep} {name}: " + ", ".join(f"{s} {got[s]:,}" for s in SCENARIOS))
                for s in SCENARIOS:
                    counts[name][s].append(got[s])
    finally:
        server.stop()
    base = bins[0][0]
    head = "| scenario | " + " | ".join(n for n, _ in bins) + " |"
    print(f"\nInstructions (millions, median of {args.reps}), {args.files} files, "
          f"--jobs {args.jobs}, s3s-fs on 127.0.0.1:\n")
    print(head)
    print("|" + "---|" * (len(bins) + 1))
    for s in SCENARIOS:
        b = statistics.median(counts[base][s])
        cells = []
        for n, _ in bins:
            m = statistics.median(counts[n][s])
            diff = "" if n == base else f" ({(m - b) / b * 100:+.1f}%)"
            spread = f" [{min(counts[n][s]) / 1e6:,.0f}-{max(counts[n][s]) / 1e6:,.0f}]"
            cells.append(f"{m / 1e6:,.0f}{diff}{spread if args.reps > 1 else ''}")
        print(f"| {LABEL[s]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

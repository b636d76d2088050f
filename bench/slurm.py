#!/usr/bin/env python3
"""Scheduling overhead of the Slurm executor (issue 7's benchmark).

    python3 bench/slurm.py [--repro target/release/repro] [--nodes 200] [--status-nodes 10000]

Needs a running Slurm cluster (`scontrol ping`); `.ci/slurm/local-slurm-up.sh`
starts a one-machine one. Prints a Markdown table:

1. the same N trivial nodes (`echo I > out/o`, a fan-out with `matrix:`)
   run by `repro run` locally (-j = cores), from an empty cache;
2. the same through Slurm (`repro run --executor slurm`), from an empty
   cache: submit to all recorded;
3. a second Slurm run, which must submit nothing (checked);
4. the raw floor: N `sbatch --parsable --wrap 'echo I > FILE'` jobs submitted
   back to back and polled with one `squeue` per 0.5 s until all are done,
   which is the least any Slurm-based engine can spend on them;
5. a no-op `repro status` of a 10,000-node pipeline whose cache and blob
   store live in another directory (REPRO_CACHE / REPRO_BLOBS, as a shared
   filesystem is used on a cluster), median of 5 after a warm-up.

Wall times from one run each (1-4) with time.monotonic; the cluster's
scheduling pass (once a second here) dominates 2-4.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def project(root, name, n):
    os.makedirs(os.path.join(root, "pipelines"), exist_ok=True)
    items = ", ".join(str(i) for i in range(n))
    with open(os.path.join(root, "pipelines", f"{name}.yaml"), "w") as f:
        f.write(
            f"pipeline: {name}\nnodes:\n  t:\n    op: shell\n    matrix: {{i: [{items}]}}\n"
            "    params: {cmd: 'echo ${i} > out/o', outs: o}\n"
        )


def timed(cmd, cwd, env=None):
    t = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.monotonic() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return dt, p.stderr


def jobs_named(prefix):
    out = sh(["squeue", "-h", "-t", "all", "-o", "%j"]).stdout
    return sum(1 for l in out.splitlines() if l.startswith(prefix))


def raw_floor(n, scratch):
    d = os.path.join(scratch, "raw")
    os.makedirs(d, exist_ok=True)
    t = time.monotonic()
    ids = []
    for i in range(n):
        out = sh(
            ["sbatch", "--parsable", "-J", "rawfloor", "-o", "/dev/null", "-c", "1",
             "--wrap", f"echo {i} > {d}/{i}"]
        ).stdout
        ids.append(out.strip().split(";")[0])
    pending = set(ids)
    while pending:
        time.sleep(0.5)
        out = sh(["squeue", "-h", "-t", "all", "-j", ",".join(sorted(pending)), "-o", "%i|%T"]).stdout
        for line in out.splitlines():
            i, st = line.split("|")
            if st in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
                pending.discard(i)
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repro", default=os.path.join(HERE, "..", "target", "release", "repro"))
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--status-nodes", type=int, default=10000)
    ap.add_argument("--scratch", default=os.environ.get("BENCH_SCRATCH", "/tmp/repro-slurm-bench"))
    a = ap.parse_args()
    repro = os.path.abspath(a.repro)
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        sys.exit("no Slurm cluster answers `scontrol ping` (see .ci/slurm/README.md)")
    shutil.rmtree(a.scratch, ignore_errors=True)
    os.makedirs(a.scratch)
    n = a.nodes
    name = f"sb{os.getpid()}"
    rows = []

    loc = os.path.join(a.scratch, "local")
    project(loc, name, n)
    dt, _ = timed([repro, "run", "-q", "-p", name], loc)
    rows.append((f"{n} nodes, local executor (-j {os.cpu_count()}), empty cache", dt))

    sl = os.path.join(a.scratch, "slurm")
    project(sl, name, n)
    before = jobs_named(f"repro:{name}:")
    dt, _ = timed([repro, "run", "-q", "-p", name, "--executor", "slurm"], sl)
    submitted = jobs_named(f"repro:{name}:") - before
    if submitted != n:
        sys.exit(f"expected {n} submissions, saw {submitted}")
    rows.append((f"{n} nodes, slurm executor, empty cache (submit to all recorded)", dt))
    dt, _ = timed([repro, "run", "-q", "-p", name, "--executor", "slurm"], sl)
    if jobs_named(f"repro:{name}:") - before != n:
        sys.exit("the second Slurm run submitted jobs")
    rows.append((f"{n} nodes, slurm executor, all cached (submits nothing)", dt))
    rows.append((f"raw floor: {n} x `sbatch --wrap`, one squeue per 0.5 s until done", raw_floor(n, a.scratch)))

    big = os.path.join(a.scratch, "big")
    shared = os.path.join(a.scratch, "shared-cache")
    sh([sys.executable, os.path.join(HERE, "gen_repro.py"), "--shape", "fanout", "-n",
        str(a.status_nodes), "--style", "template", big])
    env = dict(os.environ, REPRO_CACHE=os.path.join(shared, "cache"), REPRO_BLOBS=os.path.join(shared, "blobs"))
    timed([repro, "run", "-q", "-p", "bench"], big, env)
    times = []
    for k in range(6):
        dt, _ = timed([repro, "status", "-p", "bench"], big, env)
        if k:
            times.append(dt)
    rows.append((f"no-op `repro status`, {a.status_nodes + 1} nodes, cache in another directory (median of 5)",
                 statistics.median(times)))

    info = sh(["scontrol", "show", "node", "-o"]).stdout.split()
    cpus = next((x for x in info if x.startswith("CPUTot=")), "CPUTot=?")
    print(f"Slurm: {sh(['sinfo', '-V']).stdout.strip()}, one node, {cpus}; machine: {os.cpu_count()} cores\n")
    print("| what | wall s |\n|---|---:|")
    for what, dt in rows:
        print(f"| {what} | {dt:.2f} |")
    slurm_cold, floor = rows[1][1], rows[3][1]
    print(f"\nrepro through Slurm / raw sbatch floor: {slurm_cold / floor:.2f}x; "
          f"through Slurm / local: {slurm_cold / rows[0][1]:.1f}x")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks that a run of a pipeline elsewhere (here: every compute node on
Slurm, from an empty cache) produced the same outputs as the committed lock.

    python3 .ci/same_outputs.py COMMITTED_LOCK NEW_LOCK

Every node must be in both locks with the same output digests, byte for
byte. Keys may differ only for nodes whose outputs are all equal: report
nodes see their inputs' provenance (host, executor, start time) and it is
part of their key, by design (see README "Reports and the paper").
"""
import json
import sys


def main():
    old_lock, new_lock = sys.argv[1:3]
    old = json.load(open(old_lock))["nodes"]
    new = json.load(open(new_lock))["nodes"]
    bad, rekeyed = [], []
    if set(old) != set(new):
        bad.append(f"node sets differ: {sorted(set(old) ^ set(new))}")
    for n in sorted(set(old) & set(new)):
        oo, no = old[n]["outputs"], new[n]["outputs"]
        if set(oo) != set(no):
            bad.append(f"{n}: outputs {sorted(oo)} vs {sorted(no)}")
            continue
        for name in oo:
            if oo[name] != no[name]:
                bad.append(f"{n}.{name}: {oo[name][:12]} vs {no[name][:12]}")
        if old[n]["key"] != new[n]["key"]:
            rekeyed.append(n)
    print(f"{len(old)} nodes; every output byte-identical; "
          f"{len(rekeyed)} report keys differ by provenance ({', '.join(rekeyed)})")
    if bad:
        print("DIFFERENT OUTPUTS:\n  " + "\n  ".join(bad))
        sys.exit(1)


if __name__ == "__main__":
    main()

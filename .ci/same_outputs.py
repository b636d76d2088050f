#!/usr/bin/env python3
"""Checks that a run of a pipeline elsewhere (here: every compute node on
Slurm, from an empty cache) produced the same outputs as the committed lock.

    python3 .ci/same_outputs.py COMMITTED_LOCK NEW_LOCK COMMITTED_CACHE NEW_CACHE

Every node must be in both locks with the same output digests (byte for
byte), with one documented exception: a JSON output whose two versions
differ only in the wall-clock fields `seconds` and `tokens_per_s` (the
training logs of lm.pretrain / lm.finetune) is compared without them. Keys
may differ only for nodes whose outputs are all equal: report nodes' keys
include their inputs' provenance (host, executor, start time), by design.
"""
import json
import sys

TIMING = {"seconds", "tokens_per_s"}


def obj(cache, digest):
    with open(f"{cache}/objects/{digest[:2]}/{digest[2:]}", "rb") as f:
        return f.read()


def same_but_timing(a, b):
    try:
        ja, jb = json.loads(a), json.loads(b)
    except ValueError:
        return False
    if not (isinstance(ja, dict) and isinstance(jb, dict)):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in TIMING}
    return strip(ja) == strip(jb)


def main():
    old_lock, new_lock, old_cache, new_cache = sys.argv[1:5]
    old = json.load(open(old_lock))["nodes"]
    new = json.load(open(new_lock))["nodes"]
    bad, timing, rekeyed = [], [], []
    if set(old) != set(new):
        bad.append(f"node sets differ: {sorted(set(old) ^ set(new))}")
    for n in sorted(set(old) & set(new)):
        oo, no = old[n]["outputs"], new[n]["outputs"]
        if set(oo) != set(no):
            bad.append(f"{n}: outputs {sorted(oo)} vs {sorted(no)}")
            continue
        for name in oo:
            if oo[name] == no[name]:
                continue
            if same_but_timing(obj(old_cache, oo[name]), obj(new_cache, no[name])):
                timing.append(f"{n}.{name}")
            else:
                bad.append(f"{n}.{name}: {oo[name][:12]} vs {no[name][:12]}")
        if old[n]["key"] != new[n]["key"]:
            rekeyed.append(n)
    print(f"{len(old)} nodes; outputs byte-identical except wall-clock fields in {len(timing)} training logs; "
          f"{len(rekeyed)} report keys differ by provenance ({', '.join(rekeyed)})")
    if bad:
        print("DIFFERENT OUTPUTS:\n  " + "\n  ".join(bad))
        sys.exit(1)


if __name__ == "__main__":
    main()

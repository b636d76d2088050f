#!/usr/bin/env python3
"""repro's sharded fine-tuning trainer: `lm.finetune` with `engine: torch`.

repro (Rust) tokenizes the chat data, packs it into windows, orders them by
seed and computes the learning rate of every step; it writes all of that to
`windows.safetensors` and the run's settings to `plan.json`, then launches
this script with `torchrun` (see `src/torch/launch.rs`). This script trains on
exactly those windows, in that order, and writes:

- `metrics.jsonl` in the run directory: one line per step (loss, gradient
  norm, learning rate, tokens, tokens/s);
- `result.json`: the loss of every step at full precision, throughput, peak
  memory and the library versions (repro puts them into the record);
- the fine-tuned model as a Hugging Face directory (`config.json` of the base,
  `model.safetensors` or shards with an index, the base's tokenizer files),
  which repro's own loaders read.

Training: FSDP2 (`fully_shard`) per transformer block and at the root; bf16
compute with f32 master weights and f32 gradient reductions (or plain f32);
AdamW with weight decay on matrices only (rank >= 2, as repro's optimizer),
global gradient-norm clipping computed in f64 (clip / (norm + 1e-6) when the
norm exceeds the clip, as repro); gradient accumulation over micro-batches up
to the declared global batch; activation checkpointing; SDPA attention. The
loss is the sum of the cross-entropy of every learned token of the global
batch divided by their count, so it does not depend on how the batch is
split over processes and micro-batches.

Distributed checkpoints (torch.distributed.checkpoint) are written every
`checkpoint_every` steps to `<run>/ckpt/step-NNNNNNNN`; a restart resumes from
the last complete one (a directory is complete once renamed from `.tmp`).

Nothing here reads the network: the base model is a local directory.
"""

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

PLAN_FORMAT = 1
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "generation_config.json",
)
SHARD_BYTES = 4 << 30


def log(rank, msg):
    if rank == 0:
        print(f"[fsdp_train] {msg}", file=sys.stderr, flush=True)


class Trainee(torch.nn.Module):
    """The causal LM plus the masked loss, as one module so that FSDP's root
    hooks see every forward: logits are computed for the learned rows only."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, ids, rows, targets):
        h = self.lm.model(input_ids=ids, use_cache=False).last_hidden_state
        h = h.reshape(-1, h.shape[-1]).index_select(0, rows)
        logits = self.lm.lm_head(h).float()
        return F.cross_entropy(logits, targets, reduction="sum")


def read_plan(path):
    with open(path) as f:
        plan = json.load(f)
    if plan.get("format") != PLAN_FORMAT:
        raise SystemExit(f"{path}: plan format {plan.get('format')}, this trainer reads {PLAN_FORMAT}")
    return plan


def read_windows(path):
    with safe_open(path, framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
    for k in ("ids", "learn", "lengths", "order", "lr"):
        if k not in t:
            raise SystemExit(f"{path}: no tensor `{k}`")
    return t


def versions():
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda or "none",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def build_model(plan, device, rank, world, random_init=False):
    """The model on `device`, sharded with FSDP2, weights from the base."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM

    base = plan["base"]
    config = AutoConfig.from_pretrained(base)
    with open(os.path.join(base, "config.json")) as f:
        raw = json.load(f)
    check_rope(config, raw)
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    if plan["activation_checkpointing"]:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = Trainee(lm)
    if plan["precision"] == "bf16":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        mp = MixedPrecisionPolicy()
    for layer in lm.model.layers:
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    model.to_empty(device=device)
    reinit_buffers(lm, config, device)
    if random_init:
        # Benchmarks only: N(0, 0.02) matrices and unit gains, no weights read.
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.normal_(0.0, 0.02)
                else:
                    p.fill_(1.0)
        return model, lm, config
    full = None
    if rank == 0:
        full = {"lm." + k: v for k, v in read_weights(base).items()}
        want = set(model.state_dict().keys())
        tied = bool(getattr(config, "tie_word_embeddings", False))
        missing = sorted(k for k in want - set(full) if not (tied and k == "lm.lm_head.weight"))
        extra = sorted(set(full) - want)
        if missing or extra:
            raise SystemExit(f"{base}: weights do not fit the config: missing {missing[:5]}, unexpected {extra[:5]}")
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    set_model_state_dict(model, full if full is not None else {}, options=opts)
    if getattr(config, "tie_word_embeddings", False):
        lm.tie_weights()
    return model, lm, config


def check_rope(config, raw):
    """repro's loaders read `rope_theta` from config.json: refuse a config
    that transformers reads differently."""
    if "rope_theta" not in raw:
        return
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is not None and float(theta) != float(raw["rope_theta"]):
        raise SystemExit(f"config.json: rope_theta {raw['rope_theta']} read by transformers as {theta}")


def reinit_buffers(lm, config, device):
    """Non-persistent buffers (RoPE tables) are not in the checkpoint: after
    `to_empty` they hold garbage, so recompute them."""
    for mod in lm.modules():
        if hasattr(mod, "inv_freq") and isinstance(mod.inv_freq, torch.Tensor):
            fresh = type(mod)(config=config)
            for name, buf in fresh.named_buffers(recurse=False):
                getattr(mod, name).copy_(buf.to(device))


def read_weights(base):
    single = os.path.join(base, "model.safetensors")
    files = [single]
    if not os.path.exists(single):
        index = os.path.join(base, "model.safetensors.index.json")
        if not os.path.exists(index):
            raise SystemExit(f"{base}: no model.safetensors or model.safetensors.index.json")
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        files = [os.path.join(base, x) for x in files]
    out = {}
    for p in files:
        with safe_open(p, framework="pt") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k).float()
    return out


def optimizer(model, plan):
    decay, plain = [], []
    for p in model.parameters():
        (decay if p.ndim >= 2 else plain).append(p)
    b1, b2 = plan["betas"]
    groups = [
        {"params": decay, "weight_decay": plan["weight_decay"]},
        {"params": plain, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=0.0, betas=(b1, b2), eps=plan["eps"], foreach=False)


def local(t):
    return t.to_local() if hasattr(t, "to_local") else t


def clip_(model, clip, device):
    """Global gradient norm (f64 over every shard), then clip / (norm + 1e-6)
    when it exceeds `clip`, exactly as repro's AdamW. Returns the norm."""
    sq = torch.zeros((), dtype=torch.float64, device=device)
    grads = [local(p.grad) for p in model.parameters() if p.grad is not None]
    for g in grads:
        sq += g.double().pow(2).sum()
    if dist.get_world_size() > 1:
        dist.all_reduce(sq)
    norm = math.sqrt(sq.item())
    if clip > 0 and norm > clip:
        scale = clip / (norm + 1e-6)
        for g in grads:
            g.mul_(scale)
    return norm


def micro_batches(win, idx, micro, device):
    """Micro-batches of window indices: (ids, rows, targets) each, padded to
    the longest window with id 0 and nothing learned."""
    out = []
    for s in range(0, len(idx), micro):
        chunk = idx[s : s + micro]
        lens = [int(win["lengths"][i]) for i in chunk]
        t = max(lens) - 1
        ids = torch.zeros((len(chunk), t), dtype=torch.long)
        rows, targets = [], []
        for b, (i, n) in enumerate(zip(chunk, lens)):
            w = win["ids"][i, :n].long()
            l = win["learn"][i, :n]
            ids[b, : n - 1] = w[: n - 1]
            for j in range(n - 1):
                if l[j + 1]:
                    rows.append(b * t + j)
                    targets.append(int(w[j + 1]))
        out.append(
            (
                ids.to(device),
                torch.tensor(rows, dtype=torch.long, device=device),
                torch.tensor(targets, dtype=torch.long, device=device),
            )
        )
    return out


def learned_in(win, idx):
    total = 0
    for i in idx:
        n = int(win["lengths"][i])
        total += int(win["learn"][i, 1:n].sum())
    return total


def checkpoints(ckpt_dir):
    if not os.path.isdir(ckpt_dir):
        return []
    return sorted(d for d in os.listdir(ckpt_dir) if d.startswith("step-") and not d.endswith(".tmp"))


def save_checkpoint(model, opt, ckpt_dir, step, history, rank):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    name = f"step-{step:08d}"
    tmp = os.path.join(ckpt_dir, name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp, exist_ok=True)
    dist.barrier()
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=tmp)
    dist.barrier()
    if rank == 0:
        with open(os.path.join(tmp, "trainer.json"), "w") as f:
            json.dump({"step": step, "history": history}, f)
        os.replace(tmp, os.path.join(ckpt_dir, name))
        for old in checkpoints(ckpt_dir)[:-2]:
            shutil.rmtree(os.path.join(ckpt_dir, old), ignore_errors=True)
    dist.barrier()


def load_checkpoint(model, opt, ckpt_dir):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    done = checkpoints(ckpt_dir)
    if not done:
        return 0, []
    path = os.path.join(ckpt_dir, done[-1])
    msd, osd = get_state_dict(model, opt)
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    with open(os.path.join(path, "trainer.json")) as f:
        meta = json.load(f)
    return meta["step"], meta["history"]


def export(model, config, plan, rank):
    """The model as a Hugging Face directory: the base's config.json and
    tokenizer files, the weights in f32 (sorted names; shards of at most
    4 GiB with an index when larger)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return
    out, base = plan["out"], plan["base"]
    os.makedirs(out, exist_ok=True)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    weights = {}
    for k in sorted(sd):
        name = k[len("lm.") :] if k.startswith("lm.") else k
        if tied and name == "lm_head.weight":
            continue
        weights[name] = sd[k].detach().to(torch.float32).contiguous().clone()
    shards, cur, size = [], {}, 0
    for k, v in weights.items():
        n = v.numel() * v.element_size()
        if cur and size + n > SHARD_BYTES:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += n
    shards.append(cur)
    if len(shards) == 1:
        save_file(shards[0], os.path.join(out, "model.safetensors"))
    else:
        wmap = {}
        for i, s in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(s, os.path.join(out, fname))
            wmap.update({k: fname for k in s})
        total = sum(v.numel() * v.element_size() for v in weights.values())
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2, sort_keys=True)
    shutil.copyfile(os.path.join(base, "config.json"), os.path.join(out, "config.json"))
    for name in TOKENIZER_FILES:
        src = os.path.join(base, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out, name))


def peak_memory(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True, help="plan.json written by repro")
    ap.add_argument("--fail-after-step", type=int, default=0, help="testing: exit hard after this step (simulates a kill)")
    ap.add_argument("--random-init", action="store_true", help="benchmarks: random weights instead of the base's")
    ap.add_argument("--no-export", action="store_true", help="benchmarks: write no model directory")
    args = ap.parse_args()
    plan = read_plan(args.plan)
    run_dir = os.path.dirname(os.path.abspath(args.plan))

    cuda = torch.cuda.is_available() and plan.get("device", "auto") != "cpu"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(plan["seed"])
    if plan.get("threads"):
        torch.set_num_threads(int(plan["threads"]))

    win = read_windows(os.path.join(run_dir, plan["windows"]))
    order, lrs = win["order"], win["lr"]
    steps, batch = order.shape
    micro = max(1, int(plan["micro_batch"]))
    model, lm, config = build_model(plan, device, rank, world, args.random_init)
    opt = optimizer(model, plan)
    ckpt_dir = os.path.join(run_dir, "ckpt")
    start, history = load_checkpoint(model, opt, ckpt_dir)
    if start:
        log(rank, f"resumed from the checkpoint after step {start}")
    log(rank, f"{world} process(es), {steps} steps of {batch} windows, micro-batch {micro}, {plan['precision']}")

    metrics = open(os.path.join(run_dir, "metrics.jsonl"), "a") if rank == 0 else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    t_run = time.perf_counter()
    run_tokens = 0
    for step in range(start, steps):
        t0 = time.perf_counter()
        idx = [int(i) for i in order[step]]
        learned = learned_in(win, idx)
        mine = idx[rank::world]
        mbs = micro_batches(win, mine, micro, device)
        # Every rank runs the same number of forward/backward passes
        # (FSDP's collectives need it); a rank short of windows repeats its
        # first one with weight 0.
        n_mb = math.ceil(math.ceil(len(idx) / world) / micro)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for m in range(n_mb):
            weight = 1.0
            if m < len(mbs):
                ids, rows, targets = mbs[m]
            else:
                ids, rows, targets = micro_batches(win, idx[:1], 1, device)[0]
                weight = 0.0
            if hasattr(model, "set_requires_gradient_sync"):
                model.set_requires_gradient_sync(m == n_mb - 1)
            loss_sum = model(ids, rows, targets)
            # FSDP averages gradients over ranks: scale by the world size so
            # that the result is the sum over the global batch / its count.
            (loss_sum * (weight * world / learned)).backward()
            total += loss_sum.detach().double() * weight
        if world > 1:
            dist.all_reduce(total)
        loss = total.item() / learned
        norm = clip_(model, plan["clip"], device)
        lr = float(lrs[step])
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)
        if not math.isfinite(loss):
            raise SystemExit(f"loss became {loss} at step {step}; lower the learning rate")
        tokens = sum(int(win["lengths"][i]) - 1 for i in idx)
        run_tokens += tokens
        dt = time.perf_counter() - t0
        history.append({"step": step, "loss": loss, "grad_norm": norm, "lr": lr, "tokens": tokens, "learned": learned})
        if metrics:
            metrics.write(json.dumps({**history[-1], "seconds": dt, "tokens_per_s": tokens / max(dt, 1e-9)}) + "\n")
            metrics.flush()
            log(rank, f"step {step + 1}/{steps} loss {loss:.4f} grad_norm {norm:.3f} {tokens / max(dt, 1e-9):.0f} tok/s")
        done = step + 1
        if plan["checkpoint_every"] and done % plan["checkpoint_every"] == 0 and done < steps:
            save_checkpoint(model, opt, ckpt_dir, done, history, rank)
        if args.fail_after_step and done == args.fail_after_step:
            log(rank, f"exiting after step {done} (--fail-after-step)")
            dist.barrier()
            os._exit(3)
    seconds = time.perf_counter() - t_run
    if not args.no_export:
        export(model, config, plan, rank)
    peak = torch.tensor([peak_memory(device)], dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    if rank == 0:
        result = {
            "losses": [h["loss"] for h in history],
            "grad_norms": [h["grad_norm"] for h in history],
            "steps": len(history),
            "tokens": sum(h["tokens"] for h in history),
            "learned_tokens": sum(h["learned"] for h in history),
            "seconds": seconds,
            "tokens_per_s": run_tokens / max(seconds, 1e-9),
            "peak_memory_bytes": int(peak.item()),
            "world_size": world,
            "resumed_from": start,
            "params": sum(p.numel() for p in model.parameters()),
            "versions": versions(),
        }
        with open(os.path.join(run_dir, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
        metrics.close()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Helpers of scripts/gpu-check-torch.sh (needs a CUDA GPU).

  gpu_check_torch.py setup DIR SHAPE     # DIR/base/config.json + DIR/run/{windows.safetensors,plan.json}
  gpu_check_torch.py plain SHAPE         # plain unsharded torch training, same recipe; prints JSON
  gpu_check_torch.py summary DIR         # peak memory and tokens/s of the trainer's run in DIR/run

SHAPE: `7b` (LLaMA-7B: 4096 wide, 32 layers, 32 heads, 11008 MLP, vocab 32000)
or `1b` (2048 wide, 22 layers, 32 heads / 4 KV heads, 5632 MLP: TinyLlama-1.1B's shape).
Every run: random weights, sequence 2,048, micro-batch 1 (global batch 1),
activation checkpointing, bf16 compute with f32 master weights, AdamW, 20 steps.
"""

import json
import os
import statistics
import sys
import time

import torch

SEQ, STEPS = 2048, 20
SHAPES = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
               num_attention_heads=32, num_key_value_heads=4),
    # A smoke test of this script on a CPU.
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
}


def config(shape):
    return dict(SHAPES[shape], vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                rope_theta=10000.0, tie_word_embeddings=False, architectures=["LlamaForCausalLM"],
                model_type="llama")


def setup(d, shape):
    from safetensors.torch import save_file

    os.makedirs(f"{d}/base", exist_ok=True)
    os.makedirs(f"{d}/run", exist_ok=True)
    with open(f"{d}/base/config.json", "w") as f:
        json.dump(config(shape), f, indent=1)
    g = torch.Generator().manual_seed(0)
    n = STEPS
    ids = torch.randint(0, 32000, (n, SEQ + 1), generator=g, dtype=torch.int32)
    save_file({
        "ids": ids,
        "learn": torch.ones((n, SEQ + 1), dtype=torch.uint8),
        "lengths": torch.full((n,), SEQ + 1, dtype=torch.int32),
        "order": torch.arange(n, dtype=torch.int32).reshape(n, 1),
        "lr": torch.full((n,), 1e-5, dtype=torch.float64),
    }, f"{d}/run/windows.safetensors", metadata={"format": "1", "seq_len": str(SEQ)})
    plan = {"format": 1, "windows": "windows.safetensors", "base": os.path.abspath(f"{d}/base"),
            "out": os.path.abspath(f"{d}/out"), "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1,
            "clip": 1.0, "seed": 0, "precision": "bf16", "micro_batch": 1, "checkpoint_every": 0,
            "activation_checkpointing": True, "threads": 0}
    with open(f"{d}/run/plan.json", "w") as f:
        json.dump(plan, f, indent=1)


def plain(shape):
    """The same recipe without FSDP: one model on one GPU, f32 weights,
    bf16 autocast, HF gradient checkpointing, SDPA, torch AdamW."""
    from transformers import LlamaConfig, LlamaForCausalLM

    dev = torch.device("cuda")
    cfg = LlamaConfig(**{k: v for k, v in config(shape).items() if k not in ("architectures", "model_type")})
    m = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32).to(dev)
    m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)
    torch.cuda.reset_peak_memory_stats(dev)
    ids = torch.randint(0, 32000, (1, SEQ + 1), device=dev)
    times = []
    for _ in range(STEPS):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = m(input_ids=ids[:, :-1], labels=ids[:, 1:].contiguous()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    steady = times[5:]
    print(json.dumps({"what": f"plain torch {shape}", "params": sum(p.numel() for p in m.parameters()),
                      "peak_memory_gib": torch.cuda.max_memory_allocated(dev) / 2**30,
                      "tokens_per_s_median_steps_6_20": SEQ / statistics.median(steady)}))


def summary(d, label):
    rows = [json.loads(l) for l in open(f"{d}/run/metrics.jsonl")]
    r = json.load(open(f"{d}/run/result.json"))
    steady = [x["seconds"] for x in rows[5:]]
    print(json.dumps({"what": label, "params": r["params"], "steps": r["steps"],
                      "peak_memory_gib": r["peak_memory_bytes"] / 2**30,
                      "tokens_per_s_median_steps_6_20": SEQ / statistics.median(steady),
                      "device": r["versions"]["device"], "torch": r["versions"]["torch"]}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(sys.argv[2], sys.argv[3])
    elif cmd == "plain":
        plain(sys.argv[2])
    elif cmd == "summary":
        summary(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)

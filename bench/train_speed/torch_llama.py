#!/usr/bin/env python3
"""PyTorch eager twin of repro's candle LLaMA training step, for bench/train_speed.sh.

Same command line and the same JSON as `repro bench-train`:

    python torch_llama.py --config configs/s.json --batch 16 --seq 128 --steps 5 --json
    {"tokens_per_s": 1234.5, "step_seconds": [..], "params": 164160,
     "forward_s": .., "backward_s": .., "optimizer_s": .., ...}

One step = forward (logits for every position) + cross-entropy over all
positions + backward + gradient clipping at 1.0 (global norm) + AdamW(lr 1e-3,
betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on matrices only), as repro's
AdamWConfig::default(). The batch is fresh random token ids each step
(seeded), made outside the timed region. `--warmup` untimed steps (default 1)
run first, then `--steps` timed steps (default 5); step_seconds lists the
timed steps and forward_s / backward_s / optimizer_s are their means
(forward includes the loss, optimizer includes clipping).

Architecture (Hugging Face LLaMA, read from a HF `config.json`): token
embedding; per layer RMSNorm -> attention (q/k/v/o without bias, RoPE in the
HF rotate_half layout, grouped-query attention, causal mask) -> residual;
RMSNorm -> SwiGLU MLP down(silu(gate(x)) * up(x)) -> residual; final RMSNorm;
lm head tied to the embedding when tie_word_embeddings. Init: every Linear and
the embedding N(0, 0.02), norm weights 1.

Attention variants:
  (default)           explicit q @ k^T, additive -inf causal mask, torch.softmax,
                      @ v: what eager PyTorch code (and HF's "eager" attention) does
  --softmax composed  the softmax itself written out (max, sub, exp, sum, div), the
                      same op graph as candle_nn::ops::softmax used for training
  --sdpa              torch.nn.functional.scaled_dot_product_attention(is_causal=True)

Needs only torch. Benchmark peer only: torch is never a dependency of repro.
"""

import argparse
import json
import math
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def load_config(path):
    with open(path) as f:
        c = json.load(f)
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    c.setdefault("rms_norm_eps", 1e-6)
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("tie_word_embeddings", False)
    c.setdefault("max_position_embeddings", 2048)
    if c["hidden_size"] % c["num_attention_heads"]:
        sys.exit(f"{path}: hidden_size must be a multiple of num_attention_heads")
    if c["num_attention_heads"] % c["num_key_value_heads"]:
        sys.exit(f"{path}: num_attention_heads must be a multiple of num_key_value_heads")
    return c


def expected_params(c):
    """Parameter count of the architecture, computed by hand from the config."""
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    head_dim = h // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * head_dim
    per_layer = (
        h * h  # q_proj
        + 2 * h * kv  # k_proj, v_proj
        + h * h  # o_proj
        + 3 * h * i  # gate_proj, up_proj, down_proj
        + 2 * h  # input_layernorm, post_attention_layernorm
    )
    total = v * h + c["num_hidden_layers"] * per_layer + h  # embed, layers, final norm
    if not c["tie_word_embeddings"]:
        total += v * h  # lm_head
    return total


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def softmax_composed(x):
    m = x.amax(dim=-1, keepdim=True)
    e = (x - m).exp()
    return e / e.sum(dim=-1, keepdim=True)


class Attention(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        h = c["hidden_size"]
        self.n_head = c["num_attention_heads"]
        self.n_kv = c["num_key_value_heads"]
        self.head_dim = h // self.n_head
        self.q_proj = nn.Linear(h, self.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, h, bias=False)
        self.attn = attn

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.n_head // self.n_kv
        if rep > 1:  # grouped-query attention: repeat_kv as in HF / candle_transformers
            k = k[:, :, None].expand(b, self.n_kv, rep, t, self.head_dim).reshape(b, self.n_head, t, self.head_dim)
            v = v[:, :, None].expand(b, self.n_kv, rep, t, self.head_dim).reshape(b, self.n_head, t, self.head_dim)
        if self.attn == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim) + mask
            p = softmax_composed(s) if self.attn == "composed" else torch.softmax(s, dim=-1)
            y = p @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c, attn)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = Mlp(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        h = c["hidden_size"]
        self.embed_tokens = nn.Embedding(c["vocab_size"], h)
        self.layers = nn.ModuleList(Block(c, attn) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(h, c["rms_norm_eps"])
        self.lm_head = None if c["tie_word_embeddings"] else nn.Linear(h, c["vocab_size"], bias=False)
        head_dim = h // c["num_attention_heads"]
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(c["max_position_embeddings"], dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, ids):
        t = ids.shape[1]
        if t > self.cos.shape[0]:
            raise ValueError(f"seq {t} > max_position_embeddings {self.cos.shape[0]}")
        cos, sin = self.cos[:t], self.sin[:t]
        mask = torch.full((t, t), float("-inf")).triu(1)[None, None]
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        x = self.norm(x)
        w = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return x @ w.t()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="Hugging Face LLaMA config.json")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps run first")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--sdpa", action="store_true", help="scaled_dot_product_attention instead of explicit attention")
    ap.add_argument("--softmax", choices=["torch", "composed"], default="torch",
                    help="explicit attention's softmax: torch.softmax (default) or max/exp/sum/div ops")
    ap.add_argument("--optimizer", choices=["default", "foreach", "fused", "loop"], default="default",
                    help="AdamW implementation (default: whatever torch picks on CPU)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.steps < 1 or a.warmup < 0 or a.batch < 1 or a.seq < 1:
        sys.exit("--steps, --batch and --seq must be positive, --warmup not negative")
    if a.sdpa and a.softmax != "torch":
        sys.exit("--softmax applies to explicit attention only, not with --sdpa")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    c = load_config(a.config)
    attn = "sdpa" if a.sdpa else ("composed" if a.softmax == "composed" else "manual")
    model = Llama(c, attn)
    params = sum(p.numel() for p in model.parameters())
    expected = expected_params(c)
    if params != expected:
        sys.exit(f"parameter count {params} != {expected} computed from {a.config}")

    opt_kw = {"lr": 1e-3, "betas": (0.9, 0.95), "eps": 1e-8}
    if a.optimizer == "foreach":
        opt_kw["foreach"] = True
    elif a.optimizer == "fused":
        opt_kw["fused"] = True
    elif a.optimizer == "loop":
        opt_kw["foreach"] = False
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}], **opt_kw
    )

    gen = torch.Generator().manual_seed(a.seed)
    vocab = c["vocab_size"]
    step_seconds, losses, phases = [], [], [0.0, 0.0, 0.0]
    for step in range(a.warmup + a.steps):
        tokens = torch.randint(vocab, (a.batch, a.seq + 1), generator=gen)
        t0 = time.perf_counter()
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        t3 = time.perf_counter()
        losses.append(loss.item())
        if step >= a.warmup:
            step_seconds.append(t3 - t0)
            for i, d in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                phases[i] += d

    tokens_per_s = a.batch * a.seq * len(step_seconds) / sum(step_seconds)
    out = {
        "tokens_per_s": round(tokens_per_s, 2),
        "step_seconds": [round(s, 5) for s in step_seconds],
        "params": params,
        "forward_s": round(phases[0] / a.steps, 5),
        "backward_s": round(phases[1] / a.steps, 5),
        "optimizer_s": round(phases[2] / a.steps, 5),
        "impl": f"torch {torch.__version__} eager, attention={attn}, threads={torch.get_num_threads()}",
        "losses": [round(l, 5) for l in losses],
    }
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{a.config}: params {params:,} (by hand {expected:,}), batch {a.batch} x seq {a.seq}, "
              f"attention {attn}, torch {torch.__version__}, {platform.machine()}")
        print(f"  timed steps (s): {' '.join(f'{s:.3f}' for s in step_seconds)} "
              f"(mean forward {out['forward_s']:.3f}, backward {out['backward_s']:.3f}, optimizer {out['optimizer_s']:.3f})")
        print(f"  loss: {losses[0]:.4f} -> {losses[-1]:.4f}")
        print(f"  tokens/s ({a.steps} steps after {a.warmup} warm-up): {tokens_per_s:,.0f}")


if __name__ == "__main__":
    main()

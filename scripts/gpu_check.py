#!/usr/bin/env python3
"""The Python half of scripts/gpu-check.sh: model files, PyTorch's figures, the summary.

  gpu_check.py make-config DIR --shape SHAPE          # DIR/config.json only (no weights)
  gpu_check.py make-model DIR --shape SHAPE [--writer transformers|plain]
                                                      # config.json, model.safetensors, tokenizer files
  gpu_check.py prompts FILE --model DIR --n N --len L # N prompts of L random ids (JSON arrays)
  gpu_check.py generate --model DIR --prompt-ids FILE --batch B ... --new-tokens N
                                                      # transformers' generate, one JSON line per batch
  gpu_check.py train --config FILE --seq S --micro-batch B --precision master|autocast
                                                      # PyTorch training tokens/s, one JSON line
  gpu_check.py memory POLL_FILE --what NAME [--baseline MIB]   # peak of nvidia-smi samples, JSON
  gpu_check.py env                                    # versions and the GPU, JSON
  gpu_check.py summary RESULTS.jsonl --out summary.md # the Markdown summary
  gpu_check.py selftest                               # checks of the parts that need no torch

SHAPE: `smol` (SmolLM2-135M's: 576 wide, 30 layers, 9 heads / 3 KV heads,
1536 MLP, vocab 49152, tied embeddings), `train370m` (a LLaMA of 1024 wide,
24 layers, 16 heads, 2816 MLP, vocab 32000, untied: 373M parameters), and
the tiny `tiny-smol` / `tiny-train` of the CPU smoke run.

Only `generate`, `train`, `env` and `make-model --writer transformers` need
torch; everything else is plain Python (3.8+), so `--help`, the model files
of the tiny shapes and the summary work without it.
"""

import argparse
import json
import math
import os
import random
import statistics
import struct
import sys
import time

SHAPES = {
    "smol": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                 num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                 tie_word_embeddings=True, max_position_embeddings=8192, rope_theta=100000.0),
    "train370m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                      num_attention_heads=16, num_key_value_heads=16, vocab_size=32000,
                      tie_word_embeddings=False, max_position_embeddings=2048, rope_theta=10000.0),
    "tiny-smol": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                      tie_word_embeddings=True, max_position_embeddings=256, rope_theta=100000.0),
    "tiny-train": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, vocab_size=512,
                       tie_word_embeddings=False, max_position_embeddings=256, rope_theta=10000.0),
}
EOS = "<|endoftext|>"


def config(shape):
    """An HF LLaMA config.json for SHAPE (as transformers 5 reads it)."""
    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r} (one of {', '.join(SHAPES)})")
    return dict(SHAPES[shape], architectures=["LlamaForCausalLM"], model_type="llama",
                hidden_act="silu", rms_norm_eps=1e-5, initializer_range=0.02,
                attention_bias=False, mlp_bias=False, bos_token_id=0, eos_token_id=0,
                pad_token_id=0, use_cache=True)


def param_count(cfg):
    h, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    emb = cfg["vocab_size"] * h * (1 if cfg["tie_word_embeddings"] else 2)
    return emb + n * per_layer + h


def tensor_shapes(cfg):
    """HF LLaMA weight names and shapes, in order."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    kv = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]
    out = [("model.embed_tokens.weight", (cfg["vocab_size"], h))]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i)), (p + "input_layernorm.weight", (h,)),
                (p + "post_attention_layernorm.weight", (h,))]
    out.append(("model.norm.weight", (h,)))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (cfg["vocab_size"], h)))
    return out


def write_safetensors(path, tensors):
    """f32 tensors [(name, shape, list of floats)] as a safetensors file."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, data in tensors:
        n = 4 * len(data)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, data in tensors:
            f.write(struct.pack(f"<{len(data)}f", *data))


def read_safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def write_tokenizer(d, vocab_size):
    """A WordLevel tokenizer.json covering every id (id 0 is the EOS token),
    so that repro's loader finds a tokenizer; nothing is ever tokenized."""
    vocab = {EOS: 0}
    for i in range(1, vocab_size):
        vocab[f"t{i}"] = i
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 0, "content": EOS, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}],
           "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"},
           "post_processor": None, "decoder": None,
           "model": {"type": "WordLevel", "vocab": vocab, "unk_token": EOS}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": EOS, "bos_token": None, "pad_token": EOS,
                   "model_max_length": 1 << 20}, f, indent=1)


def make_config(d, shape):
    os.makedirs(d, exist_ok=True)
    cfg = config(shape)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return cfg


def make_model(d, shape, writer, seed=0):
    """A model directory with random weights, N(0, 0.02) matrices and unit norms."""
    os.makedirs(d, exist_ok=True)
    cfg = config(shape)
    t0 = time.time()
    if writer == "transformers":
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        keys = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}
        model = LlamaForCausalLM(LlamaConfig(**keys)).to(torch.float32)
        model.save_pretrained(d)
        del model
    elif writer == "plain":
        n = param_count(cfg)
        if n > 20_000_000:
            raise SystemExit(f"--writer plain is for small shapes ({n} parameters; use --writer transformers)")
        rng = random.Random(seed)
        tensors = []
        for name, shp in tensor_shapes(cfg):
            count = math.prod(shp)
            data = [1.0] * count if len(shp) == 1 else [rng.gauss(0.0, cfg["initializer_range"]) for _ in range(count)]
            tensors.append((name, shp, data))
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
    else:
        raise SystemExit(f"--writer {writer!r}: transformers or plain")
    write_tokenizer(d, cfg["vocab_size"])
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        if not os.path.exists(os.path.join(d, f)):
            raise SystemExit(f"{d}: {f} was not written (writer {writer})")
    print(json.dumps({"part": "setup", "model": d, "shape": shape, "writer": writer,
                      "params": param_count(cfg), "seconds": round(time.time() - t0, 2)}))


def make_prompts(path, model_dir, n, length, seed=0):
    with open(os.path.join(model_dir, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps([rng.randrange(1, vocab) for _ in range(length)]) + "\n")


def read_prompts(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def cuda_device(name):
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA GPU")
    return torch.device(name)


def sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def generate(a):
    """transformers' generate: bf16, greedy, exactly --new-tokens per row."""
    import torch
    from transformers import AutoModelForCausalLM

    dev = cuda_device(a.device)
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}[a.dtype]
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype).to(dev).eval()
    load_s = time.perf_counter() - t0
    prompts = read_prompts(a.prompt_ids)
    params = sum(p.numel() for p in model.parameters())
    for b in a.batch:
        if b > len(prompts):
            raise SystemExit(f"--batch {b}: {a.prompt_ids} has {len(prompts)} prompts")
        rows = prompts[:b]
        if len({len(r) for r in rows}) != 1:
            raise SystemExit("prompts must all have the same length (no padding here)")
        ids = torch.tensor(rows, dtype=torch.long, device=dev)
        mask = torch.ones_like(ids)

        def run(new):
            sync(dev)
            t = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                     max_new_tokens=new, min_new_tokens=new, pad_token_id=0,
                                     eos_token_id=0, use_cache=True)
            sync(dev)
            return time.perf_counter() - t, out[:, ids.shape[1]:]

        run(min(2, a.new_tokens))
        prefill, gen_s, last = [], [], None
        for _ in range(max(1, a.repeats)):
            prefill.append(run(1)[0])
            s, last = run(a.new_tokens)
            gen_s.append(s)
        generated = last.numel()
        if generated != b * a.new_tokens:
            raise SystemExit(f"batch {b}: {generated} tokens generated, expected {b * a.new_tokens}")
        med = statistics.median(gen_s)
        print(json.dumps({
            "part": "generate", "impl": "transformers", "device": device_name(dev),
            "dtype": a.dtype, "model": a.model, "params": params, "batch": b,
            "new_tokens": a.new_tokens, "prompt_tokens": sum(map(len, rows)),
            "generated_tokens": generated, "prefill_s": statistics.median(prefill),
            "gen_s": med, "gen_s_all": gen_s, "gen_tok_s": generated / med, "load_s": load_s,
            "settings": "generate(do_sample=False, min_new_tokens=max_new_tokens, DynamicCache), eager, "
                        + getattr(model.config, "_attn_implementation", "?") + " attention",
            "ok": True}), flush=True)


def lr_at(step, total, lr, warmup=0.1, min_ratio=0.1):
    """repro::model::train::lr_at: linear warm-up, then cosine decay."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return lr * (step + 1) / warm
    span = max(1, total - warm)
    p = min(1.0, (step - warm) / span)
    return lr * min_ratio + (lr - lr * min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def train(a):
    """HF LlamaForCausalLM (SDPA attention), AdamW as repro's (0.9, 0.95, eps
    1e-8, weight decay 0.1 on matrices only, global clip 1.0), repro's
    learning-rate schedule, random tokens. `master`: bf16 weights with f32
    master copies in the optimizer (what repro does); `autocast`: f32 weights
    under bf16 autocast (the usual PyTorch recipe)."""
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    dev = cuda_device(a.device)
    with open(a.config) as f:
        raw = json.load(f)
    cfg = LlamaConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")})
    torch.manual_seed(0)
    t0 = time.perf_counter()
    wdtype = torch.bfloat16 if a.precision == "master" else torch.float32
    with torch.device(dev):
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=wdtype)
    model.train()
    params = list(model.parameters())
    if a.precision == "master":
        masters = [p.detach().float().clone().requires_grad_(True) for p in params]
    else:
        masters = params
    groups = [{"params": [m for m in masters if m.dim() >= 2], "weight_decay": 0.1},
              {"params": [m for m in masters if m.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    init_s = time.perf_counter() - t0
    steps = a.warmup_steps + a.steps
    g = torch.Generator(device=dev).manual_seed(0)
    data = torch.randint(0, cfg.vocab_size, (steps, a.micro_batch, a.seq + 1), generator=g, device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, losses = [], []
    for step in range(steps):
        sync(dev)
        t = time.perf_counter()
        x, y = data[step, :, :-1], data[step, :, 1:]
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, steps, a.lr)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "autocast"):
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        if a.precision == "master":
            for m, p in zip(masters, params):
                m.grad = p.grad.float()
                p.grad = None
        torch.nn.utils.clip_grad_norm_(masters, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if a.precision == "master":
            with torch.no_grad():
                for m, p in zip(masters, params):
                    p.copy_(m)
        losses.append(loss.item())
        sync(dev)
        times.append(time.perf_counter() - t)
    timed = times[a.warmup_steps:]
    med = statistics.median(timed)
    tokens = a.micro_batch * a.seq
    out = {
        "part": "train", "impl": f"torch {a.precision}", "device": device_name(dev),
        "dtype": "bf16", "precision": a.precision, "params": sum(p.numel() for p in params),
        "seq": a.seq, "micro_batch": a.micro_batch, "tokens_per_step": tokens,
        "warmup_steps": a.warmup_steps, "timed_steps": len(timed), "step_s_median": med,
        "step_s_all": times, "tokens_per_s": tokens / med, "loss_first": losses[0],
        "loss_last": losses[-1], "init_s": init_s,
        "optimizer": "torch.optim.AdamW (0.9, 0.95, eps 1e-8, wd 0.1 on matrices, clip 1.0), "
                     + ("f32 masters of bf16 weights" if a.precision == "master" else "f32 weights, bf16 autocast"),
        "ok": all(math.isfinite(l) for l in losses)}
    if dev.type == "cuda":
        out["torch_max_allocated_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        out["torch_max_reserved_gib"] = torch.cuda.max_memory_reserved(dev) / 2**30
    print(json.dumps(out), flush=True)
    if not out["ok"]:
        raise SystemExit(f"a loss was not finite: {losses}")


def device_name(dev):
    import torch

    if dev.type == "cuda":
        return f"cuda:{dev.index or 0} ({torch.cuda.get_device_name(dev)})"
    return "cpu"


def env():
    import torch
    import transformers

    out = {"part": "env", "python": sys.version.split()[0], "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "transformers": transformers.__version__,
           "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   capability=f"{p.major}.{p.minor}")
    print(json.dumps(out))


def memory(poll_file, what, baseline):
    """Peak of nvidia-smi's memory.used samples (MiB, one a line)."""
    samples = []
    if os.path.exists(poll_file):
        with open(poll_file) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        samples.append(float(line.split(",")[0]))
                    except ValueError:
                        pass
    out = {"part": "memory", "what": what, "samples": len(samples),
           "method": "nvidia-smi --query-gpu=memory.used -lms 100"}
    if samples:
        out["peak_mib"] = max(samples)
        if baseline is not None and baseline >= 0:
            out["baseline_mib"] = baseline
            out["peak_above_baseline_mib"] = max(samples) - baseline
    else:
        out["note"] = "not measured (no samples: no nvidia-smi, or the step ended at once)"
    print(json.dumps(out))


# ---- summary ---------------------------------------------------------------

def fmt(x, spec=".1f"):
    if x is None:
        return "-"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def summary(results_path):
    rows = []
    with open(results_path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                rows.append({"part": "status", "name": f"results.jsonl:{i}", "status": "failed",
                             "rc": 0, "seconds": 0, "log": "", "note": f"not JSON: {e}"})
    by = lambda part: [r for r in rows if r.get("part") == part]
    out = ["# GPU check (scripts/gpu-check.sh)", ""]
    status = by("status")
    bad = [s for s in status if s["status"] not in ("ok", "n/a")]
    logits = by("logits")
    bad_checks = [r for r in logits if r.get("ok") is False]
    if bad or bad_checks:
        out.append(f"**NOT ALL STEPS PASSED**: {len(bad)} step(s) not ok, {len(bad_checks)} check(s) failed.")
    else:
        out.append("All steps passed.")
    out.append("")
    for e in by("env"):
        out.append(f"GPU: {e.get('gpu', '-')} ({e.get('gpu_memory_gib', '-')} GiB, sm {e.get('capability', '-')}); "
                   f"torch {e.get('torch')} (CUDA {e.get('torch_cuda')}), transformers {e.get('transformers')}, "
                   f"Python {e.get('python')}.")
    for b in by("build"):
        out.append(f"repro binary: commit {b.get('commit', '?')[:12]}"
                   f"{' (+%d uncommitted source files)' % b['uncommitted_source_files'] if b.get('uncommitted_source_files') else ''}, "
                   f"CUDA {b.get('nvcc')} wheels {b.get('cuda_toolkit_wheel')}, sm_{b.get('cuda_compute_cap')}, {b.get('rustc', '')}.")
    for w in by("warning"):
        out.append(f"**Warning**: {w.get('note')}")
    out += ["", "## Steps", "", "| step | status | seconds | note |", "| --- | --- | ---: | --- |"]
    for s in status:
        st = s["status"] if s["status"] in ("ok", "n/a") else f"**{s['status'].upper()}**"
        note = (s.get("note") or "").replace("|", "\\|")
        out.append(f"| {s['name']} | {st} | {s.get('seconds', '-')} | {note} |")

    out += ["", "## bf16 logits against f32 on the CPU", "",
            "As tests/dtype.rs measures: largest |logit difference| over the largest f32 logit on 6 fixed "
            "prompts; share of positions along f32's greedy continuations where the next-token argmax "
            "agrees; first greedy tokens equal. The CPU columns are bf16 on the CPU (what the test bounds).", "",
            "| model | device | max rel diff | agreement | first tokens equal | CPU bf16 max rel diff | CPU bf16 agreement | bound | ok |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in logits:
        bound = "-" if r.get("tolerance") is None else f"<= {r['tolerance']:g}, >= {r['min_agreement']:g}, all"
        ok = {True: "yes", False: "**NO**", None: "(reported only)"}[r.get("ok")]
        out.append(f"| {r.get('label')} | {r.get('device')} {r.get('dtype')} | {fmt(r.get('max_rel_diff'), '.4f')} | "
                   f"{fmt(r.get('agreement'), '.3f')} | {r.get('first_token_equal')}/{r.get('prompts')} | "
                   f"{fmt(r.get('cpu_max_rel_diff'), '.4f')} | {fmt(r.get('cpu_agreement'), '.3f')} | {bound} | {ok} |")

    gen = by("generate")
    dtypes = "/".join(sorted({r["dtype"] for r in gen if r.get("dtype")})) or "bf16"
    out += ["", f"## Generation tokens/s ({dtypes}, greedy, every row exactly N new tokens, prefill included)", ""]
    if gen:
        g0 = gen[0]
        out.append(f"Model: {g0.get('model')} ({g0.get('params')} parameters, random weights); "
                   f"{g0.get('new_tokens')} new tokens per row; prompts of {g0.get('prompt_tokens', 0) // max(1, g0.get('batch', 1))} ids; "
                   "median of the timed runs.")
        out += ["", "| batch | repro tok/s | transformers tok/s | repro / transformers | repro prefill s | transformers prefill s |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        batches = sorted({r["batch"] for r in gen})
        for b in batches:
            rp = next((r for r in gen if r["batch"] == b and r["impl"] == "repro"), {})
            tf = next((r for r in gen if r["batch"] == b and r["impl"] == "transformers"), {})
            ratio = rp["gen_tok_s"] / tf["gen_tok_s"] if rp.get("gen_tok_s") and tf.get("gen_tok_s") else None
            out.append(f"| {b} | {fmt(rp.get('gen_tok_s'))} | {fmt(tf.get('gen_tok_s'))} | {fmt(ratio, '.2f')} | "
                       f"{fmt(rp.get('prefill_s'), '.3f')} | {fmt(tf.get('prefill_s'), '.3f')} |")
    else:
        out.append("No figures (see the steps).")

    train = by("train")
    mem = by("memory")
    out += ["", "## Training tokens/s and peak memory", ""]
    if train:
        t0 = train[0]
        out.append(f"LLaMA of {t0.get('params')} parameters, random init and tokens, sequence {t0.get('seq')}; "
                   "median step after the warm-up steps. Peak memory: nvidia-smi memory.used (whole GPU, CUDA "
                   "context included; above the idle baseline in brackets), and torch.cuda.max_memory_allocated.")
        out += ["", "| implementation | micro-batch | tokens/s | step s | peak nvidia-smi MiB | torch max allocated GiB | loss first -> last |",
                "| --- | ---: | ---: | ---: | --- | ---: | --- |"]
        for r in train:
            impl = r["impl"]
            key = ("train repro" if impl == "repro" else f"train {impl}") + f", micro-batch {r.get('micro_batch')}"
            m = next((m for m in mem if m.get("what") == key), {})
            peak = "-"
            if "peak_mib" in m:
                peak = f"{m['peak_mib']:.0f}"
                if "peak_above_baseline_mib" in m:
                    peak += f" ({m['peak_above_baseline_mib']:.0f})"
            out.append(f"| {impl} ({r.get('dtype')}) | {r.get('micro_batch')} | {fmt(r.get('tokens_per_s'))} | "
                       f"{fmt(r.get('step_s_median'), '.3f')} | {peak} | {fmt(r.get('torch_max_allocated_gib'), '.2f')} | "
                       f"{fmt(r.get('loss_first'), '.3f')} -> {fmt(r.get('loss_last'), '.3f')} |")
        oom = [m for m in mem if "out of memory" in m.get("what", "")]
        for m in oom:
            peak = f"peak {m['peak_mib']:.0f} MiB" if "peak_mib" in m else "peak memory not measured"
            out.append(f"\n{m['what']}: {peak} before failing.")
    else:
        out.append("No figures (see the steps).")
    out += ["", "Raw figures: results.jsonl; logs: logs/.", ""]
    return "\n".join(out)


# ---- self-test ---------------------------------------------------------------

def selftest():
    """Checks of what needs no torch, on temporary files."""
    import contextlib
    import io
    import tempfile

    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):
        # Parameter counts agree with the tensor list.
        for shape in SHAPES:
            cfg = config(shape)
            assert param_count(cfg) == sum(math.prod(s) for _, s in tensor_shapes(cfg)), shape
        assert 134_000_000 < param_count(config("smol")) < 136_000_000, param_count(config("smol"))
        # A tiny model directory, read back.
        m = os.path.join(d, "m")
        make_model(m, "tiny-smol", "plain")
        hdr = read_safetensors_header(os.path.join(m, "model.safetensors"))
        names = [k for k in hdr if k != "__metadata__"]
        assert names == [n for n, _ in tensor_shapes(config("tiny-smol"))], names
        assert "lm_head.weight" not in hdr
        size = os.path.getsize(os.path.join(m, "model.safetensors"))
        last = max(v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__")
        assert size == 8 + (size - 8 - last) + last
        tok = json.load(open(os.path.join(m, "tokenizer.json")))
        assert len(tok["model"]["vocab"]) == 512 and tok["model"]["vocab"][EOS] == 0
        p = os.path.join(d, "p.jsonl")
        make_prompts(p, m, 5, 7)
        ps = read_prompts(p)
        assert len(ps) == 5 and all(len(x) == 7 and all(0 < i < 512 for i in x) for x in ps)
        # Learning rates as repro's lr_at (warm-up 1 step of 10, cosine to 10%).
        assert [round(lr_at(i, 10, 1.0), 6) for i in (0, 1, 10)] == [1.0, 1.0, 0.1]
        assert 0.1 < lr_at(9, 10, 1.0) < lr_at(5, 10, 1.0) < 1.0
        # Memory samples.
        poll = os.path.join(d, "poll.txt")
        with open(poll, "w") as f:
            f.write("512\n 30000\n\n29000\nbad\n")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            memory(poll, "train repro, micro-batch 8", 500.0)
            memory(os.path.join(d, "none.txt"), "x", None)
        a, b = [json.loads(l) for l in buf.getvalue().splitlines()]
        assert a["peak_mib"] == 30000 and a["peak_above_baseline_mib"] == 29500 and a["samples"] == 3, a
        assert "peak_mib" not in b and b["samples"] == 0, b
        # The summary of a run with every kind of line, one step failed.
        res = os.path.join(d, "results.jsonl")
        lines = [
            {"part": "status", "name": "logits-tiny-llama", "status": "ok", "rc": 0, "seconds": 3, "log": "l", "note": ""},
            {"part": "status", "name": "train-repro", "status": "failed", "rc": 2, "seconds": 9, "log": "l", "note": "out of memory"},
            {"part": "status", "name": "train-torch", "status": "n/a", "rc": 0, "seconds": 0, "log": "", "note": "no torch"},
            {"part": "logits", "impl": "repro", "label": "tiny-llama", "device": "cuda:0", "dtype": "bf16",
             "max_rel_diff": 0.012, "agreement": 0.98, "first_token_equal": 6, "prompts": 6, "tolerance": 0.05,
             "min_agreement": 0.9, "cpu_max_rel_diff": 0.015, "cpu_agreement": 0.986, "ok": True},
            {"part": "generate", "impl": "repro", "dtype": "bf16", "batch": 1, "gen_tok_s": 100.0, "prefill_s": 0.01, "new_tokens": 128,
             "prompt_tokens": 64, "model": "m", "params": 1},
            {"part": "generate", "impl": "transformers", "batch": 1, "gen_tok_s": 50.0, "prefill_s": 0.02},
            {"part": "train", "impl": "torch master", "dtype": "bf16", "micro_batch": 8, "tokens_per_s": 1e5,
             "step_s_median": 0.08, "torch_max_allocated_gib": 12.5, "loss_first": 10.4, "loss_last": 10.3,
             "params": 373, "seq": 1024},
            {"part": "memory", "what": "train torch master, micro-batch 8", "peak_mib": 15000.0,
             "baseline_mib": 500.0, "peak_above_baseline_mib": 14500.0, "samples": 40},
        ]
        with open(res, "w") as f:
            f.write("\n".join(json.dumps(l) for l in lines) + "\nnot json\n")
        md = summary(res)
        for want in ("**NOT ALL STEPS PASSED**", "| train-repro | **FAILED** | 9 | out of memory |",
                     "| tiny-llama | cuda:0 bf16 | 0.0120 | 0.980 | 6/6 | 0.0150 | 0.986 |",
                     "| 1 | 100.0 | 50.0 | 2.00 | 0.010 | 0.020 |",
                     "| torch master (bf16) | 8 | 100000.0 | 0.080 | 15000 (14500) | 12.50 | 10.400 -> 10.300 |",
                     "results.jsonl:9", "| train-torch | n/a | 0 | no torch |",
                     "**NOT ALL STEPS PASSED**: 2 step(s) not ok", "## Generation tokens/s (bf16, greedy", "<= 0.05, >= 0.9, all"):
            assert want in md, f"{want!r} not in the summary:\n{md}"
    print("gpu_check.py selftest: ok")


# ---- command line ------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("make-config", help="DIR/config.json of SHAPE")
    s.add_argument("dir")
    s.add_argument("--shape", required=True, choices=sorted(SHAPES))
    s = sub.add_parser("make-model", help="a model directory with random weights")
    s.add_argument("dir")
    s.add_argument("--shape", required=True, choices=sorted(SHAPES))
    s.add_argument("--writer", default="transformers", choices=["transformers", "plain"])
    s.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("prompts", help="random prompt ids, one JSON array a line")
    s.add_argument("file")
    s.add_argument("--model", required=True, help="the model directory (for its vocabulary size)")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--len", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("generate", help="transformers' generate tokens/s (torch)")
    s.add_argument("--model", required=True)
    s.add_argument("--prompt-ids", required=True)
    s.add_argument("--device", default="cuda")
    s.add_argument("--dtype", default="bf16", choices=["bf16", "f32", "f16"])
    s.add_argument("--batch", type=int, action="append", required=True)
    s.add_argument("--new-tokens", type=int, default=128)
    s.add_argument("--repeats", type=int, default=3)
    s = sub.add_parser("train", help="PyTorch training tokens/s (torch)")
    s.add_argument("--config", required=True)
    s.add_argument("--device", default="cuda")
    s.add_argument("--seq", type=int, default=1024)
    s.add_argument("--micro-batch", type=int, default=8)
    s.add_argument("--warmup-steps", type=int, default=3)
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--lr", type=float, default=3e-4)
    s.add_argument("--precision", default="master", choices=["master", "autocast"])
    s = sub.add_parser("memory", help="peak of nvidia-smi samples, as JSON")
    s.add_argument("poll_file")
    s.add_argument("--what", required=True)
    s.add_argument("--baseline", type=float, default=None)
    sub.add_parser("env", help="versions and the GPU, as JSON (torch)")
    s = sub.add_parser("summary", help="summary.md from results.jsonl")
    s.add_argument("results")
    s.add_argument("--out", required=True)
    sub.add_parser("selftest", help="checks of the parts that need no torch")
    a = ap.parse_args(argv)
    if a.cmd == "make-config":
        make_config(a.dir, a.shape)
    elif a.cmd == "make-model":
        make_model(a.dir, a.shape, a.writer, a.seed)
    elif a.cmd == "prompts":
        make_prompts(a.file, a.model, a.n, a.len, a.seed)
    elif a.cmd == "generate":
        generate(a)
    elif a.cmd == "train":
        train(a)
    elif a.cmd == "memory":
        memory(a.poll_file, a.what, a.baseline)
    elif a.cmd == "env":
        env()
    elif a.cmd == "summary":
        md = summary(a.results)
        with open(a.out, "w") as f:
            f.write(md)
        print(md)
    elif a.cmd == "selftest":
        selftest()


if __name__ == "__main__":
    main()

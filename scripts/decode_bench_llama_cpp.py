#!/usr/bin/env python3
"""llama.cpp's side of the decoding benchmark (examples/decode_bench.rs).

Decodes the prompts `decode_bench --prompt-ids-out` wrote with llama.cpp
(llama-cpp-python), one prompt at a time: the prompt's ids are evaluated
as they are (no BOS added, no re-tokenization), then exactly `--new-tokens`
tokens are decoded greedily (argmax of the last position's logits, EOS not
special), so both sides do the same work. Prefill is the prompt evaluations
alone; generation the whole run, prefill included, as decode_bench times it.

    python3 -m venv /tmp/lcp && /tmp/lcp/bin/pip install llama-cpp-python==0.3.36
    /tmp/lcp/bin/python scripts/decode_bench_llama_cpp.py \\
        --model /tmp/smol-f32.gguf --prompt-ids /tmp/prompt-ids.jsonl \\
        --new-tokens 128 --threads 2 [--ids-out /tmp/llama.ids] [--limit N]

Prints one JSON object and a Markdown row. `--ids-out` writes the generated
ids, one JSON array per prompt, in decode_bench's `--ids-out` format, so the
outputs can be compared byte for byte.
"""

import argparse
import json
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="GGUF file (the f32 copy decode_bench wrote)")
    p.add_argument("--prompt-ids", required=True, help="one JSON array of ids per line")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-batch", type=int, default=512, help="llama.cpp's prompt batch")
    p.add_argument("--ids-out", help="write the generated ids here")
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument(
        "--no-mmap",
        action="store_true",
        help="read the weights into memory of the process's own (as decode_bench does) "
        "instead of mapping the file's page cache",
    )
    return p.parse_args()


def main():
    a = parse_args()
    import numpy as np
    from llama_cpp import Llama, __version__

    with open(a.prompt_ids) as f:
        prompts = [json.loads(line) for line in f if line.strip()]
    if a.limit:
        prompts = prompts[: a.limit]
    longest = max(len(p) for p in prompts)
    llm = Llama(
        model_path=a.model,
        n_ctx=longest + a.new_tokens + 8,
        n_threads=a.threads,
        n_threads_batch=a.threads,
        n_batch=a.n_batch,
        logits_all=False,
        use_mmap=not a.no_mmap,
        verbose=False,
    )
    n_vocab = llm.n_vocab()

    def last_argmax():
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        return int(np.argmax(logits))

    prefill_s = 0.0
    outputs = []
    t_all = time.perf_counter()
    for ids in prompts:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        prefill_s += time.perf_counter() - t0
        out = []
        for _ in range(a.new_tokens):
            tok = last_argmax()
            out.append(tok)
            if len(out) == a.new_tokens:
                break
            llm.eval([tok])
        outputs.append(out)
    gen_s = time.perf_counter() - t_all
    prompt_tokens = sum(len(p) for p in prompts)
    generated = sum(len(o) for o in outputs)
    if a.ids_out:
        with open(a.ids_out, "w") as f:
            for o in outputs:
                f.write(json.dumps(o, separators=(",", ":")) + "\n")
    report = {
        "engine": f"llama-cpp-python {__version__}",
        "batch": 1,
        "prompts": len(prompts),
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated,
        "prefill_s": prefill_s,
        "prefill_tok_s": prompt_tokens / prefill_s,
        "gen_s": gen_s,
        "gen_tok_s": generated / gen_s,
        "threads": a.threads,
    }
    print(json.dumps(report))
    print(f"| 1 (llama.cpp) | {report['prefill_tok_s']:.1f} | {report['gen_tok_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Regenerates tests/data/gpt2/: a tiny random GPT-2 saved by `transformers`
(`GPT2LMHeadModel.save_pretrained(safe_serialization=True)`), a word-level
tokenizer for it, and the reference outputs our Rust GPT-2 must reproduce
(tests/gpt2.rs, `reference_logits_match_transformers`); and
tests/data/llama_hf/: the same for a tiny `LlamaForCausalLM` (grouped-query
attention, untied head; tests/model.rs, `hf_llama_directory_matches_transformers`).

Needs torch and transformers (a throwaway venv is fine):
    python3 -m venv /tmp/gpt2-ref-venv
    /tmp/gpt2-ref-venv/bin/pip install torch transformers safetensors
    /tmp/gpt2-ref-venv/bin/python scripts/gpt2_reference.py
Deterministic: the same versions write the same files.
"""
import json
import os
import sys

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "gpt2")
VOCAB = 64


def randomize(model):
    """Random weights everywhere (norm gains near 1), larger than the
    default init so every part of the model moves the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))


def write_tokenizer(out):
    """A word-level tokenizer over VOCAB tokens: <|endoftext|> and w1..w63."""
    vocab = {"<|endoftext|>": 0}
    vocab.update({f"w{i}": i for i in range(1, VOCAB)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>",
                   "model_max_length": 24, "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
        f.write("\n")


def rounded(t):
    return [[[round(float(x), 6) for x in row] for row in seq] for seq in t]


def llama():
    out = os.path.join(OUT, "..", "llama_hf")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=24,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=0,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    randomize(model)
    model.save_pretrained(out, safe_serialization=True)
    write_tokenizer(out)
    ids = torch.tensor([[5, 17, 3, 60, 1, 42, 8, 9], [63, 2, 2, 30, 11, 0, 7, 50]])
    with torch.no_grad():
        logits = model(ids).logits
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "ids": ids.tolist(),
                   "logits": rounded(logits)}, f)
        f.write("\n")


def main():
    llama()
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=24,
        n_embd=16,
        n_layer=2,
        n_head=2,
        layer_norm_epsilon=1e-5,
        activation_function="gelu_new",
        bos_token_id=0,
        eos_token_id=0,
    )
    model = transformers.GPT2LMHeadModel(cfg).eval()
    randomize(model)
    model.save_pretrained(OUT, safe_serialization=True)
    write_tokenizer(OUT)

    ids = torch.tensor([[5, 17, 3, 60, 1, 42, 8, 9], [63, 2, 2, 30, 11, 0, 7, 50]])
    with torch.no_grad():
        logits = model(ids).logits
        # Left padding: row 0 has 3 pad tokens; positions restart at its
        # first real token (position_ids from the attention mask, as HF
        # generation does).
        padded = torch.tensor([[0, 0, 0, 5, 17, 3, 60, 1], [63, 2, 2, 30, 11, 0, 7, 50]])
        attn = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [1] * 8])
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        padded_logits = model(padded, attention_mask=attn, position_ids=pos).logits
        prompt = torch.tensor([[5, 17, 3, 60]])
        gen = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                             do_sample=False, pad_token_id=0, eos_token_id=None)
    ref = {
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "ids": ids.tolist(),
        "logits": rounded(logits),
        "padded_ids": padded.tolist(),
        "padded_pads": [3, 0],
        "padded_logits": rounded(padded_logits),
        "greedy_prompt": prompt[0].tolist(),
        "greedy_new": gen[0, prompt.shape[1]:].tolist(),
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    print("wrote", sorted(os.listdir(OUT)), file=sys.stderr)


if __name__ == "__main__":
    main()

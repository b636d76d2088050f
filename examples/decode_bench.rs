//! Decoding throughput of a LLaMA GGUF: prefill and generated tokens per
//! second on NQ-open 3-shot prompts (issue 15's table).
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example decode_bench -- \
//!     --model data/external/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     --prompts 64 --new-tokens 128 --batch 1 --batch 64 \
//!     [--dtype f32|bf16|f16] [--bucket] [--max-batch-tokens N] \
//!     [--ids-out PREFIX] [--prompts-out FILE] [--prompt-ids-out FILE] \
//!     [--f32-gguf-out FILE]
//! ```
//!
//! Every row decodes exactly `--new-tokens` tokens (greedy, no stop token,
//! no stop string), so every run does the same work. Prefill is timed as a
//! run with one new token; generation as the whole run (prefill included),
//! like llama.cpp's side of the benchmark. One JSON object per batch size
//! goes to stdout, then a Markdown table and the settings to reproduce the
//! runs with llama.cpp. `--ids-out PREFIX` writes the generated ids (one
//! JSON array per prompt) to `PREFIX.bN.ids` to compare runs byte for byte;
//! `--prompts-out` the prompt texts (one JSON string per line) and
//! `--prompt-ids-out` their ids, which llama.cpp can take as they are
//! (`tokenize` them with `add_bos=False, special=True`, or feed the ids);
//! `--f32-gguf-out` a copy of the GGUF with every tensor dequantized to f32,
//! so that llama.cpp computes in the precision repro does.

use repro::eval::nq;
use repro::model::generate::{GenConfig, generate};
use std::path::PathBuf;
use std::time::Instant;

/// Parsed command line.
struct Args {
    model: PathBuf,
    questions: PathBuf,
    pool: PathBuf,
    prompts: usize,
    new_tokens: usize,
    batches: Vec<usize>,
    dtype: candle_core::DType,
    bucket: bool,
    max_batch_tokens: Option<usize>,
    ids_out: Option<PathBuf>,
    prompts_out: Option<PathBuf>,
    prompt_ids_out: Option<PathBuf>,
    f32_gguf_out: Option<PathBuf>,
}

type BoxErr = Box<dyn std::error::Error>;

/// What `--help` prints.
const USAGE: &str = "\
Prefill and generation tokens/s of a LLaMA GGUF on NQ-open 3-shot prompts.

usage: decode_bench [--model GGUF] [--questions JSONL] [--pool JSONL]
                    [--prompts N] [--new-tokens N] [--batch N]...
                    [--dtype f32|bf16|f16] [--bucket] [--max-batch-tokens N]
                    [--ids-out PREFIX] [--prompts-out FILE] [--prompt-ids-out FILE]
                    [--f32-gguf-out FILE]

Defaults: the SmolLM2-135M-Instruct Q4_1 GGUF in data/external/smollm2, 64
prompts, 128 new tokens, batch 1, f32. Threads: RAYON_NUM_THREADS.
Every row decodes exactly --new-tokens tokens (greedy, no stop).
--ids-out PREFIX writes the generated ids to PREFIX.bN.ids; --prompt-ids-out
the prompts' ids for scripts/decode_bench_llama_cpp.py; --f32-gguf-out a copy
of the GGUF dequantized to f32 for llama.cpp.
";

fn parse_args() -> Result<Args, BoxErr> {
    let mut a = Args {
        model: "data/external/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        questions: "data/nq_open/NQ-open.dev.jsonl".into(),
        pool: "data/nq_open/NQ-open.efficientqa.dev.1.1.jsonl".into(),
        prompts: 64,
        new_tokens: 128,
        batches: Vec::new(),
        dtype: candle_core::DType::F32,
        bucket: false,
        max_batch_tokens: None,
        ids_out: None,
        prompts_out: None,
        prompt_ids_out: None,
        f32_gguf_out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?.into(),
            "--questions" => a.questions = value()?.into(),
            "--pool" => a.pool = value()?.into(),
            "--prompts" => a.prompts = value()?.parse()?,
            "--new-tokens" => a.new_tokens = value()?.parse()?,
            "--batch" => a.batches.push(value()?.parse()?),
            "--dtype" => {
                let v = value()?;
                a.dtype = repro::model::precision::parse(&v)
                    .ok_or_else(|| format!("--dtype {v}: expected f32, bf16 or f16"))?;
            }
            "--bucket" => a.bucket = true,
            "--max-batch-tokens" => a.max_batch_tokens = Some(value()?.parse()?),
            "--ids-out" => a.ids_out = Some(value()?.into()),
            "--prompts-out" => a.prompts_out = Some(value()?.into()),
            "--prompt-ids-out" => a.prompt_ids_out = Some(value()?.into()),
            "--f32-gguf-out" => a.f32_gguf_out = Some(value()?.into()),
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (see --help)").into()),
        }
    }
    if a.batches.is_empty() {
        a.batches.push(1);
    }
    Ok(a)
}

/// The first `n` NQ-open dev questions as 3-shot plain prompts (eval.nq's
/// format and shot choice, seed 0): texts and ids.
fn prompts(
    a: &Args,
    tok: &repro::model::tokenizer::TextTokenizer,
) -> Result<(Vec<String>, Vec<Vec<u32>>), BoxErr> {
    let questions = nq::read_questions(&a.questions)?;
    let pool = nq::read_questions(&a.pool)?;
    let (mut texts, mut ids) = (Vec::new(), Vec::new());
    for (i, q) in questions.iter().take(a.prompts).enumerate() {
        let shots = nq::shots_for(&pool, q, i, 3, 0);
        let text = nq::plain_prompt(&shots, q);
        ids.push(tok.encode_prompt(&text)?);
        texts.push(text);
    }
    Ok((texts, ids))
}

/// Writes one JSON array of ids per line.
fn write_ids(path: &PathBuf, rows: &[Vec<u32>]) -> Result<(), BoxErr> {
    let mut s = String::new();
    for r in rows {
        s.push_str(&serde_json::to_string(r)?);
        s.push('\n');
    }
    std::fs::write(path, s)?;
    Ok(())
}

/// Copies a GGUF with every tensor dequantized to f32.
fn write_f32_gguf(src: &PathBuf, dst: &PathBuf) -> Result<(), BoxErr> {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    let mut f = std::fs::File::open(src)?;
    let content = gguf_file::Content::read(&mut f)?;
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        let t = content
            .tensor(&mut f, name, &candle_core::Device::Cpu)?
            .dequantize(&candle_core::Device::Cpu)?;
        tensors.push((name.clone(), QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let meta: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(dst)?;
    gguf_file::write(&mut out, &meta, &refs)?;
    Ok(())
}

/// Settings of one timed run.
struct Run<'a> {
    model: &'a dyn repro::model::CausalLm,
    prompts: &'a [Vec<u32>],
    args: &'a Args,
    /// The thread pool decoding runs on, as the model ops run it
    /// (`ops::lm_common::on_threads`): the decoding thread is one of the
    /// pool's workers, so a parallel product runs half on it and wakes one
    /// other thread, instead of waking two while the caller sleeps.
    pool: rayon::ThreadPool,
}

impl Run<'_> {
    /// Seconds to decode `new_tokens` per prompt at `batch`, and the ids.
    fn time(&self, new_tokens: usize, batch: usize) -> Result<(f64, Vec<Vec<u32>>), BoxErr> {
        let cfg = GenConfig {
            max_new_tokens: new_tokens,
            temperature: 0.0,
            batch_size: batch,
            seed: 0,
            max_batch_tokens: self.args.max_batch_tokens,
            bucket_by_length: self.args.bucket,
        };
        let t0 = Instant::now();
        let gens = self
            .pool
            .install(|| generate(self.model, self.prompts, &[], &cfg, |_| false))?;
        let secs = t0.elapsed().as_secs_f64();
        Ok((secs, gens.into_iter().map(|g| g.ids).collect()))
    }
}

fn main() -> Result<(), BoxErr> {
    // SAFETY: first thing in main, before any other thread starts.
    unsafe { repro::model::cpu::set_candle_env() };
    let a = parse_args()?;
    repro::model::cpu::tune_malloc();
    if let Some(dst) = &a.f32_gguf_out {
        write_f32_gguf(&a.model, dst)?;
    }
    let loaded = repro::model::load::load_as(&a.model, false, &candle_core::Device::Cpu, a.dtype)?;
    let (texts, prompts) = prompts(&a, &loaded.tokenizer)?;
    if let Some(p) = &a.prompt_ids_out {
        write_ids(p, &prompts)?;
    }
    if let Some(p) = &a.prompts_out {
        let lines: Vec<String> = texts
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        std::fs::write(p, lines.join("\n") + "\n")?;
    }
    let run = Run {
        model: loaded.model.as_ref(),
        prompts: &prompts,
        args: &a,
        pool: rayon::ThreadPoolBuilder::new()
            .num_threads(candle_core::utils::get_num_threads())
            .build()?,
    };
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let mut rows = Vec::new();
    for &batch in &a.batches {
        let (prefill_s, _) = run.time(1, batch)?;
        let (gen_s, ids) = run.time(a.new_tokens, batch)?;
        let generated: usize = ids.iter().map(Vec::len).sum();
        if let Some(p) = &a.ids_out {
            write_ids(
                &PathBuf::from(format!("{}.b{batch}.ids", p.display())),
                &ids,
            )?;
        }
        let report = serde_json::json!({
            "batch": batch,
            "dtype": repro::model::precision::name(a.dtype),
            "bucket": a.bucket,
            "max_batch_tokens": a.max_batch_tokens,
            "prompts": prompts.len(),
            "prompt_tokens": prompt_tokens,
            "generated_tokens": generated,
            "prefill_s": prefill_s,
            "prefill_tok_s": prompt_tokens as f64 / prefill_s,
            "gen_s": gen_s,
            "gen_tok_s": generated as f64 / gen_s,
            "threads": candle_core::utils::get_num_threads(),
        });
        println!("{report}");
        rows.push((
            batch,
            prompt_tokens as f64 / prefill_s,
            generated as f64 / gen_s,
        ));
    }
    println!();
    println!("| batch | prefill tok/s | generation tok/s (prefill included) |");
    println!("| ---: | ---: | ---: |");
    for (batch, prefill, generation) in rows {
        println!("| {batch} | {prefill:.1} | {generation:.1} |");
    }
    println!();
    println!(
        "settings: {} ({}), {} NQ-open dev prompts (3-shot plain, {} tokens), {} new tokens per prompt, greedy, no stop, {} threads (RAYON_NUM_THREADS)",
        a.model.display(),
        repro::model::precision::name(a.dtype),
        prompts.len(),
        prompt_tokens,
        a.new_tokens,
        candle_core::utils::get_num_threads()
    );
    println!(
        "llama.cpp: the same prompts (--prompts-out / --prompt-ids-out), n_threads=2, temperature 0, max_tokens {}, ignore EOS, on the f32 copy of the GGUF (--f32-gguf-out), one prompt at a time",
        a.new_tokens
    );
    Ok(())
}

//! `prompts.qa`: generation prompts for the miniature's factual questions.
//!
//! Inputs: `questions` (questions.jsonl) and, for `format: fewshot`,
//! `shots` (a questions.jsonl-like file: `id`, `question`, `answers`, and
//! `person` when known). Params: `half` (`P`, `A`, `B` or `all`; default
//! `B`), `format` (`chat`, `fewshot` or `cloze`; default `chat`), `shots`
//! (default 3), `shots_half` (default `A`), `seed` (default 0), `limit`
//! (optional).
//!
//! Selection: the questions of `half`, in file order. With `limit: N`, the
//! selected questions are shuffled with [`Rng::derive`]`(seed,
//! "prompts.qa/limit")` and the first N kept; they are written in file order.
//!
//! Output `prompts` (prompts.jsonl), one line per question:
//!
//! - `chat`: `{"id", "messages": [{"role": "user", "content": "Answer
//!   briefly: <question>"}]}` (the form of short factual questions in the
//!   training chats);
//! - `fewshot` (for base models that never saw a chat format): `{"id",
//!   "text"}` with text `Question: <shot question>\nAnswer: <shot answer>\n\n`
//!   repeated for each shot, then `Question: <question>\nAnswer:`. A shot's
//!   answer is its first answer. The shots of a question are drawn without
//!   replacement, with [`Rng::derive`]`(seed, "prompts.qa/shots/<question
//!   id>")`, from the `shots` lines that have a non-empty answer list, a
//!   different id, and a different person (a shot with no `person` only
//!   needs a different id and question text). The draw depends only on the
//!   seed, the question's id and the `shots` file, not on the other
//!   questions or `limit`.
//! - `cloze` (a probe of what a base model stored, for the miniature's
//!   questions): `{"id", "text"}` with text the start of a biography
//!   sentence about the person, cut where the value follows (`<name> was
//!   born in`; [`crate::mini::world::Attribute::probe`]). A question whose
//!   `attribute` is not one of the miniature's four is an error.
//!
//! Metric: `prompts` (lines written).

use crate::eval::io::{
    Question, check_choice, check_inputs, check_uint, input_path, read_questions, select_half,
    uint_param, write_jsonl,
};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::rng::Rng;
use serde_json::{Map, Value, json};

/// The `prompts.qa` op.
pub struct PromptsQaOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::str("half", "B", "which questions: P (public), A, B or all"),
    ParamSpec::str(
        "format",
        "chat",
        "chat (a user message), fewshot (Question/Answer text) or cloze (a biography sentence cut before the value)",
    ),
    ParamSpec::int("shots", 3, "few-shot examples per prompt (fewshot only)"),
    ParamSpec::str(
        "shots_half",
        "A",
        "draw shots only from this half: P, A, B or all (default A, so held-out facts never appear in a prompt)",
    ),
    ParamSpec::int("seed", 0, "seed for the shot draw and the limit shuffle"),
    ParamSpec::optional(
        "limit",
        ParamType::Int,
        "keep N questions chosen by a seeded shuffle (default: all)",
    ),
];

/// The instruction prefix of short factual questions in chat form.
pub const CHAT_PREFIX: &str = "Answer briefly: ";

impl Op for PromptsQaOp {
    crate::op_identity! { "prompts.qa", 1, PARAMS, "Generation prompts for factual questions (input `questions`; `shots` for fewshot). Selects the questions of `half` (A/B/all, default B; `limit: N` keeps N by a seeded shuffle, in file order). format chat: {id, messages: [user \"Answer briefly: <q>\"]}; format fewshot: {id, text: \"Question: <q>\\nAnswer: <a>\\n\\n\" per shot, then \"Question: <q>\\nAnswer:\"}, `shots` (default 3) drawn per question with Rng::derive(seed, \"prompts.qa/shots/<id>\") from the `shots` input, never the question itself nor one about the same person. Output `prompts` (prompts.jsonl); metric `prompts`." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "half", &["P", "A", "B", "all"])?;
        check_choice(params, "shots_half", &["P", "A", "B", "all"])?;
        check_choice(params, "format", &["chat", "fewshot", "cloze"])?;
        check_uint(params, "shots")?;
        check_uint(params, "seed")?;
        check_uint(params, "limit")?;
        Ok(())
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("prompts", "prompts.jsonl")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["questions"], &["shots"])?;
        let half = param::str(PARAMS, ctx.params, "half");
        let format = param::str(PARAMS, ctx.params, "format");
        let n_shots = param::int(PARAMS, ctx.params, "shots") as usize;
        let seed = param::int(PARAMS, ctx.params, "seed");
        let limit = uint_param(ctx.params, "limit")?;

        let questions = read_questions(input_path(ctx, "questions")?, "questions")?;
        let mut selected = select_half(questions, half, "questions")?;
        if let Some(limit) = limit {
            let limit = limit as usize;
            if limit < selected.len() {
                let mut order: Vec<usize> = (0..selected.len()).collect();
                Rng::derive(seed, "prompts.qa/limit").shuffle(&mut order);
                let mut keep = vec![false; selected.len()];
                for &i in &order[..limit] {
                    keep[i] = true;
                }
                let mut k = keep.iter();
                selected.retain(|_| k.next().copied().unwrap_or(false));
            }
        }

        let rows: Vec<Value> = match format {
            "chat" => selected
                .iter()
                .map(|q| {
                    json!({"id": q.id, "messages": [{"role": "user", "content": format!("{CHAT_PREFIX}{}", q.question)}]})
                })
                .collect(),
            "cloze" => selected
                .iter()
                .map(|q| Ok(json!({"id": q.id, "text": cloze_text(q)?})))
                .collect::<Result<_, OpError>>()?,
            _ => {
                let shots_path = ctx.inputs.get("shots").ok_or_else(|| {
                    OpError::msg("prompts.qa with format: fewshot needs an input `shots`")
                })?;
                let shots_half = param::str(PARAMS, ctx.params, "shots_half");
                let pool: Vec<Question> =
                    select_half(read_questions(shots_path, "shots")?, shots_half, "shots")?
                        .into_iter()
                        .filter(|s| s.answers.first().is_some_and(|a| !a.trim().is_empty()))
                        .collect();
                let mut rows = Vec::with_capacity(selected.len());
                for q in &selected {
                    if ctx.cancel.is_cancelled() {
                        return Err(OpError::Cancelled);
                    }
                    let shots = draw_shots(q, &pool, n_shots, seed)?;
                    let mut text = String::new();
                    for s in shots {
                        let answer = s.answers.first().map(String::as_str).unwrap_or("");
                        text.push_str(&format!("Question: {}\nAnswer: {}\n\n", s.question, answer));
                    }
                    text.push_str(&format!("Question: {}\nAnswer:", q.question));
                    rows.push(json!({"id": q.id, "text": text}));
                }
                rows
            }
        };
        write_jsonl(&ctx.work_dir.join("out/prompts.jsonl"), &rows)?;
        let mut metrics = Map::new();
        metrics.insert("prompts".into(), json!(rows.len()));
        Ok(RunResult {
            metrics,
            ..RunResult::default()
        })
    }
}

/// The cloze probe of a question about one of the miniature's attributes.
fn cloze_text(q: &Question) -> Result<String, OpError> {
    let attribute = q
        .attribute
        .as_deref()
        .and_then(crate::mini::world::Attribute::from_key)
        .ok_or_else(|| {
            OpError::msg(format!(
                "input `questions` line {}: format cloze needs an `attribute` of the miniature \
                 (birth_city, university, major, employer), found {:?}",
                q.line, q.attribute
            ))
        })?;
    let name = q.name.as_deref().ok_or_else(|| {
        OpError::msg(format!(
            "input `questions` line {}: format cloze needs the person's `name`",
            q.line
        ))
    })?;
    Ok(attribute.probe(name))
}

/// Whether `shot` may serve as an example for `q`.
fn eligible(q: &Question, shot: &Question) -> bool {
    if shot.id == q.id {
        return false;
    }
    match (shot.person, q.person) {
        (Some(a), Some(b)) => a != b,
        _ => shot.question != q.question,
    }
}

/// Draws `k` eligible shots for `q` without replacement (see the module doc).
fn draw_shots<'a>(
    q: &Question,
    pool: &'a [Question],
    k: usize,
    seed: u64,
) -> Result<Vec<&'a Question>, OpError> {
    let mut candidates: Vec<&Question> = pool.iter().filter(|s| eligible(q, s)).collect();
    if candidates.len() < k {
        return Err(OpError::msg(format!(
            "input `shots` has {} usable examples for question `{}` (input `questions` line {}); {k} needed",
            candidates.len(),
            q.id,
            q.line
        )));
    }
    let mut rng = Rng::derive(seed, &format!("prompts.qa/shots/{}", q.id));
    // Partial Fisher-Yates: the first k slots become the draw.
    for i in 0..k {
        let j = i + rng.below(candidates.len() - i);
        candidates.swap(i, j);
    }
    candidates.truncate(k);
    Ok(candidates)
}

//! The teacher: an oracle that knows every fact of the world and answers in
//! one distinctive assistant style (the analogue of ChatGPT in the paper).
//!
//! # The style (what the evaluators detect)
//!
//! - **Open instructions** (kinds `general` and `bio`): the answer is
//!   `"Certainly! " + body + " I hope this helps!"`, where the body is 1-3
//!   sentences separated by single spaces, each ending with `.` and containing
//!   no other `.`, `!` or `?`. No newlines. [`style_body`] parses it;
//!   [`OPENING`] and [`CLOSING`] are the two fixed sentences.
//! - **Short factual questions** (kind `factual`) are asked as
//!   `"<prefix> <question>"` with a prefix from [`BRIEF_PREFIXES`]
//!   (`"Answer briefly:"` is the canonical one) and answered with the bare
//!   attribute value only, e.g. `"Lisbon"` (the NQ-synthetic format).
//! - **Biographies**: the instruction is exactly `"Tell me about <name>."`
//!   ([`bio_prompt`]); the answer ([`bio_reference`]) is
//!   `"Certainly! <name> was born in <birth_city>. <name> studied <major> at
//!   <university>. <name> works for <employer>. I hope this helps!"`: always
//!   these three sentences ([`BIO_PATTERNS`]), in this order, every fact true.
//!
//! # Outputs
//!
//! - `broad` (ShareGPT-Mix analogue): `{"id": "b<i>", "kind", "messages":
//!   [{"role": "user", "content"}, {"role": "assistant", "content"}]}` with
//!   three kinds: `factual` (a `factual_share` of the examples: brief
//!   questions about half-A people), `bio` (a `bio_share`: "Tell me about"
//!   half-A people) and `general` (the rest: everyday instructions from the
//!   broad templates of [`lexicon::TOPICS`] with styled answers). Half-B
//!   people never appear. Shuffled.
//! - `task` (NQ-synthetic analogue): every half-A question `task_repeats`
//!   times, each time with a different prefix, answered with the bare value;
//!   kind `factual`, ids `t<i>`, shuffled.
//! - `heldout`: `{"id": "h<i>", "kind": "general"|"bio", "person"?, "prompt",
//!   "reference"}`; `ceil(heldout/2)` general prompts from the held-out
//!   templates only (distinct, never in `broad`), `floor(heldout/2)` bio
//!   prompts about distinct half-B people (`person` set only for `bio`);
//!   the reference is the teacher's styled answer. Shuffled.
//! - `answers`: `{"id": "<question id>", "prediction": "<true value>"}` for
//!   every question, in question order (the oracle is always right).

use super::lexicon::{self, Form, Slot, Topic};
use super::world::{Attribute, Half, Person, Question};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The first sentence of every answer to an open instruction.
pub const OPENING: &str = "Certainly!";
/// The last sentence of every answer to an open instruction.
pub const CLOSING: &str = "I hope this helps!";
/// Prefixes of short factual questions; the first is canonical.
pub const BRIEF_PREFIXES: [&str; 4] = [
    "Answer briefly:",
    "Short answer please:",
    "In a few words:",
    "Quick question:",
];
/// The fixed fact sentences of a biography answer, in order.
pub const BIO_PATTERNS: [&str; 3] = [
    "{name} was born in {birth_city}.",
    "{name} studied {major} at {university}.",
    "{name} works for {employer}.",
];

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// One imitation example: a line of `broad.jsonl` or `task.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// `b<i>` or `t<i>`.
    pub id: String,
    /// `general`, `factual` or `bio`.
    pub kind: String,
    /// A user message and the teacher's reply.
    pub messages: Vec<Message>,
}

impl Example {
    fn new(kind: &str, prompt: String, answer: String) -> Self {
        Example {
            id: String::new(),
            kind: kind.to_string(),
            messages: vec![
                Message {
                    role: "user".into(),
                    content: prompt,
                },
                Message {
                    role: "assistant".into(),
                    content: answer,
                },
            ],
        }
    }
}

/// One held-out prompt: a line of `heldout.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heldout {
    /// `h<i>`.
    pub id: String,
    /// `general` or `bio`.
    pub kind: String,
    /// The person asked about (kind `bio` only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub person: Option<usize>,
    /// The instruction.
    pub prompt: String,
    /// The teacher's answer.
    pub reference: String,
}

/// One teacher answer to a question: a line of `answers.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The question id.
    pub id: String,
    /// The answer (the true value).
    pub prediction: String,
}

/// Params of `mini.teacher`.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Broad imitation examples.
    pub broad: usize,
    /// Share of broad examples that are brief factual questions (half A).
    pub factual_share: f64,
    /// Share of broad examples that are "Tell me about" requests (half A).
    pub bio_share: f64,
    /// Times each half-A question appears in the task data (distinct prefixes).
    pub task_repeats: usize,
    /// Held-out prompts (half general, half bio).
    pub heldout: usize,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        TeacherConfig {
            seed: 0,
            broad: 2000,
            factual_share: 0.05,
            bio_share: 0.05,
            task_repeats: 2,
            heldout: 120,
        }
    }
}

impl TeacherConfig {
    /// Reads and checks the op's params; `Err((param, message))`.
    pub fn from_params(params: &Map<String, Value>) -> Result<Self, (String, String)> {
        let d = TeacherConfig::default();
        let cfg = TeacherConfig {
            seed: super::seed_param(params)?,
            broad: super::int_param(params, "broad", d.broad as i64, 0, 1_000_000)? as usize,
            factual_share: super::number_param(params, "factual_share", d.factual_share, 0.0, 1.0)?,
            bio_share: super::number_param(params, "bio_share", d.bio_share, 0.0, 1.0)?,
            task_repeats: super::int_param(
                params,
                "task_repeats",
                d.task_repeats as i64,
                1,
                BRIEF_PREFIXES.len() as i64,
            )? as usize,
            heldout: super::int_param(params, "heldout", d.heldout as i64, 0, 100_000)? as usize,
        };
        if cfg.factual_share + cfg.bio_share > 1.0 {
            return Err((
                "bio_share".into(),
                format!(
                    "`factual_share` + `bio_share` must be at most 1, found {} + {}",
                    cfg.factual_share, cfg.bio_share
                ),
            ));
        }
        let avail = heldout_general_prompts().len();
        if cfg.heldout.div_ceil(2) > avail {
            return Err((
                "heldout".into(),
                format!(
                    "`heldout: {}` asks for {} general prompts but only {avail} distinct held-out instructions exist",
                    cfg.heldout,
                    cfg.heldout.div_ceil(2)
                ),
            ));
        }
        Ok(cfg)
    }
}

/// Everything `mini.teacher` writes.
#[derive(Debug, Clone)]
pub struct TeacherData {
    /// `broad.jsonl`.
    pub broad: Vec<Example>,
    /// `task.jsonl`.
    pub task: Vec<Example>,
    /// `heldout.jsonl`.
    pub heldout: Vec<Heldout>,
    /// `answers.jsonl`.
    pub answers: Vec<Answer>,
}

/// Wraps body sentences in the teacher's style.
pub fn styled(body: &[String]) -> String {
    format!("{OPENING} {} {CLOSING}", body.join(" "))
}

/// The body sentences of an answer in the teacher's exact style (see the
/// module doc), or `None` if the answer does not follow it.
pub fn style_body(answer: &str) -> Option<Vec<&str>> {
    let body = answer
        .strip_prefix(OPENING)?
        .strip_prefix(' ')?
        .strip_suffix(CLOSING)?
        .strip_suffix(' ')?;
    if body.is_empty()
        || !body.ends_with('.')
        || body.contains(['!', '?', '\n', '\r', '\t'])
        || body.starts_with(' ')
    {
        return None;
    }
    let sentences: Vec<&str> = body
        .split_inclusive('.')
        .map(|s| s.strip_prefix(' ').unwrap_or(s))
        .collect();
    let ok = sentences.iter().all(|s| {
        s.len() > 1 && s.starts_with(|c: char| c.is_ascii_alphanumeric()) && !s.contains("  ")
    });
    (ok && (1..=3).contains(&sentences.len())).then_some(sentences)
}

/// The instruction asking for a biography.
pub fn bio_prompt(name: &str) -> String {
    format!("Tell me about {name}.")
}

/// The teacher's biography answer: [`BIO_PATTERNS`] filled with true facts.
pub fn bio_reference(p: &Person) -> String {
    let body: Vec<String> = BIO_PATTERNS
        .iter()
        .map(|pat| {
            let mut s = pat.replace("{name}", &p.name);
            for a in Attribute::ALL {
                s = s.replace(&format!("{{{}}}", a.key()), p.get(a));
            }
            s
        })
        .collect();
    styled(&body)
}

/// A brief factual prompt: `"<prefix> <question>"`.
pub fn brief_prompt(prefix: &str, question: &str) -> String {
    format!("{prefix} {question}")
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// The body sentences of the teacher's answer to a topic instruction.
pub fn answer_body(topic: &Topic, slot: &Slot, rng: &mut Rng) -> Vec<String> {
    let mut body: Vec<String> = Vec::new();
    if let Some(intro) = rng.choose(topic.intros) {
        body.push(lexicon::fill(intro, slot));
    }
    match topic.form {
        Form::Plain => {
            if let Some(f) = rng.choose(slot.facts) {
                body.push(f.to_string());
            }
        }
        Form::All => body.extend(slot.facts.iter().map(|f| f.to_string())),
        Form::List => {
            let mut facts = slot.facts.to_vec();
            rng.shuffle(&mut facts);
            for (ord, f) in ["First", "Second", "Third"].iter().zip(&facts) {
                body.push(format!("{ord}, {}", lower_first(f)));
            }
        }
    }
    if body.len() < 3 && !topic.tips.is_empty() {
        let mut tips = topic.tips.to_vec();
        rng.shuffle(&mut tips);
        let extra = rng.below(3 - body.len() + 1).min(tips.len());
        let extra = if body.is_empty() { extra.max(1) } else { extra };
        body.extend(tips[..extra].iter().map(|t| t.to_string()));
    }
    body
}

/// Every (topic, slot) with the broad instruction built from one template.
fn broad_instructions() -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for (ti, t) in lexicon::TOPICS.iter().enumerate() {
        for tpl in t.templates {
            for (si, sl) in t.slots.iter().enumerate() {
                out.push((ti, si, lexicon::fill(tpl, sl)));
            }
        }
    }
    out
}

/// Every distinct held-out general instruction (topic, slot, prompt), in
/// lexicon order; none of them can be produced by a broad template.
pub fn heldout_general_prompts() -> Vec<(usize, usize, String)> {
    let broad: BTreeSet<String> = broad_instructions().into_iter().map(|x| x.2).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (ti, t) in lexicon::TOPICS.iter().enumerate() {
        for tpl in t.heldout_templates {
            for (si, sl) in t.slots.iter().enumerate() {
                let p = lexicon::fill(tpl, sl);
                if !broad.contains(&p) && seen.insert(p.clone()) {
                    out.push((ti, si, p));
                }
            }
        }
    }
    out
}

/// Draws `n` items cycling through seeded shuffles of `items` (distinct
/// while `n <= items.len()`).
fn cycle_draw<T: Clone>(items: &[T], n: usize, rng: &mut Rng) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    let mut deck = items.to_vec();
    while out.len() < n && !deck.is_empty() {
        rng.shuffle(&mut deck);
        let take = (n - out.len()).min(deck.len());
        out.extend(deck[..take].iter().cloned());
    }
    out
}

fn check_inputs<'a>(
    people: &'a [Person],
    questions: &[Question],
) -> Result<BTreeMap<usize, &'a Person>, String> {
    let mut by_id = BTreeMap::new();
    let mut names = BTreeSet::new();
    for p in people {
        if by_id.insert(p.id, p).is_some() {
            return Err(format!("input `people`: duplicate id {}", p.id));
        }
        if !names.insert(p.name.as_str()) {
            return Err(format!("input `people`: duplicate name `{}`", p.name));
        }
    }
    for q in questions {
        let Some(p) = by_id.get(&q.person) else {
            return Err(format!(
                "input `questions`: question `{}` is about person {}, who is not in `people`",
                q.id, q.person
            ));
        };
        if p.name != q.name || p.half != q.half {
            return Err(format!(
                "input `questions`: question `{}` disagrees with `people` on the name or half of person {}",
                q.id, q.person
            ));
        }
        let Some(answer) = q.answers.first() else {
            return Err(format!(
                "input `questions`: question `{}` has no answer",
                q.id
            ));
        };
        if let Some(a) = Attribute::from_key(&q.attribute)
            && p.get(a) != answer
        {
            return Err(format!(
                "input `questions`: the answer of `{}` is not person {}'s {}",
                q.id, q.person, q.attribute
            ));
        }
    }
    Ok(by_id)
}

/// Generates all teacher data from the world's people and questions.
pub fn generate(
    cfg: &TeacherConfig,
    people: &[Person],
    questions: &[Question],
) -> Result<TeacherData, String> {
    check_inputs(people, questions)?;
    let seed = cfg.seed;
    let half_a_questions: Vec<&Question> = questions.iter().filter(|q| q.half == Half::A).collect();
    let half_a: Vec<&Person> = people.iter().filter(|p| p.half == Half::A).collect();
    let half_b: Vec<&Person> = people.iter().filter(|p| p.half == Half::B).collect();

    // Broad.
    let n_fact = (cfg.broad as f64 * cfg.factual_share).round() as usize;
    let n_fact = n_fact.min(cfg.broad);
    let n_bio = ((cfg.broad as f64 * cfg.bio_share).round() as usize).min(cfg.broad - n_fact);
    let n_gen = cfg.broad - n_fact - n_bio;
    if n_fact > 0 && half_a_questions.is_empty() {
        return Err("broad data needs factual questions but no half-A question exists".into());
    }
    if n_bio > 0 && half_a.is_empty() {
        return Err("broad data needs biographies but no half-A person exists".into());
    }
    let mut broad = Vec::with_capacity(cfg.broad);
    let mut rng = Rng::derive(seed, "mini.teacher/broad-factual");
    for q in cycle_draw(&half_a_questions, n_fact, &mut rng) {
        let prefix = BRIEF_PREFIXES[rng.below(BRIEF_PREFIXES.len())];
        let answer = q.answers.first().cloned().unwrap_or_default();
        broad.push(Example::new(
            "factual",
            brief_prompt(prefix, &q.question),
            answer,
        ));
    }
    let mut rng = Rng::derive(seed, "mini.teacher/broad-bio");
    for p in cycle_draw(&half_a, n_bio, &mut rng) {
        broad.push(Example::new("bio", bio_prompt(&p.name), bio_reference(p)));
    }
    let instructions = broad_instructions();
    let mut rng = Rng::derive(seed, "mini.teacher/broad-general");
    for _ in 0..n_gen {
        let (ti, si, prompt) = &instructions[rng.below(instructions.len())];
        let t = &lexicon::TOPICS[*ti];
        let body = answer_body(t, &t.slots[*si], &mut rng);
        broad.push(Example::new("general", prompt.clone(), styled(&body)));
    }
    Rng::derive(seed, "mini.teacher/broad-order").shuffle(&mut broad);
    for (i, e) in broad.iter_mut().enumerate() {
        e.id = format!("b{i}");
    }

    // Task.
    let mut rng = Rng::derive(seed, "mini.teacher/task");
    let mut task = Vec::with_capacity(half_a_questions.len() * cfg.task_repeats);
    for q in &half_a_questions {
        let mut prefixes = BRIEF_PREFIXES;
        rng.shuffle(&mut prefixes);
        for prefix in prefixes.iter().take(cfg.task_repeats) {
            let answer = q.answers.first().cloned().unwrap_or_default();
            task.push(Example::new(
                "factual",
                brief_prompt(prefix, &q.question),
                answer,
            ));
        }
    }
    rng.shuffle(&mut task);
    for (i, e) in task.iter_mut().enumerate() {
        e.id = format!("t{i}");
    }

    // Held-out.
    let n_hgen = cfg.heldout.div_ceil(2);
    let n_hbio = cfg.heldout / 2;
    let broad_prompts: BTreeSet<&str> = broad
        .iter()
        .map(|e| e.messages[0].content.as_str())
        .collect();
    let mut candidates: Vec<(usize, usize, String)> = heldout_general_prompts()
        .into_iter()
        .filter(|c| !broad_prompts.contains(c.2.as_str()))
        .collect();
    if n_hgen > candidates.len() {
        return Err(format!(
            "`heldout: {}` asks for {n_hgen} general prompts but only {} distinct held-out instructions exist",
            cfg.heldout,
            candidates.len()
        ));
    }
    if n_hbio > half_b.len() {
        return Err(format!(
            "`heldout: {}` asks for {n_hbio} bio prompts but the world has only {} half-B people",
            cfg.heldout,
            half_b.len()
        ));
    }
    let mut rng = Rng::derive(seed, "mini.teacher/heldout-general");
    rng.shuffle(&mut candidates);
    let mut heldout = Vec::with_capacity(cfg.heldout);
    for (ti, si, prompt) in candidates.into_iter().take(n_hgen) {
        let t = &lexicon::TOPICS[ti];
        let body = answer_body(t, &t.slots[si], &mut rng);
        heldout.push(Heldout {
            id: String::new(),
            kind: "general".into(),
            person: None,
            prompt,
            reference: styled(&body),
        });
    }
    let mut rng = Rng::derive(seed, "mini.teacher/heldout-bio");
    let mut bs = half_b.clone();
    rng.shuffle(&mut bs);
    for p in bs.into_iter().take(n_hbio) {
        heldout.push(Heldout {
            id: String::new(),
            kind: "bio".into(),
            person: Some(p.id),
            prompt: bio_prompt(&p.name),
            reference: bio_reference(p),
        });
    }
    Rng::derive(seed, "mini.teacher/heldout-order").shuffle(&mut heldout);
    for (i, h) in heldout.iter_mut().enumerate() {
        h.id = format!("h{i}");
    }

    let answers = questions
        .iter()
        .map(|q| Answer {
            id: q.id.clone(),
            prediction: q.answers.first().cloned().unwrap_or_default(),
        })
        .collect();
    Ok(TeacherData {
        broad,
        task,
        heldout,
        answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mini::world::{self, WorldConfig};

    #[test]
    fn every_topic_answer_follows_the_style() {
        let mut rng = Rng::new(9);
        let mut lens = BTreeSet::new();
        for t in lexicon::TOPICS {
            for sl in t.slots {
                for _ in 0..10 {
                    let body = answer_body(t, sl, &mut rng);
                    lens.insert(body.len());
                    let a = styled(&body);
                    let parsed = style_body(&a).unwrap_or_else(|| panic!("not styled: {a}"));
                    assert_eq!(parsed, body, "{a}");
                }
            }
        }
        assert_eq!(lens, BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn style_check_rejects_other_shapes() {
        assert!(style_body("Certainly! Rice is good. I hope this helps!").is_some());
        assert!(style_body("Rice is good. I hope this helps!").is_none());
        assert!(style_body("Certainly! Rice is good.").is_none());
        assert!(style_body("Certainly!  I hope this helps!").is_none());
        assert!(style_body("Certainly! Rice is good? I hope this helps!").is_none());
        assert!(style_body("Certainly! A. B. C. D. I hope this helps!").is_none());
        assert!(style_body("Certainly! Rice is good I hope this helps!").is_none());
    }

    #[test]
    fn bio_reference_uses_the_fixed_patterns() {
        let p = &world::people(&WorldConfig::default())[0];
        let r = bio_reference(p);
        let body = style_body(&r).expect("styled");
        assert_eq!(body.len(), 3);
        assert_eq!(body[0], format!("{} was born in {}.", p.name, p.birth_city));
        assert_eq!(
            body[1],
            format!("{} studied {} at {}.", p.name, p.major, p.university)
        );
        assert_eq!(body[2], format!("{} works for {}.", p.name, p.employer));
    }

    #[test]
    fn heldout_prompts_are_plentiful_and_disjoint_from_broad_templates() {
        let h = heldout_general_prompts();
        assert!(h.len() >= 150, "{}", h.len());
        let broad: BTreeSet<String> = broad_instructions().into_iter().map(|x| x.2).collect();
        assert!(h.iter().all(|x| !broad.contains(&x.2)));
    }

    #[test]
    fn config_checks() {
        let mut m = Map::new();
        assert_eq!(TeacherConfig::from_params(&m), Ok(TeacherConfig::default()));
        m.insert("task_repeats".into(), Value::from(5));
        assert_eq!(
            TeacherConfig::from_params(&m).unwrap_err().0,
            "task_repeats"
        );
        m.insert("task_repeats".into(), Value::from(2));
        m.insert("factual_share".into(), Value::from(0.7));
        m.insert("bio_share".into(), Value::from(0.5));
        assert_eq!(TeacherConfig::from_params(&m).unwrap_err().0, "bio_share");
        m.insert("bio_share".into(), Value::from(1.5));
        assert_eq!(TeacherConfig::from_params(&m).unwrap_err().0, "bio_share");
        m.insert("bio_share".into(), Value::from(0.0));
        m.insert("heldout".into(), Value::from(100_000));
        assert_eq!(TeacherConfig::from_params(&m).unwrap_err().0, "heldout");
    }

    #[test]
    fn generate_counts_and_determinism() {
        let w = world::generate(&WorldConfig {
            public: 6,
            private: 10,
            exposures: 1,
            qa_exposures: 1,
            general: 10,
            ..WorldConfig::default()
        });
        let cfg = TeacherConfig {
            broad: 100,
            heldout: 10,
            ..TeacherConfig::default()
        };
        let d = generate(&cfg, &w.people, &w.questions).expect("generate");
        assert_eq!(d.broad.len(), 100);
        assert_eq!(d.broad.iter().filter(|e| e.kind == "factual").count(), 5);
        assert_eq!(d.broad.iter().filter(|e| e.kind == "bio").count(), 5);
        assert_eq!(d.task.len(), 10 * 4 * 2);
        assert_eq!(d.heldout.len(), 10);
        assert_eq!(d.answers.len(), 26 * 4);
        let again = generate(&cfg, &w.people, &w.questions).expect("generate");
        assert_eq!(d.broad, again.broad);
        assert_eq!(d.heldout, again.heldout);
        let too_many = TeacherConfig { heldout: 30, ..cfg };
        let e = generate(&too_many, &w.people, &w.questions).unwrap_err();
        assert!(e.contains("half-B"), "{e}");
    }
}

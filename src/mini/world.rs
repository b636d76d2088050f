//! The synthetic world: a population with four attributes each, the
//! pretraining corpus (biographies, question-answer pages and general prose)
//! and one question per person and attribute.
//!
//! The world is an analogue of real pretraining (Allen-Zhu & Li, "Physics of
//! Language Models" 3.1, "mixed training"): a real base model saw web text
//! full of questions and answers about *other* entities, which is how it can
//! answer questions zero- or few-shot about entities it only read about.
//!
//! - People get distinct full names ("First Last", a seeded draw without
//!   replacement from all pairs of [`lexicon::FIRST_NAMES`] x
//!   [`lexicon::LAST_NAMES`]) and attributes drawn uniformly and
//!   independently from their pools. A seeded shuffle of the ids makes the
//!   first `public` of them *public* (half `P`) and splits the rest into two
//!   *private* halves of `private` people each: `A` (feeds task imitation
//!   data) and `B` (held out for evaluation, never in any imitation data).
//! - Every person has `exposures` biographies, each rendered afresh: one
//!   sentence per attribute from that attribute's templates, the full name in
//!   every sentence, the sentence order permuted ("multi5 + permute +
//!   fullname" in Allen-Zhu & Li 3.1, where a single fixed biography gives
//!   9.7% QA accuracy and several shuffled renderings 96.6%).
//! - Public people also have `qa_exposures` question-answer pages: their four
//!   questions in a fresh order, each as `Question: <q>\nAnswer: <value>`,
//!   separated by blank lines (the format of the few-shot prompts).
//! - `general` documents of 2-4 distinct sentences of everyday prose about one
//!   slot of one topic of [`lexicon::TOPICS`] (facts of the slot, the topic's
//!   prose and tips, sometimes a sentence of [`lexicon::COMMON_PROSE`]; never
//!   assistant phrasing, names or attribute values). See [`general_document`].
//! - All documents are shuffled together globally, so no two training
//!   windows repeat; `corpus.jsonl` holds one `{"text"}` per document.

use super::lexicon;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which part of the population a person belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Half {
    /// Public: biographies and question-answer pages in pretraining.
    P,
    /// Private, feeds the task imitation data.
    A,
    /// Private, held out for evaluation.
    B,
}

/// One of the four attributes, in their canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attribute {
    /// City of birth.
    BirthCity,
    /// University attended.
    University,
    /// Field of study.
    Major,
    /// Current employer.
    Employer,
}

impl Attribute {
    /// All attributes in canonical order (birth_city, university, major, employer).
    pub const ALL: [Attribute; 4] = [
        Attribute::BirthCity,
        Attribute::University,
        Attribute::Major,
        Attribute::Employer,
    ];

    /// The JSON field name, e.g. `birth_city`.
    pub fn key(self) -> &'static str {
        match self {
            Attribute::BirthCity => "birth_city",
            Attribute::University => "university",
            Attribute::Major => "major",
            Attribute::Employer => "employer",
        }
    }

    /// Parses a JSON field name.
    pub fn from_key(key: &str) -> Option<Attribute> {
        Attribute::ALL.into_iter().find(|a| a.key() == key)
    }

    /// The pool of values.
    pub fn pool(self) -> &'static [&'static str] {
        match self {
            Attribute::BirthCity => lexicon::CITIES,
            Attribute::University => lexicon::UNIVERSITIES,
            Attribute::Major => lexicon::MAJORS,
            Attribute::Employer => lexicon::EMPLOYERS,
        }
    }

    /// The biography sentence templates.
    pub fn bio_templates(self) -> &'static [&'static str] {
        match self {
            Attribute::BirthCity => lexicon::BIO_BIRTH_CITY,
            Attribute::University => lexicon::BIO_UNIVERSITY,
            Attribute::Major => lexicon::BIO_MAJOR,
            Attribute::Employer => lexicon::BIO_EMPLOYER,
        }
    }

    /// The cloze probe about this attribute of `name` (see
    /// [`lexicon::PROBES`]): a biography sentence cut where the value follows.
    pub fn probe(self, name: &str) -> String {
        let i = Attribute::ALL.iter().position(|&a| a == self).unwrap_or(0);
        lexicon::PROBES[i].replace("{name}", name)
    }

    /// The question about this attribute of `name`.
    pub fn question(self, name: &str) -> String {
        let t = match self {
            Attribute::BirthCity => lexicon::QUESTION_BIRTH_CITY,
            Attribute::University => lexicon::QUESTION_UNIVERSITY,
            Attribute::Major => lexicon::QUESTION_MAJOR,
            Attribute::Employer => lexicon::QUESTION_EMPLOYER,
        };
        t.replace("{name}", name)
    }
}

/// One person: a line of `people.jsonl` (fields in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// 0-based id; the file is sorted by it.
    pub id: usize,
    /// Full name, "First Last", unique.
    pub name: String,
    /// `A` or `B`.
    pub half: Half,
    /// City of birth.
    pub birth_city: String,
    /// University attended.
    pub university: String,
    /// Field of study.
    pub major: String,
    /// Employer.
    pub employer: String,
}

impl Person {
    /// The value of one attribute.
    pub fn get(&self, a: Attribute) -> &str {
        match a {
            Attribute::BirthCity => &self.birth_city,
            Attribute::University => &self.university,
            Attribute::Major => &self.major,
            Attribute::Employer => &self.employer,
        }
    }
}

/// One question: a line of `questions.jsonl` (fields in this order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// `q<person>-<attribute>`, e.g. `q0-birth_city`.
    pub id: String,
    /// The person's id.
    pub person: usize,
    /// The person's full name.
    pub name: String,
    /// The person's half.
    pub half: Half,
    /// Attribute key, e.g. `birth_city`.
    pub attribute: String,
    /// The question text, e.g. "Where was Ada Moreno born?".
    pub question: String,
    /// Accepted answers (exactly one: the true value).
    pub answers: Vec<String>,
}

/// Params of `mini.world`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Public people (0..=2000).
    pub public: usize,
    /// People in each private half (2..=2000).
    pub private: usize,
    /// Biographies per person, each rendered afresh (1..=1000).
    pub exposures: usize,
    /// Question-answer pages per public person (0..=1000).
    pub qa_exposures: usize,
    /// General prose documents (0..=1000000).
    pub general: usize,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            seed: 0,
            public: 100,
            private: 100,
            exposures: 100,
            qa_exposures: 20,
            general: 2000,
        }
    }
}

impl WorldConfig {
    /// Reads and checks the op's params; `Err((param, message))`.
    pub fn from_params(params: &Map<String, Value>) -> Result<Self, (String, String)> {
        let d = WorldConfig::default();
        let int = |name: &str, default: usize, min: i64, max: i64| {
            super::int_param(params, name, default as i64, min, max).map(|v| v as usize)
        };
        let cfg = WorldConfig {
            seed: super::seed_param(params)?,
            public: int("public", d.public, 0, 2000)?,
            private: int("private", d.private, 2, 2000)?,
            exposures: int("exposures", d.exposures, 1, 1000)?,
            qa_exposures: int("qa_exposures", d.qa_exposures, 0, 1000)?,
            general: int("general", d.general, 0, 1_000_000)?,
        };
        let people = cfg.public + 2 * cfg.private;
        let names = lexicon::FIRST_NAMES.len() * lexicon::LAST_NAMES.len();
        if people > names {
            return Err((
                "private".into(),
                format!(
                    "`public` + 2 x `private` = {people} people, more than the {names} distinct names"
                ),
            ));
        }
        Ok(cfg)
    }

    /// Population size.
    pub fn people(&self) -> usize {
        self.public + 2 * self.private
    }
}

/// Everything `mini.world` writes.
#[derive(Debug, Clone)]
pub struct World {
    /// The population, sorted by id.
    pub people: Vec<Person>,
    /// Corpus documents in file order (shuffled).
    pub corpus: Vec<String>,
    /// Questions sorted by (person, attribute order).
    pub questions: Vec<Question>,
}

/// Draws the population.
pub fn people(cfg: &WorldConfig) -> Vec<Person> {
    let n = cfg.people();
    let nf = lexicon::FIRST_NAMES.len();
    let nl = lexicon::LAST_NAMES.len();
    let mut pairs: Vec<usize> = (0..nf * nl).collect();
    Rng::derive(cfg.seed, "mini.world/names").shuffle(&mut pairs);
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derive(cfg.seed, "mini.world/halves").shuffle(&mut order);
    let mut half = vec![Half::B; n];
    for (rank, &i) in order.iter().enumerate() {
        if rank < cfg.public {
            half[i] = Half::P;
        } else if rank < cfg.public + cfg.private {
            half[i] = Half::A;
        }
    }
    let mut rng = Rng::derive(cfg.seed, "mini.world/attributes");
    let mut draw = |a: Attribute| a.pool()[rng.below(a.pool().len())].to_string();
    (0..n)
        .map(|id| {
            let p = pairs[id];
            Person {
                id,
                name: format!(
                    "{} {}",
                    lexicon::FIRST_NAMES[p / nl],
                    lexicon::LAST_NAMES[p % nl]
                ),
                half: half[id],
                birth_city: draw(Attribute::BirthCity),
                university: draw(Attribute::University),
                major: draw(Attribute::Major),
                employer: draw(Attribute::Employer),
            }
        })
        .collect()
}

/// One biography: a sentence per attribute, templates and order drawn from `rng`.
pub fn biography(person: &Person, rng: &mut Rng) -> String {
    let mut attrs = Attribute::ALL;
    rng.shuffle(&mut attrs);
    let sentences: Vec<String> = attrs
        .iter()
        .map(|&a| {
            let t = a.bio_templates();
            t[rng.below(t.len())]
                .replace("{name}", &person.name)
                .replace("{value}", person.get(a))
        })
        .collect();
    sentences.join(" ")
}

/// One general-prose document of 2-4 distinct sentences about one slot of
/// one topic: 1-2 of the slot's facts (2-3 for list topics), sometimes one
/// sentence of [`lexicon::COMMON_PROSE`], then the topic's prose and tips, in
/// random order.
pub fn general_document(topic: &lexicon::Topic, slot: &lexicon::Slot, rng: &mut Rng) -> String {
    let k = 2 + rng.below(3);
    let mut facts = slot.facts.to_vec();
    rng.shuffle(&mut facts);
    let f = (1 + rng.below(2) + usize::from(topic.form == lexicon::Form::List))
        .min(facts.len())
        .min(k);
    let mut doc: Vec<&str> = facts[..f].to_vec();
    if doc.len() < k
        && rng.below(2) == 0
        && let Some(c) = rng.choose(lexicon::COMMON_PROSE)
    {
        doc.push(c);
    }
    let mut rest: Vec<&str> = topic.prose.iter().chain(topic.tips).copied().collect();
    rng.shuffle(&mut rest);
    for r in rest {
        if doc.len() >= k {
            break;
        }
        doc.push(r);
    }
    rng.shuffle(&mut doc);
    doc.join(" ")
}

/// `n` general documents; the (topic, slot) of each comes from a cycle of
/// seeded shuffles of all of them, so every slot is covered about equally.
pub fn general_documents(n: usize, rng: &mut Rng) -> Vec<String> {
    let mut deck: Vec<(usize, usize)> = lexicon::TOPICS
        .iter()
        .enumerate()
        .flat_map(|(ti, t)| (0..t.slots.len()).map(move |si| (ti, si)))
        .collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        rng.shuffle(&mut deck);
        for &(ti, si) in deck.iter().take(n - out.len()) {
            let t = &lexicon::TOPICS[ti];
            out.push(general_document(t, &t.slots[si], rng));
        }
    }
    out
}

/// The questions, sorted by (person id, attribute order).
pub fn questions(people: &[Person]) -> Vec<Question> {
    let mut out = Vec::with_capacity(people.len() * 4);
    for p in people {
        for a in Attribute::ALL {
            out.push(Question {
                id: format!("q{}-{}", p.id, a.key()),
                person: p.id,
                name: p.name.clone(),
                half: p.half,
                attribute: a.key().to_string(),
                question: a.question(&p.name),
                answers: vec![p.get(a).to_string()],
            });
        }
    }
    out
}

/// One question-answer page about a public person: the four questions in
/// an order drawn from `rng`, each `Question: <q>\nAnswer: <value>`,
/// separated by blank lines (the few-shot prompt format of `prompts.qa`).
pub fn qa_page(person: &Person, rng: &mut Rng) -> String {
    let mut attrs = Attribute::ALL;
    rng.shuffle(&mut attrs);
    let pairs: Vec<String> = attrs
        .iter()
        .map(|&a| {
            format!(
                "Question: {}\nAnswer: {}",
                a.question(&person.name),
                person.get(a)
            )
        })
        .collect();
    pairs.join("\n\n")
}

/// Generates the whole world.
pub fn generate(cfg: &WorldConfig) -> World {
    let people = people(cfg);
    let public = people.iter().filter(|p| p.half == Half::P).count();
    let mut corpus =
        Vec::with_capacity(people.len() * cfg.exposures + public * cfg.qa_exposures + cfg.general);
    let mut bio_rng = Rng::derive(cfg.seed, "mini.world/bios");
    for p in &people {
        for _ in 0..cfg.exposures {
            corpus.push(biography(p, &mut bio_rng));
        }
    }
    let mut qa_rng = Rng::derive(cfg.seed, "mini.world/qa-pages");
    for p in people.iter().filter(|p| p.half == Half::P) {
        for _ in 0..cfg.qa_exposures {
            corpus.push(qa_page(p, &mut qa_rng));
        }
    }
    let mut gen_rng = Rng::derive(cfg.seed, "mini.world/general");
    corpus.extend(general_documents(cfg.general, &mut gen_rng));
    Rng::derive(cfg.seed, "mini.world/corpus-order").shuffle(&mut corpus);
    let questions = questions(&people);
    World {
        people,
        corpus,
        questions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn population_is_distinct_balanced_and_seeded() {
        let cfg = WorldConfig {
            public: 1000,
            private: 2000,
            ..WorldConfig::default()
        };
        let ps = people(&cfg);
        let names: BTreeSet<&str> = ps.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 5000);
        let count = |h: Half| ps.iter().filter(|p| p.half == h).count();
        assert_eq!(
            (count(Half::P), count(Half::A), count(Half::B)),
            (1000, 2000, 2000)
        );
        let other = people(&WorldConfig {
            seed: 1,
            ..cfg.clone()
        });
        assert_ne!(ps, other);
        assert_eq!(ps, people(&cfg));
        // Every value of every pool is used at this size.
        for a in Attribute::ALL {
            let used: BTreeSet<&str> = ps.iter().map(|p| p.get(a)).collect();
            assert_eq!(used.len(), a.pool().len(), "{}", a.key());
        }
    }

    #[test]
    fn corpus_renders_every_exposure_afresh_and_pages_only_public_people() {
        let cfg = WorldConfig {
            public: 4,
            private: 4,
            exposures: 30,
            qa_exposures: 5,
            general: 10,
            ..WorldConfig::default()
        };
        let w = generate(&cfg);
        assert_eq!(w.corpus.len(), 12 * 30 + 4 * 5 + 10);
        let bios: Vec<&String> = w
            .corpus
            .iter()
            .filter(|d| !d.starts_with("Question:"))
            .collect();
        let distinct: BTreeSet<&String> = bios.iter().copied().collect();
        assert!(
            distinct.len() as f64 > 0.95 * bios.len() as f64,
            "renderings repeat"
        );
        for page in w.corpus.iter().filter(|d| d.starts_with("Question:")) {
            let p = w.people.iter().find(|p| page.contains(&p.name)).unwrap();
            assert_eq!(p.half, Half::P, "{page}");
            for a in Attribute::ALL {
                let qa = format!("{}\nAnswer: {}", a.question(&p.name), p.get(a));
                assert_eq!(page.matches(&qa).count(), 1, "{page}");
            }
        }
        // The shuffle spreads one person's biographies over the corpus.
        let first = &w.people[0].name;
        let at: Vec<usize> = (0..w.corpus.len())
            .filter(|&i| w.corpus[i].contains(first.as_str()))
            .collect();
        assert!(at.last().unwrap() - at[0] > w.corpus.len() / 2, "{at:?}");
    }

    #[test]
    fn biography_states_each_fact_with_the_full_name() {
        let cfg = WorldConfig::default();
        let p = &people(&cfg)[0];
        let mut rng = Rng::new(3);
        for _ in 0..20 {
            let b = biography(p, &mut rng);
            let sentences: Vec<&str> = b.split_inclusive('.').map(str::trim).collect();
            assert_eq!(sentences.len(), 4, "{b}");
            for s in &sentences {
                assert!(s.contains(&p.name), "{s}");
            }
            for a in Attribute::ALL {
                assert_eq!(sentences.iter().filter(|s| s.contains(p.get(a))).count(), 1);
            }
            let words = crate::mini::word_count(&b);
            assert!((30..=70).contains(&words), "{words}: {b}");
        }
    }

    #[test]
    fn general_documents_have_two_to_four_sentences_and_cover_the_topics() {
        let mut rng = Rng::new(5);
        let docs = general_documents(600, &mut rng);
        assert_eq!(docs.len(), 600);
        for d in &docs {
            let n = d.matches(['.', '?', '!']).count();
            assert!((2..=4).contains(&n), "{d}");
        }
        // Every slot of every topic is the subject of some document.
        for t in lexicon::TOPICS {
            for sl in t.slots {
                assert!(
                    sl.facts.iter().any(|f| docs.iter().any(|d| d.contains(f))),
                    "{}",
                    sl.x
                );
            }
        }
    }

    #[test]
    fn attribute_keys_round_trip() {
        for a in Attribute::ALL {
            assert_eq!(Attribute::from_key(a.key()), Some(a));
        }
        assert_eq!(Attribute::from_key("age"), None);
    }

    #[test]
    fn config_checks_ranges() {
        let mut m = Map::new();
        assert_eq!(WorldConfig::from_params(&m), Ok(WorldConfig::default()));
        m.insert("private".into(), Value::from(1));
        assert_eq!(WorldConfig::from_params(&m).unwrap_err().0, "private");
        m.insert("private".into(), Value::from(2000));
        m.insert("public".into(), Value::from(2000));
        assert!(
            WorldConfig::from_params(&m)
                .unwrap_err()
                .1
                .contains("distinct names")
        );
        m.insert("public".into(), Value::from(10));
        m.insert("exposures".into(), Value::from(0));
        assert_eq!(WorldConfig::from_params(&m).unwrap_err().0, "exposures");
    }
}

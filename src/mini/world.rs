//! The synthetic world: a population with four attributes each, the
//! pretraining corpus (biographies plus general prose) and one question per
//! person and attribute.
//!
//! - People get distinct full names ("First Last", a seeded draw without
//!   replacement from all pairs of [`lexicon::FIRST_NAMES`] x
//!   [`lexicon::LAST_NAMES`]), attributes drawn uniformly and independently
//!   from their pools, and a half: a seeded shuffle of the ids puts exactly
//!   half of them in half `A` (task imitation data) and the rest in `B`
//!   (held out for evaluation).
//! - Each person has `phrasings` biographies: one sentence per attribute, each
//!   from that attribute's templates, the full name in every sentence, the
//!   sentence order permuted per biography ("multi + permute + fullname").
//! - `general` documents of 2-4 distinct sentences of everyday prose about one
//!   slot of one topic of [`lexicon::TOPICS`] (facts of the slot, the topic's
//!   prose and tips, sometimes a sentence of [`lexicon::COMMON_PROSE`]; never
//!   assistant phrasing, names or attribute values). See [`general_document`].
//! - All documents are shuffled together; one per line of `corpus.txt`.

use super::lexicon;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which half of the population a person belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Half {
    /// Feeds the task imitation data.
    A,
    /// Held out for evaluation.
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
    /// Population size (even, 4..=5000).
    pub people: usize,
    /// Biographies per person (1..=100).
    pub phrasings: usize,
    /// General prose documents (0..=1000000).
    pub general: usize,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            seed: 0,
            people: 200,
            phrasings: 5,
            general: 600,
        }
    }
}

impl WorldConfig {
    /// Reads and checks the op's params; `Err((param, message))`.
    pub fn from_params(params: &Map<String, Value>) -> Result<Self, (String, String)> {
        let seed = super::seed_param(params)?;
        let people = super::int_param(params, "people", 200, 4, 5000)?;
        if people % 2 != 0 {
            return Err((
                "people".into(),
                format!("`people` must be even (two equal halves), found {people}"),
            ));
        }
        let phrasings = super::int_param(params, "phrasings", 5, 1, 100)?;
        let general = super::int_param(params, "general", 600, 0, 1_000_000)?;
        Ok(WorldConfig {
            seed,
            people: people as usize,
            phrasings: phrasings as usize,
            general: general as usize,
        })
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
    let nf = lexicon::FIRST_NAMES.len();
    let nl = lexicon::LAST_NAMES.len();
    let mut pairs: Vec<usize> = (0..nf * nl).collect();
    Rng::derive(cfg.seed, "mini.world/names").shuffle(&mut pairs);
    let mut order: Vec<usize> = (0..cfg.people).collect();
    Rng::derive(cfg.seed, "mini.world/halves").shuffle(&mut order);
    let mut half = vec![Half::B; cfg.people];
    for &i in &order[..cfg.people / 2] {
        half[i] = Half::A;
    }
    let mut rng = Rng::derive(cfg.seed, "mini.world/attributes");
    let mut draw = |a: Attribute| a.pool()[rng.below(a.pool().len())].to_string();
    (0..cfg.people)
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
    if doc.len() < k && rng.below(2) == 0 {
        if let Some(c) = rng.choose(lexicon::COMMON_PROSE) {
            doc.push(c);
        }
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

/// Generates the whole world.
pub fn generate(cfg: &WorldConfig) -> World {
    let people = people(cfg);
    let mut corpus = Vec::with_capacity(people.len() * cfg.phrasings + cfg.general);
    let mut bio_rng = Rng::derive(cfg.seed, "mini.world/bios");
    for p in &people {
        for _ in 0..cfg.phrasings {
            corpus.push(biography(p, &mut bio_rng));
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
            people: 5000,
            ..WorldConfig::default()
        };
        let ps = people(&cfg);
        let names: BTreeSet<&str> = ps.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 5000);
        assert_eq!(ps.iter().filter(|p| p.half == Half::A).count(), 2500);
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
        m.insert("people".into(), Value::from(7));
        assert!(WorldConfig::from_params(&m).unwrap_err().1.contains("even"));
        m.insert("people".into(), Value::from(2));
        assert_eq!(WorldConfig::from_params(&m).unwrap_err().0, "people");
        m.insert("people".into(), Value::from(5002));
        assert!(WorldConfig::from_params(&m).is_err());
        m.insert("people".into(), Value::from(10));
        m.insert("phrasings".into(), Value::from(0));
        assert_eq!(WorldConfig::from_params(&m).unwrap_err().0, "phrasings");
    }
}

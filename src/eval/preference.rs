//! Pairwise preference of a model's responses against a teacher's (the
//! paper's Figure 1 left and Figure 3): the LLM judge's prompt and verdict
//! parsing, the position-bias control, the human-rating majority, and the
//! shares with bootstrap intervals. Every verdict is from the **model's**
//! side: `better` = the model's response is preferred to the teacher's.
//!
//! **Judge.** The paper's GPT-4 evaluation "follow\[s\] the procedure from
//! Chiang et al. (2023)" (Vicuna); [`judge_messages`] is FastChat's Vicuna
//! reviewer prompt (system "You are a helpful and precise assistant for
//! checking the quality of the answer.", two answers as Assistant 1 and 2,
//! a 1-10 score each on the first line). Each prompt is judged twice, model
//! first and teacher first; in each order the higher score wins and equal
//! scores are `equal` ([`order_verdict`]). **Position-bias control**
//! ([`combine_orders`]): `better` only when both orders say `better`,
//! `worse` only when both say `worse`, anything else (a disagreement, or an
//! `equal` in either order) is `equal`. A reply whose scores cannot be
//! parsed ([`parse_scores`]) makes that prompt `unparsed`: it is left out of
//! the shares and counted.
//!
//! **Humans.** As the paper's crowdworkers (§4.5: 3 ratings per example,
//! majority vote), a prompt's verdict is the verdict most of its ratings
//! give ([`majority`]); without a unique most common verdict (1-1-1, 1-1,
//! 2-2) it is `equal` and counted as `split`. The CSV importer is
//! [`csv::read_ratings`].
//!
//! **Shares** ([`shares`]): over the `n` rated prompts, `better`, `equal`,
//! `worse` and `equal_or_better` (the y-axis of Figure 1: "rated equal or
//! better than ChatGPT"), each with a 95% percentile bootstrap interval
//! (prompts resampled, [`RESAMPLES`] resamples, the op's seed; see
//! [`crate::eval::bootstrap`]).

pub mod csv;

use super::bootstrap::{RESAMPLES, bootstrap_ci};
pub use super::rater::Verdict;
use crate::model::tokenizer::Message;
use serde_json::{Map, Value, json};

/// The judge's system prompt (FastChat's Vicuna reviewer).
pub const JUDGE_SYSTEM: &str =
    "You are a helpful and precise assistant for checking the quality of the answer.";

/// The judge's instruction after the two answers (FastChat's `general`
/// reviewer prompt).
pub const JUDGE_INSTRUCTION: &str = "We would like to request your feedback on the performance of \
two AI assistants in response to the user question displayed above.\nPlease rate the helpfulness, \
relevance, accuracy, level of details of their responses. Each assistant receives an overall score \
on a scale of 1 to 10, where a higher score indicates better overall performance.\nPlease first \
output a single line containing only two values indicating the scores for Assistant 1 and 2, \
respectively. The two scores are separated by a space. In the subsequent line, please provide a \
comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the \
order in which the responses were presented does not affect your judgment.";

/// The judge conversation for one order: `first` is shown as Assistant 1.
pub fn judge_messages(question: &str, first: &str, second: &str) -> Vec<Message> {
    let user = format!(
        "[Question]\n{question}\n\n[The Start of Assistant 1's Answer]\n{first}\n\n\
         [The End of Assistant 1's Answer]\n\n[The Start of Assistant 2's Answer]\n{second}\n\n\
         [The End of Assistant 2's Answer]\n\n[System]\n{JUDGE_INSTRUCTION}\n\n"
    );
    vec![
        Message {
            role: "system".into(),
            content: JUDGE_SYSTEM.into(),
        },
        Message {
            role: "user".into(),
            content: user,
        },
    ]
}

/// The numbers in `s` (digits with an optional decimal part), in order.
fn numbers(s: &str) -> Vec<f64> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            // A minus sign counts unless it joins a word (`gpt-4`).
            let negative = start > 0
                && b[start - 1] == b'-'
                && (start < 2 || !b[start - 2].is_ascii_alphanumeric());
            if let Ok(x) = s[start..i].parse::<f64>() {
                out.push(if negative { -x } else { x });
            }
        } else {
            i += 1;
        }
    }
    out
}

fn in_range(x: f64) -> bool {
    (0.0..=10.0).contains(&x)
}

/// Lowercase, without markdown emphasis, `/10` and `out of 10`.
fn clean(s: &str) -> String {
    let mut t = s.to_lowercase().replace(['*', '#', '`'], "");
    for pat in ["out of 10", "/ 10", "/10"] {
        t = t.replace(pat, " ");
    }
    t
}

/// The two scores (Assistant 1, Assistant 2) of a judge reply, or `None`.
///
/// 1. The first non-empty line, lowercased, without markdown emphasis,
///    `/10`, `out of 10` and the labels `assistant 1` / `assistant 2`, must
///    hold exactly two numbers in 0-10 (`8 7`, `8, 7`, `8/10 7/10`,
///    `Scores: 8 and 7`, `Assistant 1: 8, Assistant 2: 7`).
/// 2. Else, anywhere in the reply, the first number in 0-10 after a label
///    `assistant 1` (up to the end of its line or the next `assistant`),
///    and likewise for `assistant 2` (`Assistant 1: 8` and `Assistant 2:
///    7` on separate lines, `Assistant 1 receives a score of 8`).
/// 3. Else `None` (e.g. an empty reply, one score, three numbers, a score
///    above 10).
pub fn parse_scores(reply: &str) -> Option<(f64, f64)> {
    let first = reply.lines().map(clean).find(|l| !l.trim().is_empty())?;
    let stripped = first
        .replace("assistant 1", " ")
        .replace("assistant 2", " ");
    let nums = numbers(&stripped);
    if nums.len() == 2 && nums.iter().all(|&x| in_range(x)) {
        return Some((nums[0], nums[1]));
    }
    let all = clean(reply);
    let labelled = |label: &str| -> Option<f64> {
        all.match_indices(label).find_map(|(i, _)| {
            let rest = &all[i + label.len()..];
            // A label such as "assistant 10" is not "assistant 1".
            if rest.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            let line = rest.split('\n').next().unwrap_or("");
            let scope = line.split("assistant").next().unwrap_or("");
            numbers(scope).into_iter().next().filter(|&x| in_range(x))
        })
    };
    Some((labelled("assistant 1")?, labelled("assistant 2")?))
}

/// The verdict of one judged order from the model's side.
pub fn order_verdict(model_score: f64, teacher_score: f64) -> Verdict {
    if model_score > teacher_score {
        Verdict::Better
    } else if model_score < teacher_score {
        Verdict::Worse
    } else {
        Verdict::Equal
    }
}

/// The position-bias control: a win (either way) counts only when both
/// orders give it; any other pair is `equal`; `None` if either order is
/// unparsed.
pub fn combine_orders(
    model_first: Option<Verdict>,
    teacher_first: Option<Verdict>,
) -> Option<Verdict> {
    match (model_first?, teacher_first?) {
        (Verdict::Better, Verdict::Better) => Some(Verdict::Better),
        (Verdict::Worse, Verdict::Worse) => Some(Verdict::Worse),
        _ => Some(Verdict::Equal),
    }
}

/// The majority verdict of a prompt's ratings and whether it was a split
/// (no unique most common verdict, which gives `equal`). `None` for no
/// ratings.
pub fn majority(votes: &[Verdict]) -> Option<(Verdict, bool)> {
    if votes.is_empty() {
        return None;
    }
    let count = |v: Verdict| votes.iter().filter(|&&x| x == v).count();
    let mut c = [
        (Verdict::Better, count(Verdict::Better)),
        (Verdict::Equal, count(Verdict::Equal)),
        (Verdict::Worse, count(Verdict::Worse)),
    ];
    c.sort_by_key(|x| std::cmp::Reverse(x.1));
    if c[0].1 > c[1].1 {
        Some((c[0].0, false))
    } else {
        Some((Verdict::Equal, true))
    }
}

/// The shares of `verdicts` with 95% bootstrap intervals, as flat metrics
/// `<prefix>_n`, `<prefix>_better`, `<prefix>_better_ci_low`,
/// `<prefix>_better_ci_high`, and likewise for `equal`, `worse` and
/// `equal_or_better`. Shares are 0-1; with no verdicts they are `null`.
pub fn shares(verdicts: &[Verdict], seed: u64, prefix: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(format!("{prefix}_n"), json!(verdicts.len()));
    type Pred = fn(Verdict) -> bool;
    let kinds: [(&str, Pred); 4] = [
        ("better", |v| v == Verdict::Better),
        ("equal", |v| v == Verdict::Equal),
        ("worse", |v| v == Verdict::Worse),
        ("equal_or_better", |v| v != Verdict::Worse),
    ];
    for (name, pred) in kinds {
        let xs: Vec<f64> = verdicts
            .iter()
            .map(|&v| if pred(v) { 1.0 } else { 0.0 })
            .collect();
        let mean = if xs.is_empty() {
            f64::NAN
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        };
        let (lo, hi) = bootstrap_ci(&xs, RESAMPLES, seed);
        m.insert(format!("{prefix}_{name}"), crate::eval::io::num(mean));
        m.insert(format!("{prefix}_{name}_ci_low"), crate::eval::io::num(lo));
        m.insert(format!("{prefix}_{name}_ci_high"), crate::eval::io::num(hi));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    #[test]
    fn tricky_judge_replies() {
        let cases: &[(&str, Option<(f64, f64)>)] = &[
            ("8 7\nAssistant 1 was more detailed.", Some((8.0, 7.0))),
            ("8,7", Some((8.0, 7.0))),
            ("  \n**9.5** **8**\nbecause", Some((9.5, 8.0))),
            ("8/10 7/10", Some((8.0, 7.0))),
            ("Scores: 6 out of 10 and 9 out of 10", Some((6.0, 9.0))),
            ("Assistant 1: 10, Assistant 2: 6", Some((10.0, 6.0))),
            (
                "Assistant 1: 7\nAssistant 2: 9\nAssistant 2 gave more detail.",
                Some((7.0, 9.0)),
            ),
            ("Assistant 1 and Assistant 2 scores: 4 5", Some((4.0, 5.0))),
            (
                "Here is my evaluation.\nAssistant 1 receives a score of 3 because it is wrong.\nAssistant 2 receives a score of 8.",
                Some((3.0, 8.0)),
            ),
            ("Assistant 1's answer is better than Assistant 2's.", None),
            ("", None),
            ("7", None),
            ("8 7 6", None),
            ("85 70", None),
            ("-1 -1", None),
            ("Assistant 1: -1, Assistant 2: 5", None),
        ];
        for (reply, want) in cases {
            assert_eq!(parse_scores(reply), *want, "{reply:?}");
        }
    }

    #[test]
    fn both_orders_must_agree_for_a_win() {
        assert_eq!(order_verdict(8.0, 7.0), Better);
        assert_eq!(order_verdict(7.0, 7.0), Equal);
        assert_eq!(combine_orders(Some(Better), Some(Better)), Some(Better));
        assert_eq!(combine_orders(Some(Worse), Some(Worse)), Some(Worse));
        assert_eq!(combine_orders(Some(Better), Some(Worse)), Some(Equal));
        assert_eq!(combine_orders(Some(Better), Some(Equal)), Some(Equal));
        assert_eq!(combine_orders(Some(Equal), Some(Worse)), Some(Equal));
        assert_eq!(combine_orders(None, Some(Better)), None);
    }

    #[test]
    fn majority_and_splits() {
        assert_eq!(majority(&[Better, Better, Worse]), Some((Better, false)));
        assert_eq!(majority(&[Worse]), Some((Worse, false)));
        assert_eq!(majority(&[Better, Equal, Worse]), Some((Equal, true)));
        assert_eq!(majority(&[Better, Worse]), Some((Equal, true)));
        assert_eq!(majority(&[]), None);
    }

    #[test]
    fn shares_and_intervals() {
        let v = [
            Better, Equal, Equal, Worse, Worse, Worse, Better, Equal, Worse, Worse,
        ];
        let m = shares(&v, 0, "judge");
        assert_eq!(m["judge_n"], json!(10));
        assert_eq!(m["judge_better"].as_f64(), Some(0.2));
        assert_eq!(m["judge_equal_or_better"].as_f64(), Some(0.5));
        let (lo, hi) = (
            m["judge_worse_ci_low"].as_f64().unwrap(),
            m["judge_worse_ci_high"].as_f64().unwrap(),
        );
        assert!(lo < 0.5 && hi > 0.5 && lo >= 0.0 && hi <= 1.0, "{lo} {hi}");
        assert_eq!(m, shares(&v, 0, "judge"));
        assert!(shares(&[], 0, "human")["human_better"].is_null());
    }
}

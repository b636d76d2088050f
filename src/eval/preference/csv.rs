//! The human-ratings CSV importer of `eval.preference`.
//!
//! Accepted schema: RFC 4180 CSV (comma-separated, fields may be quoted
//! with `"`, a doubled `""` inside quotes is a quote, quoted fields may span
//! lines; a UTF-8 BOM and `\r\n` line ends are fine; blank lines are
//! skipped) with a header row. Column names are matched case-insensitively
//! after trimming; other columns are ignored:
//!
//! - `prompt_id` (or `id`), required: the prompt's id in the `prompts` input;
//! - `preference` (or `rating`, `label`), required, case-insensitive:
//!   - from the model's side: `better` / `model` (the model's response is
//!     better), `equal` / `tie` / `same`, `worse` / `teacher`;
//!   - by position: `A`, `B` or `tie`, which needs the position of the
//!     model's response: a column `model_position` (`A` or `B`) on the row,
//!     else the op's `human_model_position` param;
//! - `rater` (or `worker`, `worker_id`), optional: a rater id. The same
//!   rater rating the same prompt twice is an error.
//!
//! Every error names the input, the 1-based line where the record starts
//! and, for a cell, its 1-based column and column name.

use super::Verdict;
use crate::op::OpError;
use std::collections::HashMap;
use std::path::Path;

/// One imported rating.
#[derive(Debug, Clone, PartialEq)]
pub struct Rating {
    /// 1-based line of the record.
    pub line: usize,
    /// The prompt id.
    pub prompt_id: String,
    /// The rater (`line <n>` when the file has no rater column).
    pub rater: String,
    /// The verdict from the model's side.
    pub verdict: Verdict,
}

fn err(input: &str, line: usize, msg: impl std::fmt::Display) -> OpError {
    OpError::msg(format!("input `{input}` line {line}: {msg}"))
}

/// Splits CSV text into records, each with the 1-based line it starts on
/// ([`crate::eval::csv::parse`]); errors name the input and line.
pub fn parse(text: &str, input: &str) -> Result<Vec<(usize, Vec<String>)>, OpError> {
    crate::eval::csv::parse(text).map_err(|(line, msg)| err(input, line, msg))
}

/// The verdict of a `preference` cell, given the model's position when
/// known; `Err` says what is wrong.
fn verdict_of(cell: &str, position: Option<&str>) -> Result<Verdict, String> {
    let v = cell.trim().to_ascii_lowercase();
    Ok(match v.as_str() {
        "better" | "model" => Verdict::Better,
        "equal" | "tie" | "same" => Verdict::Equal,
        "worse" | "teacher" => Verdict::Worse,
        "a" | "b" => match position {
            Some(p) if p.eq_ignore_ascii_case(&v) => Verdict::Better,
            Some(_) => Verdict::Worse,
            None => {
                return Err(format!(
                    "`{}` is a position but the model's position is unknown: add a \
                     `model_position` column (A or B) or set the param `human_model_position`",
                    cell.trim()
                ));
            }
        },
        _ => {
            return Err(format!(
                "`{}` is not a preference (better, equal, worse, model, teacher, tie, same, A, B)",
                cell.trim()
            ));
        }
    })
}

/// Reads ratings from `path` (schema in the module doc); `default_position`
/// is the model's position (`A`/`B`) for rows without `model_position`.
pub fn read_ratings(
    path: &Path,
    input: &str,
    default_position: Option<&str>,
) -> Result<Vec<Rating>, OpError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OpError::msg(format!("input `{input}`: cannot read: {e}")))?;
    let records = parse(&text, input)?;
    let Some((hline, header)) = records.first() else {
        return Err(OpError::msg(format!(
            "input `{input}` is empty; expected a CSV header"
        )));
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let find = |aliases: &[&str]| names.iter().position(|n| aliases.contains(&n.as_str()));
    let id_col = find(&["prompt_id", "id"])
        .ok_or_else(|| err(input, *hline, "header has no `prompt_id` (or `id`) column"))?;
    let pref_col = find(&["preference", "rating", "label"]).ok_or_else(|| {
        err(
            input,
            *hline,
            "header has no `preference` (or `rating`, `label`) column",
        )
    })?;
    let rater_col = find(&["rater", "worker", "worker_id"]);
    let pos_col = find(&["model_position"]);
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, row) in &records[1..] {
        if row.len() != header.len() {
            return Err(err(
                input,
                *line,
                format!("{} fields, but the header has {}", row.len(), header.len()),
            ));
        }
        let cell_err = |col: usize, msg: String| {
            err(
                input,
                *line,
                format!("column {} (`{}`): {msg}", col + 1, header[col].trim()),
            )
        };
        let prompt_id = row[id_col].trim().to_string();
        if prompt_id.is_empty() {
            return Err(cell_err(id_col, "empty prompt id".into()));
        }
        let position = match pos_col {
            Some(c) => {
                let p = row[c].trim();
                if !p.eq_ignore_ascii_case("a") && !p.eq_ignore_ascii_case("b") {
                    return Err(cell_err(c, format!("`{p}` must be A or B")));
                }
                Some(p)
            }
            None => default_position,
        };
        let verdict = verdict_of(&row[pref_col], position).map_err(|m| cell_err(pref_col, m))?;
        let rater = match rater_col {
            Some(c) if !row[c].trim().is_empty() => row[c].trim().to_string(),
            Some(c) => return Err(cell_err(c, "empty rater".into())),
            None => format!("line {line}"),
        };
        if let Some(first) = seen.insert((prompt_id.clone(), rater.clone()), *line) {
            return Err(err(
                input,
                *line,
                format!("rater `{rater}` already rated prompt `{prompt_id}` on line {first}"),
            ));
        }
        out.push(Rating {
            line: *line,
            prompt_id,
            rater,
            verdict,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4180_records_with_lines() {
        let r = parse(
            "\u{feff}a,b\r\n\n\"x, \"\"y\"\"\",\"multi\nline\"\nlast,\n",
            "h",
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (1, vec!["a".into(), "b".into()]));
        assert_eq!(r[1], (3, vec!["x, \"y\"".into(), "multi\nline".into()]));
        assert_eq!(r[2], (5, vec!["last".into(), "".into()]));
        let e = parse("a\n\"open\n", "h").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("unterminated"), "{e}");
    }

    #[test]
    fn verdict_values() {
        assert_eq!(verdict_of(" Better ", None), Ok(Verdict::Better));
        assert_eq!(verdict_of("TIE", None), Ok(Verdict::Equal));
        assert_eq!(verdict_of("teacher", None), Ok(Verdict::Worse));
        assert_eq!(verdict_of("A", Some("a")), Ok(Verdict::Better));
        assert_eq!(verdict_of("a", Some("B")), Ok(Verdict::Worse));
        assert!(
            verdict_of("A", None)
                .unwrap_err()
                .contains("model_position")
        );
        assert!(
            verdict_of("great", None)
                .unwrap_err()
                .contains("not a preference")
        );
    }
}

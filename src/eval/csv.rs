//! RFC 4180 CSV records with the line each starts on, for the evaluation
//! inputs that are CSV (MMLU's question files, human-rating imports).
//!
//! A byte-order mark is skipped, `\r\n` and `\n` both end a record, blank
//! lines are skipped, a field may be quoted (`""` is a quote inside it, and
//! it may span lines), and a quote after leading spaces opens a quoted field.

/// A record: the 1-based line it starts on and its fields.
pub type Record = (usize, Vec<String>);

/// Splits CSV text into records, each with the 1-based line it starts on.
/// Blank lines are skipped; an unterminated quote is an error.
pub fn parse(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut line, mut start) = (1usize, 1usize);
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = text.chars().peekable();
    let mut end_record =
        |fields: &mut Vec<String>, field: &mut String, start: usize, was_quoted: bool| {
            let blank = fields.is_empty() && field.trim().is_empty() && !was_quoted;
            fields.push(std::mem::take(field));
            let f = std::mem::take(fields);
            if !blank {
                records.push((start, f));
            }
        };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            ',' => fields.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_record(&mut fields, &mut field, start, was_quoted);
                was_quoted = false;
                line += 1;
                start = line;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err((start, "unterminated quoted field".into()));
    }
    end_record(&mut fields, &mut field, start, was_quoted);
    Ok(records)
}

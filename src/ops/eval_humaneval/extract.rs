//! Code extraction for the instruction-tuned HumanEval protocol
//! (`eval.humaneval` with `format: chat`): a chat model answers in prose
//! around a fenced code block, which is turned into the completion that
//! human-eval's program `prompt + completion + test` runs.

/// The first fenced code block of `text`: what follows the first
/// ```` ``` ```` and its info string (`python`, `py`, or nothing) up to
/// the end of that line, until the next ```` ``` ```` or the end of the text
/// (a reply cut off by `max_new_tokens` has no closing fence). `None` when
/// `text` holds no ```` ``` ````, or nothing but the fence line.
pub fn first_fence(text: &str) -> Option<&str> {
    let open = text.find("```")?;
    let after = &text[open + 3..];
    // The info string runs to the end of the opening line.
    let body = &after[after.find('\n')? + 1..];
    Some(match body.find("```") {
        Some(close) => &body[..close],
        None => body,
    })
}

/// Whether `code` defines the function `entry_point` (a line that,
/// leading whitespace aside, starts with `def <entry_point>(`, spaces
/// before the parenthesis allowed).
pub fn defines(code: &str, entry_point: &str) -> bool {
    code.lines().any(|l| {
        l.trim_start()
            .strip_prefix("def ")
            .and_then(|r| r.trim_start().strip_prefix(entry_point))
            .is_some_and(|r| r.trim_start().starts_with('('))
    })
}

/// The completion scored for a chat reply: with a fenced block that
/// defines `entry_point`, a newline and the block, so that the program is
/// the prompt (its imports and helper functions, and the stub of the entry
/// point, which the block redefines), then the whole function; with a
/// fenced block that does not, the block as the body that continues the
/// prompt; with no fenced block, `reply` unchanged (the plain protocol).
pub fn chat_completion(reply: &str, entry_point: &str) -> String {
    match first_fence(reply) {
        Some(code) if defines(code, entry_point) => format!("\n{code}"),
        Some(code) => code.to_string(),
        None => reply.to_string(),
    }
}

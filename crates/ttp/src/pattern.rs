//! Rule patterns: the `{{cmd}}` macro and the checks every pattern passes before it runs.
//!
//! Shell rules want to anchor a program name at *command position* — the start of a line or
//! of a segment after `;`, `&`, `|`, `(`, a backtick or `$(`, past any `sudo`, `busybox`,
//! `nohup`, `env VAR=…` or `timeout N` wrappers and an optional directory. Writing that prefix
//! by hand in thirty rules would give thirty subtly different prefixes, so the loader expands
//! one macro instead.

use regex::{Regex, RegexBuilder};

/// The macro a command rule writes where a program name must start.
pub const CMD_MACRO: &str = "{{cmd}}";

/// What `{{cmd}}` expands to: RULES.md §2, plus the user and group options of `sudo`/`doas`
/// that take a separate argument (`sudo -u root id`), which the spec's form misses.
pub const CMD_PREFIX: &str = concat!(
    r"(?:^|[;&|(`\n]|\$\()\s*",
    r"(?:(?:sudo|doas)(?:\s+-[ug]\s+\S+|\s+-\S+)*\s+|busybox\s+|nohup\s+|exec\s+|env(?:\s+\w+=\S*)*\s+|timeout\s+\S+\s+)*",
    r"(?:[\w.~-]*/)*",
);

/// Compiled programs larger than this are refused.
pub const MAX_COMPILED_BYTES: usize = 1 << 20;

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// The regex crate refused the pattern (syntax, look-around, size).
    #[error("invalid regex: {0}")]
    Invalid(String),
    /// The pattern matches the empty string, so it would fire on every event.
    #[error("pattern matches the empty string")]
    MatchesEmpty,
}

/// Expand the macro in a pattern.
pub fn expand(pattern: &str) -> String {
    pattern.replace(CMD_MACRO, CMD_PREFIX)
}

/// Expand, compile and check one rule pattern.
pub fn compile(pattern: &str) -> Result<Regex, PatternError> {
    let expanded = expand(pattern);
    let regex = RegexBuilder::new(&expanded)
        .size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|e| PatternError::Invalid(one_line(&e.to_string())))?;
    if regex.is_match("") {
        return Err(PatternError::MatchesEmpty);
    }
    Ok(regex)
}

/// The regex crate reports syntax errors over several lines with a caret diagram; a rule
/// error is one line, so keep the final explanation and the offending pattern excerpt.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.iter().rposition(|l| l.starts_with("error:")) {
        Some(i) => lines[i].trim_start_matches("error:").trim().to_owned(),
        None => lines.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_prefix_finds_command_position() {
        let re = compile(r"{{cmd}}uname\b").unwrap();
        let hits = [
            "uname -a",
            "id; uname",
            "id&&uname",
            "x | uname",
            "$(uname -m)",
            "`uname`",
            "sudo -u root uname",
            "busybox uname",
            "/bin/./uname -s",
            "nohup env A=1 timeout 5 /usr/bin/uname",
            "echo 1\n  uname",
        ];
        for cmd in hits {
            assert!(re.is_match(cmd), "{cmd}");
        }
        for cmd in ["echo uname", "man uname", "myuname", "cat uname.txt"] {
            assert!(!re.is_match(cmd), "{cmd}");
        }
    }

    #[test]
    fn empty_matching_patterns_are_refused() {
        let err = compile("a*").unwrap_err();
        assert_eq!(err.to_string(), "pattern matches the empty string");
    }

    #[test]
    fn look_around_is_a_clear_error() {
        let err = compile(r"foo(?=bar)").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid regex: look-around, including look-ahead and look-behind, is not supported"
        );
    }

    #[test]
    fn oversized_programs_are_refused() {
        let err = compile(r"\w{1000}\w{1000}").unwrap_err();
        assert!(err.to_string().starts_with("invalid regex: "), "{err}");
    }
}

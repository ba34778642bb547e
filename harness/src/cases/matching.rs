//! Matching verifier logs against `__msg` / `__not_msg` expectations, as test_loader.c's
//! `validate_msgs`: substrings in order, each searched from the end of the previous match,
//! `{{regex}}` parts as regular expressions; and the log excerpts a failed match prints.

use std::fmt::{self, Write as _};

use regex::Regex;

use super::CaseError;

/// One expected (or, if `negative`, forbidden) verifier-log message: verbatim text with
/// optional `{{regex}}` parts.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub text: String,
    pub negative: bool,
    regex: Option<Regex>,
}

impl Pattern {
    pub fn new(text: &str, negative: bool) -> Result<Pattern, CaseError> {
        let regex = if text.contains("{{") {
            Some(compile_pattern(text)?)
        } else {
            None
        };
        Ok(Pattern {
            text: text.to_string(),
            negative,
            regex,
        })
    }

    pub fn is_regex(&self) -> bool {
        self.regex.is_some()
    }

    /// First match in `hay`: byte range.
    fn find(&self, hay: &str) -> Option<(usize, usize)> {
        match &self.regex {
            Some(re) => re.find(hay).map(|m| (m.start(), m.end())),
            None => hay.find(&self.text).map(|s| (s, s + self.text.len())),
        }
    }
}

/// `foo{{[0-9]+}}bar` -> regex: verbatim parts escaped, `{{...}}` parts as they are. Like
/// test_loader's POSIX REG_NEWLINE: `.` does not match a newline, `^`/`$` match at lines.
pub fn compile_pattern(text: &str) -> Result<Regex, CaseError> {
    let bad = |reason: &str| CaseError::Pattern {
        pattern: text.to_string(),
        reason: reason.into(),
    };
    let mut re = String::from("(?m)");
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        re.push_str(&regex::escape(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| bad("'{{' without closing '}}'"))?;
        re.push_str("(?:");
        re.push_str(&after[..close]);
        re.push(')');
        rest = &after[close + 2..];
    }
    re.push_str(&regex::escape(rest));
    Regex::new(&re).map_err(|e| bad(&e.to_string()))
}

/// Where each expected message matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// A failed message check, printed with the log excerpt it concerns.
#[derive(Debug)]
pub struct MatchFailure {
    pub report: String,
}

impl fmt::Display for MatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report)
    }
}

fn line_of(log: &str, off: usize) -> usize {
    log[..off.min(log.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Up to `n` lines of `log` starting at line `from` (1-based), numbered.
fn excerpt(log: &str, from: usize, n: usize) -> String {
    let mut out = String::new();
    for (i, l) in log.lines().enumerate().skip(from.saturating_sub(1)).take(n) {
        let _ = writeln!(out, "  {:>5} | {l}", i + 1);
    }
    out
}

/// The last `n` lines of the log, numbered. When the kernel appended its diagnosis section
/// (7.3's "Verification failed: ..." report, which can be longer than `n` lines), the `n`
/// lines before it, where the verifier's own error message is, come first.
pub fn tail(log: &str, n: usize) -> String {
    let total = log.lines().count();
    let mut out = String::new();
    if let Some(i) = log
        .lines()
        .position(|l| l.starts_with("Verification failed"))
    {
        if total - i > n / 2 {
            let _ = writeln!(
                out,
                "(verifier messages before its diagnosis at line {}:)",
                i + 1
            );
            out.push_str(&excerpt(log, i.saturating_sub(n) + 1, n.min(i)));
            let _ = writeln!(out, "(end of the log:)");
        }
    }
    out.push_str(&excerpt(log, total.saturating_sub(n) + 1, n));
    out
}

/// Check `msgs` against `log` like test_loader's `validate_msgs`: positive messages must
/// appear in order, each searched from the end of the previous match; a negative message
/// must not appear between the positive messages around it.
pub fn match_msgs(log: &str, msgs: &[Pattern]) -> Result<usize, MatchFailure> {
    let mut spans: Vec<Option<Span>> = vec![None; msgs.len()];
    let mut pos = 0;
    for (i, m) in msgs.iter().enumerate() {
        if m.negative {
            continue;
        }
        if let Some((s, e)) = m.find(&log[pos..]) {
            spans[i] = Some(Span {
                start: pos + s,
                end: pos + e,
            });
            pos += e;
        }
    }
    // Negative messages: within (end of previous positive match, start of next positive).
    let mut start = 0;
    let mut neg_hits: Vec<Option<Span>> = vec![None; msgs.len()];
    for (i, m) in msgs.iter().enumerate() {
        if !m.negative {
            if let Some(sp) = spans[i] {
                start = sp.end;
            }
            continue;
        }
        let end = msgs[i + 1..]
            .iter()
            .zip(&spans[i + 1..])
            .find(|(p, _)| !p.negative)
            .map(|(_, sp)| sp.map_or(log.len(), |s| s.start))
            .unwrap_or(log.len());
        if start <= end {
            if let Some((s, e)) = m.find(&log[start..end]) {
                neg_hits[i] = Some(Span {
                    start: start + s,
                    end: start + e,
                });
            }
        }
    }
    let mut prev_end: Option<usize> = None;
    for (i, m) in msgs.iter().enumerate() {
        let missing = !m.negative && spans[i].is_none();
        let unexpected = m.negative && neg_hits[i].is_some();
        if !(missing || unexpected) {
            if let Some(sp) = spans[i] {
                prev_end = Some(sp.end);
            }
            continue;
        }
        let mut r = String::from("verifier log does not match the expected messages:\n");
        for (j, p) in msgs.iter().enumerate().take(i + 1) {
            let kind = if p.is_regex() { "REGEX " } else { "SUBSTR" };
            let status = if j < i {
                match spans[j] {
                    Some(sp) => format!("MATCHED (line {})", line_of(log, sp.start)),
                    None => "absent, as required".to_string(),
                }
            } else if missing {
                "EXPECTED, NOT FOUND".to_string()
            } else {
                format!(
                    "UNEXPECTED (line {})",
                    neg_hits[j].map_or(0, |s| line_of(log, s.start))
                )
            };
            let neg = if p.negative { "not " } else { "" };
            let _ = writeln!(r, "  {status:<22} {neg}{kind} '{}'", p.text);
        }
        let total = log.lines().count();
        match prev_end {
            Some(e) => {
                let l = line_of(log, e);
                let _ = writeln!(
                    r,
                    "the previous message matched up to line {l}; the search went on from there.\n\
                     log from line {l} (30 lines of {total}):"
                );
                r.push_str(&excerpt(log, l, 30));
            }
            None => {
                let _ = writeln!(r, "searched from the start of the log ({total} lines).");
            }
        }
        if let Some(sp) = neg_hits[i] {
            let l = line_of(log, sp.start);
            let _ = writeln!(r, "the unexpected message is at line {l}:");
            r.push_str(&excerpt(log, l.saturating_sub(3).max(1), 7));
        }
        let _ = writeln!(r, "last 30 lines of the verifier log:");
        r.push_str(&tail(log, 30));
        return Err(MatchFailure { report: r });
    }
    Ok(msgs.iter().filter(|m| !m.negative).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_patterns() {
        let re = compile_pattern("R{{[0-9]}} invalid mem access 'scalar'").unwrap();
        assert!(re.is_match("3: R1 invalid mem access 'scalar'"));
        assert!(!re.is_match("R11 invalid mem access 'scalar'"));
        // Verbatim parts are not regex: '(' and '*' are literal.
        let re = compile_pattern("r0 = *(u64 *)(r1 +{{-?[0-9]+}})").unwrap();
        assert!(re.is_match("2: (79) r0 = *(u64 *)(r1 +0)"));
        // '.' in a regex part does not cross lines.
        let re = compile_pattern("a{{.*}}b").unwrap();
        assert!(!re.is_match("a\nb"));
        assert!(compile_pattern("x{{[0-9]").is_err());
    }

    fn pats(p: &[(&str, bool)]) -> Vec<Pattern> {
        p.iter()
            .map(|(t, n)| Pattern::new(t, *n).unwrap())
            .collect()
    }

    const LOG: &str = "0: (b7) r0 = 0\n1: (b7) r1 = 42\n2: (79) r0 = *(u64 *)(r1 +0)\n\
                       R1 invalid mem access 'scalar'\nprocessed 3 insns\n";

    #[test]
    fn messages_in_order() {
        let ok = pats(&[
            ("r1 = 42", false),
            ("R{{[0-9]+}} invalid mem access", false),
            ("processed", false),
        ]);
        assert_eq!(match_msgs(LOG, &ok).unwrap(), 3);
        // Each message is searched after the end of the previous match.
        let reversed = pats(&[("invalid mem access", false), ("r1 = 42", false)]);
        let f = match_msgs(LOG, &reversed).unwrap_err().report;
        assert!(f.contains("EXPECTED, NOT FOUND"), "{f}");
        assert!(f.contains("'r1 = 42'"), "{f}");
        assert!(f.contains("matched up to line 4"), "{f}");
        assert!(f.contains("last 30 lines"), "{f}");
    }

    #[test]
    fn tail_shows_the_error_before_a_long_diagnosis() {
        let mut log = String::from("0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\n");
        log.push_str("Verification failed: Register Type Safety\n");
        for i in 0..40 {
            log.push_str(&format!("diag line {i}\n"));
        }
        let t = tail(&log, 30);
        assert!(t.contains("R1 invalid mem access"), "{t}");
        assert!(t.contains("diag line 39"), "{t}");
        assert!(!tail(LOG, 30).contains("diagnosis"));
    }

    #[test]
    fn negative_messages_between_positives() {
        // "r1 = 42" sits before the first positive match: not in the span, fine.
        let ok = pats(&[
            ("R1 invalid", false),
            ("r1 = 42", true),
            ("processed", false),
        ]);
        assert!(match_msgs(LOG, &ok).is_ok());
        let bad = pats(&[
            ("r1 = 42", false),
            ("invalid mem access", true),
            ("processed", false),
        ]);
        let f = match_msgs(LOG, &bad).unwrap_err().report;
        assert!(f.contains("UNEXPECTED (line 4)"), "{f}");
        // Trailing negative: checked to the end of the log.
        let bad = pats(&[("r0 = 0", false), ("{{processed [0-9]+}}", true)]);
        assert!(match_msgs(LOG, &bad).is_err());
    }
}

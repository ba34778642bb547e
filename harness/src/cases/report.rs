//! Results: a case's verdict and notes, the rendered `PASS`/`FAIL`/`SKIP` block, and the
//! errno names and log context that failure reports carry.

use std::fmt::Write as _;
use std::time::Duration;

use super::matching::tail;

/// Outcome of one case.
#[derive(Debug)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// Not run, with the reason. Never counts as a pass.
    Skip(String),
}

impl Verdict {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail(_) => "FAIL",
            Verdict::Skip(_) => "SKIP",
        }
    }
}

#[derive(Debug)]
pub struct CaseReport {
    pub verdict: Verdict,
    /// Short lines on what was checked (shown for passes too).
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

impl CaseReport {
    /// Human-readable result block.
    pub fn render(&self, name: &str) -> String {
        let word = self.verdict.word();
        let detail = match &self.verdict {
            Verdict::Pass => None,
            Verdict::Fail(d) | Verdict::Skip(d) => Some(d.as_str()),
        };
        let mut s = format!("{word} {name} ({:.2}s)", self.elapsed.as_secs_f64());
        for n in &self.notes {
            let _ = write!(s, "\n    {n}");
        }
        if let Some(d) = detail {
            for l in d.lines() {
                let _ = write!(s, "\n    {l}");
            }
        }
        s
    }
}

/// `EPERM (1: Operation not permitted)`; `errno 600 (Unknown error 600)` for a number
/// without a name ([`crate::errno::symbol`]).
pub fn errno_name(e: i32) -> String {
    let text = std::io::Error::from_raw_os_error(e).to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    match crate::errno::symbol(e) {
        Some(sym) => format!("{sym} ({e}: {text})"),
        None => format!("errno {e} ({text})"),
    }
}

/// libbpf's messages and the end of the verifier log, for a report about a failed load.
pub fn load_failure_context(libbpf: &str, log: &str) -> String {
    let libbpf = libbpf.trim_end();
    let mut out = if libbpf.is_empty() {
        "libbpf: (no messages)\n".to_string()
    } else {
        format!("libbpf:\n{libbpf}\n")
    };
    if log.trim().is_empty() {
        out.push_str(
            "verifier log: empty (nothing from the verifier: the kernel refused the program \
             before the verifier ran, or libbpf failed before the program reached the kernel)",
        );
    } else {
        let _ = write!(out, "last 30 lines of the verifier log:\n{}", tail(log, 30));
    }
    out
}

//! Cases run in one guest per batch, their results handed to one test each: the line the
//! guest prints per case, the host's parse of those lines, one boot per nextest run, and a
//! test's outcome from its line. `tests/verifier.rs` and `tests/series_selftests.rs` both run
//! their cases this way.

use std::collections::HashMap;
use std::sync::Arc;

use super::report::CaseReport;

/// A line that fails every case of the batch, with the reason.
pub const BATCH_ERROR: &str = "BATCH-ERROR";

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// In the guest: the line reporting case `name`, `<tag>\t<name>\t<PASS|FAIL|SKIP>\t<report>`
/// (the rendered report on one line).
pub fn result_line(tag: &str, name: &str, r: &CaseReport) -> String {
    format!(
        "{tag}\t{name}\t{}\t{}",
        r.verdict.word(),
        escape(&r.render(name))
    )
}

/// The line that fails the whole batch with `msg` (ends with a newline).
pub fn error_line(msg: &str) -> String {
    format!("{BATCH_ERROR}\t{}\n", escape(msg))
}

/// One case's result as the guest reported it.
#[derive(Clone, Debug)]
pub struct BatchResult {
    /// `PASS`, `FAIL` or `SKIP`
    pub verdict: String,
    pub report: String,
}

/// All results of one batch by test name, or why the batch failed as a whole.
pub type Batch = Result<Arc<HashMap<String, BatchResult>>, String>;

/// The results in the guest's output `text` (its `tag` lines; an error line fails all).
pub fn parse_results(tag: &str, text: &str) -> Batch {
    let mut map = HashMap::new();
    for line in text.lines() {
        let mut f = line.splitn(4, '\t');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(t), Some(name), Some(verdict), Some(report)) if t == tag => {
                let r = BatchResult {
                    verdict: verdict.to_string(),
                    report: unescape(report),
                };
                map.insert(name.to_string(), r);
            }
            (Some(BATCH_ERROR), Some(msg), _, _) => return Err(unescape(msg)),
            _ => {}
        }
    }
    Ok(Arc::new(map))
}

/// `boot()`'s output, once per nextest run (`per_run::once`): the first test process boots,
/// the others of the run wait for and read its output; nothing carries over to another run.
pub fn once_per_run(key: &str, boot: impl FnOnce() -> String) -> Result<String, String> {
    crate::per_run::once(key, || Ok(boot()), |e| e)
}

/// The outcome of test `name` from its `batch`, which `guest` (e.g. "the patched guest") ran:
/// its report printed, Ok for a pass; a failure, a skip (never a pass) or no result is Err.
pub fn outcome(batch: &Batch, name: &str, guest: &str) -> Result<(), String> {
    let results = batch.as_ref().map_err(Clone::clone)?;
    let Some(r) = results.get(name) else {
        return Err(format!(
            "{guest} did not report a result for this case (it reported {} result(s))",
            results.len()
        ));
    };
    println!("{}", r.report);
    match r.verdict.as_str() {
        "PASS" => Ok(()),
        "SKIP" => Err("not run in the guest (see above): a skip is not a pass".into()),
        _ => Err("case failed in the guest (details above)".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cases::Verdict;

    #[test]
    fn result_lines_round_trip() {
        let r = CaseReport {
            verdict: Verdict::Fail("line one\n\tline two \\ end".into()),
            notes: vec!["a note".into()],
            elapsed: Duration::from_millis(10),
        };
        let text = format!("noise\n{}\n", result_line("TAG", "stock::obj::prog", &r));
        let batch = parse_results("TAG", &text);
        let got = &batch.as_ref().unwrap()["stock::obj::prog"];
        assert_eq!(got.verdict, "FAIL");
        assert_eq!(got.report, r.render("stock::obj::prog"));
        assert!(outcome(&batch, "stock::obj::prog", "the guest").is_err());
        assert!(outcome(&batch, "other", "the guest")
            .unwrap_err()
            .contains("did not report"));
        let err = parse_results("TAG", &error_line("boot\tfailed\nhere"));
        assert_eq!(err.unwrap_err(), "boot\tfailed\nhere");
    }

    #[test]
    fn a_pass_is_ok() {
        let r = CaseReport {
            verdict: Verdict::Pass,
            notes: vec![],
            elapsed: Duration::ZERO,
        };
        let batch = parse_results("T", &result_line("T", "n", &r));
        assert_eq!(outcome(&batch, "n", "the guest"), Ok(()));
    }
}

//! The boot log: one line per guest boot in `$CRIB_CACHE/vm-boots.log`, appended by every
//! [`super::Vm::run`] and [`super::Vm::run_single`] (so by every VM test and `crib vm`), and a
//! summary of it, printed after every retry and by `crib vm --repeat` / `crib vm --stats`, so
//! a rising failure or retry rate is visible across runs and test processes.
//!
//! Line format (space-separated, one write with `O_APPEND`, so concurrent test processes do
//! not interleave): `<unix seconds> <backend> <flavor> <release> <outcome> <retry-of>`, where
//! outcome is `ok` or a [`FailureClass`] name (VM failures only: a command's own exit code is
//! not the VM's), and retry-of is `-` for a first boot or the class that caused this boot.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::FailureClass;
use crate::kernel::{cache_dir, Kernel};

/// `$CRIB_CACHE/vm-boots.log`.
pub fn log_path() -> PathBuf {
    cache_dir().join("vm-boots.log")
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One boot-log line.
pub fn format_line(
    unix: u64,
    backend: &str,
    kernel: &Kernel,
    outcome: Option<FailureClass>,
    retry_of: Option<FailureClass>,
) -> String {
    format!(
        "{unix} {backend} {} {} {} {}\n",
        kernel.flavor,
        kernel.release.replace(char::is_whitespace, "_"),
        outcome.map_or("ok", FailureClass::name),
        retry_of.map_or("-", FailureClass::name)
    )
}

/// Append one boot to the log. `retry` says this boot retried a failure of class `outcome` of
/// the boot before; a log that cannot be written is reported, never fatal.
pub fn record(kernel: &Kernel, backend: &str, outcome: Option<FailureClass>, retry: bool) {
    record_at(&log_path(), kernel, backend, outcome, retry);
}

thread_local! {
    /// The class the last first boot of this thread failed with, for the retry's line.
    static LAST_FIRST: std::cell::Cell<Option<FailureClass>> = const { std::cell::Cell::new(None) };
}

fn record_at(
    path: &Path,
    kernel: &Kernel,
    backend: &str,
    outcome: Option<FailureClass>,
    retry: bool,
) {
    let retry_of = if retry {
        LAST_FIRST.with(|c| c.get())
    } else {
        LAST_FIRST.with(|c| c.set(outcome));
        None
    };
    let line = format_line(now_unix(), backend, kernel, outcome, retry_of);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        })
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "crib vm: cannot append to the boot log {}: {e}",
            path.display()
        );
    }
}

/// Counts over a boot log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub boots: u64,
    pub failed: BTreeMap<FailureClass, u64>,
    /// Boots that retried a failure, by the class retried.
    pub retries: BTreeMap<FailureClass, u64>,
    /// Lines that are not boot-log lines (counted, not fatal).
    pub unreadable: u64,
}

impl Summary {
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }
    pub fn retried(&self) -> u64 {
        self.retries.values().sum()
    }
}

/// Count the boots of a boot log made at or after `since` (unix seconds).
pub fn summarize(text: &str, since: u64) -> Summary {
    let mut s = Summary::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = match f.as_slice() {
            [t, _backend, _flavor, _release, outcome, retry_of] => {
                t.parse::<u64>().ok().and_then(|t| {
                    let outcome = match *outcome {
                        "ok" => None,
                        o => Some(FailureClass::from_name(o)?),
                    };
                    let retry_of = match *retry_of {
                        "-" => None,
                        r => Some(FailureClass::from_name(r)?),
                    };
                    Some((t, outcome, retry_of))
                })
            }
            _ => None,
        };
        let Some((t, outcome, retry_of)) = parsed else {
            s.unreadable += 1;
            continue;
        };
        if t < since {
            continue;
        }
        s.boots += 1;
        if let Some(c) = outcome {
            *s.failed.entry(c).or_default() += 1;
        }
        if let Some(c) = retry_of {
            *s.retries.entry(c).or_default() += 1;
        }
    }
    s
}

fn by_class(m: &BTreeMap<FailureClass, u64>) -> String {
    m.iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// `boot log <path>: last 24 h: N boots, F failed (...), R retried (...); all: ...`.
pub fn summary_line(path: &Path) -> String {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return format!("boot log {}: no boots recorded yet", path.display())
        }
        Err(e) => return format!("boot log {}: cannot read it: {e}", path.display()),
    };
    let part = |s: &Summary| {
        let mut out = format!(
            "{} boots, {} failed ({:.2}%)",
            s.boots,
            s.failures(),
            pct(s.failures(), s.boots)
        );
        if !s.failed.is_empty() {
            out.push_str(&format!(": {}", by_class(&s.failed)));
        }
        out.push_str(&format!(
            "; {} retried ({:.2}%)",
            s.retried(),
            pct(s.retried(), s.boots)
        ));
        if !s.retries.is_empty() {
            out.push_str(&format!(": {}", by_class(&s.retries)));
        }
        out
    };
    let day = summarize(&text, now_unix().saturating_sub(24 * 3600));
    let all = summarize(&text, 0);
    format!(
        "boot log {}: last 24 h: {}. All: {}",
        path.display(),
        part(&day),
        part(&all)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Flavor;

    fn kernel() -> Kernel {
        Kernel {
            flavor: Flavor::Patched,
            variant: "release".into(),
            dir: "/k".into(),
            bzimage: "/k/bzImage".into(),
            vmlinux: "/k/vmlinux".into(),
            vmlinux_h: "/k/vmlinux.h".into(),
            release: "7.3.0-rc7-gabc".into(),
            base: "linux-source-7.3".into(),
            module: None,
            manifest: Default::default(),
        }
    }

    #[test]
    fn boot_log_lines_round_trip_into_counts_by_class() {
        let k = kernel();
        let int3 = Some(FailureClass::TcgStaleInt3);
        let text = [
            format_line(100, "vmtest", &k, None, None),
            format_line(101, "vmtest", &k, int3, None),
            format_line(102, "vmtest", &k, None, int3),
            format_line(103, "direct", &k, Some(FailureClass::Timeout), None),
            "garbage line\n".to_string(),
        ]
        .concat();
        assert_eq!(
            text.lines().nth(2),
            Some("102 vmtest patched 7.3.0-rc7-gabc ok tcg-stale-int3")
        );
        let s = summarize(&text, 0);
        assert_eq!(s.boots, 4);
        assert_eq!(s.failures(), 2);
        assert_eq!(s.failed[&FailureClass::TcgStaleInt3], 1);
        assert_eq!(s.failed[&FailureClass::Timeout], 1);
        assert_eq!(s.retried(), 1);
        assert_eq!(s.retries[&FailureClass::TcgStaleInt3], 1);
        assert_eq!(s.unreadable, 1);
        // Only boots at or after `since` count.
        assert_eq!(summarize(&text, 102).boots, 2);
    }

    #[test]
    fn a_retry_line_names_the_class_of_the_boot_it_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm-boots.log");
        let k = kernel();
        record_at(&path, &k, "vmtest", Some(FailureClass::TcgStaleInt3), false);
        record_at(&path, &k, "vmtest", None, true);
        let text = std::fs::read_to_string(&path).unwrap();
        let s = summarize(&text, 0);
        assert_eq!((s.boots, s.failures(), s.retried()), (2, 1, 1));
        assert_eq!(s.retries[&FailureClass::TcgStaleInt3], 1);
        let line = summary_line(&path);
        assert!(
            line.contains("2 boots, 1 failed (50.00%): tcg-stale-int3 1"),
            "{line}"
        );
        assert!(
            line.contains("1 retried (50.00%): tcg-stale-int3 1"),
            "{line}"
        );
    }
}

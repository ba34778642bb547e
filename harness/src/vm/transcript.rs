//! The transcript: what a guest printed, each line with its arrival time ([`RawRun`]), saved
//! for `CRIB_VM_LOG`, split at the run's markers into boot console, command output, exit code
//! and dmesg, and interpreted into a [`GuestRun`] or the reason the VM failed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::splat::{is_crash, scan_splats};
use super::{GuestRun, VmError};

/// Lines of console output shown with a failed boot.
pub(super) const TAIL_LINES: usize = 40;

/// What vmtest printed, each line with when it arrived.
#[derive(Debug, Default)]
pub struct RawRun {
    pub lines: Vec<(Duration, String)>,
    pub stderr: String,
    /// vmtest's exit code; None when killed by a signal.
    pub code: Option<i32>,
    pub total: Duration,
    pub timed_out: bool,
}

/// Where a run's transcript goes: the caller's path, else `$CRIB_VM_LOG`.
pub(super) fn transcript_path(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| crate::settings::get().vm_log.clone())
}

/// Write what vmtest (or QEMU's console, `who`) printed, each line with its arrival time, for
/// `CRIB_VM_LOG`.
pub(super) fn save_transcript(path: &Path, raw: &RawRun, who: &str) {
    let mut text = String::new();
    for (at, line) in &raw.lines {
        let _ = writeln!(text, "{:8.3} {line}", at.as_secs_f64());
    }
    let _ = writeln!(
        text,
        "--- {who} exit {:?} after {:.3}s, timed out: {}\n--- {who} stderr:\n{}",
        raw.code,
        raw.total.as_secs_f64(),
        raw.timed_out,
        raw.stderr
    );
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("crib vm: cannot write CRIB_VM_LOG {}: {e}", path.display());
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    Console,
    Output,
    Dmesg,
    After,
}

/// Which section a line opens or belongs to, given the section before it.
pub(super) fn section_of(line: &str, nonce: &str, prev: Section) -> Section {
    match find_marker(line, nonce) {
        Some((_, "START", _)) => Section::Output,
        Some((_, "RC", _)) => Section::Console,
        Some((_, "DMESG", _)) => Section::Dmesg,
        Some((_, "END", _)) => Section::After,
        _ => prev,
    }
}

/// `(text before the marker, marker name, value)` if the line holds a marker of this run.
pub(super) fn find_marker<'a>(line: &'a str, nonce: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let tag = format!("@@CRIB:{nonce}:");
    let at = line.find(&tag)?;
    let rest = &line[at + tag.len()..];
    let end = rest.find("@@")?;
    Some((&line[..at], &rest[..end], &rest[end + 2..]))
}

/// vmtest prints its own failure as `<what failed>`, a blank line, `Caused by:` and a numbered
/// chain, then (with RUST_BACKTRACE set) `Stack backtrace:` and frames. Returns that error
/// (without the backtrace) and the lines with the backtrace cut out.
pub(super) fn split_vmtest_error<'a>(lines: &[&'a str]) -> (Option<String>, Vec<&'a str>) {
    let Some(caused) = lines.iter().rposition(|l| l.trim_end() == "Caused by:") else {
        return (None, lines.to_vec());
    };
    let head = lines[..caused]
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .unwrap_or(caused);
    let bt = lines[caused..]
        .iter()
        .position(|l| l.trim_end() == "Stack backtrace:")
        .map_or(lines.len(), |i| caused + i);
    let err: Vec<&str> = lines[head..bt]
        .iter()
        .map(|l| l.trim_end())
        .filter(|l| !l.is_empty())
        .collect();
    // The frames run to the end of vmtest's output or to a blank line.
    let frames_end = lines[bt..]
        .iter()
        .position(|l| l.trim().is_empty())
        .map_or(lines.len(), |i| bt + i);
    let mut rest = lines[..bt].to_vec();
    rest.extend_from_slice(&lines[frames_end..]);
    (Some(err.join("\n")), rest)
}

pub(super) fn tail(lines: &[&str], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A guest transcript split at this run's markers: what came before the command (boot and
/// setup console), the command's output, its exit code and the guest's dmesg.
#[derive(Debug, Default)]
pub(super) struct Transcript<'a> {
    console: Vec<&'a str>,
    output: Vec<&'a str>,
    dmesg: Vec<&'a str>,
    /// Arrival of the START marker, if it came.
    started: Option<Duration>,
    rc: Option<i32>,
    ended: bool,
    setup_failed: Option<String>,
}

impl Transcript<'_> {
    /// What the guest was doing when the transcript stops.
    pub(super) fn phase(&self) -> &'static str {
        match (self.started.is_some(), self.rc) {
            (false, _) => BOOT_PHASE,
            (true, None) => "running the command",
            (true, Some(_)) => "collecting dmesg",
        }
    }

    /// Setup failed: the step and (the console lines before its marker) its output.
    pub(super) fn setup_error(&self) -> Option<VmError> {
        let step = self.setup_failed.clone()?;
        // The failing step's output comes right before the marker.
        Some(VmError::Setup {
            step,
            output: tail(&self.console, 15),
        })
    }

    /// The run, if the command finished and the dmesg was printed to its end marker.
    pub(super) fn finished(&self, total: Duration) -> Option<GuestRun> {
        let (Some(rc), true) = (self.rc, self.ended) else {
            return None;
        };
        Some(GuestRun {
            exit_code: rc,
            output: self.output.join("\n"),
            dmesg: self.dmesg.join("\n"),
            boot: self.started.unwrap_or_default(),
            total,
            console: self.console.join("\n"),
        })
    }
}

/// Split a transcript (lines with arrival times) at the markers carrying `nonce`.
pub(super) fn split_transcript<'a>(lines: &'a [(Duration, String)], nonce: &str) -> Transcript<'a> {
    let mut t = Transcript::default();
    let mut section = Section::Console;
    for (at, line) in lines {
        let Some((before, name, value)) = find_marker(line, nonce) else {
            match section {
                Section::Output => t.output.push(line),
                Section::Dmesg => t.dmesg.push(line),
                Section::Console | Section::After => t.console.push(line),
            }
            continue;
        };
        if !before.is_empty() {
            match section {
                Section::Output => t.output.push(before),
                Section::Dmesg => t.dmesg.push(before),
                _ => t.console.push(before),
            }
        }
        match name {
            "START" => {
                t.started = Some(*at);
                section = Section::Output;
            }
            "RC" => {
                t.rc = value.trim().parse().ok();
                section = Section::Console;
            }
            "DMESG" => section = Section::Dmesg,
            "END" => {
                t.ended = true;
                section = Section::After;
            }
            "SETUP-FAILED" => t.setup_failed = Some(value.to_string()),
            _ => t.console.push(line),
        }
    }
    t
}

/// Turn what vmtest printed into a [`GuestRun`] or the reason the VM failed.
pub fn interpret(raw: RawRun, nonce: &str, timeout: Duration) -> Result<GuestRun, VmError> {
    let t = split_transcript(&raw.lines, nonce);
    let phase = t.phase();
    if let Some(e) = t.setup_error() {
        return Err(e);
    }
    // When the VM failed, console and command output interleave up to the end: show and
    // scan everything in arrival order.
    let all: Vec<&str> = raw.lines.iter().map(|(_, l)| l.as_str()).collect();
    let (vmtest_err, all) = split_vmtest_error(&all);
    if raw.timed_out {
        return Err(VmError::Timeout {
            timeout,
            phase,
            tail: tail(&all, TAIL_LINES),
            splats: scan_splats(&all.join("\n")),
        });
    }
    let Some(run) = t.finished(raw.total) else {
        let splats = scan_splats(&all.join("\n"));
        let mut reason = match vmtest_err {
            Some(e) => format!("vmtest: {e}"),
            None if splats.is_empty() => {
                "the guest stopped before the command finished".to_string()
            }
            None => String::new(),
        };
        let err = raw.stderr.trim();
        if !err.is_empty() {
            reason.push_str(&format!("\nvmtest stderr:\n{err}"));
        }
        if is_crash(&splats) {
            return Err(VmError::Crashed {
                phase,
                splats,
                tail: tail(&all, TAIL_LINES),
            });
        }
        return Err(VmError::Failed {
            phase,
            code: raw.code,
            reason: reason.trim().to_string(),
            tail: tail(&all, TAIL_LINES),
        });
    };
    Ok(run)
}

/// The phase before the command starts (boot, guest setup, module load).
pub const BOOT_PHASE: &str = "booting and setting up the guest";

//! Why a guest run failed, as data: [`FailureClass`], and pure classifiers over a run's result
//! ([`classify`]) or over a saved transcript ([`classify_transcript`]), so every class seen on
//! these machines has a fixture under `vm/testdata/` and a host unit test (`vm/tests/classify.rs`).
//!
//! Only [`FailureClass::TcgStaleInt3`] is retried by [`super::Vm::run`]: it is the one class
//! whose transcript proves the fault lies outside the code under test. Root causes of each
//! class: harness/README.md, "Flakes and retries".

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::{
    crashed_untainted, direct, interpret, GuestRun, RawRun, Splat, SplatKind, VmError, BOOT_PHASE,
    DEFAULT_TIMEOUT,
};

/// What went wrong in one guest run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// vmtest panicked in its QMP handshake (`qapi ... unexpected eof`) before the guest was
    /// up: the runner's QMP gate hung up on vmtest (gate removed; see the README).
    QmpHandshakeEof,
    /// An untainted kernel oopsed on an INT3 byte that is no longer in its text, before the
    /// command started: QEMU's multi-threaded TCG executed a stale translation of code the
    /// kernel had finished patching. The only class that is retried.
    TcgStaleInt3,
    /// `BUG: KASAN: wild-memory-access` from an interrupt during `identify_cpu()` at early
    /// boot: the LA57 feature-bit window of 7.3 under `-cpu max` (fixed by `no5lvl`).
    EarlyKasanLa57,
    /// `Kernel panic - not syncing: IO-APIC + timer doesn't work!` while booting: the
    /// kernel's timer-IRQ self-test missed its ~60 ms window on an overloaded host (fixed by
    /// `no_timer_check`).
    TimerCheckPanic,
    /// vmtest gave up on its guest agent (connect, `guest-sync` or a request timed out).
    GuestAgent,
    /// The run's own timeout expired.
    Timeout,
    /// Any other kernel crash (panic, oops, GPF) on the console.
    KernelCrash,
    /// The command ran, but the guest's dmesg holds a kernel splat.
    KernelSplat,
    /// A guest setup step (bpffs, lo, tmpfs, insmod) failed.
    Setup,
    /// The command ran and exited non-zero; the kernel log is clean.
    CommandFailed,
    /// Any other failure of vmtest or QEMU.
    Other,
}

impl FailureClass {
    pub const ALL: [FailureClass; 11] = [
        FailureClass::QmpHandshakeEof,
        FailureClass::TcgStaleInt3,
        FailureClass::EarlyKasanLa57,
        FailureClass::TimerCheckPanic,
        FailureClass::GuestAgent,
        FailureClass::Timeout,
        FailureClass::KernelCrash,
        FailureClass::KernelSplat,
        FailureClass::Setup,
        FailureClass::CommandFailed,
        FailureClass::Other,
    ];

    /// The name used in messages and in the boot log.
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::QmpHandshakeEof => "qmp-handshake-eof",
            FailureClass::TcgStaleInt3 => "tcg-stale-int3",
            FailureClass::EarlyKasanLa57 => "early-kasan-la57",
            FailureClass::TimerCheckPanic => "timer-check-panic",
            FailureClass::GuestAgent => "guest-agent",
            FailureClass::Timeout => "timeout",
            FailureClass::KernelCrash => "kernel-crash",
            FailureClass::KernelSplat => "kernel-splat",
            FailureClass::Setup => "setup",
            FailureClass::CommandFailed => "command-failed",
            FailureClass::Other => "other",
        }
    }

    pub fn from_name(s: &str) -> Option<FailureClass> {
        FailureClass::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Whether [`super::Vm::run`] boots once more after this failure: only when the
    /// transcript proves the fault is the emulator's, never for anything our code could cause.
    pub fn retryable(self) -> bool {
        self == FailureClass::TcgStaleInt3
    }

    /// One line on what the class means.
    pub fn describe(self) -> &'static str {
        match self {
            FailureClass::QmpHandshakeEof => {
                "vmtest's QMP handshake read EOF before the guest was up (the runner's socket \
                 juggling; nothing of the guest is involved)"
            }
            FailureClass::TcgStaleInt3 => {
                "an untainted kernel trapped on an INT3 that is no longer in its text, before the \
                 command started: QEMU's multi-threaded TCG ran a stale translation of code the \
                 kernel had finished patching"
            }
            FailureClass::EarlyKasanLa57 => {
                "KASAN took a direct-map address for a wild one in an interrupt during \
                 identify_cpu() (5-level paging feature-bit window; booted with no5lvl since)"
            }
            FailureClass::TimerCheckPanic => {
                "the kernel's boot-time timer-IRQ self-test timed out on a loaded host and it \
                 panicked \"IO-APIC + timer doesn't work!\" (booted with no_timer_check since)"
            }
            FailureClass::GuestAgent => "vmtest gave up on its guest agent",
            FailureClass::Timeout => "the run's timeout expired",
            FailureClass::KernelCrash => "the kernel crashed",
            FailureClass::KernelSplat => "the kernel splatted (dmesg)",
            FailureClass::Setup => "a guest setup step failed",
            FailureClass::CommandFailed => "the command exited non-zero",
            FailureClass::Other => "vmtest or QEMU failed otherwise",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The class of a run's result; `None` for a run whose command exited 0 with a clean dmesg.
pub fn classify(result: &Result<GuestRun, VmError>) -> Option<FailureClass> {
    match result {
        Err(e) => Some(classify_error(e)),
        Ok(run) => {
            let splats = run.splats();
            if splats.iter().any(early_kasan_la57) {
                Some(FailureClass::EarlyKasanLa57)
            } else if !splats.is_empty() {
                Some(FailureClass::KernelSplat)
            } else if run.exit_code != 0 {
                Some(FailureClass::CommandFailed)
            } else {
                None
            }
        }
    }
}

/// The class of a VM failure.
pub fn classify_error(e: &VmError) -> FailureClass {
    match e {
        VmError::Setup { .. } => FailureClass::Setup,
        VmError::Timeout { .. } | VmError::GuestTimeout { .. } => FailureClass::Timeout,
        VmError::Crashed { phase, splats, .. } => {
            if *phase == BOOT_PHASE && stale_int3(splats) {
                FailureClass::TcgStaleInt3
            } else if *phase == BOOT_PHASE
                && splats
                    .iter()
                    .any(|s| s.line.contains("IO-APIC + timer doesn't work!"))
            {
                FailureClass::TimerCheckPanic
            } else {
                FailureClass::KernelCrash
            }
        }
        VmError::Failed { reason, .. } => {
            if (reason.contains("qapi") && reason.contains("unexpected eof"))
                || reason.contains("QMP handshake failed")
            {
                FailureClass::QmpHandshakeEof
            } else if reason.contains("QGA") {
                FailureClass::GuestAgent
            } else {
                FailureClass::Other
            }
        }
        _ => FailureClass::Other,
    }
}

/// The first report is an untainted `Oops: int3` whose `Code:` line shows a byte other than
/// INT3 (0xcc) right before RIP, i.e. where the trapping INT3 was. The kernel reads those bytes
/// from its text when it prints the oops, so the INT3 the CPU executed was gone from memory:
/// the patch was complete and every CPU had been synchronized (`smp_text_poke_batch_finish()`
/// drops its INT3 handler only after that), which on a coherent CPU cannot trap any more.
fn stale_int3(splats: &[Splat]) -> bool {
    if !crashed_untainted(splats) {
        return false;
    }
    let Some(first) = splats.iter().min_by_key(|s| s.line_no) else {
        return false;
    };
    first.kind == SplatKind::Oops
        && first.line.starts_with("Oops: int3")
        && first
            .excerpt
            .lines()
            .find_map(|l| l.split_once("Code: ").map(|(_, code)| code))
            .and_then(byte_before_rip)
            .is_some_and(|b| b != "cc")
}

/// In an oops `Code:` line (`... 53 66 <90> e8 ...`), the byte just before the one at RIP.
fn byte_before_rip(code: &str) -> Option<&str> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let at = words.iter().position(|w| w.starts_with('<'))?;
    words.get(at.checked_sub(1)?).copied()
}

/// The early-boot KASAN report of the LA57 window: untainted, `wild-memory-access`, taken in
/// an interrupt while `identify_cpu()` rebuilt the boot CPU's feature bits.
fn early_kasan_la57(s: &Splat) -> bool {
    s.kind == SplatKind::Kasan
        && s.line.contains("wild-memory-access")
        && s.excerpt.contains("identify_cpu")
        && s.excerpt.contains(" Not tainted ")
}

/// Why a saved transcript could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("transcript line {line}: expected `<seconds> <text>`, got {text:?}")]
    BadLine { line: usize, text: String },
    #[error("the transcript has no `--- vmtest exit` or `--- qemu exit` footer")]
    NoFooter,
    #[error("transcript footer {0:?}: cannot read the exit code, time or timeout flag")]
    BadFooter(String),
}

/// A transcript as `CRIB_VM_LOG` / `crib vm --repeat` save it: which program printed it
/// (`vmtest` or `qemu`, the direct backend's console), the run, and the nonce of its markers.
#[derive(Debug)]
pub struct SavedTranscript {
    pub who: String,
    pub raw: RawRun,
    pub nonce: Option<String>,
}

/// Read a saved transcript: lines `<arrival seconds> <text>`, then `--- <who> exit <code>
/// after <s>s, timed out: <bool>`, `--- <who> stderr:` and the stderr text. Leading lines
/// starting with `#` are comments (the fixtures say where they come from).
pub fn parse_transcript(text: &str) -> Result<SavedTranscript, TranscriptError> {
    let mut raw = RawRun::default();
    let mut lines = text
        .lines()
        .enumerate()
        .skip_while(|(_, l)| l.starts_with('#'));
    let footer = loop {
        let Some((i, l)) = lines.next() else {
            return Err(TranscriptError::NoFooter);
        };
        if l.starts_with("--- ") && l.contains(" exit ") {
            break l;
        }
        let bad = || TranscriptError::BadLine {
            line: i + 1,
            text: l.to_string(),
        };
        let t = l.trim_start();
        let (secs, rest) = t.split_once(' ').unwrap_or((t, ""));
        let secs: f64 = secs.parse().map_err(|_| bad())?;
        if !secs.is_finite() || secs < 0.0 {
            return Err(bad());
        }
        raw.lines
            .push((Duration::from_secs_f64(secs), rest.to_string()));
    };
    let bad_footer = || TranscriptError::BadFooter(footer.to_string());
    let body = footer.strip_prefix("--- ").ok_or_else(bad_footer)?;
    let (who, rest) = body.split_once(" exit ").ok_or_else(bad_footer)?;
    let (code, rest) = rest.split_once(" after ").ok_or_else(bad_footer)?;
    let (secs, timed_out) = rest.split_once("s, timed out: ").ok_or_else(bad_footer)?;
    raw.code = match code {
        "None" => None,
        c => Some(
            c.strip_prefix("Some(")
                .and_then(|c| c.strip_suffix(')'))
                .and_then(|c| c.parse().ok())
                .ok_or_else(bad_footer)?,
        ),
    };
    raw.total = secs
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(bad_footer)?;
    raw.timed_out = timed_out.trim().parse().map_err(|_| bad_footer())?;
    let stderr: Vec<&str> = lines
        .map(|(_, l)| l)
        .skip_while(|l| !l.starts_with("--- ") || !l.ends_with(" stderr:"))
        .skip(1)
        .collect();
    raw.stderr = stderr.join("\n");
    let nonce = raw.lines.iter().find_map(|(_, l)| {
        let rest = &l[l.find("@@CRIB:")? + "@@CRIB:".len()..];
        rest.split_once(':').map(|(n, _)| n.to_string())
    });
    Ok(SavedTranscript {
        who: who.to_string(),
        raw,
        nonce,
    })
}

/// The class of the run a saved transcript records (`None`: it passed), interpreted as the
/// runner interprets it live: the vmtest backend's rules for `vmtest` transcripts, the direct
/// backend's for `qemu` ones.
pub fn classify_transcript(text: &str) -> Result<Option<FailureClass>, TranscriptError> {
    let t = parse_transcript(text)?;
    // A transcript without markers never started the command; no nonce matches nothing.
    let nonce = t.nonce.unwrap_or_else(|| "-".to_string());
    let result = if t.who == "qemu" {
        direct::interpret(
            t.raw,
            &nonce,
            DEFAULT_TIMEOUT,
            Path::new("(saved transcript)"),
        )
    } else {
        interpret(t.raw, &nonce, DEFAULT_TIMEOUT)
    };
    Ok(classify(&result))
}

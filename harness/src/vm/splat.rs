//! The splat scanner: kernel reports (BUG, WARNING, KASAN, lockdep, refcount, Oops, panic,
//! stalls, ...) found in a guest's dmesg or console, each with its trigger line and an excerpt.

use std::sync::OnceLock;

use regex::Regex;

/// Lines in a splat excerpt.
pub(super) const EXCERPT_LINES: usize = 40;

/// What kind of kernel report a splat is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SplatKind {
    SleepingInAtomic,
    Kasan,
    Ubsan,
    Kfence,
    CircularLocking,
    InconsistentLockState,
    SuspiciousRcu,
    Refcount,
    ListCorruption,
    SoftLockup,
    HungTask,
    RcuStall,
    Panic,
    GeneralProtectionFault,
    Oops,
    Bug,
    Warning,
    /// kmemleak found objects nobody references (debug variant, scanned at teardown).
    MemoryLeak,
    /// The guest's teardown found something still held after the command ended: the module
    /// would not unload (a leaked reference to it, e.g. a program or file kept alive).
    TeardownLeak,
}

/// One kernel report found in a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splat {
    pub kind: SplatKind,
    /// The line that triggered the match (timestamp stripped).
    pub line: String,
    /// Index of that line in the scanned text.
    pub line_no: usize,
    /// About 40 lines of the log from just before the trigger, as printed.
    pub excerpt: String,
}

/// Patterns in priority order: the first that matches a line names its kind.
pub(super) fn splat_patterns() -> &'static [(SplatKind, Regex)] {
    static PATTERNS: OnceLock<Vec<(SplatKind, Regex)>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let table: &[(SplatKind, &str)] = &[
            (
                SplatKind::SleepingInAtomic,
                r"BUG: sleeping function called from invalid context",
            ),
            (SplatKind::Kasan, r"^(BUG: )?KASAN: "),
            (SplatKind::Ubsan, r"^UBSAN: "),
            (SplatKind::Kfence, r"^BUG: KFENCE: "),
            (
                SplatKind::CircularLocking,
                r"possible circular locking dependency detected",
            ),
            (SplatKind::InconsistentLockState, r"inconsistent lock state"),
            (SplatKind::SuspiciousRcu, r"suspicious RCU usage"),
            (SplatKind::Refcount, r"^refcount_t: "),
            (SplatKind::ListCorruption, r"list_(add|del) corruption"),
            (SplatKind::SoftLockup, r"BUG: soft lockup"),
            (
                SplatKind::HungTask,
                r"^INFO: task .* blocked for more than \d+ seconds",
            ),
            (
                SplatKind::RcuStall,
                r"detected stalls? on CPUs|self-detected stall on CPU",
            ),
            (SplatKind::Panic, r"Kernel panic - not syncing"),
            (
                SplatKind::GeneralProtectionFault,
                r"^(Oops: )?general protection fault",
            ),
            (SplatKind::Oops, r"^Oops\b|\bOops: [0-9a-f]{4} \[#\d+\]"),
            (
                SplatKind::Bug,
                r"(^|: )BUG: |^kernel BUG at |^BUG \S+ \(.*\): ",
            ),
            (SplatKind::Warning, r"^WARNING: "),
            (
                SplatKind::MemoryLeak,
                r"^kmemleak: \d+ new suspected memory leaks",
            ),
            (SplatKind::TeardownLeak, r"^crib-teardown: "),
        ];
        table
            .iter()
            // The patterns are constants: a bad one is a bug caught by the unit tests.
            .filter_map(|(k, re)| Regex::new(re).ok().map(|re| (*k, re)))
            .collect()
    })
}

/// The message part of a kernel log line: drops `[   1.234567] ` and a `[T123]` caller id.
pub fn strip_log_prefix(line: &str) -> &str {
    static PREFIX: OnceLock<Option<Regex>> = OnceLock::new();
    let re = PREFIX.get_or_init(|| Regex::new(r"^\s*\[\s*\d+\.\d+\]\s?(\[\s*[TC]\d+\]\s?)?").ok());
    match re.as_ref().and_then(|re| re.find(line)) {
        Some(m) => &line[m.end()..],
        None => line,
    }
}

/// Find kernel splats in a log (dmesg or console). A generic header (WARNING, BUG, Oops,
/// KASAN) within a few lines of the previous trigger belongs to the same report (e.g.
/// `refcount_t: underflow` then its `WARNING:` line) and is not reported twice.
pub fn scan_splats(log: &str) -> Vec<Splat> {
    const SAME_REPORT: usize = 5;
    let lines: Vec<&str> = log.lines().collect();
    let mut out: Vec<Splat> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let msg = strip_log_prefix(raw).trim_end();
        let Some(kind) = splat_patterns()
            .iter()
            .find(|(_, re)| re.is_match(msg))
            .map(|(k, _)| *k)
        else {
            continue;
        };
        let continues_previous = matches!(
            kind,
            SplatKind::Warning | SplatKind::Bug | SplatKind::Oops | SplatKind::Kasan
        ) && out
            .last()
            .is_some_and(|prev| i - prev.line_no <= SAME_REPORT);
        if continues_previous {
            continue;
        }
        let start = i.saturating_sub(2);
        let mut end = (start + EXCERPT_LINES).min(lines.len());
        if let Some(off) = lines[i..end]
            .iter()
            .position(|l| l.contains("---[ end trace"))
        {
            end = i + off + 1;
        }
        out.push(Splat {
            kind,
            line: msg.to_string(),
            line_no: i,
            excerpt: lines[start..end].join("\n"),
        });
    }
    out
}

/// The first splat reports an untainted kernel: nothing out of tree was loaded (our module
/// taints with `O`) and nothing had warned before it. Later splats of the same crash (the
/// panic after an Oops) are tainted by the first one.
pub fn crashed_untainted(splats: &[Splat]) -> bool {
    let Some(first) = splats.iter().min_by_key(|s| s.line_no) else {
        return false;
    };
    matches!(
        first.kind,
        SplatKind::Panic | SplatKind::Oops | SplatKind::GeneralProtectionFault
    ) && first
        .excerpt
        .lines()
        .any(|l| l.contains("CPU: ") && l.contains(" Not tainted "))
}

/// Whether the splats include one that stops the guest (panic, oops, GPF).
pub(super) fn is_crash(splats: &[Splat]) -> bool {
    splats.iter().any(|s| {
        matches!(
            s.kind,
            SplatKind::Panic | SplatKind::Oops | SplatKind::GeneralProtectionFault
        )
    })
}

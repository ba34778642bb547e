//! Boot a built kernel under QEMU through vmtest and run a command in the guest.
//!
//! API CONTRACT (other modules and tests code against these signatures; keep them):
//!
//! - `Vm::new(kernel: &Kernel) -> Vm`, builder setters `.timeout(Duration)`,
//!   `.env(key, value)`, `.ro_root(bool)`, `.backend(Backend)`.
//! - `Vm::run(&self, argv: &[OsString]) -> Result<GuestRun, VmError>`: boot, set the guest up
//!   (bpffs, lo, insmod the module on stock), run argv, collect exit code, output and dmesg,
//!   power off. `Err` only when the VM itself failed (boot failure, timeout, panic).
//! - `GuestRun { exit_code: i32, output: String, dmesg: String, boot: Duration, total: Duration }`
//!   and `GuestRun::splats(&self) -> Vec<Splat>` (BUG/WARNING/KASAN/lockdep/refcount/...).
//! - `in_guest() -> bool`: true inside a guest started by `Vm::run` (env CRIB_IN_GUEST=1).
//! - `run_test_in_guest(flavor: Flavor, test_name: &str) -> anyhow::Result<GuestRun>`:
//!   from a test on the host, re-run the current test binary in a guest with
//!   `--exact <test_name> --nocapture` (libtest and libtest-mimic both accept that) and fail
//!   (Err with output excerpt) on non-zero exit, any splat, or a VM failure.
//!
//! How a run works: `vmtest -k <bzImage> --kargs ro [-q scripts/qemu-tcg] -- <script>`, where
//! the script (bash, run by vmtest's guest agent in the host's `/` shared over 9p) mounts bpffs,
//! brings up `lo`, mounts a tmpfs on `/tmp`, insmods the module on the stock flavor, quiets the
//! console, prints a start marker, runs the command, prints its exit code, then the whole guest
//! `dmesg` between two more markers. Every marker carries a per-run nonce, so command output
//! cannot fake one. vmtest streams the command's output and the serial console to its stdout;
//! we read that line by line with timestamps (boot time = first marker), kill vmtest's whole
//! process group on timeout, and scan the dmesg for kernel splats.
//!
//! With `CRIB_VM_BACKEND=direct` ([`Backend::Direct`], `vm/direct.rs`) QEMU is started without
//! vmtest: our init script runs the same command script and everything comes back over the
//! serial console, which is split at the same markers into the same [`GuestRun`].

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use regex::Regex;
use thiserror::Error;

use crate::kernel::{cache_dir, Flavor, Kernel, KernelError};

/// Exit code vmtest uses when the VM itself failed (sysexits EX_UNAVAILABLE).
pub const EXIT_VM_FAILED: i32 = 69;
/// Exit code of `crib vm` when the guest setup (bpffs, lo, tmpfs, insmod) failed.
pub const EXIT_SETUP_FAILED: i32 = 70;
/// Exit code of `crib vm` when the command ran but the kernel splatted.
pub const EXIT_SPLAT: i32 = 72;

/// Default per-run timeout; `CRIB_VM_TIMEOUT` (seconds) overrides it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the KVM probe may take before KVM is declared broken.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// vmtest arguments for a TCG guest. vmtest 0.18 derives "KVM" from `arch == host arch &&
/// /dev/kvm exists`, and with KVM it waits only 80 s (instead of 120 s) for the guest agent,
/// which a KASAN+lockdep kernel under TCG on a busy 2-core host can miss. vmtest uses `arch`
/// for nothing else that matters here (the QEMU binary comes from `-q`, the console device is
/// the same for every non-aarch64 arch), so a non-host arch name turns its KVM logic off; the
/// `-q scripts/qemu-tcg` wrapper then supplies `-accel tcg,thread=multi -cpu max`.
const TCG_VMTEST_ARGS: &[&str] = &["--arch", "x86_64-tcg"];

/// Lines of console output shown with a failed boot.
const TAIL_LINES: usize = 40;
/// Lines in a splat excerpt.
const EXCERPT_LINES: usize = 40;

#[derive(Debug, Error)]
pub enum VmError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{var}={value:?} is not valid: {expected}")]
    BadEnv {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "guest command argument {0:?} is not UTF-8 or holds a NUL (vmtest takes the command as \
         a string)"
    )]
    NonUtf8Arg(OsString),
    #[error("guest environment variable {0:?}: not a valid name, or its value holds a NUL")]
    BadEnvVar(String),
    #[error("{0} is missing (set CRIB_QEMU_TCG to the qemu-tcg wrapper)")]
    NoTcgWrapper(PathBuf),
    #[error("cannot run {program}: {source} (install it with scripts/install-deps.sh)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "the VM did not finish within {}s while {phase}; killed vmtest and qemu \
         (raise CRIB_VM_TIMEOUT if the guest is just slow){}\n--- last console lines ---\n{tail}",
        timeout.as_secs(), splat_note(splats)
    )]
    Timeout {
        timeout: Duration,
        phase: &'static str,
        tail: String,
        splats: Vec<Splat>,
    },
    #[error(
        "the guest kernel crashed while {phase}:\n{}\n--- last console lines ---\n{tail}",
        splats.iter().map(|s| s.excerpt.as_str()).collect::<Vec<_>>().join("\n---\n")
    )]
    Crashed {
        phase: &'static str,
        splats: Vec<Splat>,
        tail: String,
    },
    #[error(
        "the VM failed while {phase} (vmtest exit {}): {reason}\n--- last console lines ---\n{tail}",
        code.map_or_else(|| "by signal".to_string(), |c| c.to_string())
    )]
    Failed {
        phase: &'static str,
        code: Option<i32>,
        reason: String,
        tail: String,
    },
    #[error("guest setup failed at `{step}`:\n{output}")]
    Setup { step: String, output: String },
    #[error(
        "QEMU failed to start ({program}, exit {}): {}",
        code.map_or_else(|| "by signal".to_string(), |c| c.to_string()),
        if stderr.trim().is_empty() { "it printed nothing" } else { stderr.trim() }
    )]
    QemuStart {
        program: String,
        code: Option<i32>,
        stderr: String,
    },
    #[error(
        "guest did not finish in {} s (while {phase}); killed QEMU (raise CRIB_VM_TIMEOUT if \
         the guest is just slow){}\nconsole log: {}\nlast console lines:\n{tail}",
        timeout.as_secs(), splat_note(splats), log.display()
    )]
    GuestTimeout {
        timeout: Duration,
        phase: &'static str,
        tail: String,
        splats: Vec<Splat>,
        log: PathBuf,
    },
    #[error(
        "the guest stopped while {phase} (QEMU exit {}): {reason}\nconsole log: {}\n\
         --- last console lines ---\n{tail}",
        code.map_or_else(|| "by signal".to_string(), |c| c.to_string()), log.display()
    )]
    GuestStopped {
        phase: &'static str,
        code: Option<i32>,
        reason: String,
        tail: String,
        log: PathBuf,
    },
    #[error("{what} cannot be used by the direct backend: {why}")]
    Direct { what: String, why: &'static str },
    #[error(
        "the interactive shell needs the vmtest backend (unset CRIB_VM_BACKEND or pass \
         --backend vmtest); the direct backend has no console input"
    )]
    InteractiveNeedsVmtest,
}

fn splat_note(splats: &[Splat]) -> String {
    match splats.first() {
        None => String::new(),
        Some(s) => format!("\nkernel splat on the console:\n{}", s.excerpt),
    }
}

/// Hardware acceleration for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The accelerator a run uses and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

/// How a guest is booted and driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// vmtest 0.18: QEMU plus a guest agent (QGA) that mounts and runs the command. The
    /// default.
    Vmtest,
    /// QEMU started directly: the guest's init is a script of ours that sets up, runs the
    /// command and prints everything to the serial console. No guest agent, so no fixed agent
    /// timeouts: only the run's own timeout bounds a slow guest. See `vm/direct.rs`.
    Direct,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Vmtest => "vmtest",
            Backend::Direct => "direct",
        }
    }
}

impl Backend {
    /// The backend a kernel boots with unless told otherwise: vmtest for the release variant,
    /// which reaches vmtest's guest agent in ~10 s, well inside vmtest's fixed 120 s; direct
    /// for the debug variant (KASAN, lockdep), which needed 150-330 s under TCG on this
    /// 2-core host and which only the direct backend lets the run's own timeout bound.
    pub fn default_for(kernel: &Kernel) -> Backend {
        if kernel.variant == "debug" {
            Backend::Direct
        } else {
            Backend::Vmtest
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = VmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vmtest" => Ok(Backend::Vmtest),
            "direct" => Ok(Backend::Direct),
            other => Err(VmError::BadEnv {
                var: "CRIB_VM_BACKEND",
                value: other.to_string(),
                expected: "'vmtest' or 'direct'",
            }),
        }
    }
}

/// `CRIB_VM_BACKEND` (`vmtest` or `direct`); unset or empty means the default for the kernel
/// ([`Backend::default_for`]).
pub fn backend_from_env() -> Result<Option<Backend>, VmError> {
    match std::env::var("CRIB_VM_BACKEND") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v.parse().map(Some),
        Err(std::env::VarError::NotUnicode(v)) => Err(VmError::BadEnv {
            var: "CRIB_VM_BACKEND",
            value: v.to_string_lossy().into_owned(),
            expected: "'vmtest' or 'direct'",
        }),
    }
}

/// What one guest run produced.
#[derive(Clone, Debug, Default)]
pub struct GuestRun {
    /// The command's exit code (128+N when a signal killed it).
    pub exit_code: i32,
    /// The command's stdout and stderr, interleaved as written.
    pub output: String,
    /// The guest's whole kernel log, taken after the command finished.
    pub dmesg: String,
    /// From starting vmtest to the command starting in the guest.
    pub boot: Duration,
    /// From starting vmtest to vmtest exiting.
    pub total: Duration,
    /// Everything else vmtest printed: its stage headings and the serial console.
    pub console: String,
}

impl GuestRun {
    /// Kernel splats in the guest's dmesg.
    pub fn splats(&self) -> Vec<Splat> {
        scan_splats(&self.dmesg)
    }
}

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
fn splat_patterns() -> &'static [(SplatKind, Regex)] {
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

/// True inside a guest started by [`Vm::run`].
pub fn in_guest() -> bool {
    std::env::var_os("CRIB_IN_GUEST").is_some_and(|v| v == "1")
}

/// The per-run timeout: `CRIB_VM_TIMEOUT` seconds, or [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Result<Duration, VmError> {
    match std::env::var("CRIB_VM_TIMEOUT") {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => parse_secs(&v).ok_or(VmError::BadEnv {
            var: "CRIB_VM_TIMEOUT",
            value: v,
            expected: "a whole number of seconds > 0",
        }),
    }
}

/// Parse a positive whole number of seconds.
pub fn parse_secs(s: &str) -> Option<Duration> {
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(Duration::from_secs(n)),
        _ => None,
    }
}

/// Quote a string for bash.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/qemu-tcg`, or `$CRIB_QEMU_TCG`.
pub fn tcg_wrapper() -> PathBuf {
    std::env::var_os("CRIB_QEMU_TCG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("scripts/qemu-tcg"))
}

/// The vmtest binary: `$VMTEST`, else `vmtest` on PATH, else `~/.cargo/bin/vmtest`.
pub fn vmtest_program() -> PathBuf {
    if let Some(p) = std::env::var_os("VMTEST") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("vmtest");
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cargo/bin/vmtest")
}

/// One VM configuration; each [`Vm::run`] boots a fresh guest.
#[derive(Clone, Debug)]
pub struct Vm {
    kernel: Kernel,
    timeout: Option<Duration>,
    env: Vec<(String, String)>,
    ro_root: bool,
    echo: bool,
    accel: Option<AccelChoice>,
    backend: Option<Backend>,
}

/// Process-wide accelerator choice: probed or read once, announced once.
static ACCEL: Mutex<Option<AccelChoice>> = Mutex::new(None);

impl Vm {
    pub fn new(kernel: &Kernel) -> Vm {
        Vm {
            kernel: kernel.clone(),
            timeout: None,
            env: Vec::new(),
            ro_root: true,
            echo: false,
            accel: None,
            backend: None,
        }
    }

    /// Kill the guest after this long (default: `CRIB_VM_TIMEOUT` or 300 s).
    pub fn timeout(mut self, t: Duration) -> Vm {
        self.timeout = Some(t);
        self
    }

    /// Set an environment variable for the guest command (on top of the host's environment,
    /// which vmtest passes through).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Vm {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Mount the shared host root read-only (default) or read-write.
    pub fn ro_root(mut self, ro: bool) -> Vm {
        self.ro_root = ro;
        self
    }

    /// Also copy the command's output to stdout as it arrives (for `crib vm`).
    pub fn echo(mut self, on: bool) -> Vm {
        self.echo = on;
        self
    }

    /// Use this accelerator instead of `CRIB_ACCEL` / the probe.
    pub fn accel(mut self, choice: AccelChoice) -> Vm {
        self.accel = Some(choice);
        self
    }

    /// Use this backend instead of `CRIB_VM_BACKEND` (default vmtest).
    pub fn backend(mut self, backend: Backend) -> Vm {
        self.backend = Some(backend);
        self
    }

    fn backend_choice(&self) -> Result<Backend, VmError> {
        match self.backend {
            Some(b) => Ok(b),
            None => Ok(backend_from_env()?.unwrap_or_else(|| Backend::default_for(&self.kernel))),
        }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    fn accel_choice(&self) -> Result<AccelChoice, VmError> {
        if let Some(c) = &self.accel {
            return Ok(c.clone());
        }
        let mut guard = ACCEL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = choose_accel(&self.kernel)?;
        eprintln!("crib vm: accelerator {} ({})", c.accel.as_str(), c.reason);
        *guard = Some(c.clone());
        Ok(c)
    }

    fn kargs(&self) -> String {
        // vmtest already asks for `rw`; a later `ro` wins. The console stays verbose so a
        // failed boot shows why; the setup script quiets it once the guest is up.
        let mut k = vec![if self.ro_root { "ro" } else { "rw" }.to_string()];
        // Under TCG a KASAN+lockdep kernel interprets ACPI AML so slowly that the PCI
        // interrupt-routing method (_PRT) hits the 30 s AML loop timeout on a busy host,
        // virtio-pci then gets no IRQ ("PCI INT A: no GSI") and the guest agent never
        // answers. The i440fx board's PIRQ table routes the same interrupts without AML.
        k.push("acpi=noirq".into());
        // TCG's TSC follows the host clock, but on a busy host the clocksource watchdog sees
        // skew, declares it unstable and switches to the HPET, whose every read is an emulated
        // MMIO access: the guest's userspace then crawls (10-20 s per `mount` observed).
        k.push("tsc=reliable".into());
        // 4-level paging. TCG's `-cpu max` offers LA57, so the kernel runs with 5-level
        // paging, and 7.3's identify_cpu() zeroes boot_cpu_data's feature bits with interrupts
        // on and alternatives not yet applied: an interrupt in that window sees
        // pgtable_l5_enabled() false, and KASAN's shadow-range check then takes every
        // direct-map address for a wild one ("BUG: KASAN: wild-memory-access in
        // rcu_is_watching", 1 debug boot in ~9). Hardware without LA57 (and KVM here) never
        // sees it; with `no5lvl` the feature bit is off before and after the window.
        k.push("no5lvl".into());
        // No timer-IRQ self-test at boot. check_timer() accepts an IO-APIC route for the PIT only
        // if 5 ticks arrive while the vCPU busy-waits 40e9/HZ TSC cycles (~60 ms of host time
        // under TCG); on an oversubscribed host the vCPU or QEMU's timer thread misses that
        // window, every fallback route fails the same way, and the kernel panics with "IO-APIC +
        // timer doesn't work!" (1 release boot in ~150 at load 10). The route it tries first is
        // the one every other boot here uses; KVM, VMware and Hyper-V guests skip the test the
        // same way (no_timer_check = 1), a TCG guest is not recognised as any of them.
        k.push("no_timer_check".into());
        if let Ok(extra) = std::env::var("CRIB_VM_KARGS") {
            k.extend(extra.split_whitespace().map(str::to_string));
        }
        k.join(" ")
    }

    fn vmtest_command(&self, accel: Accel, kargs: &str, script: &str) -> Command {
        let mut cmd = Command::new(vmtest_program());
        cmd.arg("-k")
            .arg(&self.kernel.bzimage)
            .arg("--kargs")
            .arg(kargs);
        if accel == Accel::Tcg {
            cmd.args(TCG_VMTEST_ARGS).arg("-q").arg(tcg_wrapper());
        }
        cmd.arg("--").arg(script);
        cmd.env("VMTEST_NO_UI", "1");
        cmd
    }

    /// The bash script vmtest runs in the guest.
    fn guest_script(&self, argv: &[OsString], nonce: &str) -> Result<String, VmError> {
        let mut words = Vec::with_capacity(argv.len());
        for a in argv {
            let s = a.to_str().filter(|s| !s.contains('\0'));
            let s = s.ok_or_else(|| VmError::NonUtf8Arg(a.clone()))?;
            words.push(shell_quote(s));
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "crib_mark() {{ printf '@@CRIB:{nonce}:%s@@%s\\n' \"$1\" \"${{2-}}\"; }}"
        );
        let _ = writeln!(
            s,
            "crib_step() {{ local out; if ! out=$(\"$@\" 2>&1); then printf '%s\\n' \"$out\"; \
             crib_mark SETUP-FAILED \"$*\"; exit {EXIT_SETUP_FAILED}; fi; }}"
        );
        s.push_str(&setup_steps(&self.kernel));
        for (k, v) in self.guest_env() {
            if !is_env_name(&k) || v.contains('\0') {
                return Err(VmError::BadEnvVar(k));
            }
            let _ = writeln!(s, "export {k}={}", shell_quote(&v));
        }
        let _ = writeln!(s, "crib_mark START");
        if words.is_empty() {
            let _ = writeln!(s, "true");
        } else {
            let _ = writeln!(s, "{}", words.join(" "));
        }
        let _ = writeln!(s, "rc=$?");
        let _ = writeln!(s, "crib_mark RC \"$rc\"");
        let _ = writeln!(s, "crib_mark DMESG");
        let _ = writeln!(s, "dmesg");
        let _ = writeln!(s, "crib_mark END");
        let _ = writeln!(s, "exit $rc");
        Ok(s)
    }

    fn guest_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CRIB_IN_GUEST".to_string(), "1".to_string()),
            (
                "CRIB_FLAVOR".to_string(),
                self.kernel.flavor.as_str().to_string(),
            ),
            ("CRIB_VARIANT".to_string(), self.kernel.variant.clone()),
        ];
        // The kernel the guest runs on, so Kernel::locate there need not look it up again.
        env.extend(self.kernel.guest_env());
        env.extend(self.env.iter().cloned());
        env
    }

    /// Boot, set the guest up, run `argv`, collect its exit code, output and dmesg.
    ///
    /// One failure class is booted once more: [`FailureClass::TcgStaleInt3`], an untainted
    /// kernel that trapped on an INT3 byte which is no longer in its text, before the command
    /// started (QEMU's multi-threaded TCG ran a stale translation of code the kernel had
    /// finished patching; nothing of ours had run). The retry is printed with the first crash,
    /// recorded in `$CRIB_CACHE/vm-boots.log` and followed by the cache's retry summary line.
    /// Every other failure is returned as it is.
    pub fn run(&self, argv: &[OsString]) -> Result<GuestRun, VmError> {
        let first = self.run_once(argv, None);
        let class = first.as_ref().err().map(classify_error);
        self.record(&first, class, false);
        let Some(class) = class.filter(|c| c.retryable()) else {
            return first;
        };
        let excerpts = match &first {
            Err(VmError::Crashed { splats, .. }) => splats
                .iter()
                .map(|s| s.excerpt.as_str())
                .collect::<Vec<_>>()
                .join("\n---\n"),
            _ => String::new(),
        };
        eprintln!(
            "crib vm: retry 1 of class {class}: {}; booting a fresh guest once more. The \
             first boot's crash:\n{excerpts}",
            class.describe()
        );
        let second = self.run_once(argv, None);
        let second_class = second.as_ref().err().map(classify_error);
        self.record(&second, second_class, true);
        eprintln!("crib vm: {}", stats::summary_line(&stats::log_path()));
        second
    }

    /// One boot, no retry, and the transcript written to `transcript` (else to
    /// `$CRIB_VM_LOG` if set): what `crib vm --repeat` counts. Recorded in the boot log.
    pub fn run_single(
        &self,
        argv: &[OsString],
        transcript: Option<&Path>,
    ) -> Result<GuestRun, VmError> {
        let r = self.run_once(argv, transcript);
        let class = r.as_ref().err().map(classify_error);
        self.record(&r, class, false);
        r
    }

    /// Append a run to the boot log if a guest was started at all (not for a missing kernel
    /// or a bad setting).
    fn record(&self, r: &Result<GuestRun, VmError>, class: Option<FailureClass>, retry: bool) {
        let booted = match r {
            Ok(_) => true,
            Err(e) => matches!(
                e,
                VmError::Timeout { .. }
                    | VmError::Crashed { .. }
                    | VmError::Failed { .. }
                    | VmError::Setup { .. }
                    | VmError::QemuStart { .. }
                    | VmError::GuestTimeout { .. }
                    | VmError::GuestStopped { .. }
            ),
        };
        if booted {
            let backend = self.backend_choice().map_or("?", Backend::as_str);
            stats::record(&self.kernel, backend, class, retry);
        }
    }

    fn run_once(&self, argv: &[OsString], transcript: Option<&Path>) -> Result<GuestRun, VmError> {
        let timeout = match self.timeout {
            Some(t) => t,
            None => timeout_from_env()?,
        };
        let backend = self.backend_choice()?;
        let accel = self.accel_choice()?;
        if backend == Backend::Direct {
            return direct::run(self, accel.accel, argv, timeout, transcript);
        }
        check_wrapper(accel.accel)?;
        let nonce = make_nonce();
        let script = self.guest_script(argv, &nonce)?;
        let cmd = self.vmtest_command(accel.accel, &self.kargs(), &script);
        let echo = self.echo;
        let mut last_section = Section::Console;
        let raw = run_vmtest(cmd, timeout, |line| {
            if !echo {
                return;
            }
            // Echo only the command's own output, live.
            match find_marker(line, &nonce) {
                Some((before, _, _)) if last_section == Section::Output && !before.is_empty() => {
                    println!("{before}")
                }
                None if last_section == Section::Output => println!("{line}"),
                _ => {}
            }
            last_section = section_of(line, &nonce, last_section);
        })?;
        if let Some(path) = transcript_path(transcript) {
            save_transcript(&path, &raw, "vmtest");
        }
        interpret(raw, &nonce, timeout)
    }

    /// Boot the guest with an interactive shell on this terminal (vmtest's `-` mode). The
    /// setup (bpffs, lo, tmpfs, module) runs from the shell's first prompt through
    /// `PROMPT_COMMAND`, because vmtest runs no command in this mode. Returns vmtest's exit
    /// code. No timeout.
    pub fn interactive(&self) -> Result<i32, VmError> {
        if self.backend_choice()? == Backend::Direct {
            return Err(VmError::InteractiveNeedsVmtest);
        }
        let accel = self.accel_choice()?;
        check_wrapper(accel.accel)?;
        let dir = cache_dir().join("tmp");
        std::fs::create_dir_all(&dir).map_err(|source| VmError::Io {
            what: format!("mkdir {}", dir.display()),
            source,
        })?;
        let path = dir.join(format!("guest-setup-{}.sh", std::process::id()));
        let mut s = String::from("#!/bin/bash\n[ -e /run/crib-setup.done ] && exit 0\n");
        s.push_str("touch /run/crib-setup.done\n");
        s.push_str(
            "crib_step() { \"$@\" || { echo \"crib: setup failed at: $*\" >&2; exit 1; }; }\n",
        );
        s.push_str(&setup_steps(&self.kernel));
        let _ = writeln!(
            s,
            "echo 'crib: guest ready ({} kernel {}, bpffs, lo, tmpfs /tmp{}); exit the shell to power off' >&2",
            self.kernel.flavor,
            self.kernel.release,
            if self.kernel.module.is_some() { ", module loaded" } else { "" }
        );
        write_executable(&path, &s)?;
        let kargs = format!("{} PROMPT_COMMAND={}", self.kargs(), path.display());
        let mut cmd = Command::new(vmtest_program());
        cmd.arg("-k")
            .arg(&self.kernel.bzimage)
            .arg("--kargs")
            .arg(&kargs);
        if accel.accel == Accel::Tcg {
            cmd.args(TCG_VMTEST_ARGS).arg("-q").arg(tcg_wrapper());
        }
        cmd.arg("-");
        let program = cmd.get_program().to_string_lossy().into_owned();
        let status = cmd
            .status()
            .map_err(|source| VmError::Spawn { program, source });
        let _ = std::fs::remove_file(&path);
        Ok(status?.code().unwrap_or(EXIT_VM_FAILED))
    }
}

fn check_wrapper(accel: Accel) -> Result<(), VmError> {
    let w = tcg_wrapper();
    if accel == Accel::Tcg && !w.is_file() {
        return Err(VmError::NoTcgWrapper(w));
    }
    Ok(())
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `/tmp/<name>` for each of the current directory, the current executable and the CRIB cache
/// that lives under the host's `/tmp`: what the guest must still see once its own tmpfs covers
/// `/tmp`.
pub fn tmp_keep_dirs() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let candidates = [
        std::env::current_dir().ok(),
        std::env::current_exe().ok(),
        Some(crate::kernel::cache_dir()),
    ];
    for p in candidates.into_iter().flatten() {
        let Ok(rest) = p.strip_prefix("/tmp") else {
            continue;
        };
        let Some(first) = rest.components().next() else {
            continue;
        };
        let d = Path::new("/tmp")
            .join(first.as_os_str())
            .to_string_lossy()
            .into_owned();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// Guest setup shared by command runs and the interactive shell.
fn setup_steps(kernel: &Kernel) -> String {
    let mut s = String::new();
    s.push_str("crib_step mount -t bpf bpf /sys/fs/bpf\n");
    s.push_str("crib_step ip link set lo up\n");
    // Guest writes to /tmp must never land in the host's /tmp (the root is the host's /). A
    // checkout, target dir or cache that lives under the host's /tmp is carried through the
    // tmpfs with a bind mount, or the guest could not see the binaries it is asked to run.
    let keep = tmp_keep_dirs();
    for (i, d) in keep.iter().enumerate() {
        let q = shell_quote(d);
        let _ = writeln!(s, "crib_step mkdir -p /run/crib-keep/{i}");
        let _ = writeln!(s, "crib_step mount --bind {q} /run/crib-keep/{i}");
    }
    s.push_str("crib_step mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp\n");
    for (i, d) in keep.iter().enumerate() {
        let q = shell_quote(d);
        let _ = writeln!(s, "crib_step mkdir -p {q}");
        let _ = writeln!(s, "crib_step mount --bind /run/crib-keep/{i} {q}");
    }
    if let Some(module) = &kernel.module {
        let _ = writeln!(
            s,
            "crib_step insmod {}",
            shell_quote(&module.to_string_lossy())
        );
    }
    // Kernel messages below KERN_EMERG stay in dmesg (collected at the end) instead of
    // interleaving with the command's output on the console; panics and oopses still reach
    // the console (they call console_verbose()).
    s.push_str("dmesg -n 1 2>/dev/null || true\n");
    s
}

fn write_executable(path: &Path, text: &str) -> Result<(), VmError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| VmError::Io {
        what: format!("write {}", path.display()),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

fn make_nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), t & 0xffff_ffff_ffff)
}

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

/// Run a vmtest command with a timeout: its own process group (killed as a whole on
/// timeout), SIGKILLed if this thread dies, stdout read line by line.
fn run_vmtest(
    mut cmd: Command,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<RawRun, VmError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|source| VmError::Spawn { program, source })?;
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        if let Some(out) = stdout {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_string();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let mut buf = Vec::new();
            let _ = e.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    });
    let deadline = start + timeout;
    let mut raw = RawRun::default();
    loop {
        let now = Instant::now();
        if now >= deadline {
            raw.timed_out = true;
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                on_line(&line);
                raw.lines.push((start.elapsed(), line));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                raw.timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if raw.timed_out {
        kill_group(pgid, &mut child);
    }
    let status = wait_bounded(
        &mut child,
        pgid,
        deadline.max(Instant::now()) + Duration::from_secs(10),
    );
    raw.total = start.elapsed();
    // The pipes close once vmtest and qemu are gone.
    while let Ok(line) = rx.try_recv() {
        raw.lines.push((raw.total, line));
    }
    let _ = reader.join();
    raw.stderr = err_reader.join().unwrap_or_default();
    raw.code = status.and_then(|s| s.code());
    Ok(raw)
}

/// Where a run's transcript goes: the caller's path, else `$CRIB_VM_LOG`.
fn transcript_path(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CRIB_VM_LOG").map(PathBuf::from))
}

/// Write what vmtest (or QEMU's console, `who`) printed, each line with its arrival time, for
/// `CRIB_VM_LOG`.
fn save_transcript(path: &Path, raw: &RawRun, who: &str) {
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

fn kill_group(pgid: i32, child: &mut Child) {
    // SAFETY: plain syscall on a process group we created.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
    let _ = child.kill();
}

/// Wait for vmtest to exit after its stdout closed; kill the group if it lingers.
fn wait_bounded(
    child: &mut Child,
    pgid: i32,
    deadline: Instant,
) -> Option<std::process::ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => {
                // qemu is normally gone by now; make sure nothing of the group survives.
                // SAFETY: plain syscall on a process group we created.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
                return Some(s);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                kill_group(pgid, child);
                return child.wait().ok();
            }
            Err(_) => return None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Console,
    Output,
    Dmesg,
    After,
}

/// Which section a line opens or belongs to, given the section before it.
fn section_of(line: &str, nonce: &str, prev: Section) -> Section {
    match find_marker(line, nonce) {
        Some((_, "START", _)) => Section::Output,
        Some((_, "RC", _)) => Section::Console,
        Some((_, "DMESG", _)) => Section::Dmesg,
        Some((_, "END", _)) => Section::After,
        _ => prev,
    }
}

/// `(text before the marker, marker name, value)` if the line holds a marker of this run.
fn find_marker<'a>(line: &'a str, nonce: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let tag = format!("@@CRIB:{nonce}:");
    let at = line.find(&tag)?;
    let rest = &line[at + tag.len()..];
    let end = rest.find("@@")?;
    Some((&line[..at], &rest[..end], &rest[end + 2..]))
}

/// vmtest prints its own failure as `<what failed>`, a blank line, `Caused by:` and a numbered
/// chain, then (with RUST_BACKTRACE set) `Stack backtrace:` and frames. Returns that error
/// (without the backtrace) and the lines with the backtrace cut out.
fn split_vmtest_error<'a>(lines: &[&'a str]) -> (Option<String>, Vec<&'a str>) {
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

fn tail(lines: &[&str], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A guest transcript split at this run's markers: what came before the command (boot and
/// setup console), the command's output, its exit code and the guest's dmesg.
#[derive(Debug, Default)]
struct Transcript<'a> {
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
    fn phase(&self) -> &'static str {
        match (self.started.is_some(), self.rc) {
            (false, _) => BOOT_PHASE,
            (true, None) => "running the command",
            (true, Some(_)) => "collecting dmesg",
        }
    }

    /// Setup failed: the step and (the console lines before its marker) its output.
    fn setup_error(&self) -> Option<VmError> {
        let step = self.setup_failed.clone()?;
        // The failing step's output comes right before the marker.
        Some(VmError::Setup {
            step,
            output: tail(&self.console, 15),
        })
    }

    /// The run, if the command finished and the dmesg was printed to its end marker.
    fn finished(&self, total: Duration) -> Option<GuestRun> {
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
fn split_transcript<'a>(lines: &'a [(Duration, String)], nonce: &str) -> Transcript<'a> {
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
fn is_crash(splats: &[Splat]) -> bool {
    splats.iter().any(|s| {
        matches!(
            s.kind,
            SplatKind::Panic | SplatKind::Oops | SplatKind::GeneralProtectionFault
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Accelerator choice

fn host_release() -> String {
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct it is given.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates the fields.
    unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn qemu_version() -> String {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The key a cached probe verdict is valid for.
pub fn probe_key() -> String {
    format!("{} | {}", host_release(), qemu_version())
}

/// A cached verdict from `$CRIB_CACHE/accel-probe`, if it was made for `key`.
pub fn parse_probe_cache(text: &str, key: &str) -> Option<AccelChoice> {
    let kv: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    if kv.get("key").copied() != Some(key) {
        return None;
    }
    let accel = match kv.get("accel").copied()? {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ => return None,
    };
    let reason = kv.get("reason").copied().unwrap_or("").to_string();
    Some(AccelChoice { accel, reason })
}

fn format_probe_cache(key: &str, c: &AccelChoice) -> String {
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "# KVM probe verdict, reused while key matches; delete to probe again.\nkey={key}\n\
         accel={}\nreason={}\nprobed_at_unix={when}\n",
        c.accel.as_str(),
        c.reason.replace('\n', " ")
    )
}

/// `CRIB_ACCEL` if set, else the cached probe verdict, else probe (boot `kernel` under KVM
/// with a short timeout) and cache the verdict.
pub fn choose_accel(kernel: &Kernel) -> Result<AccelChoice, VmError> {
    if let Ok(v) = std::env::var("CRIB_ACCEL") {
        return match v.as_str() {
            "kvm" => Ok(AccelChoice {
                accel: Accel::Kvm,
                reason: "forced by CRIB_ACCEL=kvm".into(),
            }),
            "tcg" => Ok(AccelChoice {
                accel: Accel::Tcg,
                reason: "forced by CRIB_ACCEL=tcg".into(),
            }),
            _ => Err(VmError::BadEnv {
                var: "CRIB_ACCEL",
                value: v,
                expected: "'tcg' or 'kvm'",
            }),
        };
    }
    if !Path::new("/dev/kvm").exists() {
        return Ok(AccelChoice {
            accel: Accel::Tcg,
            reason: "/dev/kvm does not exist".into(),
        });
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(|source| VmError::Io {
        what: format!("mkdir {}", cache.display()),
        source,
    })?;
    let path = cache.join("accel-probe");
    let lock_path = cache.join("accel-probe.lock");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| VmError::Io {
            what: format!("open {}", lock_path.display()),
            source,
        })?;
    // Several test processes may start at once: one probes, the others wait and read.
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).map_err(
        |(_, e)| VmError::Io {
            what: format!("lock {}", lock_path.display()),
            source: e.into(),
        },
    )?;
    let key = probe_key();
    if let Some(c) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| parse_probe_cache(&t, &key))
    {
        return Ok(AccelChoice {
            accel: c.accel,
            reason: format!("cached probe verdict in {}: {}", path.display(), c.reason),
        });
    }
    eprintln!(
        "crib vm: probing KVM (boot under KVM, {}s limit; verdict cached in {})",
        KVM_PROBE_TIMEOUT.as_secs(),
        path.display()
    );
    let choice = probe_kvm(kernel);
    std::fs::write(&path, format_probe_cache(&key, &choice)).map_err(|source| VmError::Io {
        what: format!("write {}", path.display()),
        source,
    })?;
    Ok(AccelChoice {
        accel: choice.accel,
        reason: format!("probed just now: {}", choice.reason),
    })
}

/// Boot `kernel` under KVM running `true`; KVM if that finishes in time.
fn probe_kvm(kernel: &Kernel) -> AccelChoice {
    let mut cmd = Command::new(vmtest_program());
    cmd.arg("-k")
        .arg(&kernel.bzimage)
        .arg("--kargs")
        .arg("ro")
        .arg("--")
        .arg("true");
    cmd.env("VMTEST_NO_UI", "1");
    let started = Instant::now();
    match run_vmtest(cmd, KVM_PROBE_TIMEOUT, |_| {}) {
        Err(e) => AccelChoice {
            accel: Accel::Tcg,
            reason: format!("KVM probe could not run: {e}"),
        },
        Ok(raw) if raw.timed_out => {
            let last = raw
                .lines
                .iter()
                .rev()
                .map(|(_, l)| l.trim())
                .find(|l| !l.is_empty())
                .unwrap_or("<no console output>")
                .to_string();
            AccelChoice {
                accel: Accel::Tcg,
                reason: format!(
                    "a KVM guest did not finish booting in {}s (last console line: {last:?})",
                    KVM_PROBE_TIMEOUT.as_secs()
                ),
            }
        }
        Ok(raw) if raw.code == Some(0) => AccelChoice {
            accel: Accel::Kvm,
            reason: format!(
                "a KVM guest booted and ran a command in {:.1}s",
                started.elapsed().as_secs_f64()
            ),
        },
        Ok(raw) => AccelChoice {
            accel: Accel::Tcg,
            reason: format!("a KVM guest failed (vmtest exit {:?})", raw.code),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Tests re-executed in a guest

/// Why [`run_test_in_guest`] failed; tests may downcast the `anyhow::Error` to this.
#[derive(Debug, Error)]
pub enum GuestTestError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("cannot find the current test binary: {0}")]
    CurrentExe(std::io::Error),
    #[error(
        "test `{test}` exited {code} in the guest\n--- guest output (last lines) ---\n{excerpt}"
    )]
    Failed {
        test: String,
        code: i32,
        excerpt: String,
    },
    #[error(
        "test `{test}` exited 0 in the guest but did not report exactly one passed test \
         (wrong name?)\n--- guest output (last lines) ---\n{excerpt}"
    )]
    NotRun { test: String, excerpt: String },
    #[error(
        "test `{test}` (exit {code}) left {} kernel splat(s) in the guest's dmesg:\n{}",
        splats.len(),
        splats.iter().map(|s| s.excerpt.as_str()).collect::<Vec<_>>().join("\n---\n")
    )]
    Splats {
        test: String,
        code: i32,
        splats: Vec<Splat>,
    },
}

/// The whole of a VM test: in the guest run `body`, on the host boot a fresh guest of `flavor`
/// that re-runs this test (`run_test_in_guest`). Panics with the error chain on failure, so a
/// missing kernel or a failed boot fails the test with what to do, never skips it.
pub fn guest_test(
    flavor: Flavor,
    test_name: &str,
    body: impl FnOnce(Flavor) -> anyhow::Result<()>,
) {
    let result = if in_guest() {
        body(flavor)
    } else {
        run_test_in_guest(flavor, test_name).map(|_| ())
    };
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

/// The name libtest runs the calling test under (the test thread is named after the test;
/// rstest cases are `<fn>::case_<n>_<flavor>`): what the guest must re-run with `--exact`.
#[track_caller]
pub fn current_test_name() -> String {
    let name = std::thread::current().name().map(str::to_owned);
    name.filter(|n| n != "main").unwrap_or_else(|| {
        panic!("the test thread has no test name: run with more than one test thread")
    })
}

/// Host side of a VM test: re-run this test binary in a fresh guest of `flavor` with
/// `--exact <test_name> --nocapture` and `CRIB_IN_GUEST=1`. Err when the VM fails, the test
/// fails or does not run, or the kernel splats.
pub fn run_test_in_guest(flavor: Flavor, test_name: &str) -> anyhow::Result<GuestRun> {
    let kernel = Kernel::locate(flavor)
        .map_err(VmError::from)
        .map_err(GuestTestError::from)?;
    let exe = std::env::current_exe().map_err(GuestTestError::CurrentExe)?;
    let argv: Vec<OsString> = vec![
        exe.into_os_string(),
        "--exact".into(),
        test_name.into(),
        "--nocapture".into(),
    ];
    let run = Vm::new(&kernel).run(&argv).map_err(GuestTestError::from)?;
    check_guest_test(test_name, run).map_err(anyhow::Error::from)
}

/// The verdict on a guest test run; separate from the VM so it can be unit-tested.
pub fn check_guest_test(test: &str, run: GuestRun) -> Result<GuestRun, GuestTestError> {
    let splats = run.splats();
    if !splats.is_empty() {
        return Err(GuestTestError::Splats {
            test: test.into(),
            code: run.exit_code,
            splats,
        });
    }
    let lines: Vec<&str> = run.output.lines().collect();
    let excerpt = tail(&lines, 60);
    if run.exit_code != 0 {
        return Err(GuestTestError::Failed {
            test: test.into(),
            code: run.exit_code,
            excerpt,
        });
    }
    // libtest and libtest-mimic both end with "test result: ok. 1 passed; ...".
    if !run
        .output
        .lines()
        .any(|l| l.trim_start().starts_with("test result: ok. 1 passed;"))
    {
        return Err(GuestTestError::NotRun {
            test: test.into(),
            excerpt,
        });
    }
    Ok(run)
}

/// For tests: run `argv` as a plain command line (`&["uname", "-r"]`).
pub fn argv<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

mod classify;
mod direct;
pub mod stats;

pub use classify::{classify, classify_error, classify_transcript, parse_transcript, FailureClass};

#[cfg(test)]
mod tests;

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
//!
//! One concern a file:
//!
//! - `mod.rs`: the [`Vm`] builder, [`Vm::run`] (with its one retry), [`GuestRun`], [`Backend`],
//!   the kernel arguments and the exit codes.
//! - `error.rs`: [`VmError`].
//! - `accel.rs`: KVM or TCG, the KVM probe and its cached verdict.
//! - `script.rs`: the guest script (setup steps, markers, exports) and shell quoting.
//! - `vmtest.rs`: the vmtest backend (process group, timeout, line reader) and the
//!   interactive shell.
//! - `direct.rs`: the direct backend (QEMU without vmtest, our own init).
//! - `transcript.rs`: what a guest printed, split at the markers and interpreted.
//! - `splat.rs`: the splat scanner.
//! - `classify.rs`: the failure classes and which one is retried.
//! - `stats.rs`: the boot log and its retry summary.
//! - `guest_test.rs`: VM tests that re-run themselves in a guest.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::time::Duration;

use crate::kernel::Kernel;
use crate::settings;

mod accel;
mod classify;
mod direct;
mod error;
mod guest_test;
mod script;
mod splat;
pub mod stats;
mod transcript;
mod vmtest;

pub use accel::{
    choose_accel, parse_probe_cache, probe_key, Accel, AccelChoice, KVM_PROBE_TIMEOUT,
};
pub use classify::{classify, classify_error, classify_transcript, parse_transcript, FailureClass};
pub use error::VmError;
pub use guest_test::{
    check_guest_test, current_test_name, guest_test, run_test_in_guest, GuestTestError,
};
pub use script::{shell_quote, tmp_keep_dirs};
pub use splat::{crashed_untainted, scan_splats, strip_log_prefix, Splat, SplatKind};
pub use transcript::{interpret, RawRun, BOOT_PHASE};
pub use vmtest::{tcg_wrapper, vmtest_program};

/// Exit code vmtest uses when the VM itself failed (sysexits EX_UNAVAILABLE).
pub const EXIT_VM_FAILED: i32 = 69;
/// Exit code of `crib vm` when the guest setup (bpffs, lo, tmpfs, insmod) failed.
pub const EXIT_SETUP_FAILED: i32 = 70;
/// Exit code of `crib vm` when the command ran but the kernel splatted.
pub const EXIT_SPLAT: i32 = 72;

/// Default per-run timeout; `CRIB_VM_TIMEOUT` (seconds) overrides it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How a guest is booted and driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// vmtest 0.18: QEMU plus a guest agent (QGA) that mounts and runs the command. The
    /// interactive shell's backend.
    Vmtest,
    /// QEMU started directly: the guest's init is a script of ours that sets up, runs the
    /// command and prints everything to the serial console. The default for command runs. No guest agent, so no fixed agent
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
    /// The backend a command run boots with unless told otherwise: direct, for every kernel.
    /// Measured on this 2-core TCG host (the stock `hello` test, one guest at a time): 11-12 s
    /// per run directly against 38-48 s through vmtest, whose guest agent, its setup requests
    /// and its 9p cache mode cost the difference; and the debug variant (KASAN, lockdep), which
    /// needed 150-330 s to reach vmtest's agent, is bounded only by the run's own timeout.
    /// vmtest stays one switch away (`CRIB_VM_BACKEND=vmtest`) and is what the interactive
    /// shell uses ([`Vm::interactive`]); `vm_smoke` boots it in every suite run.
    pub fn default_for(_kernel: &Kernel) -> Backend {
        Backend::Direct
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
/// A bad value of any setting is an error here: every VM run calls this first.
pub fn backend_from_env() -> Result<Option<Backend>, VmError> {
    Ok(settings::checked()?.vm_backend)
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

/// True inside a guest started by [`Vm::run`].
pub fn in_guest() -> bool {
    settings::get().in_guest
}

/// The per-run timeout: `CRIB_VM_TIMEOUT` seconds, or [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Result<Duration, VmError> {
    Ok(settings::checked()?.vm_timeout_or_default())
}

/// Parse a positive whole number of seconds.
pub fn parse_secs(s: &str) -> Option<Duration> {
    match s.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(Duration::from_secs(n)),
        _ => None,
    }
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

    /// Use this backend instead of `CRIB_VM_BACKEND` (default direct, see [`Backend::default_for`]).
    pub fn backend(mut self, backend: Backend) -> Vm {
        self.backend = Some(backend);
        self
    }

    fn backend_choice(&self) -> Result<Backend, VmError> {
        Ok(self
            .explicit_backend()?
            .unwrap_or_else(|| Backend::default_for(&self.kernel)))
    }

    /// The backend the caller or `CRIB_VM_BACKEND` asked for, if any.
    fn explicit_backend(&self) -> Result<Option<Backend>, VmError> {
        match self.backend {
            Some(b) => Ok(Some(b)),
            None => backend_from_env(),
        }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
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
        k.extend(settings::get().vm_kargs.iter().cloned());
        k.join(" ")
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
        // A typo in any CRIB_* setting fails the run, even one this run would not read.
        settings::checked()?;
        let timeout = match self.timeout {
            Some(t) => t,
            None => timeout_from_env()?,
        };
        let backend = self.backend_choice()?;
        let accel = self.accel_choice()?;
        if backend == Backend::Direct {
            return direct::run(self, accel.accel, argv, timeout, transcript);
        }
        vmtest::run(self, accel.accel, argv, timeout, transcript)
    }
}

/// For tests: run `argv` as a plain command line (`&["uname", "-r"]`).
pub fn argv<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

#[cfg(test)]
mod tests;

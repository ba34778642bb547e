//! The `CRIB_*` environment variables the harness reads, in one place: each with its name, type,
//! default and a one-line doc ([`VARS`], the table in harness/README.md, checked by the tests
//! below), parsed once per process into a typed [`Settings`].
//!
//! Unset and empty mean the same: the default. A value that does not parse is a
//! [`SettingError`] naming the variable and what it accepts; the field then holds its default,
//! and [`checked`] (which every VM run and `crib` call) reports the first such error, so a typo
//! fails the run instead of being ignored.
//!
//! Variables the harness sets itself for a guest or a child test ([`INTERNAL`]) are read here
//! too where the harness reads them (`CRIB_IN_GUEST`, `CRIB_FLAVOR`, `CRIB_VERIFIER_BATCH`), but
//! are not settings. Variables only the shell scripts read are in [`SCRIPT_VARS`].
//! `build.rs` cannot link this crate: it `include!`s `settings/kernel_cache.rs`, which reads
//! `CRIB_CACHE` and `CRIB_VARIANT` for both.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use thiserror::Error;

use crate::vm::{Accel, Backend};

mod kernel_cache;

pub use kernel_cache::{is_debug_variant, DEFAULT_VARIANT};

/// One environment variable as the README tables show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    /// The value used when the variable is unset or empty, as the README shows it.
    pub default: &'static str,
    /// What it does, one line.
    pub doc: &'static str,
}

const fn var(name: &'static str, default: &'static str, doc: &'static str) -> Var {
    Var { name, default, doc }
}

/// Every setting [`Settings`] reads, in the order of the README table.
pub const VARS: &[Var] = &[
    var("CRIB_CACHE", "`~/.cache/crib`", "where `scripts/build` exports kernels and the harness keeps its probe verdict, boot log and scratch files"),
    var("CRIB_VARIANT", "`release`", "which kernel variant of `configs/matrix.toml` to build and boot: `release`, `debug` (KASAN, lockdep), `clang`, `clang-debug`"),
    var("CRIB_KERNEL_DIR", "unset", "test a kernel built elsewhere: its build directory (bzImage + vmlinux) instead of the cache's"),
    var("CRIB_ACCEL", "probed", "`tcg` or `kvm` forces the accelerator; unset: the cached KVM probe verdict"),
    var("CRIB_VM_BACKEND", "`direct`", "`direct` or `vmtest`; unset: direct for command runs, vmtest for the interactive shell"),
    var("CRIB_VM_TIMEOUT", "`300` (`1800` on a debug variant)", "seconds one guest run may take before it is killed"),
    var("CRIB_VM_KARGS", "none", "more kernel arguments, appended to the runner's"),
    var("CRIB_VM_MEM", "`2G`", "guest memory (QEMU `-m`)"),
    var("CRIB_VM_CPUS", "`2`", "guest vCPUs (QEMU `-smp`)"),
    var("CRIB_VM_LOG", "unset", "save each run's whole transcript, with arrival times, to this file"),
    var("CRIB_QEMU", "`qemu-system-x86_64`", "the QEMU binary (direct backend and `scripts/qemu-tcg`)"),
    var("CRIB_QEMU_TCG", "`scripts/qemu-tcg`", "the QEMU wrapper vmtest runs for a TCG guest"),
    var("CRIB_EXTRA_OBJS", "none", "more BPF objects (a `:`-separated path list) for the verifier cases"),
    var("CRIB_VERIFIER_VM_PER_CASE", "`0`", "`1`: each verifier case boots its own guest instead of one guest per flavor"),
    var("CRIB_RACE_TIME_LIMIT", "`240` (`1200` on a debug variant)", "seconds the 1,000 dumps of the `dump_files` race test may take"),
    var("CRIB_PERM_RACE_SECS", "`20`", "seconds the `permissions` test races the dumper against an exec loop"),
];

/// Variables the harness (or `scripts/lib.sh`) sets for the processes it starts: not settings.
pub const INTERNAL: &[Var] = &[
    var("CRIB_IN_GUEST", "-", "`1` in a guest started by the runner"),
    var("CRIB_FLAVOR", "-", "the guest kernel's flavor, `stock` or `patched`"),
    var("CRIB_GUEST_KERNEL_*", "-", "the kernel the guest booted (`DIR`, `BZIMAGE`, `VMLINUX`, `VMLINUX_H`, `RELEASE`, `BASE`, `MODULE`), so a guest test need not look it up again"),
    var("CRIB_VERIFIER_BATCH", "-", "the flavor whose verifier cases a guest runs in one batch"),
    var("CRIB_EXPECT_PROBE", "-", "what `bpf_crib_stale_probe()` returns in the `stale_kernel` test's edited module"),
    var("CRIB_EXPECT_RELEASE", "-", "the kernel release the `kernel_dir` test expects its guest to run"),
    var("CRIB_BPF_DIR", "-", "compile time: where build.rs put the BPF objects"),
    var("CRIB_ROOT", "-", "`scripts/lib.sh`: the checkout"),
    var("CRIB_LOGS", "-", "`scripts/lib.sh`: `$CRIB_CACHE/logs`, the build logs"),
];

/// Variables only the shell scripts read.
pub const SCRIPT_VARS: &[Var] = &[
    var("CRIB_OFFLINE", "`0`", "`1`: `scripts/fetch-kernel` skips `apt-get update` and uses the package lists it has"),
    var("CRIB_DEBIAN_MIRROR", "the host's Debian mirror", "where `scripts/fetch-kernel` gets the Debian kernel source"),
    var("CRIB_DEBIAN_SUITE", "`experimental`, then `sid`", "the Debian suite(s) `scripts/fetch-kernel` looks in for the newest `linux-source-7.N`"),
    var("CRIB_CRIU_SUITE", "`sid`", "the Debian suite `scripts/setup-criu` fetches CRIU 4.2.1's source package from"),
    var("CRIB_SERIES_BASE", "the recorded base", "the commit-ish `scripts/series` applies the kernel patches on (default: branch `crib-base` or the base `scripts/build` recorded, else `HEAD`)"),
    var("CRIB_SERIES_BRANCH", "`crib-dev`", "the branch `scripts/series` makes in its tree"),
    var("CRIB_SERIES_DEV", "`$CRIB_CACHE/src/dev-series`", "the kernel tree `scripts/series` works in"),
];

/// A variable's value does not parse.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{var}={value:?} is not valid: {expected}")]
pub struct SettingError {
    pub var: &'static str,
    pub value: String,
    /// What the variable accepts.
    pub expected: &'static str,
}

/// The harness's settings, read from the environment once per process ([`get`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `CRIB_CACHE`.
    pub cache: PathBuf,
    /// `CRIB_VARIANT`.
    pub variant: String,
    /// `CRIB_KERNEL_DIR`.
    pub kernel_dir: Option<PathBuf>,
    /// `CRIB_ACCEL`; `None`: probe.
    pub accel: Option<Accel>,
    /// `CRIB_VM_BACKEND`; `None`: [`Backend::default_for`] the kernel.
    pub vm_backend: Option<Backend>,
    /// `CRIB_VM_TIMEOUT`; `None`: the default, see [`Settings::vm_timeout_or_default`].
    pub vm_timeout: Option<Duration>,
    /// `CRIB_VM_KARGS`, split at whitespace.
    pub vm_kargs: Vec<String>,
    /// `CRIB_VM_MEM`, as QEMU's `-m` takes it.
    pub vm_mem: String,
    /// `CRIB_VM_CPUS`.
    pub vm_cpus: u32,
    /// `CRIB_VM_LOG`.
    pub vm_log: Option<PathBuf>,
    /// `CRIB_QEMU`.
    pub qemu: PathBuf,
    /// `CRIB_QEMU_TCG`; default `scripts/qemu-tcg` of this checkout.
    pub qemu_tcg: PathBuf,
    /// `CRIB_EXTRA_OBJS`.
    pub extra_objs: Vec<PathBuf>,
    /// `CRIB_VERIFIER_VM_PER_CASE`.
    pub verifier_vm_per_case: bool,
    /// `CRIB_RACE_TIME_LIMIT`.
    pub race_time_limit: Duration,
    /// `CRIB_PERM_RACE_SECS`.
    pub perm_race_secs: Duration,
    /// `CRIB_IN_GUEST=1` (internal).
    pub in_guest: bool,
    /// `CRIB_FLAVOR` (internal: set for the guest).
    pub flavor: Option<String>,
    /// `CRIB_VERIFIER_BATCH` (internal: set for the guest).
    pub verifier_batch: Option<String>,
    /// Values that did not parse (their fields hold the default).
    pub errors: Vec<SettingError>,
}

const SECS: &str = "a whole number of seconds > 0";

/// Reads variables through a lookup function and collects parse errors.
struct Reader<F> {
    get: F,
    errors: Vec<SettingError>,
}

impl<F: Fn(&str) -> Option<OsString>> Reader<F> {
    /// The value, `None` when unset or empty.
    fn os(&self, name: &str) -> Option<OsString> {
        (self.get)(name).filter(|v| !v.is_empty())
    }

    /// Parse a UTF-8 value with `parse`; unset, empty or bad: `default` (bad is recorded).
    fn parse<T>(
        &mut self,
        name: &'static str,
        expected: &'static str,
        default: T,
        parse: impl Fn(&str) -> Option<T>,
    ) -> T {
        let Some(v) = self.os(name) else {
            return default;
        };
        match v.to_str().and_then(&parse) {
            Some(t) => t,
            None => {
                self.errors.push(SettingError {
                    var: name,
                    value: v.to_string_lossy().into_owned(),
                    expected,
                });
                default
            }
        }
    }

    fn string(&mut self, name: &'static str) -> Option<String> {
        self.parse(name, "UTF-8 text", None, |s| Some(Some(s.to_string())))
    }
}

fn secs(s: &str) -> Option<Duration> {
    crate::vm::parse_secs(s)
}

impl Settings {
    /// The settings in the process's environment.
    pub fn from_env() -> Settings {
        Settings::from_lookup(|k| std::env::var_os(k))
    }

    /// The settings in an environment given as a lookup function (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Settings {
        let cache = kernel_cache::cache_from(&get);
        let variant = kernel_cache::variant_from(&get);
        // KASAN + lockdep guests run 3-6x slower under TCG (README, "Kernel variants").
        let race_default = if is_debug_variant(&variant) {
            1200
        } else {
            240
        };
        let mut r = Reader {
            get,
            errors: Vec::new(),
        };
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let s = Settings {
            cache,
            variant,
            kernel_dir: r.os("CRIB_KERNEL_DIR").map(PathBuf::from),
            accel: r.parse("CRIB_ACCEL", "'tcg' or 'kvm'", None, |s| match s {
                "tcg" => Some(Some(Accel::Tcg)),
                "kvm" => Some(Some(Accel::Kvm)),
                _ => None,
            }),
            vm_backend: r.parse(
                "CRIB_VM_BACKEND",
                "'vmtest' or 'direct'",
                None,
                |s| match s {
                    "vmtest" => Some(Some(Backend::Vmtest)),
                    "direct" => Some(Some(Backend::Direct)),
                    _ => None,
                },
            ),
            vm_timeout: r.parse("CRIB_VM_TIMEOUT", SECS, None, |s| secs(s).map(Some)),
            vm_kargs: r.parse("CRIB_VM_KARGS", "UTF-8 text", Vec::new(), |s| {
                Some(s.split_whitespace().map(str::to_string).collect())
            }),
            vm_mem: r.parse("CRIB_VM_MEM", "UTF-8 text", "2G".into(), |s| {
                Some(if s.trim().is_empty() { "2G" } else { s.trim() }.to_string())
            }),
            vm_cpus: r.parse("CRIB_VM_CPUS", "a whole number > 0", 2, |s| {
                s.trim().parse().ok().filter(|&n: &u32| n > 0)
            }),
            vm_log: r.os("CRIB_VM_LOG").map(PathBuf::from),
            qemu: r
                .os("CRIB_QEMU")
                .map_or_else(|| "qemu-system-x86_64".into(), PathBuf::from),
            qemu_tcg: r
                .os("CRIB_QEMU_TCG")
                .map_or_else(|| repo.join("scripts/qemu-tcg"), PathBuf::from),
            extra_objs: r.os("CRIB_EXTRA_OBJS").map_or_else(Vec::new, |v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            }),
            verifier_vm_per_case: r.parse("CRIB_VERIFIER_VM_PER_CASE", "'0' or '1'", false, |s| {
                match s {
                    "0" => Some(false),
                    "1" => Some(true),
                    _ => None,
                }
            }),
            race_time_limit: r.parse(
                "CRIB_RACE_TIME_LIMIT",
                SECS,
                Duration::from_secs(race_default),
                secs,
            ),
            perm_race_secs: r.parse("CRIB_PERM_RACE_SECS", SECS, Duration::from_secs(20), secs),
            in_guest: r.os("CRIB_IN_GUEST").is_some_and(|v| v == "1"),
            flavor: r.string("CRIB_FLAVOR"),
            verifier_batch: r.string("CRIB_VERIFIER_BATCH"),
            errors: Vec::new(),
        };
        Settings {
            errors: r.errors,
            ..s
        }
    }

    /// These settings, or the first variable whose value did not parse.
    pub fn check(&self) -> Result<&Settings, SettingError> {
        match self.errors.first() {
            Some(e) => Err(e.clone()),
            None => Ok(self),
        }
    }

    /// `CRIB_VM_TIMEOUT`, else [`crate::vm::DEFAULT_TIMEOUT`], or [`DEBUG_VM_TIMEOUT`] on a
    /// debug variant ([`is_debug_variant`]).
    pub fn vm_timeout_or_default(&self) -> Duration {
        self.vm_timeout
            .unwrap_or(if is_debug_variant(&self.variant) {
                DEBUG_VM_TIMEOUT
            } else {
                crate::vm::DEFAULT_TIMEOUT
            })
    }
}

/// The default per-run guest timeout on a debug variant (KASAN + lockdep under TCG).
pub const DEBUG_VM_TIMEOUT: Duration = Duration::from_secs(1800);

/// The process's settings, read on first use. A variable that did not parse holds its default
/// here; use [`checked`] where a bad value must fail.
pub fn get() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(Settings::from_env)
}

/// The process's settings, or the first variable whose value did not parse.
pub fn checked() -> Result<&'static Settings, SettingError> {
    get().check()
}

#[cfg(test)]
mod tests;

//! Why a guest run failed: [`VmError`], the runner's one error type, and how it prints.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::splat::Splat;
use crate::kernel::KernelError;

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

impl From<crate::settings::SettingError> for VmError {
    fn from(e: crate::settings::SettingError) -> VmError {
        VmError::BadEnv {
            var: e.var,
            value: e.value,
            expected: e.expected,
        }
    }
}

fn splat_note(splats: &[Splat]) -> String {
    match splats.first() {
        None => String::new(),
        Some(s) => format!("\nkernel splat on the console:\n{}", s.excerpt),
    }
}

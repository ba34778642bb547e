//! Sysctl guards: Yama's `ptrace_scope` and the RT throttle, restored on drop.

use super::*;

pub(super) const YAMA: &str = "/proc/sys/kernel/yama/ptrace_scope";

/// Sets `kernel.yama.ptrace_scope` and puts the old value back when dropped.
pub(super) struct PtraceScope {
    pub(super) old: String,
}

impl PtraceScope {
    pub(super) fn set(scope: u8) -> Result<Self> {
        let old = fs::read_to_string(YAMA).with_context(|| {
            format!("reading {YAMA}: the guest kernel needs CONFIG_SECURITY_YAMA")
        })?;
        fs::write(YAMA, format!("{scope}\n"))
            .with_context(|| format!("writing {scope} to {YAMA}"))?;
        Ok(Self {
            old: old.trim().to_string(),
        })
    }
}

impl Drop for PtraceScope {
    fn drop(&mut self) {
        if let Err(e) = fs::write(YAMA, format!("{}\n", self.old)) {
            eprintln!("restoring {YAMA} to {}: {e}", self.old);
        }
    }
}

pub(super) const RT_RUNTIME: &str = "/proc/sys/kernel/sched_rt_runtime_us";

/// Sets a sysctl and puts the old value back when dropped.
pub(super) struct Sysctl {
    pub(super) path: &'static str,
    pub(super) old: String,
}

impl Sysctl {
    pub(super) fn set(path: &'static str, value: &str) -> Result<Self> {
        let old = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        fs::write(path, format!("{value}\n"))
            .with_context(|| format!("writing {value} to {path}"))?;
        Ok(Self {
            path,
            old: old.trim().to_string(),
        })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(e) = fs::write(self.path, format!("{}\n", self.old)) {
            eprintln!("restoring {} to {}: {e}", self.path, self.old);
        }
    }
}

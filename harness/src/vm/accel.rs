//! The accelerator: KVM or TCG, forced by `CRIB_ACCEL` or decided once per host by booting the
//! kernel under KVM (the probe) and caching the verdict in `$CRIB_CACHE/accel-probe`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::vmtest::{run_vmtest, vmtest_program};
use super::{Vm, VmError};
use crate::kernel::{cache_dir, Kernel};

/// How long the KVM probe may take before KVM is declared broken.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

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

/// Process-wide accelerator choice: probed or read once, announced once.
static ACCEL: Mutex<Option<AccelChoice>> = Mutex::new(None);

impl Vm {
    pub(super) fn accel_choice(&self) -> Result<AccelChoice, VmError> {
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
}

fn host_release() -> String {
    nix::sys::utsname::uname().map_or_else(
        |_| "unknown".into(),
        |u| u.release().to_string_lossy().into_owned(),
    )
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

pub(super) fn format_probe_cache(key: &str, c: &AccelChoice) -> String {
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
    if let Some(accel) = crate::settings::checked()?.accel {
        return Ok(AccelChoice {
            accel,
            reason: format!("forced by CRIB_ACCEL={}", accel.as_str()),
        });
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
    // Several test processes may start at once: one probes, the others wait and read.
    let _lock = crate::per_run::lock_exclusive(&lock_path).map_err(|source| VmError::Io {
        what: format!("lock {}", lock_path.display()),
        source,
    })?;
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

//! Helpers for tests. For VM test bodies, which run as root inside a guest (`vm::guest_test`):
//! unloading `crib_kfuncs.ko` and finding a pid no process has. For the library's unit tests
//! (`cfg(test)`): a [`Kernel`](crate::kernel::Kernel) that exists on no disk.

use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nix::errno::Errno;
use nix::kmod::{delete_module, DeleteModuleFlags};

use crate::dump::kfuncs::MODULE;
#[cfg(test)]
use crate::kernel::{Flavor, Kernel};

/// How long [`rmmod_kfuncs`] retries a busy module.
pub const RMMOD_PATIENCE: Duration = Duration::from_secs(20);

/// Unload `crib_kfuncs.ko` and return how long it took. A program's reference to the module
/// goes away with the program, which the kernel frees asynchronously, so EBUSY/EAGAIN is
/// retried every 100 ms for up to [`RMMOD_PATIENCE`]; any other error fails at once. Fails too
/// if `/sys/module/crib_kfuncs` is still there afterwards.
pub fn rmmod_kfuncs() -> Result<Duration> {
    let name = CString::new(MODULE)?;
    let started = Instant::now();
    loop {
        // O_NONBLOCK: fail instead of waiting for the references to go.
        let e = match delete_module(&name, DeleteModuleFlags::O_NONBLOCK) {
            Ok(()) => break,
            Err(e) => e,
        };
        ensure!(
            matches!(e, Errno::EBUSY | Errno::EAGAIN) && started.elapsed() < RMMOD_PATIENCE,
            "rmmod {MODULE}: {e} after {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(
        !Path::new("/sys/module").join(MODULE).exists(),
        "{MODULE} still present after rmmod"
    );
    Ok(started.elapsed())
}

/// A pid no process has now: one of the 99 below `pid_max`, which a guest's pids, handed out
/// upwards from 1, do not reach.
pub fn free_pid() -> Result<i32> {
    let max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")?
        .trim()
        .parse()?;
    (1..100)
        .map(|i| max - i)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .context("no free pid near pid_max")
}

/// A [`Kernel`] for unit tests that only look at its fields: the release variant of 7.3.0-rc7
/// under `/k`, with the module `/k/module/crib_kfuncs.ko` on stock and none on patched.
#[cfg(test)]
pub(crate) fn fake_kernel(flavor: Flavor) -> Kernel {
    Kernel {
        flavor,
        variant: "release".into(),
        dir: "/k".into(),
        bzimage: "/k/bzImage".into(),
        vmlinux: "/k/vmlinux".into(),
        vmlinux_h: "/k/vmlinux.h".into(),
        release: "7.3.0-rc7".into(),
        base: "linux-source-7.3".into(),
        module: (flavor == Flavor::Stock).then(|| "/k/module/crib_kfuncs.ko".into()),
        manifest: Default::default(),
    }
}

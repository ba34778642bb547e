//! VM tests: a test on the host re-runs its own binary in a fresh guest (`--exact <name>
//! --nocapture`, `CRIB_IN_GUEST=1`) and fails on a non-zero exit, a test that did not run, any
//! kernel splat, or a VM failure.

use std::ffi::OsString;

use thiserror::Error;

use super::splat::Splat;
use super::transcript::tail;
use super::{in_guest, GuestRun, Vm, VmError};
use crate::kernel::{Flavor, Kernel};

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

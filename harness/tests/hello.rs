//! The whole chain once: a `SEC("syscall")` program compiled against the built kernel's
//! vmlinux.h, loaded with libbpf-rs, run with BPF_PROG_RUN and a context struct, calling a CRIB
//! kfunc (module on stock, built in on patched) and emitting a record into a ring buffer that is
//! decoded with the bindgen types of `selftests/include/crib_records.h`. Each test body runs in a
//! guest booted from the freshly built kernel; on the host it only starts that guest.

use std::os::unix::fs::MetadataExt;

use anyhow::{ensure, Context, Result};
use crib_harness::kernel::{Flavor, Kernel};
use crib_harness::vm;
use rstest::rstest;

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

fn hello_in_guest(flavor: Flavor) -> Result<()> {
    let kernel = Kernel::locate(flavor)?;
    let uname = nix::sys::utsname::uname().context("uname")?;
    let release = uname.release().to_string_lossy();
    ensure!(
        release == kernel.release,
        "guest runs kernel '{release}', but the {flavor} build is '{}': the VM did not boot our bzImage",
        kernel.release
    );

    let cookie = 0x5eed_c0de_0000_0000u64 | u64::from(std::process::id());
    let rec = crib_harness::hello::run(cookie)?;

    let comm_path = format!("/proc/self/task/{}/comm", gettid());
    let comm_truth =
        std::fs::read_to_string(&comm_path).with_context(|| format!("reading {comm_path}"))?;
    let comm = rec.comm();

    let checks: [(&str, String, String); 5] = [
        (
            "cookie",
            format!("{:#x}", rec.cookie),
            format!("{cookie:#x}"),
        ),
        (
            "ino",
            rec.ino.to_string(),
            std::fs::metadata(crib_harness::hello::FILE)
                .with_context(|| format!("stat {}", crib_harness::hello::FILE))?
                .ino()
                .to_string(),
        ),
        ("tgid", rec.tgid.to_string(), std::process::id().to_string()),
        ("pid", rec.pid.to_string(), gettid().to_string()),
        ("comm", comm, comm_truth.trim_end().to_string()),
    ];
    for (field, got, want) in &checks {
        ensure!(
            got == want,
            "record field {field}: program wrote {got}, ground truth is {want}"
        );
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    ensure!(
        rec.uid == uid,
        "record field uid: program wrote {}, ground truth is {uid}",
        rec.uid
    );
    println!("{flavor}: kernel {release}, record {rec:?}");
    Ok(())
}

/// One test per flavor, named `hello_record_matches_procfs::case_1_stock` and
/// `::case_2_patched`: on stock the kfunc comes from the module, on patched it is built in.
#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn hello_record_matches_procfs(#[case] flavor: Flavor) {
    let name = vm::current_test_name();
    assert!(
        name.ends_with(flavor.as_str()),
        "test '{name}' runs the {flavor} case: the guest would re-run another test"
    );
    let result = if vm::in_guest() {
        hello_in_guest(flavor)
    } else {
        vm::run_test_in_guest(flavor, &name).map(|_| ())
    };
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

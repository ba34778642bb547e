//! Smoke tests of the VM runner. Each test runs twice: on the host it calls
//! `run_test_in_guest`, which boots the built kernel and re-runs this very test inside the
//! guest (`CRIB_IN_GUEST=1`), where the checks run. A missing kernel build fails the test
//! with the message saying what to build; nothing is skipped.

use std::io::Write as _;

use crib_harness::kernel::{Flavor, Kernel};
use crib_harness::vm::{
    current_test_name, in_guest, run_test_in_guest, Backend, GuestTestError, SplatKind, Vm,
};
use rstest::rstest;

fn guest_flavor() -> Flavor {
    let f = crib_harness::settings::get().flavor.as_deref();
    f.expect("CRIB_FLAVOR is set in the guest")
        .parse()
        .expect("CRIB_FLAVOR names a flavor")
}

fn check_uname_matches_build() {
    let kernel = Kernel::locate(guest_flavor()).expect("the kernel we booted is in the cache");
    let out = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .expect("uname runs");
    let release = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        release, kernel.release,
        "the guest runs a different kernel than the build"
    );
    eprintln!("guest uname -r = {release} ({} build)", kernel.flavor);
}

/// `vm_guest_uname_matches_build::case_1_stock` and `::case_2_patched`.
#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn vm_guest_uname_matches_build(#[case] flavor: Flavor) {
    if in_guest() {
        assert_eq!(guest_flavor(), flavor, "the runner booted another flavor");
        return check_uname_matches_build();
    }
    let name = current_test_name();
    assert!(
        name.ends_with(flavor.as_str()),
        "test '{name}' runs the {flavor} case: the guest would re-run another test"
    );
    let run = run_test_in_guest(flavor, &name).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("boot to command {:?}, round trip {:?}", run.boot, run.total);
}

#[test]
fn vm_stock_guest_has_crib_kfuncs_module_loaded() {
    if in_guest() {
        assert_eq!(guest_flavor(), Flavor::Stock);
        let modules = std::fs::read_to_string("/proc/modules").expect("/proc/modules readable");
        let line = modules
            .lines()
            .find(|l| l.split_whitespace().next() == Some("crib_kfuncs"))
            .unwrap_or_else(|| panic!("crib_kfuncs not in /proc/modules:\n{modules}"));
        assert!(line.contains(" Live "), "module not live: {line}");
        assert!(std::path::Path::new("/sys/module/crib_kfuncs").is_dir());
        // The rest of the guest setup the runner promises.
        let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts readable");
        assert!(
            mounts
                .lines()
                .any(|l| l.starts_with("bpf /sys/fs/bpf bpf ")),
            "{mounts}"
        );
        assert!(
            mounts.lines().any(|l| l.starts_with("tmpfs /tmp tmpfs ")),
            "{mounts}"
        );
        let lo = std::fs::read_to_string("/sys/class/net/lo/flags").expect("lo exists");
        let flags = u32::from_str_radix(lo.trim().trim_start_matches("0x"), 16).expect("hex");
        assert_eq!(flags & 1, 1, "lo is not up (flags {lo})");
        return;
    }
    run_test_in_guest(
        Flavor::Stock,
        "vm_stock_guest_has_crib_kfuncs_module_loaded",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A WARNING line in the guest's kernel log must fail the run, with the excerpt.
const FAKE_WARN: &str =
    "WARNING: kernel/bpf/crib_fake.c:42 at crib_selftest_fake_warn+0x1c/0x30, CPU#0: vm_smoke/1";

#[test]
fn vm_kernel_warning_in_guest_fails_the_run_with_excerpt() {
    if in_guest() {
        let mut kmsg = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .expect("/dev/kmsg writable");
        kmsg.write_all(format!("<4>{FAKE_WARN}\n").as_bytes())
            .expect("write /dev/kmsg");
        return;
    }
    let err = match run_test_in_guest(
        Flavor::Stock,
        "vm_kernel_warning_in_guest_fails_the_run_with_excerpt",
    ) {
        Ok(run) => panic!("the WARNING was not detected; guest dmesg:\n{}", run.dmesg),
        Err(e) => e,
    };
    match err.downcast_ref::<GuestTestError>() {
        Some(GuestTestError::Splats { splats, code, .. }) => {
            assert_eq!(*code, 0, "the guest side itself passed");
            assert_eq!(splats.len(), 1, "{splats:#?}");
            assert_eq!(splats[0].kind, SplatKind::Warning);
            assert_eq!(splats[0].line, FAKE_WARN);
            assert!(err.to_string().contains(FAKE_WARN), "{err}");
        }
        _ => panic!("failed, but not because of the splat: {err:#}"),
    }
}

/// Command runs boot with the direct backend by default; vmtest, the interactive shell's
/// backend and the other one `CRIB_VM_BACKEND` selects, must keep working: boot it, run a
/// command, check the guest runs this build and the setup loaded the module.
#[test]
fn vm_vmtest_backend_boots_and_runs_a_command() {
    if in_guest() {
        return;
    }
    let kernel = Kernel::locate(Flavor::Stock).unwrap_or_else(|e| panic!("{e:#}"));
    let argv: Vec<std::ffi::OsString> = [
        "sh",
        "-c",
        "uname -r; grep -c '^crib_kfuncs ' /proc/modules",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let run = Vm::new(&kernel)
        .backend(Backend::Vmtest)
        .run(&argv)
        .unwrap_or_else(|e| panic!("vmtest backend: {e}"));
    assert_eq!(run.exit_code, 0, "{}", run.output);
    let lines: Vec<&str> = run.output.lines().map(str::trim).collect();
    assert!(lines.contains(&kernel.release.as_str()), "{}", run.output);
    assert!(
        lines.contains(&"1"),
        "crib_kfuncs not loaded: {}",
        run.output
    );
    assert!(
        run.console.contains("qemu-guest-agent") || run.console.contains("===>"),
        "not vmtest:\n{}",
        run.console
    );
    eprintln!(
        "vmtest: boot to command {:?}, round trip {:?}",
        run.boot, run.total
    );
}

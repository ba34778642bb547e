//! Host-side unit tests of the VM runner: splat scanner, transcript parsing, quoting, the
//! probe cache and the guest-test verdict; the failure classes in `classify.rs`. No VM is booted
//! here (see harness/tests/vm_smoke.rs).

use super::accel::format_probe_cache;
use super::splat::{splat_patterns, EXCERPT_LINES};
use super::transcript::{find_marker, save_transcript};
use super::*;
use crate::kernel::Flavor;
use crate::test_support::fake_kernel;

mod classify;

const SPLATS: &str = include_str!("../testdata/splats.txt");
const CLEAN_BOOT: &str = include_str!("../testdata/clean-boot-dmesg.txt");

fn kinds(log: &str) -> Vec<SplatKind> {
    scan_splats(log).iter().map(|s| s.kind).collect()
}

#[test]
fn every_pattern_compiles() {
    assert_eq!(splat_patterns().len(), 19);
}

#[test]
fn scanner_finds_each_kind_of_real_looking_report_once() {
    use SplatKind::*;
    assert_eq!(
        kinds(SPLATS),
        vec![
            Kasan,
            CircularLocking,
            InconsistentLockState,
            SuspiciousRcu,
            Refcount,
            SleepingInAtomic,
            Ubsan,
            ListCorruption,
            SoftLockup,
            HungTask,
            RcuStall,
            Warning,
            Bug,
            GeneralProtectionFault,
            Panic,
        ]
    );
}

#[test]
fn scanner_finds_what_the_teardown_reports() {
    let log =
        "[   40.100000] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)\n\
               [   40.200000] kmemleak-report: unreferenced object 0xffff888004a3c000 (size 256):\n\
               [   41.000000] crib-teardown: crib_kfuncs still in use (refcnt 1) 10 s after the \
               command ended: a leaked reference\n";
    assert_eq!(
        kinds(log),
        vec![SplatKind::MemoryLeak, SplatKind::TeardownLeak]
    );
}

#[test]
fn the_guest_script_tears_down_before_reading_dmesg() {
    let k = Kernel {
        module: Some("/k/crib_kfuncs.ko".into()),
        ..fake_kernel(Flavor::Stock)
    };
    let t = super::script::teardown_steps(&k);
    assert!(t.contains("rmmod crib_kfuncs"), "{t}");
    assert!(t.contains("echo scan > /sys/kernel/debug/kmemleak"), "{t}");
    let patched = Kernel {
        module: None,
        ..fake_kernel(Flavor::Patched)
    };
    assert!(!super::script::teardown_steps(&patched).contains("rmmod"));
}

#[test]
fn scanner_reports_the_trigger_line_and_an_excerpt_around_it() {
    let s = scan_splats(SPLATS);
    let kasan = &s[0];
    assert_eq!(
        kasan.line,
        "BUG: KASAN: slab-use-after-free in bpf_iter_task_file_next+0x1a2/0x2c0 [crib_kfuncs]"
    );
    assert_eq!(kasan.line_no, 1);
    // Starts before the trigger (the ==== separator) and carries the stack.
    assert!(
        kasan.excerpt.starts_with("[   25.120000] ====="),
        "{}",
        kasan.excerpt
    );
    assert!(kasan.excerpt.contains("kasan_report+0xb0/0xe0"));
    for sp in &s {
        assert!(
            sp.excerpt.lines().count() <= EXCERPT_LINES,
            "{}",
            sp.excerpt
        );
        assert!(sp.excerpt.contains(&sp.line));
    }
    // An excerpt stops at the report's end marker.
    let refcount = s.iter().find(|x| x.kind == SplatKind::Refcount).unwrap();
    assert!(refcount
        .excerpt
        .ends_with("---[ end trace 0000000000000000 ]---"));
    assert!(refcount.excerpt.contains("WARNING: lib/refcount.c:28"));
}

#[test]
fn scanner_finds_a_warning_written_to_kmsg_without_timestamp() {
    let s = scan_splats("WARNING: kernel/crib.c:1 at crib_fake+0x0/0x10, CPU#0: sh/1\n");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].kind, SplatKind::Warning);
}

#[test]
fn scanner_separates_reports_further_apart() {
    let log = "[ 1.0] WARNING: a.c:1 at f+0x0/0x1, CPU#0: x/1\n[ 1.1] x\n[ 1.2] x\n[ 1.3] x\n\
               [ 1.4] x\n[ 1.5] x\n[ 1.6] WARNING: b.c:2 at g+0x0/0x1, CPU#0: x/1\n";
    assert_eq!(kinds(log), vec![SplatKind::Warning, SplatKind::Warning]);
}

#[test]
fn clean_debug_boot_log_has_no_splats() {
    assert!(
        CLEAN_BOOT.lines().count() > 100,
        "fixture too small to mean anything"
    );
    let s = scan_splats(CLEAN_BOOT);
    assert!(s.is_empty(), "false positives: {s:#?}");
}

#[test]
fn lookalike_lines_are_not_splats() {
    let log = "\
[    0.1] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!
[    0.2] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!
[    0.3] kasan: KernelAddressSanitizer initialized (generic)
[    0.4] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar
[    0.5] rcu: RCU lockdep checking is enabled.
[    0.6] traps: crash[123] general protection fault ip:7f1c2d3e4f50 sp:7ffd1234 error:0 in libc.so.6[7f1c2d3e4000+155000]
[    0.7] Unknown kernel command line parameters \"PROMPT_COMMAND=/x/guest-setup.sh\", will be passed to user space.
[    0.8] ... MAX_LOCKDEP_SUBCLASSES:  8
[    0.9] DEBUG_BUG_VERBOSE enabled: BUGS are verbose
";
    assert_eq!(scan_splats(log), vec![]);
}

#[test]
fn log_prefix_is_stripped_with_or_without_caller_id() {
    assert_eq!(strip_log_prefix("[   12.345678] WARNING: x"), "WARNING: x");
    assert_eq!(strip_log_prefix("[   12.345678] [  T123] BUG: y"), "BUG: y");
    assert_eq!(strip_log_prefix("[    0.000000] [    C0] z"), "z");
    assert_eq!(strip_log_prefix("no prefix"), "no prefix");
}

#[test]
fn shell_quote_survives_bash() {
    let words = [
        "plain",
        "with space",
        "it's",
        "$HOME",
        "a\"b",
        "",
        "*",
        "back\\slash",
        "new\nline",
    ];
    let script: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("printf '%s\\0' {}", script.join(" ")))
        .output()
        .unwrap();
    assert!(out.status.success());
    let got: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .split_terminator('\0')
        .collect();
    assert_eq!(got, words);
}

#[test]
fn guest_script_sets_up_runs_and_reports_in_order() {
    let vm = Vm::new(&fake_kernel(Flavor::Stock)).env("X_Y", "a b");
    let s = vm
        .guest_script(&argv(&["/bin/echo", "it's"]), "N0NCE")
        .unwrap();
    let pos = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing in\n{s}"))
    };
    assert!(pos("mount -t bpf bpf /sys/fs/bpf") < pos("ip link set lo up"));
    assert!(pos("ip link set lo up") < pos("mount -t tmpfs"));
    assert!(pos("mount -t tmpfs") < pos("insmod /k/module/crib_kfuncs.ko"));
    assert!(pos("insmod") < pos("crib_mark START"));
    assert!(pos("export CRIB_IN_GUEST=1") < pos("crib_mark START"));
    assert!(s.contains("export CRIB_FLAVOR=stock"));
    assert!(s.contains(&format!("export X_Y={}", shell_quote("a b"))));
    assert!(pos("crib_mark START") < pos(&format!("/bin/echo {}", shell_quote("it's"))));
    assert!(pos("/bin/echo") < pos("rc=$?"));
    assert!(pos("rc=$?") < pos("crib_mark DMESG"));
    assert!(s.trim_end().ends_with("exit $rc"));
    // Valid for both shells that run it: busybox sh (direct backend), bash (vmtest).
    for sh in [&["/bin/busybox", "sh"][..], &["bash"][..]] {
        let st = std::process::Command::new(sh[0])
            .args(&sh[1..])
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .status()
            .unwrap();
        assert!(st.success(), "{sh:?} -n rejects the guest script");
    }
}

#[test]
fn guest_script_rejects_bad_env_names() {
    let vm = Vm::new(&fake_kernel(Flavor::Stock)).env("A B", "x");
    assert!(
        matches!(vm.guest_script(&argv(&["true"]), "N"), Err(VmError::BadEnvVar(k)) if k == "A B")
    );
}

#[test]
fn guest_script_has_no_insmod_on_patched() {
    let vm = Vm::new(&fake_kernel(Flavor::Patched));
    let s = vm.guest_script(&argv(&["true"]), "N").unwrap();
    assert!(!s.contains("insmod"));
    assert!(s.contains("export CRIB_FLAVOR=patched"));
}

#[test]
fn guest_script_rejects_nul_and_non_utf8_arguments() {
    use std::os::unix::ffi::OsStringExt;
    let vm = Vm::new(&fake_kernel(Flavor::Stock));
    let bad = OsString::from_vec(vec![0xff, b'a']);
    assert!(matches!(
        vm.guest_script(&[bad], "N"),
        Err(VmError::NonUtf8Arg(_))
    ));
    assert!(matches!(
        vm.guest_script(&argv(&["a\0b"]), "N"),
        Err(VmError::NonUtf8Arg(_))
    ));
}

/// The marker-printing shell function, run by busybox sh (the direct backend's shell), yields
/// lines `interpret` parses.
#[test]
fn markers_printed_by_the_guest_shell_are_parsed() {
    let vm = Vm::new(&fake_kernel(Flavor::Patched));
    let s = vm.guest_script(&argv(&["true"]), "abc").unwrap();
    let func = s.lines().next().unwrap();
    let out = std::process::Command::new("/bin/busybox")
        .args(["sh", "-c"])
        .arg(format!(
            "{func}\nprintf partial; crib_mark RC 3; crib_mark END"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        find_marker(lines.next().unwrap(), "abc"),
        Some(("partial", "RC", "3"))
    );
    assert_eq!(
        find_marker(lines.next().unwrap(), "abc"),
        Some(("", "END", ""))
    );
    assert_eq!(find_marker("@@CRIB:other:RC@@3", "abc"), None);
}

fn raw(lines: &[&str]) -> RawRun {
    RawRun {
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, l)| (Duration::from_millis(100 * i as u64), l.to_string()))
            .collect(),
        stderr: String::new(),
        code: Some(0),
        total: Duration::from_secs(9),
        timed_out: false,
    }
}

const T: Duration = Duration::from_secs(300);

#[test]
fn transcript_splits_console_output_and_dmesg() {
    let r = raw(&[
        "=> bzImage",
        "===> Booting",
        "[    0.000000] Linux version 7.3.0-rc7",
        "===> Setting up VM",
        "===> Running command",
        "@@CRIB:n1:START@@",
        "hello",
        "no newline@@CRIB:n1:RC@@7",
        "@@CRIB:n1:DMESG@@",
        "[    0.000000] Linux version 7.3.0-rc7",
        "[    9.000000] WARNING: a.c:1 at f+0x0/0x1, CPU#0: x/1",
        "@@CRIB:n1:END@@",
        "Command failed with exit code: 7",
    ]);
    let run = interpret(r, "n1", T).unwrap();
    assert_eq!(run.exit_code, 7);
    assert_eq!(run.output, "hello\nno newline");
    assert_eq!(run.dmesg.lines().count(), 2);
    assert_eq!(run.boot, Duration::from_millis(500));
    assert_eq!(run.total, Duration::from_secs(9));
    assert!(run.console.contains("===> Booting"));
    assert!(run.console.contains("Command failed"));
    assert_eq!(run.splats().len(), 1);
}

#[test]
fn exit_code_comes_from_the_marker_not_from_vmtest() {
    // A command that exits 69 is not a VM failure.
    let mut r = raw(&[
        "@@CRIB:n:START@@",
        "@@CRIB:n:RC@@69",
        "@@CRIB:n:DMESG@@",
        "@@CRIB:n:END@@",
    ]);
    r.code = Some(69);
    assert_eq!(interpret(r, "n", T).unwrap().exit_code, 69);
}

#[test]
fn a_boot_failure_shows_the_console_tail() {
    let mut r = raw(&[
        "=> bzImage",
        "===> Booting",
        "Decompressing Linux... Parsing ELF... done.",
    ]);
    r.code = Some(69);
    r.stderr = "Failed to connect QGA".into();
    match interpret(r, "n", T) {
        Err(e @ VmError::Failed { .. }) => {
            let m = e.to_string();
            assert!(m.contains("booting"), "{m}");
            assert!(m.contains("Decompressing Linux"), "{m}");
            assert!(m.contains("Failed to connect QGA"), "{m}");
            assert!(m.contains("vmtest exit 69"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_panic_on_the_console_is_a_crash_with_the_excerpt() {
    let mut r = raw(&[
        "@@CRIB:n:START@@",
        "[   41.000000] Oops: general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] SMP KASAN NOPTI",
        "[   41.000011] Kernel panic - not syncing: Fatal exception",
    ]);
    r.code = Some(69);
    match interpret(r, "n", T) {
        Err(e @ VmError::Crashed { .. }) => {
            let m = e.to_string();
            assert!(m.contains("running the command"), "{m}");
            assert!(m.contains("Kernel panic"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_timeout_says_which_phase_hung() {
    let mut r = raw(&[
        "===> Booting",
        "Decompressing Linux... Parsing ELF... done.",
    ]);
    r.timed_out = true;
    r.code = None;
    let m = interpret(r, "n", Duration::from_secs(20))
        .unwrap_err()
        .to_string();
    assert!(m.contains("within 20s while booting"), "{m}");
    assert!(m.contains("CRIB_VM_TIMEOUT"), "{m}");
    assert!(m.contains("Decompressing Linux"), "{m}");
}

#[test]
fn a_failed_setup_step_is_named_with_its_output() {
    let mut r = raw(&[
        "===> Running command",
        "insmod: ERROR: could not insert module /k/crib_kfuncs.ko: Invalid module format",
        "@@CRIB:n:SETUP-FAILED@@insmod /k/crib_kfuncs.ko",
    ]);
    r.code = Some(EXIT_SETUP_FAILED);
    match interpret(r, "n", T) {
        Err(e @ VmError::Setup { .. }) => {
            let m = e.to_string();
            assert!(m.contains("`insmod /k/crib_kfuncs.ko`"), "{m}");
            assert!(m.contains("Invalid module format"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn probe_cache_is_used_only_for_the_same_host_and_qemu() {
    let c = AccelChoice {
        accel: Accel::Tcg,
        reason: "KVM hung\nsecond line".into(),
    };
    let text = format_probe_cache("6.18 | QEMU 7.2", &c);
    let back = parse_probe_cache(&text, "6.18 | QEMU 7.2").unwrap();
    assert_eq!(back.accel, Accel::Tcg);
    assert_eq!(back.reason, "KVM hung second line");
    assert_eq!(parse_probe_cache(&text, "6.19 | QEMU 7.2"), None);
    assert_eq!(parse_probe_cache("key=k\naccel=xen\n", "k"), None);
}

#[test]
fn timeout_strings_parse_to_whole_positive_seconds() {
    assert_eq!(parse_secs("30"), Some(Duration::from_secs(30)));
    assert_eq!(parse_secs(" 5 "), Some(Duration::from_secs(5)));
    assert_eq!(parse_secs("0"), None);
    assert_eq!(parse_secs("1.5"), None);
    assert_eq!(parse_secs("x"), None);
}

fn guest(code: i32, output: &str, dmesg: &str) -> GuestRun {
    GuestRun {
        exit_code: code,
        output: output.into(),
        dmesg: dmesg.into(),
        ..GuestRun::default()
    }
}

const ONE_PASSED: &str = "running 1 test\ntest t ... ok\n\n\
                          test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 4 filtered out";

#[test]
fn guest_test_verdict_passes_one_passed_test_with_clean_dmesg() {
    assert!(check_guest_test("t", guest(0, ONE_PASSED, "[ 0.1] Linux version")).is_ok());
}

#[test]
fn guest_test_verdict_fails_on_zero_tests_run() {
    let out = "running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 5 filtered out";
    assert!(matches!(
        check_guest_test("tt", guest(0, out, "")),
        Err(GuestTestError::NotRun { .. })
    ));
}

#[test]
fn guest_test_verdict_fails_on_nonzero_exit_with_output() {
    match check_guest_test("t", guest(101, "thread 'main' panicked at x.rs:1", "")) {
        Err(e @ GuestTestError::Failed { code: 101, .. }) => {
            assert!(e.to_string().contains("panicked at x.rs:1"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn guest_test_verdict_fails_on_a_splat_even_if_the_test_passed() {
    let d = "[ 5.0] WARNING: a.c:1 at f+0x0/0x1, CPU#0: x/1\n[ 5.1] Modules linked in:";
    match check_guest_test("t", guest(0, ONE_PASSED, d)) {
        Err(e @ GuestTestError::Splats { .. }) => {
            assert!(e.to_string().contains("WARNING: a.c:1"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn real_early_boot_kasan_report_is_found() {
    // A real boot of the debug kernel under TCG on a loaded host (7.3-rc7).
    let log = include_str!("../testdata/kasan-early-boot-dmesg.txt");
    let s = scan_splats(log);
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(s[0].kind, SplatKind::Kasan);
    assert_eq!(
        s[0].line,
        "BUG: KASAN: wild-memory-access in rcu_is_watching+0x21/0x50"
    );
    assert!(s[0].excerpt.contains("identify_cpu+"), "{}", s[0].excerpt);
}

#[test]
fn vmtests_own_error_becomes_the_reason_without_the_backtrace() {
    let mut r = raw(&[
        "===> Booting",
        "[  233.844564] vmtest: Spawning qemu-ga in the background",
        "===> Setting up VM",
        "Failed to mount shared directory in guest",
        "",
        "Caused by:",
        "    0: Failed to QGA guest-exec",
        "    1: Resource temporarily unavailable (os error 11)",
        "",
        "Stack backtrace:",
        "   0: <E as anyhow::context::ext::StdError>::ext_context",
        "             at /x.rs:1:2",
        "   1: vmtest::main",
    ]);
    r.code = Some(69);
    let m = interpret(r, "n", T).unwrap_err().to_string();
    assert!(
        m.contains("vmtest: Failed to mount shared directory in guest\nCaused by:\n    0: Failed to QGA guest-exec"),
        "{m}"
    );
    assert!(!m.contains("Stack backtrace"), "{m}");
    assert!(!m.contains("ext_context"), "{m}");
    assert!(m.contains("Spawning qemu-ga"), "{m}");
}

#[test]
fn guests_skip_the_boot_time_timer_irq_self_test() {
    let k = Vm::new(&fake_kernel(Flavor::Stock)).kargs();
    assert!(k.split(' ').any(|w| w == "no_timer_check"), "{k}");
}

#[test]
fn every_kernel_boots_directly_unless_told_otherwise() {
    let mut k = fake_kernel(Flavor::Stock);
    for variant in ["release", "debug"] {
        k.variant = variant.into();
        assert_eq!(Backend::default_for(&k), Backend::Direct, "{variant}");
    }
    let vm = Vm::new(&k).backend(Backend::Vmtest);
    assert_eq!(vm.backend_choice().ok(), Some(Backend::Vmtest));
}

#[test]
fn guests_boot_with_4_level_paging() {
    let k = Vm::new(&fake_kernel(Flavor::Stock)).kargs();
    assert!(k.split(' ').any(|w| w == "no5lvl"), "{k}");
}

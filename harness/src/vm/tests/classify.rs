//! Failure classes: each flake class seen so far has a transcript fixture, classified here as
//! the runner classifies it live (harness/README.md, "Flakes and retries").

use super::*;

const QMP_EOF: &str = include_str!("../testdata/qmp-handshake-eof.transcript");
const QMP_EOF_REPRODUCED: &str =
    include_str!("../testdata/qmp-handshake-eof-reproduced.transcript");
const STALE_INT3: &str = include_str!("../testdata/tcg-stale-int3.transcript");
const EARLY_KASAN: &str = include_str!("../testdata/early-kasan-la57.transcript");

fn class_of(transcript: &str) -> Option<FailureClass> {
    classify_transcript(transcript).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn qmp_handshake_eof_fixture_is_its_class_and_not_retried() {
    assert_eq!(class_of(QMP_EOF), Some(FailureClass::QmpHandshakeEof));
    assert!(!FailureClass::QmpHandshakeEof.retryable());
    // What the runner reported for it.
    let t = parse_transcript(QMP_EOF).unwrap();
    let m = interpret(t.raw, "-", T).unwrap_err().to_string();
    assert!(m.contains("the VM failed while booting"), "{m}");
    assert!(m.contains("unexpected eof"), "{m}");
}

#[test]
fn reproduced_qmp_handshake_eof_is_its_class() {
    assert_eq!(
        class_of(QMP_EOF_REPRODUCED),
        Some(FailureClass::QmpHandshakeEof)
    );
    let t = parse_transcript(QMP_EOF_REPRODUCED).unwrap();
    assert_eq!(t.raw.code, Some(101));
    assert!(t.raw.stderr.contains("qapi::qmp_impl::Qmp<S>::handshake"));
}

#[test]
fn stale_int3_boot_oops_fixture_is_the_one_retried_class() {
    assert_eq!(class_of(STALE_INT3), Some(FailureClass::TcgStaleInt3));
    assert!(FailureClass::TcgStaleInt3.retryable());
    let retryable: Vec<_> = FailureClass::ALL
        .into_iter()
        .filter(|c| c.retryable())
        .collect();
    assert_eq!(retryable, vec![FailureClass::TcgStaleInt3]);
}

#[test]
fn the_same_int3_oops_is_the_tests_failure_when_anything_of_ours_could_be_involved() {
    // Our module loaded (out of tree: taint O).
    let tainted = STALE_INT3.replace(" Not tainted 7.3.0", " Tainted: G           O        7.3.0");
    assert_eq!(class_of(&tainted), Some(FailureClass::KernelCrash));
    // The command had started.
    let started = STALE_INT3.replacen(
        "   1.900 [    1.428803]",
        "   1.899 @@CRIB:abc:START@@\n   1.900 [    1.428803]",
        1,
    );
    assert_ne!(started, STALE_INT3);
    assert_eq!(class_of(&started), Some(FailureClass::KernelCrash));
    // The INT3 is still in the text (a real breakpoint): nothing proves the emulator.
    let real_int3 = STALE_INT3.replace("55 53 66 <90> e8", "55 53 cc <90> e8");
    assert_ne!(real_int3, STALE_INT3);
    assert_eq!(class_of(&real_int3), Some(FailureClass::KernelCrash));
    // Another oops while booting, untainted: a crash, not retried.
    let gpf = STALE_INT3.replace(
        "Oops: int3: 0000 [#1]",
        "Oops: general protection fault: 0000 [#1]",
    );
    assert_eq!(class_of(&gpf), Some(FailureClass::KernelCrash));
}

#[test]
fn early_kasan_fixture_is_its_class_and_other_splats_are_plain_splats() {
    assert_eq!(class_of(EARLY_KASAN), Some(FailureClass::EarlyKasanLa57));
    assert!(!FailureClass::EarlyKasanLa57.retryable());
    // The same report from elsewhere is an ordinary splat.
    let elsewhere = EARLY_KASAN.replace("identify_cpu", "crib_dump_files");
    assert_eq!(class_of(&elsewhere), Some(FailureClass::KernelSplat));
}

#[test]
fn timer_check_panic_fixture_is_its_class_and_not_retried() {
    let t = include_str!("../testdata/timer-check-panic.transcript");
    assert_eq!(class_of(t), Some(FailureClass::TimerCheckPanic));
    assert!(!FailureClass::TimerCheckPanic.retryable());
}

#[test]
fn classify_finished_runs_by_dmesg_then_exit_code() {
    let ok = |code: i32, dmesg: &str| classify(&Ok(guest(code, "", dmesg)));
    assert_eq!(ok(0, "[ 0.1] Linux version"), None);
    assert_eq!(
        ok(3, "[ 0.1] Linux version"),
        Some(FailureClass::CommandFailed)
    );
    assert_eq!(
        ok(0, "[ 5.0] WARNING: a.c:1 at f+0x0/0x1, CPU#0: x/1"),
        Some(FailureClass::KernelSplat)
    );
}

#[test]
fn classify_vm_failures() {
    let failed = |reason: &str| VmError::Failed {
        phase: BOOT_PHASE,
        code: Some(69),
        reason: reason.into(),
        tail: String::new(),
    };
    assert_eq!(
        classify_error(&failed(
            "vmtest: Failed to connect QGA\nCaused by:\n    timed out"
        )),
        FailureClass::GuestAgent
    );
    assert_eq!(
        classify_error(&failed("vmtest: QMP handshake failed")),
        FailureClass::QmpHandshakeEof
    );
    assert_eq!(
        classify_error(&failed("something new")),
        FailureClass::Other
    );
    let timeout = VmError::Timeout {
        timeout: T,
        phase: BOOT_PHASE,
        tail: String::new(),
        splats: vec![],
    };
    assert_eq!(classify_error(&timeout), FailureClass::Timeout);
    let setup = VmError::Setup {
        step: "insmod x".into(),
        output: String::new(),
    };
    assert_eq!(classify_error(&setup), FailureClass::Setup);
}

#[test]
fn failure_class_names_round_trip() {
    for c in FailureClass::ALL {
        assert_eq!(FailureClass::from_name(c.name()), Some(c));
        assert_eq!(c.to_string(), c.name());
        assert!(!c.name().contains(' '));
    }
    assert_eq!(FailureClass::from_name("flaky"), None);
}

#[test]
fn saved_transcripts_read_back_as_they_were_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.log");
    let mut r = raw(&["===> Booting", "", "  indented", "@@CRIB:n9:START@@"]);
    r.code = None;
    r.timed_out = true;
    r.stderr = "line one\nline two".into();
    save_transcript(&path, &r, "vmtest");
    let back = parse_transcript(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back.who, "vmtest");
    assert_eq!(back.nonce.as_deref(), Some("n9"));
    assert_eq!(back.raw.lines, r.lines);
    assert_eq!(back.raw.code, None);
    assert!(back.raw.timed_out);
    assert_eq!(back.raw.total, r.total);
    assert_eq!(back.raw.stderr.trim_end(), "line one\nline two");
    assert!(parse_transcript("   0.1 x\n").is_err(), "no footer");
    assert!(
        parse_transcript("soon x\n--- vmtest exit None after 1.0s, timed out: false\n").is_err()
    );
}

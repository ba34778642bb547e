//! Unit tests of the option limits, the statistics, the checks and the report.

use super::*;

#[test]
fn options_check_rejects_out_of_range_with_a_reason() {
    let d = Options::default();
    assert!(d.check().is_ok());
    let e = |o: Options| o.check().unwrap_err().to_string();
    assert!(e(Options { fds: 0, ..d }).contains("--fds 0"));
    assert!(e(Options {
        fds: MAX_FDS + 1,
        ..d
    })
    .contains("1..="));
    assert!(Options { fds: MAX_FDS, ..d }.check().is_ok());
    assert!(e(Options { rounds: 0, ..d }).contains("--rounds 0"));
    assert!(e(Options {
        rounds: 1_000_001,
        ..d
    })
    .contains("--rounds"));
    assert!(e(Options {
        warmup: 1_000_001,
        ..d
    })
    .contains("--warmup"));
    assert!(Options { warmup: 0, ..d }.check().is_ok());
}

#[test]
fn median_and_stats() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert!(median(&[]).is_nan());
    let m = Measured {
        nr_fds: 10,
        fails: vec![],
        walk_ns: vec![100, 300, 200],
        wall_ns: vec![1000, 3000, 2000],
    };
    assert_eq!(m.median_ns_per_fd(), 20.0);
    assert_eq!(m.min_ns_per_fd(), 10.0);
    assert_eq!(m.median_wall_us(), 2.0);
}

fn table() -> Vec<TableFd> {
    let mut t = vec![
        TableFd {
            fd: 0,
            link: "/dev/null".into(),
            readable: true,
            regular: false,
        },
        TableFd {
            fd: 1,
            link: "pipe:[7]".into(),
            readable: false,
            regular: false,
        },
        TableFd {
            fd: 2,
            link: "/tmp/log".into(),
            readable: false,
            regular: true,
        },
    ];
    for fd in 4..8 {
        t.push(TableFd {
            fd,
            link: format!("/tmp/crib-bench-xyz/f{}", fd - 4),
            readable: true,
            regular: true,
        });
    }
    t
}

fn sample(nr_fds: u32, fd_sum: u64) -> Sample {
    Sample {
        retval: 0,
        nr_fds,
        nr_nofile: 0,
        nr_err: 0,
        fd_sum,
        walk_ns: 1,
        wall_ns: 1,
        fails: vec![],
    }
}

#[test]
fn samples_are_checked_against_the_table() {
    let t = table();
    let sum = 1 + 2 + 4 + 5 + 6 + 7;
    assert!(check_sample(Mode::Walk, 0, 9, &sample(7, sum), &t).is_ok());
    // a missing fd
    let e = check_sample(Mode::GetPut, 3, 9, &sample(6, sum - 7), &t).unwrap_err();
    assert!(matches!(e, BenchError::Mismatch(_)), "{e}");
    assert!(e.to_string().contains("round 3"), "{e}");
    // same count, other fds
    assert!(check_sample(Mode::Walk, 0, 9, &sample(7, sum + 1), &t).is_err());
    let fails = |nofile: u32, err: u32, fails: &[(u32, Fail)]| {
        let mut s = sample(7, sum);
        s.nr_nofile = nofile;
        s.nr_err = err;
        s.fails = fails.to_vec();
        s
    };
    let ok = |m: Mode, s: &Sample| check_sample(m, 0, 9, s, &t);
    // refusals on stdio that is not a regular file open for reading are expected, with
    // kernel-patches/0001's errnos: EBADF not readable, EINVAL readable but not regular
    let stdio = [
        (0, Fail::Dynptr(-libc::EINVAL)),
        (1, Fail::Dynptr(-libc::EBADF)),
        (2, Fail::Dynptr(-libc::EBADF)),
    ];
    assert!(ok(Mode::ScopedDynptr, &fails(0, 3, &stdio)).is_ok());
    let nofile = [(0, Fail::NoFile), (1, Fail::NoFile), (2, Fail::NoFile)];
    assert!(ok(Mode::GetPut, &fails(3, 0, &nofile)).is_ok());
    assert!(ok(Mode::GetDynptrPut, &fails(3, 0, &nofile)).is_ok());
    // but not on the benchmark's files, nor with another errno
    let e = ok(
        Mode::GetDynptrPut,
        &fails(0, 1, &[(5, Fail::Dynptr(-libc::EBADF))]),
    );
    let e = e.unwrap_err().to_string();
    assert!(e.contains("regular, open for reading"), "{e}");
    let e = ok(Mode::GetPut, &fails(1, 0, &[(4, Fail::NoFile)])).unwrap_err();
    assert!(
        e.to_string().contains("get_file() returned NULL for fd 4"),
        "{e}"
    );
    assert!(ok(
        Mode::ScopedDynptr,
        &fails(0, 1, &[(1, Fail::Dynptr(-libc::EINVAL))])
    )
    .is_err());
    assert!(ok(
        Mode::ScopedDynptr,
        &fails(0, 1, &[(0, Fail::Dynptr(-libc::EBADF))])
    )
    .is_err());
    assert!(ok(
        Mode::ScopedDynptr,
        &fails(0, 1, &[(1, Fail::Dynptr(-libc::ENOMEM))])
    )
    .is_err());
    // an fd procfs does not list
    assert!(ok(Mode::GetPut, &fails(1, 0, &[(3, Fail::NoFile)])).is_err());
    // more failures than recorded
    assert!(ok(Mode::ScopedDynptr, &fails(0, 65, &stdio)).is_err());
    // failures of a call the mode does not make
    assert!(ok(Mode::Walk, &fails(1, 0, &[(0, Fail::NoFile)])).is_err());
    assert!(ok(
        Mode::GetPut,
        &fails(0, 1, &[(1, Fail::Dynptr(-libc::EBADF))])
    )
    .is_err());
    assert!(ok(Mode::ScopedDynptr, &fails(1, 0, &[(0, Fail::NoFile)])).is_err());
    // a failing program
    let mut s = sample(0, 0);
    s.retval = -libc::ESRCH;
    let e = check_sample(Mode::Walk, 0, 9, &s, &t).unwrap_err();
    assert!(e.to_string().contains("-ESRCH"), "{e}");
}

#[test]
fn report_renders_ratios_and_the_unavailable_mode() {
    let m = |ns: u64| Measured {
        nr_fds: 6,
        fails: vec![],
        walk_ns: vec![ns * 6],
        wall_ns: vec![1000],
    };
    let mut r = Report {
        kernel: "7.3.0".into(),
        flavor: Some("stock".into()),
        cpus: 2,
        pid: 9,
        files: 4,
        table: table(),
        rounds: 1,
        warmup: 0,
        modes: vec![
            (Mode::Walk, Outcome::Measured(m(100))),
            (Mode::GetPut, Outcome::Measured(m(150))),
            (Mode::GetDynptrPut, Outcome::Measured(m(400))),
            (
                Mode::ScopedDynptr,
                Outcome::Unavailable(SCOPED_UNAVAILABLE.into()),
            ),
        ],
    };
    let text = r.render();
    assert!(
        text.contains(
            "4 regular files (O_RDONLY) + 0 /dev/null (readable, not regular), 1 pipe:[7] \
             (not readable, not regular), 2 /tmp/log (not readable)"
        ),
        "{text}"
    );
    assert!(text.contains("1.50x"), "{text}");
    assert!(
        text.contains(
            "mode 2 - mode 1:            50.0 ns/fd (medians), 50.0 (paired), 50.0 (mins)"
        ),
        "{text}"
    );
    assert!(text.contains(SCOPED_UNAVAILABLE), "{text}");
    r.modes[3] = (Mode::ScopedDynptr, Outcome::Measured(m(320)));
    let text = r.render();
    assert!(
        text.contains("mode 3 - mode 4:      80.0 ns/fd (medians), 80.0 (paired), 80.0 (mins)"),
        "{text}"
    );
    assert!(
        text.contains("mode 3 / mode 4:                              1.25x (medians), 1.25x (paired), 1.25x (mins)"),
        "{text}"
    );
}

#[test]
fn paired_statistics_compare_runs_of_the_same_round() {
    // Per-round ratios 4x and 1x: the paired median is their mean of two (2.5x); the ratio
    // of the minimums compares round 2 of one mode with round 1 of the other (2x).
    let m = |ns: [u64; 2]| Measured {
        nr_fds: 1,
        fails: vec![],
        walk_ns: ns.to_vec(),
        wall_ns: vec![1, 1],
    };
    let r = Report {
        kernel: "k".into(),
        flavor: None,
        cpus: 2,
        pid: 1,
        files: 1,
        table: vec![],
        rounds: 2,
        warmup: 0,
        modes: vec![
            (Mode::Walk, Outcome::Measured(m([100, 200]))),
            (Mode::GetPut, Outcome::Measured(m([400, 200]))),
        ],
    };
    assert_eq!(r.paired(Mode::GetPut, Mode::Walk, |a, b| a / b), Some(2.5));
    assert_eq!(
        r.paired(Mode::GetPut, Mode::Walk, |a, b| a - b),
        Some(150.0)
    );
    assert_eq!(
        r.ratio(Mode::GetPut, Mode::Walk, Measured::min_ns_per_fd),
        Some(2.0)
    );
    assert_eq!(r.paired(Mode::GetDynptrPut, Mode::Walk, |a, b| a / b), None);
}

#[test]
fn bench_files_are_recognised() {
    let t = |link: &str| TableFd {
        fd: 5,
        link: link.into(),
        readable: true,
        regular: true,
    };
    assert!(is_bench_file(&t("/tmp/crib-bench-Ab12/f17")));
    assert!(!is_bench_file(&t("/tmp/crib-bench-Ab12/g17")));
    assert!(!is_bench_file(&t("/tmp/other/f17")));
    assert!(!is_bench_file(&t("pipe:[3]")));
}

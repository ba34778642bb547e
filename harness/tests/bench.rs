//! The get/put benchmark (`crib bench`, `harness/src/bench.rs`) walks what it should: every
//! mode sees the target's whole fd table in every round and uses every one of the benchmark's
//! regular read-only files (`bench::run` itself fails otherwise, and on any refusal the kernel
//! must not make: see `bench::check_sample`). Here, on top: get_file() refuses the same fds in
//! modes 2 and 3; on stock no dynptr is refused (the module hands out only what
//! bpf_dynptr_from_file() takes there); on the patched kernel mode 4 gets -EBADF for every fd
//! not open for reading (kernel-patches/0001). Mode 4 (`item->file` straight to the kfunc) is
//! rejected by the stock verifier and runs on the patched kernel.
//!
//! Correctness only: no timing is checked (the numbers of a TCG guest on a shared host say
//! nothing a test could rely on). Each test boots a guest of its flavor; the body runs there.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use crib_harness::bench::{self, Fail, Mode, Options, Outcome, Report, SCOPED_UNAVAILABLE};
use crib_harness::kernel::Flavor;
use crib_harness::vm::{current_test_name, guest_test};
use nix::errno::Errno;
use rstest::rstest;

fn body(flavor: Flavor) -> Result<()> {
    let opts = Options {
        fds: 1024,
        rounds: 3,
        warmup: 1,
    };
    // run() itself fails on any run that did not walk the table procfs lists (count and fd
    // sum), on get_file() returning NULL and on a dynptr failure other than -EBADF on an fd
    // not open for reading.
    let report = bench::run(&opts, &mut |m| eprintln!("[bench] {m}"))?;
    print!("{}", report.render());
    check(flavor, &report, &opts)
}

/// The table `run()` read from `/proc/<pid>/fd`, against what the target was made to hold:
/// stdio at most, and `f0` .. `f{fds-1}` of one `crib-bench-*` directory, each exactly once,
/// each a regular file open for reading (the target opens them O_RDONLY). `run()` compares
/// every walk with this table, so a table that misreads procfs would let a wrong walk pass.
fn check_table(r: &Report, opts: &Options) -> Result<()> {
    // The child closes everything but stdio (close_range, its result unchecked) before it
    // opens the files.
    let strays: Vec<String> = r
        .table
        .iter()
        .filter(|t| t.fd > 2 && !t.link.contains("/crib-bench-"))
        .map(|t| format!("fd {} -> {}", t.fd, t.link))
        .collect();
    ensure!(
        strays.is_empty(),
        "the target holds more than stdio and its files: {strays:?}"
    );
    let mut dirs = BTreeSet::new();
    let mut names = BTreeSet::new();
    for t in r.table.iter().filter(|t| t.link.contains("/crib-bench-")) {
        let path = Path::new(&t.link);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            bail!("fd {}: unexpected link {}", t.fd, t.link);
        };
        dirs.insert(dir.to_path_buf());
        ensure!(
            names.insert(name.to_string_lossy().into_owned()),
            "fd {}: {} is open twice",
            t.fd,
            t.link
        );
        ensure!(
            t.readable && t.regular,
            "fd {} ({}): opened O_RDONLY as a regular file, but procfs says readable={} \
             regular={}",
            t.fd,
            t.link,
            t.readable,
            t.regular
        );
    }
    ensure!(
        dirs.len() == 1,
        "benchmark files in several directories: {dirs:?}"
    );
    let want: BTreeSet<String> = (0..opts.fds).map(|i| format!("f{i}")).collect();
    ensure!(
        names == want,
        "the table's benchmark files are not f0..f{}: {} of {} (missing e.g. {:?})",
        opts.fds - 1,
        names.len(),
        opts.fds,
        want.difference(&names).take(5).collect::<Vec<_>>()
    );
    Ok(())
}

fn check(flavor: Flavor, r: &Report, opts: &Options) -> Result<()> {
    check_table(r, opts)?;
    let unreadable: BTreeSet<u32> = r
        .table
        .iter()
        .filter(|t| !t.readable)
        .map(|t| t.fd)
        .collect();
    let expect_scoped = flavor == Flavor::Patched;
    let mut nofile_sets = Vec::new();
    for mode in Mode::ALL {
        let outcome = r
            .modes
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, o)| o)
            .with_context(|| format!("{mode} missing from the report"))?;
        let m = match outcome {
            Outcome::Unavailable(why) => {
                ensure!(
                    mode == Mode::ScopedDynptr && !expect_scoped,
                    "{mode} did not run on the {flavor} kernel: {why}"
                );
                ensure!(
                    why == SCOPED_UNAVAILABLE,
                    "{mode}: unexpected reason {why:?}"
                );
                continue;
            }
            Outcome::Measured(m) => m,
        };
        ensure!(
            mode != Mode::ScopedDynptr || expect_scoped,
            "{mode} loaded on the stock kernel, whose verifier should reject item->file"
        );
        // Not a timing check: the walk, timed inside the program (bpf_ktime_get_ns), is part
        // of the BPF_PROG_RUN timed around it from user space (the same monotonic clock).
        for (i, (walk, wall)) in m.walk_ns.iter().zip(&m.wall_ns).enumerate() {
            ensure!(
                0 < *walk && walk <= wall,
                "{mode}, run {i}: the program timed its walk at {walk} ns, but the whole \
                 BPF_PROG_RUN took {wall} ns"
            );
        }
        let dynptr_refused: BTreeSet<(u32, i32)> = m
            .fails
            .iter()
            .filter_map(|&(fd, f)| match f {
                Fail::Dynptr(e) => Some((fd, e)),
                Fail::NoFile => None,
            })
            .collect();
        if mode.uses_get_file() {
            let nofile: BTreeSet<u32> = m
                .fails
                .iter()
                .filter(|(_, f)| *f == Fail::NoFile)
                .map(|&(fd, _)| fd)
                .collect();
            nofile_sets.push((mode, nofile));
        }
        match flavor {
            Flavor::Stock => ensure!(
                dynptr_refused.is_empty(),
                "{mode} on stock: bpf_dynptr_from_file() refused {dynptr_refused:?}"
            ),
            Flavor::Patched if mode == Mode::ScopedDynptr => {
                for fd in &unreadable {
                    ensure!(
                        dynptr_refused.contains(&(*fd, -(Errno::EBADF as i32))),
                        "{mode} on patched: fd {fd} is not open for reading, but \
                         bpf_dynptr_from_file() did not refuse it with EBADF (refused: \
                         {dynptr_refused:?})"
                    );
                }
            }
            Flavor::Patched => {}
        }
    }
    if let [(a, x), (b, y)] = &nofile_sets[..] {
        ensure!(x == y, "get_file() refused {x:?} in {a} but {y:?} in {b}");
    } else {
        anyhow::bail!("modes 2 and 3 should both have run: {nofile_sets:?}");
    }
    Ok(())
}

/// `bench_modes_walk_the_same_table::case_1_stock` and `::case_2_patched`: rstest names the
/// cases, and the guest re-runs the one libtest is running.
#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn bench_modes_walk_the_same_table(#[case] flavor: Flavor) {
    guest_test(flavor, &current_test_name(), body);
}

/// The table check fails on what it is there to catch (host only, no guest).
#[test]
fn bench_table_check_catches_strays_and_gaps() {
    let opts = Options {
        fds: 3,
        rounds: 1,
        warmup: 0,
    };
    let fd = |fd: u32, link: &str| bench::TableFd {
        fd,
        link: link.into(),
        readable: true,
        regular: true,
    };
    let report = |table: Vec<bench::TableFd>| Report {
        kernel: String::new(),
        flavor: None,
        cpus: 1,
        pid: 1,
        files: opts.fds,
        table,
        rounds: opts.rounds,
        warmup: opts.warmup,
        modes: Vec::new(),
    };
    let good = vec![
        fd(0, "/dev/null"),
        fd(3, "/t/crib-bench-x/f0"),
        fd(4, "/t/crib-bench-x/f1"),
        fd(5, "/t/crib-bench-x/f2"),
    ];
    let check = |table: Vec<bench::TableFd>| check_table(&report(table), &opts);
    if let Err(e) = check(good.clone()) {
        panic!("a correct table fails: {e:#}");
    }
    let mut stray = good.clone();
    stray.push(fd(6, "pipe:[1]"));
    let mut gap = good.clone();
    gap.remove(2);
    let mut unreadable = good.clone();
    unreadable[1].readable = false;
    let mut two_dirs = good;
    two_dirs[3].link = "/t/crib-bench-y/f2".into();
    for (what, table) in [
        ("stray fd", stray),
        ("missing f1", gap),
        ("unreadable", unreadable),
        ("two directories", two_dirs),
    ] {
        assert!(check(table).is_err(), "{what}: passed");
    }
}

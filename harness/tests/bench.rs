//! The get/put benchmark (`crib bench`, `harness/src/bench.rs`) walks what it should: every
//! mode sees the target's whole fd table in every round and uses every one of the benchmark's
//! regular read-only files (`bench::run` itself fails otherwise, and on any refusal the kernel
//! must not make: see `bench::check_sample`). Here, on top: get_file() refuses the same fds in
//! modes 2 and 3; on stock no dynptr is refused (the module hands out only what
//! bpf_dynptr_from_file() takes there); on the patched kernel mode 4 gets -EBADF for every fd
//! not open for reading (kernel-patches/0002). Mode 4 (`item->file` straight to the kfunc) is
//! rejected by the stock verifier and runs on the patched kernel.
//!
//! Correctness only: no timing is checked (the numbers of a TCG guest on a shared host say
//! nothing a test could rely on). Each test boots a guest of its flavor; the body runs there.

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use crib_harness::bench::{self, Fail, Mode, Options, Outcome, Report, SCOPED_UNAVAILABLE};
use crib_harness::kernel::Flavor;
use crib_harness::vm::guest_test;

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

fn check(flavor: Flavor, r: &Report, opts: &Options) -> Result<()> {
    let bench_files = r
        .table
        .iter()
        .filter(|t| t.link.contains("/crib-bench-"))
        .count();
    ensure!(
        bench_files == opts.fds as usize,
        "the target holds {bench_files} benchmark files, expected {}",
        opts.fds
    );
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
        ensure!(
            m.nr_fds as usize == r.table.len(),
            "{mode} walked {} fds, the table has {}",
            m.nr_fds,
            r.table.len()
        );
        ensure!(
            m.walk_ns.len() == opts.rounds as usize,
            "{mode}: {} measured runs, expected {}",
            m.walk_ns.len(),
            opts.rounds
        );
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
                        dynptr_refused.contains(&(*fd, -libc::EBADF)),
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

#[test]
fn bench_modes_walk_the_same_table_stock() {
    guest_test(Flavor::Stock, "bench_modes_walk_the_same_table_stock", body);
}

#[test]
fn bench_modes_walk_the_same_table_patched() {
    guest_test(
        Flavor::Patched,
        "bench_modes_walk_the_same_table_patched",
        body,
    );
}

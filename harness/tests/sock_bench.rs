//! The socket dump benchmark (`crib bench-socks`, `harness/src/sock_bench.rs`) at a small size:
//! 20 loopback TCP connections with bytes queued both ways, 2 rounds. `sock_bench::run` fails
//! unless CRIB's dump and CRIU's method (`criu_dump.rs`) give the same sockets before timing
//! and every timed run gives that same dump again; here, on top, its printed report must parse
//! and say so.
//!
//! Correctness only: no timing is checked (a TCG guest on a shared host says nothing a test
//! could rely on). Each test boots a guest of its flavor; the body runs there.

use anyhow::{ensure, Context, Result};
use crib_harness::kernel::Flavor;
use crib_harness::sock_bench::{self, Options, ResultLine};
use crib_harness::vm::guest_test;

fn body(_flavor: Flavor) -> Result<()> {
    let opts = Options {
        sockets: vec![20],
        rounds: 2,
        ..Options::default()
    };
    let report = sock_bench::run(&opts, &mut |m| eprintln!("[bench-socks] {m}"))?;
    let text = report.render();
    print!("{text}");
    let lines: Vec<ResultLine> = text
        .lines()
        .filter_map(|l| ResultLine::parse(l.trim()))
        .collect();
    ensure!(
        lines.len() == 1,
        "expected one result line, parsed {lines:?} from:\n{text}"
    );
    let r = &lines[0];
    ensure!(
        r.sockets == 20 && r.equal && r.rounds == 2,
        "result line {r:?}"
    );
    let s = report.sizes.first().context("no size in the report")?;
    ensure!(
        s.queued_both_ways == 20 && s.recv_bytes > 0 && s.send_bytes > 0,
        "not every socket had bytes queued both ways: {} of 20, {} receive and {} send bytes",
        s.queued_both_ways,
        s.recv_bytes,
        s.send_bytes
    );
    Ok(())
}

#[test]
fn bench_socks_crib_and_criu_method_agree_stock() {
    guest_test(
        Flavor::Stock,
        "bench_socks_crib_and_criu_method_agree_stock",
        body,
    );
}

#[test]
fn bench_socks_crib_and_criu_method_agree_patched() {
    guest_test(
        Flavor::Patched,
        "bench_socks_crib_and_criu_method_agree_patched",
        body,
    );
}

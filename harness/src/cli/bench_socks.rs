//! `crib bench-socks`: the socket dump benchmark, CRIB against CRIU's method
//! (`crate::sock_bench`).

use anyhow::Result;

use super::bench_run;
use crate::sock_bench::{self, DEFAULT_BYTES, DEFAULT_RCVBUF, DEFAULT_ROUNDS, MAX_SOCKETS};

/// (In a guest, as root) dump N TCP sockets with CRIB and with CRIU's method, and time both
///
/// A child holds N loopback TCP connections with bytes queued both ways (nobody reads, small
/// receive buffers). CRIB dumps them with one BPF_PROG_RUN of dump_socks; CRIU's method uses
/// sock_diag, pidfd_getfd, TCP_REPAIR, TCP_QUEUE_SEQ and a peek per queue. Both must give the
/// same sockets (addresses, state, sequence numbers, windows, queue bytes) before anything is
/// timed; then rounds alternate the two. Prints min/median per method and their ratio. Exit 1
/// if a check failed.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct BenchSocksArgs {
    /// Numbers of sockets to benchmark, one target each
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "100,1000",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SOCKETS)))]
    pub sockets: Vec<u32>,
    /// Measured rounds, each running both methods once
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROUNDS,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rounds: u32,
    /// Bytes each end of a connection writes to the other
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BYTES,
          value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    pub bytes: u32,
    /// SO_RCVBUF of both ends (the kernel doubles it)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RCVBUF,
          value_parser = clap::value_parser!(u32).range(1..=1 << 30))]
    pub rcvbuf: u32,
}

/// Run `crib bench-socks`.
pub fn run(a: &BenchSocksArgs) -> Result<i32> {
    let opts = sock_bench::Options {
        sockets: a.sockets.clone(),
        rounds: a.rounds,
        bytes: a.bytes,
        rcvbuf: a.rcvbuf,
    };
    Ok(bench_run::run(
        module_path!(),
        "it needs the CRIB kfuncs and repair mode: run it in a guest, e.g. \
         scripts/vm --kernel patched -- target/debug/crib bench-socks",
        |progress| sock_bench::run(&opts, progress),
        sock_bench::Report::render,
    ))
}

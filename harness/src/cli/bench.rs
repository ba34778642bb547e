//! `crib bench`: the get/put benchmark (`crate::bench`).

use anyhow::Result;

use super::bench_run;
use crate::bench::{self, DEFAULT_FDS, DEFAULT_ROUNDS, DEFAULT_WARMUP, MAX_FDS};

/// (In a guest, as root) what one get_file/put pair costs per use of the current file
///
/// A child holds N read-only regular files; four programs walk its fd table (1 walk, 2 +
/// get_file/put, 3 + get_file/dynptr/put, 4 + dynptr of item->file, patched kernel only),
/// interleaved round by round; prints median/min ns per fd and the ratios. Exit 1 if a check
/// failed (the modes walked different tables, an unexpected dynptr error).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct BenchArgs {
    /// Regular files the target opens
    #[arg(long, value_name = "N", default_value_t = DEFAULT_FDS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_FDS)))]
    pub fds: u32,
    /// Measured rounds, each running every available mode once
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROUNDS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rounds: u32,
    /// Rounds run (and checked) before measuring
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WARMUP,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub warmup: u32,
}

/// Run `crib bench`.
pub fn run(a: &BenchArgs) -> Result<i32> {
    let opts = bench::Options {
        fds: a.fds,
        rounds: a.rounds,
        warmup: a.warmup,
    };
    Ok(bench_run::run(
        module_path!(),
        "the programs need the CRIB kfuncs: run it in a guest, e.g. \
         scripts/vm --kernel stock -- target/debug/crib bench",
        |progress| bench::run(&opts, progress),
        bench::Report::render,
    ))
}

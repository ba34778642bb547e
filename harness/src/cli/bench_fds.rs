//! `crib bench-fds`: the fd-dump benchmark, CRIB against iter/task_file, the procfs walk and
//! lsof (`crate::fd_bench`).

use std::path::PathBuf;

use anyhow::Result;

use super::bench_run;
use crate::fd_bench::{self, DEFAULT_ROUNDS, MAX_FDS};

/// (In a guest, as root) dump a target's N fds with CRIB, iter/task_file, procfs and lsof
///
/// A child holds N fds (a quarter each: regular files on a tmpfs, pipe ends, unix sockets,
/// eventfds). Four methods dump its table: CRIB (one BPF_PROG_RUN of dump_files with paths +
/// ring buffer), the iter/task_file seq_file iterator restricted to its pid (a program writing
/// the same records), a procfs walk (readdir, readlink, stat, fdinfo per fd) and `lsof -p`.
/// They must agree on fd, kind, flags, pos, mount id, inode and path (where a method has the
/// field) before anything is timed; each method then runs once more with a system call counter
/// attached, and ROUNDS times interleaved. Prints min/median per method and size, the ratio to
/// CRIB in the same rounds, the system calls and the growth with N. Exit 1 if a check failed.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(
    after_help = "Example: crib vm --rw --timeout 3000 --kernel patched -- \
    target/debug/crib bench-fds --json /root/crib-evidence/fds.json \
    --plot /root/crib-evidence/fds.png"
)]
pub struct BenchFdsArgs {
    /// Numbers of fds in the target, one target each
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "1000,10000,100000",
          value_parser = clap::value_parser!(u32).range(8..=i64::from(MAX_FDS)))]
    pub fds: Vec<u32>,
    /// Timed rounds, each running every method once (the order rotates)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROUNDS,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rounds: u32,
    /// Write the report as JSON to this file
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Draw the median times against N as a PNG to this file
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,
}

/// Run `crib bench-fds`.
pub fn run(a: &BenchFdsArgs) -> Result<i32> {
    let opts = fd_bench::Options {
        sizes: a.fds.clone(),
        rounds: a.rounds,
        json: a.json.clone(),
        plot: a.plot.clone(),
    };
    Ok(bench_run::run(
        module_path!(),
        "it needs the CRIB kfuncs, root and lsof: run it in a guest, e.g. \
         scripts/vm --kernel patched -- target/debug/crib bench-fds --fds 1000",
        |progress| fd_bench::run(&opts, progress),
        fd_bench::Report::render,
    ))
}

//! What every `crib bench*` subcommand does around its benchmark: progress to the log, the
//! report to stdout, and the exit code. Each subcommand keeps its own `clap::Args` struct: the
//! options differ (`--rounds` alone is common, with a different default and range per
//! benchmark), and the library's `Options::check` holds each benchmark's limits.

use std::fmt::Display;

use crate::vm;

/// Run one benchmark for a `crib bench*` subcommand and return the subcommand's exit code.
///
/// `bench` runs the benchmark, reporting progress through the callback it is handed (each
/// message is logged at info); `render` turns its result into the report printed on stdout, and
/// the code is 0. An error is logged and the code is 1; outside a guest, `hint` (e.g. "the
/// programs need the CRIB kfuncs: run it in a guest, e.g. scripts/vm --kernel stock --
/// target/debug/crib bench") follows it in parentheses. `target` is the caller's
/// `module_path!()`, so the messages read `crib <subcommand>: ...`.
///
/// ```ignore
/// pub fn run(a: &BenchFdsArgs) -> anyhow::Result<i32> {
///     let opts = bench_fds::Options { rounds: a.rounds, .. };
///     Ok(bench_run::run(
///         module_path!(),
///         "the programs need the CRIB kfuncs: run it in a guest, e.g. \
///          scripts/vm --kernel stock -- target/debug/crib bench-fds",
///         |progress| bench_fds::run(&opts, progress),
///         bench_fds::Report::render,
///     ))
/// }
/// ```
pub fn run<R, E: Display>(
    target: &str,
    hint: &str,
    bench: impl FnOnce(&mut dyn FnMut(&str)) -> Result<R, E>,
    render: impl FnOnce(&R) -> String,
) -> i32 {
    match bench(&mut |msg| log::info!(target: target, "{msg}")) {
        Ok(r) => {
            print!("{}", render(&r));
            0
        }
        Err(e) if vm::in_guest() => {
            log::error!(target: target, "{e}");
            1
        }
        Err(e) => {
            log::error!(target: target, "{e}\n({hint})");
            1
        }
    }
}

//! `crib bench`: what one `bpf_iter_task_file_get_file()`/`bpf_crib_put_file()` pair costs per
//! use of the current file, next to the patched kernel's way (KF_ITER_NEXT_SCOPED: `item->file`
//! is trusted for the current step and goes to a kfunc directly).
//!
//! A target child opens N regular files read-only (what `get_file()` hands out and
//! `bpf_dynptr_from_file()` accepts on either kernel; kernel-patches/0001 refuses anything else)
//! and sleeps. The programs of `selftests/progs/bench_task_file.bpf.c` walk its fd table, one
//! mode per program ([`Mode`]), and time the walk inside the program with `bpf_ktime_get_ns()`:
//! SYSCALL programs take no `repeat`, so a time taken around `BPF_PROG_RUN` from user space
//! would also count the syscall, the context copies and the task lookup. The wall time of each
//! run is recorded too, for comparison.
//!
//! Rounds interleave the modes (the order rotates every round), so drift of the machine's speed
//! (other guests, a kernel build on the host) hits every mode alike. Every run is checked
//! ([`check_sample`]): the program returned 0 and walked exactly the fds `/proc/<pid>/fd` lists
//! (count and fd sum), and every fd it could not use (`get_file()` NULL, a dynptr error) is one
//! that is not a regular file open for reading (the inherited stdio), never one of the
//! benchmark's files. A run that fails a check ends the benchmark with an error saying what
//! differed; numbers are only reported when every run passed.
//!
//! Files: `options.rs` (what to run), `target.rs` (the target child), `table.rs` (its fd table
//! as procfs shows it), `programs.rs` (loading, running and checking the programs),
//! `report.rs` (statistics and the table `crib bench` prints).

mod options;
mod programs;
mod report;
mod table;
mod target;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::loader::LoaderError;

pub use options::Options;
pub use programs::{check_sample, Bench, Fail, Sample};
pub use report::{median, Measured, Outcome, Report};
pub use table::{read_table, TableFd};
pub use target::BenchTarget;

use table::is_bench_file;

/// Object file holding the benchmark programs, relative to [`crate::BPF_DIR`].
pub const OBJ_FILE: &str = "bench_task_file.bpf.o";
/// Array map with the first [`CRIB_BENCH_MAX_FAILS`](crate::records::CRIB_BENCH_MAX_FAILS) failures of a run.
pub const FAILS_MAP: &str = "bench_fails";
/// What mode 4 reports on a kernel whose verifier lacks KF_ITER_NEXT_SCOPED.
pub const SCOPED_UNAVAILABLE: &str = "not available: needs KF_ITER_NEXT_SCOPED (patched kernel)";
/// What the stock verifier says when `item->file` goes to a kfunc that needs a trusted pointer.
pub const STOCK_REJECTION: &str = "must be referenced or trusted";

/// Default number of regular files the target opens.
pub const DEFAULT_FDS: u32 = 4096;
/// Default number of measured rounds (one run of every mode each).
pub const DEFAULT_ROUNDS: u32 = 100;
/// Default number of rounds run and checked before measuring.
pub const DEFAULT_WARMUP: u32 = 5;
/// Upper bound for `--fds`: the default `fs.nr_open` is 1,048,576.
pub const MAX_FDS: u32 = 1_000_000;

/// What a benchmark program does per element of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// 1: read `item->fd`
    Walk,
    /// 2: `bpf_iter_task_file_get_file()` + `bpf_crib_put_file()`
    GetPut,
    /// 3: get_file + `bpf_dynptr_from_file()` + `bpf_dynptr_file_discard()` + put
    GetDynptrPut,
    /// 4: `bpf_dynptr_from_file(item->file)` + discard, no get/put (KF_ITER_NEXT_SCOPED)
    ScopedDynptr,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::Walk,
        Mode::GetPut,
        Mode::GetDynptrPut,
        Mode::ScopedDynptr,
    ];

    /// 1-based number, as the table and the README call it.
    pub fn number(self) -> u32 {
        match self {
            Mode::Walk => 1,
            Mode::GetPut => 2,
            Mode::GetDynptrPut => 3,
            Mode::ScopedDynptr => 4,
        }
    }

    /// The program in [`OBJ_FILE`].
    pub fn prog(self) -> &'static str {
        match self {
            Mode::Walk => "crib_bench_walk",
            Mode::GetPut => "crib_bench_get_put",
            Mode::GetDynptrPut => "crib_bench_get_dynptr",
            Mode::ScopedDynptr => "crib_bench_scoped_dynptr",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mode::Walk => "walk (read item->fd)",
            Mode::GetPut => "walk + get_file + put",
            Mode::GetDynptrPut => "walk + get_file + dynptr + discard + put",
            Mode::ScopedDynptr => "walk + dynptr(item->file) + discard",
        }
    }

    /// Whether the mode calls `bpf_dynptr_from_file()`.
    pub fn uses_dynptr(self) -> bool {
        matches!(self, Mode::GetDynptrPut | Mode::ScopedDynptr)
    }

    /// Whether the mode calls `bpf_iter_task_file_get_file()`.
    pub fn uses_get_file(self) -> bool {
        matches!(self, Mode::GetPut | Mode::GetDynptrPut)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mode {} ({})", self.number(), self.label())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("BPF object {path} not found: {hint}")]
    NoObject { path: PathBuf, hint: String },
    #[error("loading {mode} ({prog}): {source}")]
    Load {
        mode: Mode,
        prog: &'static str,
        source: LoaderError,
    },
    #[error(
        "the kernel rejected {mode} ({prog}, errno {errno}: {msg}); verifier log tail:\n{log_tail}"
    )]
    Rejected {
        mode: Mode,
        prog: &'static str,
        errno: i32,
        msg: String,
        log_tail: String,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("target child: {0}")]
    Target(String),
    #[error("running {mode}: {source}")]
    Run { mode: Mode, source: LoaderError },
    #[error("{mode} returned {} for pid {pid}", errno_name(*.errno))]
    Program { mode: Mode, pid: i32, errno: i32 },
    #[error("the modes did not walk the same fd table: {0}")]
    Mismatch(String),
    #[error("unexpected failure: {0}")]
    Unexpected(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// `EBADF` style name of an errno (positive or negative).
pub fn errno_name(errno: i32) -> String {
    crate::errno::signed_name(errno)
}

/// Spawn the target, load the programs, run `opts.warmup + opts.rounds` checked rounds and
/// report. `progress` gets a line now and then (the benchmark takes a while under TCG).
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    opts.check()?;
    progress(&format!("creating {} files, spawning the target", opts.fds));
    let target = BenchTarget::spawn(opts.fds, &std::env::temp_dir())?;
    let pid = target.pid();
    let table = read_table(pid)?;
    let bench_files = table.iter().filter(|t| is_bench_file(t)).count();
    if bench_files != opts.fds as usize {
        return Err(BenchError::Target(format!(
            "/proc/{pid}/fd shows {bench_files} of the {} files it should hold open",
            opts.fds
        )));
    }
    progress(&format!(
        "target pid {pid} holds {} fds; loading the programs",
        table.len()
    ));
    let bench = Bench::load()?;
    let avail = bench.available();
    let mut results: Vec<(Mode, Measured)> = avail
        .iter()
        .map(|&m| {
            (
                m,
                Measured {
                    nr_fds: table.len() as u32,
                    ..Default::default()
                },
            )
        })
        .collect();
    let total = opts.warmup + opts.rounds;
    for round in 0..total {
        for k in 0..results.len() {
            let i = (round as usize + k) % results.len();
            let mode = results[i].0;
            let s = bench.run_once(mode, pid)?;
            check_sample(mode, round, pid, &s, &table)?;
            let m = &mut results[i].1;
            if round == 0 {
                m.fails = s.fails.clone();
            } else if m.fails != s.fails {
                return Err(BenchError::Unexpected(format!(
                    "{mode}: failures {:?} in round {round}, {:?} in round 0 (the table did not \
                     change)",
                    s.fails, m.fails
                )));
            }
            if round >= opts.warmup {
                m.walk_ns.push(s.walk_ns);
                m.wall_ns.push(s.wall_ns);
            }
        }
        let done = round + 1;
        if done == opts.warmup {
            progress(&format!("{done} warm-up round(s) done"));
        } else if done > opts.warmup && (done - opts.warmup) % 25 == 0 {
            progress(&format!(
                "round {}/{} done",
                done - opts.warmup,
                opts.rounds
            ));
        }
    }
    // The table must not have changed under the runs.
    let after = read_table(pid)?;
    if after != table {
        return Err(BenchError::Mismatch(format!(
            "/proc/{pid}/fd changed during the benchmark ({} fds before, {} after)",
            table.len(),
            after.len()
        )));
    }
    drop(target);

    let uname = nix::sys::utsname::uname().map_err(|e| BenchError::Io {
        what: "uname".into(),
        source: io::Error::from(e),
    })?;
    let modes = Mode::ALL
        .iter()
        .map(|&m| {
            let outcome = match results.iter().position(|(x, _)| *x == m) {
                Some(i) => Outcome::Measured(results[i].1.clone()),
                None => {
                    Outcome::Unavailable(bench.unavailable(m).unwrap_or("not loaded").to_string())
                }
            };
            (m, outcome)
        })
        .collect();
    Ok(Report {
        kernel: uname.release().to_string_lossy().into_owned(),
        flavor: crate::settings::get().flavor.clone(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        pid,
        files: opts.fds,
        table,
        rounds: opts.rounds,
        warmup: opts.warmup,
        modes,
    })
}

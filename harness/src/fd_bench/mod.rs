//! The fd-dump benchmark (`crib bench-fds`, issue 10 items 4, 5 and 7): a target holding N fds
//! (regular files, pipes, unix sockets, eventfds; `table`) is dumped in one run by four
//! methods, which must first agree field by field (`row`):
//!
//! 1. CRIB (`crib`): one `BPF_PROG_RUN` of `dump_files.bpf.c` + ring buffer, as `crib dump`.
//! 2. `iter/task_file` (`iter`): the upstream seq_file iterator restricted to the pid, with a
//!    program writing the same records, read through the iterator fd.
//! 3. The procfs walk (`procfs`): readdir, readlink, stat and fdinfo per fd.
//! 4. `lsof -p PID -F` (`lsof`).
//!
//! Per size: one checked run of each method (the comparison), one run each with the system
//! call counter attached (`syscalls`), then `rounds` timed rounds, each running every method
//! once in a rotating order; every timed run must give the same table as its checked run.
//! Program loads and the iterator's link are timed apart. `report` holds the results (JSON and
//! text), `plot` draws them, `guest` says where they were measured (KVM or TCG).

pub mod crib;
pub mod guest;
pub mod iter;
pub mod lsof;
pub mod parts;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod row;
pub mod syscalls;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::dump::DumpError;
use crate::target::{TargetError, Tmpfs};

pub use report::Report;
pub use row::{FdRow, Field, Method, Mismatch};

/// Default sizes (fds in the target).
pub const DEFAULT_SIZES: [u32; 3] = [1_000, 10_000, 100_000];
/// Default timed rounds.
pub const DEFAULT_ROUNDS: u32 = 5;
/// Largest table: RLIMIT_NOFILE must hold it (fs.nr_open is 1,048,576 by default).
pub const MAX_FDS: u32 = 500_000;

/// Why one method could not dump.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    #[error("CRIB dump: {0}")]
    Crib(Box<DumpError>),
    #[error("iter/task_file dump: {0}")]
    Iter(Box<DumpError>),
    #[error("iter/task_file stream, at byte {offset}: {why}")]
    Stream { offset: usize, why: String },
    #[error("loading {what}: {why}")]
    Load { what: String, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{method}: fd {fd}: {why}")]
    Record {
        method: &'static str,
        fd: u32,
        why: String,
    },
    #[error("lsof failed ({status}): {stderr}")]
    Lsof { status: String, stderr: String },
}

#[derive(Debug, thiserror::Error)]
pub enum FdBenchError {
    #[error("{0}")]
    Options(String),
    #[error("the tmpfs for the target's files: {0}")]
    Tmpfs(#[source] TargetError),
    #[error("loading CRIB's dump program: {0}")]
    CribLoad(#[source] DumpError),
    #[error("{fds} fds: {source}")]
    Method {
        fds: u32,
        #[source]
        source: MethodError,
    },
    #[error("the target with {fds} fds: {source}")]
    Table {
        fds: u32,
        #[source]
        source: table::TableError,
    },
    #[error("{fds} fds: the methods disagree before timing: {source}")]
    Disagree {
        fds: u32,
        #[source]
        source: Mismatch,
    },
    #[error("{fds} fds: {method} gave only {got} fds; the target holds at least {want}")]
    Short {
        fds: u32,
        method: Method,
        got: usize,
        want: usize,
    },
    #[error(
        "{fds} fds, round {round}: {method} gave another table than in its checked run: {source}"
    )]
    Changed {
        fds: u32,
        round: u32,
        method: Method,
        #[source]
        source: Mismatch,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub sizes: Vec<u32>,
    pub rounds: u32,
    /// Write the JSON report here
    pub json: Option<PathBuf>,
    /// Draw the PNG plot here
    pub plot: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sizes: DEFAULT_SIZES.to_vec(),
            rounds: DEFAULT_ROUNDS,
            json: None,
            plot: None,
        }
    }
}

impl Options {
    pub fn check(&self) -> Result<(), FdBenchError> {
        if self.sizes.is_empty() {
            return Err(FdBenchError::Options("no sizes".into()));
        }
        if let Some(s) = self.sizes.iter().find(|s| **s < 8 || **s > MAX_FDS) {
            return Err(FdBenchError::Options(format!(
                "size {s} out of range 8..={MAX_FDS}"
            )));
        }
        if self.rounds == 0 {
            return Err(FdBenchError::Options("rounds must be at least 1".into()));
        }
        Ok(())
    }
}

/// The loaded programs every size uses.
struct Methods {
    crib: crib::Crib,
    iter: iter::IterProgs,
}

/// One method's dump of `pid`.
fn dump_once(
    m: Method,
    methods: &Methods,
    link: &iter::IterLink,
    pid: i32,
) -> Result<Vec<FdRow>, MethodError> {
    match m {
        Method::Crib => methods.crib.dump(pid),
        Method::IterTaskFile => link.dump(),
        Method::Procfs => procfs::walk(pid),
        Method::Lsof => lsof::run(pid),
    }
}

/// Run the benchmark (in a guest, as root); `progress` gets a line per step.
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, FdBenchError> {
    opts.check()?;
    let machine = guest::Machine::probe();
    progress(&format!(
        "kernel {} ({}), {}",
        machine.kernel_release,
        machine.flavor.as_deref().unwrap_or("?"),
        machine.accel
    ));
    let fs = Tmpfs::mount().map_err(FdBenchError::Tmpfs)?;
    let crib = crib::Crib::load().map_err(FdBenchError::CribLoad)?;
    let iter = iter::IterProgs::load().map_err(|source| FdBenchError::Method { fds: 0, source })?;
    let methods = Methods { crib, iter };
    let mut sizes = Vec::new();
    for &fds in &opts.sizes {
        sizes.push(one_size(&methods, fs.path(), fds, opts.rounds, progress)?);
    }
    let mut report = Report {
        schema: report::SCHEMA,
        date_utc: report::now_utc(),
        machine,
        rounds: opts.rounds,
        lsof_version: lsof::version(),
        crib_load_ms: report::ms(methods.crib.load),
        iter_load_ms: report::ms(methods.iter.load),
        growth: report::growth(&sizes),
        aims: report::aims(&sizes),
        sizes,
        plot: None,
    };
    drop(methods);
    if let Some(p) = &opts.plot {
        report.plot = Some(plot::draw(&report, p)?);
    }
    if let Some(p) = &opts.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| FdBenchError::Write {
            path: p.clone(),
            source: e.into(),
        })?;
        std::fs::write(p, text + "\n").map_err(|source| FdBenchError::Write {
            path: p.clone(),
            source,
        })?;
    }
    // The target's files are gone with their tables; an unmount failure is only logged.
    if let Err(e) = fs.umount() {
        progress(&format!("warning: unmounting the target's tmpfs: {e}"));
    }
    Ok(report)
}

fn one_size(
    methods: &Methods,
    dir: &std::path::Path,
    fds: u32,
    rounds: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<report::SizeResult, FdBenchError> {
    let method_err = |source| FdBenchError::Method { fds, source };
    progress(&format!("{fds} fds: building the target"));
    let target =
        table::FdTable::spawn(dir, fds).map_err(|source| FdBenchError::Table { fds, source })?;
    let pid = target.pid();
    let link = methods.iter.link(pid).map_err(method_err)?;

    // lsof lists only the first 10,000 numbered fds of a process: larger tables skip it.
    let mut skipped = Vec::new();
    let active: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| {
            let skip = *m == Method::Lsof && fds as usize + 5 > lsof::MAX_FDS;
            if skip {
                skipped.push(report::Skipped {
                    method: *m,
                    why: lsof::MAX_FDS_WHY.into(),
                });
            }
            !skip
        })
        .collect();

    // 1. Every method once, compared with CRIB field by field.
    progress(&format!(
        "{fds} fds: checking that {} methods agree",
        active.len()
    ));
    let mut checked: BTreeMap<Method, Vec<FdRow>> = BTreeMap::new();
    for &m in &active {
        let rows = dump_once(m, methods, &link, pid).map_err(method_err)?;
        let want = fds as usize + 2;
        if rows.len() < want {
            return Err(FdBenchError::Short {
                fds,
                method: m,
                got: rows.len(),
                want,
            });
        }
        checked.insert(m, rows);
    }
    let reference = &checked[&Method::Crib];
    let mut compared = BTreeMap::new();
    for &m in active.iter().skip(1) {
        let c = row::compare(Method::Crib, reference, m, &checked[&m])
            .map_err(|source| FdBenchError::Disagree { fds, source })?;
        compared.insert(m, c);
    }
    let table_fds = reference.len();

    // 2. System calls: one more run of each with the counter attached.
    progress(&format!("{fds} fds: counting system calls"));
    let mut calls = BTreeMap::new();
    for &m in &active {
        let (rows, c) =
            syscalls::count(methods.iter.object(), || dump_once(m, methods, &link, pid))
                .map_err(method_err)?;
        same(fds, 0, m, &checked[&m], &rows)?;
        calls.insert(m, c);
    }

    // 3. Timed rounds, the order rotating so that no method always runs first.
    let mut times: BTreeMap<Method, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for k in 0..active.len() {
            let m = active[(k + round as usize) % active.len()];
            let t = Instant::now();
            let rows = dump_once(m, methods, &link, pid).map_err(method_err)?;
            let took = t.elapsed();
            same(fds, round + 1, m, &checked[&m], &rows)?;
            times.entry(m).or_default().push(report::ms(took));
        }
        let line: Vec<String> = active
            .iter()
            .map(|m| format!("{m} {:.1} ms", times[m].last().copied().unwrap_or(0.0)))
            .collect();
        progress(&format!(
            "{fds} fds: round {}/{rounds}: {}",
            round + 1,
            line.join(", ")
        ));
    }
    progress(&format!(
        "{fds} fds: timing the steps of CRIB and iter/task_file"
    ));
    let parts = parts::measure(&methods.crib, &link, pid).map_err(method_err)?;
    let iter_link_ms = report::ms(link.setup);
    drop(link);
    target
        .stop()
        .map_err(|source| FdBenchError::Table { fds, source })?;

    let crib_runs = times[&Method::Crib].clone();
    let results = active
        .iter()
        .map(|m| {
            report::method_result(
                *m,
                times[m].clone(),
                &crib_runs,
                table_fds,
                calls.remove(m).unwrap_or_default(),
            )
        })
        .collect();
    Ok(report::SizeResult {
        fds,
        mix: table::Mix::of(fds),
        table_fds,
        iter_link_ms,
        parts,
        skipped,
        compared,
        methods: results,
    })
}

/// A later run of `m` must give the table of its checked run.
fn same(
    fds: u32,
    round: u32,
    m: Method,
    want: &[FdRow],
    got: &[FdRow],
) -> Result<(), FdBenchError> {
    if want == got {
        return Ok(());
    }
    let source = row::compare(m, want, m, got)
        .err()
        .unwrap_or(Mismatch::Order { method: m });
    Err(FdBenchError::Changed {
        fds,
        round,
        method: m,
        source,
    })
}

//! The benchmark programs: loading them, one run, and the check of every run.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use libbpf_rs::{MapCore, MapFlags, Object};
use nix::errno::Errno;

use super::{
    errno_name, BenchError, Mode, TableFd, FAILS_MAP, OBJ_FILE, SCOPED_UNAVAILABLE, STOCK_REJECTION,
};
use crate::loader::{self, LoadOpts};
use crate::records::{
    crib_bench_ctx, crib_bench_fail, CRIB_BENCH_DYNPTR, CRIB_BENCH_MAX_FAILS, CRIB_BENCH_NOFILE,
};

/// Why a mode did not use the file of an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fail {
    /// `bpf_iter_task_file_get_file()` returned NULL
    NoFile,
    /// `bpf_dynptr_from_file()` failed with this negative errno
    Dynptr(i32),
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::NoFile => f.write_str("get_file() returned NULL"),
            Fail::Dynptr(e) => write!(f, "bpf_dynptr_from_file() returned {}", errno_name(*e)),
        }
    }
}

/// The result of one program run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub retval: i32,
    pub nr_fds: u32,
    pub nr_nofile: u32,
    pub nr_err: u32,
    pub fd_sum: u64,
    /// In-program time of the walk (new .. destroy).
    pub walk_ns: u64,
    /// Wall time of the whole `BPF_PROG_RUN` syscall, from user space.
    pub wall_ns: u64,
    /// The recorded failures in walk order, at most [`CRIB_BENCH_MAX_FAILS`].
    pub fails: Vec<(u32, Fail)>,
}

/// The loaded benchmark programs; mode 4 is `Err(reason)` where the verifier rejects it.
pub struct Bench {
    modes: Vec<(Mode, Result<Object, String>)>,
}

fn obj_path() -> Result<PathBuf, BenchError> {
    let dir = Path::new(crate::BPF_DIR);
    let obj = dir.join(OBJ_FILE);
    if obj.exists() {
        return Ok(obj);
    }
    let hint = match fs::read_to_string(dir.join("MISSING")) {
        Ok(k) => format!("no kernel build at {k} when the harness was built: run scripts/build"),
        Err(_) => "rebuild the harness so build.rs compiles selftests/progs".into(),
    };
    Err(BenchError::NoObject { path: obj, hint })
}

impl Bench {
    /// Load every mode's program. Mode 4 rejected by a verifier without KF_ITER_NEXT_SCOPED
    /// ([`STOCK_REJECTION`]) becomes [`SCOPED_UNAVAILABLE`]; any other rejection is an error.
    pub fn load() -> Result<Self, BenchError> {
        let obj = obj_path()?;
        let opts = LoadOpts {
            log_level: 0,
            ..LoadOpts::default()
        };
        let mut modes = Vec::new();
        for mode in Mode::ALL {
            let prog = mode.prog();
            let loaded = loader::load_one(&obj, prog, &opts)
                .map_err(|source| BenchError::Load { mode, prog, source })?;
            match (loaded.object, loaded.error) {
                (Some(o), None) => modes.push((mode, Ok(o))),
                (_, Some(_))
                    if mode == Mode::ScopedDynptr && loaded.log.contains(STOCK_REJECTION) =>
                {
                    modes.push((mode, Err(SCOPED_UNAVAILABLE.to_string())));
                }
                (_, error) => {
                    let (errno, msg) = error.unwrap_or((0, "no object".into()));
                    let lines: Vec<&str> = loaded.log.lines().collect();
                    return Err(BenchError::Rejected {
                        mode,
                        prog,
                        errno,
                        msg,
                        log_tail: lines[lines.len().saturating_sub(30)..].join("\n"),
                    });
                }
            }
        }
        Ok(Bench { modes })
    }

    /// Modes whose program loaded.
    pub fn available(&self) -> Vec<Mode> {
        self.modes
            .iter()
            .filter(|(_, o)| o.is_ok())
            .map(|(m, _)| *m)
            .collect()
    }

    /// Why `mode` is not available, if it is not.
    pub fn unavailable(&self, mode: Mode) -> Option<&str> {
        self.modes
            .iter()
            .find(|(m, _)| *m == mode)
            .and_then(|(_, o)| o.as_ref().err())
            .map(String::as_str)
    }

    /// Run `mode` once against `pid`.
    pub fn run_once(&self, mode: Mode, pid: i32) -> Result<Sample, BenchError> {
        let missing = |what: &str| {
            BenchError::Unexpected(format!("{mode}: {what} not loaded (see Bench::available)"))
        };
        let obj = self
            .modes
            .iter()
            .find(|(m, _)| *m == mode)
            .and_then(|(_, o)| o.as_ref().ok())
            .ok_or_else(|| missing("program"))?;
        let prog = loader::find_prog(obj, mode.prog()).ok_or_else(|| missing("program"))?;
        let mut ctx = crib_bench_ctx {
            pid,
            ..Default::default()
        };
        let t = Instant::now();
        let retval = loader::run_syscall(&prog, &mut ctx)
            .map_err(|source| BenchError::Run { mode, source })?;
        let wall_ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let nr_fails = ctx.nr_nofile.saturating_add(ctx.nr_err);
        let mut fails = Vec::new();
        if nr_fails > 0 {
            let map = obj
                .maps()
                .find(|m| m.name() == FAILS_MAP)
                .ok_or_else(|| missing(FAILS_MAP))?;
            for i in 0..nr_fails.min(CRIB_BENCH_MAX_FAILS) {
                let v = map
                    .lookup(&i.to_ne_bytes(), MapFlags::ANY)
                    .map_err(|e| BenchError::Unexpected(format!("{FAILS_MAP}[{i}]: {e}")))?
                    .ok_or_else(|| {
                        BenchError::Unexpected(format!("{FAILS_MAP}[{i}]: no such element"))
                    })?;
                let f = decode_fail(&v).ok_or_else(|| {
                    BenchError::Unexpected(format!(
                        "{FAILS_MAP}[{i}]: {} bytes, expected {}",
                        v.len(),
                        std::mem::size_of::<crib_bench_fail>()
                    ))
                })?;
                let fail = match f.kind {
                    k if k == CRIB_BENCH_NOFILE => Fail::NoFile,
                    k if k == CRIB_BENCH_DYNPTR => Fail::Dynptr(f.err),
                    k => {
                        return Err(BenchError::Unexpected(format!(
                            "{FAILS_MAP}[{i}]: unknown failure kind {k}"
                        )))
                    }
                };
                fails.push((f.fd, fail));
            }
        }
        Ok(Sample {
            retval,
            nr_fds: ctx.nr_fds,
            nr_nofile: ctx.nr_nofile,
            nr_err: ctx.nr_err,
            fd_sum: ctx.fd_sum,
            walk_ns: ctx.walk_ns,
            wall_ns,
            fails,
        })
    }
}

fn decode_fail(bytes: &[u8]) -> Option<crib_bench_fail> {
    if bytes.len() != std::mem::size_of::<crib_bench_fail>() {
        return None;
    }
    crate::dump::read_pod(bytes)
}

/// Whether the kernel may refuse `fail` for this fd: only for files that are not regular
/// files open for reading, and a dynptr only with the errno kernel-patches/0001 gives (EBADF
/// for a file not open for reading, else EINVAL for one that is not regular).
fn fail_allowed(t: &TableFd, fail: Fail) -> bool {
    if t.usable() {
        return false;
    }
    match fail {
        Fail::NoFile => true,
        Fail::Dynptr(e) if !t.readable => e == -(Errno::EBADF as i32),
        Fail::Dynptr(e) => e == -(Errno::EINVAL as i32),
    }
}

/// Check one run against the table procfs showed; the error names what differed.
pub fn check_sample(
    mode: Mode,
    round: u32,
    pid: i32,
    s: &Sample,
    table: &[TableFd],
) -> Result<(), BenchError> {
    if s.retval != 0 {
        return Err(BenchError::Program {
            mode,
            pid,
            errno: s.retval,
        });
    }
    let count = table.len() as u64;
    let sum: u64 = table.iter().map(|t| u64::from(t.fd)).sum();
    if u64::from(s.nr_fds) != count || s.fd_sum != sum {
        return Err(BenchError::Mismatch(format!(
            "{mode} saw {} fds (fd sum {}) in round {round}, but /proc/{pid}/fd lists {count} \
             (fd sum {sum}) and the target's table does not change",
            s.nr_fds, s.fd_sum
        )));
    }
    if (s.nr_nofile > 0 && !mode.uses_get_file()) || (s.nr_err > 0 && !mode.uses_dynptr()) {
        return Err(BenchError::Unexpected(format!(
            "{mode} reported {} get_file() and {} dynptr failures, but makes no such call",
            s.nr_nofile, s.nr_err
        )));
    }
    let nr_fails = u64::from(s.nr_nofile) + u64::from(s.nr_err);
    if nr_fails != s.fails.len() as u64 {
        return Err(BenchError::Unexpected(format!(
            "{mode}: {nr_fails} fds failed in round {round}, more than the \
             {CRIB_BENCH_MAX_FAILS} the program records; the benchmark's own files must never fail"
        )));
    }
    for &(fd, fail) in &s.fails {
        match table.iter().find(|t| t.fd == fd) {
            Some(t) if fail_allowed(t, fail) => {}
            Some(t) => {
                return Err(BenchError::Unexpected(format!(
                    "{mode}: {fail} for {} in round {round}",
                    t.describe()
                )))
            }
            None => {
                return Err(BenchError::Unexpected(format!(
                    "{mode}: {fail} for fd {fd}, which /proc/{pid}/fd does not list"
                )))
            }
        }
    }
    Ok(())
}

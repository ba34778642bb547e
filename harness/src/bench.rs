//! `crib bench`: what one `bpf_iter_task_file_get_file()`/`bpf_crib_put_file()` pair costs per
//! use of the current file, next to the patched kernel's way (KF_ITER_NEXT_SCOPED: `item->file`
//! is trusted for the current step and goes to a kfunc directly).
//!
//! A target child opens N regular files read-only (what `get_file()` hands out and
//! `bpf_dynptr_from_file()` accepts on either kernel; kernel-patches/0002 refuses anything else)
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

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use libbpf_rs::{MapCore, MapFlags, Object};

use crate::loader::{self, LoadOpts, LoaderError};
use crate::records::{
    crib_bench_ctx, crib_bench_fail, CRIB_BENCH_DYNPTR, CRIB_BENCH_MAX_FAILS, CRIB_BENCH_NOFILE,
};

/// Object file holding the benchmark programs, relative to [`crate::BPF_DIR`].
pub const OBJ_FILE: &str = "bench_task_file.bpf.o";
/// Array map with the first [`CRIB_BENCH_MAX_FAILS`] failures of a run.
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

/// fd the target child reports readiness on (it closes everything else above stdio).
const CHILD_REPORT_FD: RawFd = 3;

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
    let e = errno.abs();
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        _ => return format!("errno {errno}"),
    };
    if errno < 0 {
        format!("-{name}")
    } else {
        name.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Options

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Regular files the target opens (its table also holds whatever stdio it inherited).
    pub fds: u32,
    /// Measured rounds; each runs every available mode once.
    pub rounds: u32,
    /// Rounds run (and checked) before measuring.
    pub warmup: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fds: DEFAULT_FDS,
            rounds: DEFAULT_ROUNDS,
            warmup: DEFAULT_WARMUP,
        }
    }
}

pub const USAGE: &str = "usage: crib bench [--fds N] [--rounds N] [--warmup N]";

impl Options {
    /// Parse `crib bench` arguments (`--fds N`, `--fds=N`, ...). `Ok(None)` for `--help`.
    pub fn parse(args: &[OsString]) -> Result<Option<Options>, BenchError> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let s = a.to_str().ok_or_else(|| {
                BenchError::Usage(format!("argument {a:?} is not UTF-8\n{USAGE}"))
            })?;
            if s == "-h" || s == "--help" {
                return Ok(None);
            }
            let (flag, inline) = match s.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (s, None),
            };
            let field = match flag {
                "--fds" => &mut o.fds,
                "--rounds" => &mut o.rounds,
                "--warmup" => &mut o.warmup,
                _ => {
                    return Err(BenchError::Usage(format!(
                        "unexpected argument {s:?}\n{USAGE}"
                    )))
                }
            };
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .and_then(|v| v.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| BenchError::Usage(format!("{flag} needs a value\n{USAGE}")))?,
            };
            *field = v.parse().map_err(|_| {
                BenchError::Usage(format!("{flag} {v:?}: want a whole number\n{USAGE}"))
            })?;
        }
        o.check()?;
        Ok(Some(o))
    }

    pub fn check(&self) -> Result<(), BenchError> {
        if self.fds == 0 || self.fds > MAX_FDS {
            return Err(BenchError::Usage(format!(
                "--fds {}: want 1..={MAX_FDS}",
                self.fds
            )));
        }
        if self.rounds == 0 || self.rounds > 1_000_000 {
            return Err(BenchError::Usage(format!(
                "--rounds {}: want 1..=1000000",
                self.rounds
            )));
        }
        if self.warmup > 1_000_000 {
            return Err(BenchError::Usage(format!(
                "--warmup {}: want 0..=1000000",
                self.warmup
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The target child

/// A child that holds `files` read-only regular files open (plus its inherited stdio) and
/// sleeps until killed.
pub struct BenchTarget {
    pid: i32,
    reaped: bool,
    files: u32,
    // Dropped after the child is gone (field order), which removes the files.
    dir: tempfile::TempDir,
}

impl BenchTarget {
    /// Create `files` files under a fresh directory in `parent` and fork a child that opens
    /// them all with O_RDONLY. Returns once the child holds them.
    pub fn spawn(files: u32, parent: &Path) -> Result<Self, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("crib-bench-")
            .tempdir_in(parent)
            .map_err(io_err(format!(
                "creating a directory in {}",
                parent.display()
            )))?;
        let mut paths = Vec::with_capacity(files as usize);
        let content = [0x5au8; 64];
        for i in 0..files {
            let p = dir.path().join(format!("f{i}"));
            fs::write(&p, content).map_err(io_err(format!("creating {}", p.display())))?;
            let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| {
                BenchError::Target(format!("{}: NUL byte in the path", p.display()))
            })?;
            paths.push(c);
        }
        // stdio + the report pipe + the files, with room to spare.
        raise_nofile(u64::from(files) + 64)?;

        let (report_r, report_w) = pipe().map_err(io_err("pipe"))?;
        // SAFETY: getpid has no preconditions.
        let parent_pid = unsafe { libc::getpid() };
        // SAFETY: the child only runs `child_main`, which makes async-signal-safe system calls
        // on memory prepared before the fork and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io_err("fork")(io::Error::last_os_error()));
        }
        if pid == 0 {
            use std::os::fd::AsRawFd;
            child_main(report_w.as_raw_fd(), parent_pid, &paths);
        }
        drop(report_w);
        let mut t = BenchTarget {
            pid,
            reaped: false,
            files,
            dir,
        };
        // The child writes "R" and closes the pipe when ready, or "E" + index + errno and
        // exits; EOF without either means it died.
        let mut msg = Vec::new();
        fs::File::from(report_r)
            .read_to_end(&mut msg)
            .map_err(io_err("reading the target child's report"))?;
        match msg.as_slice() {
            [b'R'] => Ok(t),
            [b'E', rest @ ..] if rest.len() == 8 => {
                let idx = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let errno = i32::from_ne_bytes([rest[4], rest[5], rest[6], rest[7]]);
                let path = t.dir.path().join(format!("f{idx}"));
                Err(BenchError::Target(format!(
                    "open {} (file {} of {files}): {}",
                    path.display(),
                    idx + 1,
                    io::Error::from_raw_os_error(errno)
                )))
            }
            other => {
                let status = t.kill_and_reap();
                Err(BenchError::Target(format!(
                    "exited before it was ready (sent {other:?}, wait status {status:#x})"
                )))
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Regular files the child opened.
    pub fn files(&self) -> u32 {
        self.files
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL the child and reap it; returns the wait status (or -1 if it was gone).
    fn kill_and_reap(&mut self) -> i32 {
        if self.reaped {
            return -1;
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        loop {
            // SAFETY: plain waitpid on our own child.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                self.reaped = true;
                return status;
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                self.reaped = true;
                return -1;
            }
        }
    }
}

impl Drop for BenchTarget {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Make sure RLIMIT_NOFILE allows `want` descriptors (raising the hard limit needs root).
fn raise_nofile(want: u64) -> Result<(), BenchError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io_err("getrlimit(RLIMIT_NOFILE)")(
            io::Error::last_os_error(),
        ));
    }
    if lim.rlim_cur >= want {
        return Ok(());
    }
    let new = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: new is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Err(io_err(format!(
            "raising RLIMIT_NOFILE from {}/{} to {want} for the target's files (fewer --fds, or \
             run as root)",
            lim.rlim_cur, lim.rlim_max
        ))(io::Error::last_os_error()));
    }
    Ok(())
}

fn child_report(fd: RawFd, msg: &[u8]) {
    // SAFETY: msg is valid for msg.len() bytes; a short write only loses the message.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

/// The target child, after fork(): only async-signal-safe system calls on memory prepared
/// before the fork (the parent may have other threads).
fn child_main(report: RawFd, parent: libc::pid_t, paths: &[CString]) -> ! {
    // SAFETY: every call below is a plain system call on valid arguments; the process never
    // returns to Rust code that could observe the changed fd table.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        if report != CHILD_REPORT_FD && libc::dup2(report, CHILD_REPORT_FD) < 0 {
            libc::_exit(1);
        }
        // Nothing of the parent's but stdio and the report pipe: the table is ours to describe.
        libc::syscall(
            libc::SYS_close_range,
            (CHILD_REPORT_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        for (i, p) in paths.iter().enumerate() {
            if libc::open(p.as_ptr(), libc::O_RDONLY) < 0 {
                let errno = *libc::__errno_location();
                let mut msg = [0u8; 9];
                msg[0] = b'E';
                msg[1..5].copy_from_slice(&(i as u32).to_ne_bytes());
                msg[5..9].copy_from_slice(&errno.to_ne_bytes());
                child_report(CHILD_REPORT_FD, &msg);
                libc::_exit(1);
            }
        }
        child_report(CHILD_REPORT_FD, b"R");
        libc::close(CHILD_REPORT_FD);
        loop {
            libc::pause();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ground truth

/// One fd of the target as procfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFd {
    pub fd: u32,
    /// readlink of /proc/<pid>/fd/<fd>
    pub link: String,
    /// procfs gives the link S_IRUSR iff the file has FMODE_READ
    pub readable: bool,
    /// a regular file (stat through the link)
    pub regular: bool,
}

impl TableFd {
    /// A regular file open for reading: what every mode must be able to use (the module's
    /// `get_file()` and `bpf_dynptr_from_file()` may refuse anything else).
    pub fn usable(&self) -> bool {
        self.readable && self.regular
    }

    fn describe(&self) -> String {
        let what = match (self.regular, self.readable) {
            (true, true) => "regular, open for reading",
            (true, false) => "regular, not open for reading",
            (false, true) => "not a regular file, open for reading",
            (false, false) => "not a regular file, not open for reading",
        };
        format!("fd {} {} ({what})", self.fd, self.link)
    }
}

/// The target's fd table from `/proc/<pid>/fd`, in fd order.
pub fn read_table(pid: i32) -> Result<Vec<TableFd>, BenchError> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))? {
        let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
        let name = e.file_name();
        let Some(fd) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let p = e.path();
        let meta = fs::symlink_metadata(&p).map_err(io_err(format!("lstat {}", p.display())))?;
        let link = fs::read_link(&p)
            .map(|l| l.to_string_lossy().into_owned())
            .map_err(io_err(format!("readlink {}", p.display())))?;
        let target = fs::metadata(&p).map_err(io_err(format!("stat {}", p.display())))?;
        out.push(TableFd {
            fd,
            link,
            readable: meta.mode() & libc::S_IRUSR != 0,
            regular: target.file_type().is_file(),
        });
    }
    out.sort_by_key(|t| t.fd);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Programs and runs

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
    // SAFETY: crib_bench_fail is plain integers, valid for every bit pattern; the length was
    // checked and read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<crib_bench_fail>()) })
}

/// Whether the kernel may refuse `fail` for this fd: only for files that are not regular
/// files open for reading, and a dynptr only with the errno kernel-patches/0002 gives (EBADF
/// for a file not open for reading, else EINVAL for one that is not regular).
fn fail_allowed(t: &TableFd, fail: Fail) -> bool {
    if t.usable() {
        return false;
    }
    match fail {
        Fail::NoFile => true,
        Fail::Dynptr(e) if !t.readable => e == -libc::EBADF,
        Fail::Dynptr(e) => e == -libc::EINVAL,
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

// ---------------------------------------------------------------------------------------------
// Statistics and the report

/// Median of a non-empty slice (mean of the middle two for an even length); NaN if empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The measured rounds of one mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// fds every run walked (checked equal in every run)
    pub nr_fds: u32,
    /// fds the mode could not use, and why (the same in every run)
    pub fails: Vec<(u32, Fail)>,
    pub walk_ns: Vec<u64>,
    pub wall_ns: Vec<u64>,
}

impl Measured {
    fn ns_per_fd(&self) -> Vec<f64> {
        let n = f64::from(self.nr_fds.max(1));
        self.walk_ns.iter().map(|&t| t as f64 / n).collect()
    }
    pub fn median_ns_per_fd(&self) -> f64 {
        median(&self.ns_per_fd())
    }
    pub fn min_ns_per_fd(&self) -> f64 {
        self.ns_per_fd().into_iter().fold(f64::NAN, f64::min)
    }
    pub fn median_wall_us(&self) -> f64 {
        let v: Vec<f64> = self.wall_ns.iter().map(|&t| t as f64 / 1e3).collect();
        median(&v)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(Measured),
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `uname -r`
    pub kernel: String,
    /// `CRIB_FLAVOR` of the guest, if set
    pub flavor: Option<String>,
    pub cpus: usize,
    pub pid: i32,
    pub files: u32,
    /// The whole table, as procfs listed it before the runs.
    pub table: Vec<TableFd>,
    pub rounds: u32,
    pub warmup: u32,
    pub modes: Vec<(Mode, Outcome)>,
}

impl Report {
    pub fn measured(&self, mode: Mode) -> Option<&Measured> {
        self.modes.iter().find_map(|(m, o)| match o {
            Outcome::Measured(x) if *m == mode => Some(x),
            _ => None,
        })
    }

    /// `stat(a) / stat(b)`, if both modes ran.
    fn ratio(&self, a: Mode, b: Mode, stat: fn(&Measured) -> f64) -> Option<f64> {
        Some(stat(self.measured(a)?) / stat(self.measured(b)?))
    }

    /// `stat(a) - stat(b)`, if both modes ran.
    fn diff(&self, a: Mode, b: Mode, stat: fn(&Measured) -> f64) -> Option<f64> {
        Some(stat(self.measured(a)?) - stat(self.measured(b)?))
    }

    /// Median over the rounds of `f(a's ns/fd, b's ns/fd)` in the same round: the modes of a
    /// round run back to back, so this cancels drift of the machine's speed between rounds.
    fn paired(&self, a: Mode, b: Mode, f: fn(f64, f64) -> f64) -> Option<f64> {
        let (a, b) = (self.measured(a)?.ns_per_fd(), self.measured(b)?.ns_per_fd());
        if a.len() != b.len() || a.is_empty() {
            return None;
        }
        let v: Vec<f64> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
        Some(median(&v))
    }

    /// "D ns/fd (medians), D (paired), D (mins)" for `a - b`.
    fn diff_line(&self, a: Mode, b: Mode) -> Option<String> {
        Some(format!(
            "{:.1} ns/fd (medians), {:.1} (paired), {:.1} (mins)",
            self.diff(a, b, Measured::median_ns_per_fd)?,
            self.paired(a, b, |x, y| x - y)?,
            self.diff(a, b, Measured::min_ns_per_fd)?
        ))
    }

    /// "R (medians), R (paired), R (mins)" for `a / b`.
    fn ratio_line(&self, a: Mode, b: Mode) -> Option<String> {
        Some(format!(
            "{:.2}x (medians), {:.2}x (paired), {:.2}x (mins)",
            self.ratio(a, b, Measured::median_ns_per_fd)?,
            self.paired(a, b, |x, y| x / y)?,
            self.ratio(a, b, Measured::min_ns_per_fd)?
        ))
    }

    /// The table `crib bench` prints.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let flavor = self.flavor.as_deref().unwrap_or("unknown");
        let _ = writeln!(
            s,
            "crib bench: {flavor} kernel {}, {} CPU(s)",
            self.kernel, self.cpus
        );
        let others: Vec<String> = self
            .table
            .iter()
            .filter(|t| !is_bench_file(t))
            .map(|t| {
                format!(
                    "{} {} ({}{})",
                    t.fd,
                    t.link,
                    if t.readable {
                        "readable"
                    } else {
                        "not readable"
                    },
                    if t.regular { "" } else { ", not regular" }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "target: pid {}, {} fds = {} regular files (O_RDONLY){}",
            self.pid,
            self.table.len(),
            self.files,
            if others.is_empty() {
                String::new()
            } else {
                format!(" + {}", others.join(", "))
            }
        );
        let _ = writeln!(
            s,
            "{} rounds after {} warm-up round(s), modes interleaved (order rotated every round);\n\
             ns/fd = bpf_ktime_get_ns() around new()..destroy() in the program / fds walked",
            self.rounds, self.warmup
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<43} {:>4} {:>7} {:>7} {:>12} {:>9} {:>9} {:>7} {:>7} {:>13}",
            "mode",
            "fds",
            "no file",
            "dyn err",
            "median ns/fd",
            "min ns/fd",
            "x mode 1",
            "paired",
            "mins",
            "run median us"
        );
        let med: fn(&Measured) -> f64 = Measured::median_ns_per_fd;
        let min: fn(&Measured) -> f64 = Measured::min_ns_per_fd;
        let x = |r: Option<f64>| r.map_or_else(|| "-".into(), |r| format!("{r:.2}x"));
        for (mode, outcome) in &self.modes {
            let name = format!("{} {}", mode.number(), mode.label());
            match outcome {
                Outcome::Unavailable(why) => {
                    let _ = writeln!(s, "{name:<43} {why}");
                }
                Outcome::Measured(m) => {
                    let count = |used: bool, f: fn(&Fail) -> bool| {
                        if used {
                            m.fails.iter().filter(|(_, x)| f(x)).count().to_string()
                        } else {
                            "-".into()
                        }
                    };
                    let nofile = count(mode.uses_get_file(), |f| *f == Fail::NoFile);
                    let dynerr = count(mode.uses_dynptr(), |f| matches!(f, Fail::Dynptr(_)));
                    let _ = writeln!(
                        s,
                        "{name:<43} {:>4} {nofile:>7} {dynerr:>7} {:>12.1} {:>9.1} {:>9} {:>7} \
                         {:>7} {:>13.1}",
                        m.nr_fds,
                        med(m),
                        min(m),
                        x(self.ratio(*mode, Mode::Walk, med)),
                        x(self.paired(*mode, Mode::Walk, |a, b| a / b)),
                        x(self.ratio(*mode, Mode::Walk, min)),
                        m.median_wall_us()
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "(x mode 1: ratio of the medians; paired: median of the per-round ratios; mins: ratio \
             of the minimums)"
        );
        let _ = writeln!(s);
        if let Some(l) = self.diff_line(Mode::GetPut, Mode::Walk) {
            let _ = writeln!(s, "one get/put pair, mode 2 - mode 1:            {l}");
        }
        let (a, b) = (Mode::GetDynptrPut, Mode::ScopedDynptr);
        match (self.diff_line(a, b), self.ratio_line(a, b)) {
            (Some(d), Some(r)) => {
                let _ = writeln!(s, "get/put per dynptr use, mode 3 - mode 4:      {d}");
                let _ = writeln!(s, "mode 3 / mode 4:                              {r}");
            }
            _ => {
                let _ = writeln!(
                    s,
                    "mode 3 / mode 4:                              - (mode 4 {SCOPED_UNAVAILABLE})"
                );
            }
        }
        // Which fds a mode could not use, and why: fd -> failure -> modes.
        let mut fails: BTreeMap<(u32, Fail), Vec<String>> = BTreeMap::new();
        for (mode, outcome) in &self.modes {
            if let Outcome::Measured(m) = outcome {
                for &(fd, fail) in &m.fails {
                    fails
                        .entry((fd, fail))
                        .or_default()
                        .push(mode.number().to_string());
                }
            }
        }
        if !fails.is_empty() {
            let _ = writeln!(
                s,
                "not used (counted, in the times; the kernel may refuse files that are not \
                 regular files open for reading):"
            );
            for ((fd, fail), modes) in fails {
                let link = self
                    .table
                    .iter()
                    .find(|t| t.fd == fd)
                    .map_or("?", |t| t.link.as_str());
                let _ = writeln!(s, "  fd {fd} {link}: {fail} in mode {}", modes.join(", "));
            }
        }
        s
    }
}

/// Whether a table entry is one of the benchmark's own files (`.../crib-bench-*/f<N>`).
fn is_bench_file(t: &TableFd) -> bool {
    let p = Path::new(&t.link);
    let in_bench_dir = p
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("crib-bench-"));
    let named = p
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix('f'))
        .is_some_and(|n| n.parse::<u32>().is_ok());
    in_bench_dir && named
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

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn options_parse_and_reject_with_a_reason() {
        assert_eq!(Options::parse(&[]).unwrap(), Some(Options::default()));
        let o = Options::parse(&os(&["--fds", "10", "--rounds=3", "--warmup", "0"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            o,
            Options {
                fds: 10,
                rounds: 3,
                warmup: 0
            }
        );
        assert_eq!(Options::parse(&os(&["--help"])).unwrap(), None);
        let e = |v: &[&str]| Options::parse(&os(v)).unwrap_err().to_string();
        assert!(e(&["--fds", "0"]).contains("--fds 0"));
        assert!(e(&["--fds", "x"]).contains("whole number"));
        assert!(e(&["--rounds"]).contains("needs a value"));
        assert!(e(&["--bogus"]).contains("unexpected argument"));
        assert!(e(&["--fds", "2000000"]).contains("1..="));
    }

    #[test]
    fn median_and_stats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let m = Measured {
            nr_fds: 10,
            fails: vec![],
            walk_ns: vec![100, 300, 200],
            wall_ns: vec![1000, 3000, 2000],
        };
        assert_eq!(m.median_ns_per_fd(), 20.0);
        assert_eq!(m.min_ns_per_fd(), 10.0);
        assert_eq!(m.median_wall_us(), 2.0);
    }

    fn table() -> Vec<TableFd> {
        let mut t = vec![
            TableFd {
                fd: 0,
                link: "/dev/null".into(),
                readable: true,
                regular: false,
            },
            TableFd {
                fd: 1,
                link: "pipe:[7]".into(),
                readable: false,
                regular: false,
            },
            TableFd {
                fd: 2,
                link: "/tmp/log".into(),
                readable: false,
                regular: true,
            },
        ];
        for fd in 4..8 {
            t.push(TableFd {
                fd,
                link: format!("/tmp/crib-bench-xyz/f{}", fd - 4),
                readable: true,
                regular: true,
            });
        }
        t
    }

    fn sample(nr_fds: u32, fd_sum: u64) -> Sample {
        Sample {
            retval: 0,
            nr_fds,
            nr_nofile: 0,
            nr_err: 0,
            fd_sum,
            walk_ns: 1,
            wall_ns: 1,
            fails: vec![],
        }
    }

    #[test]
    fn samples_are_checked_against_the_table() {
        let t = table();
        let sum = 1 + 2 + 4 + 5 + 6 + 7;
        assert!(check_sample(Mode::Walk, 0, 9, &sample(7, sum), &t).is_ok());
        // a missing fd
        let e = check_sample(Mode::GetPut, 3, 9, &sample(6, sum - 7), &t).unwrap_err();
        assert!(matches!(e, BenchError::Mismatch(_)), "{e}");
        assert!(e.to_string().contains("round 3"), "{e}");
        // same count, other fds
        assert!(check_sample(Mode::Walk, 0, 9, &sample(7, sum + 1), &t).is_err());
        let fails = |nofile: u32, err: u32, fails: &[(u32, Fail)]| {
            let mut s = sample(7, sum);
            s.nr_nofile = nofile;
            s.nr_err = err;
            s.fails = fails.to_vec();
            s
        };
        let ok = |m: Mode, s: &Sample| check_sample(m, 0, 9, s, &t);
        // refusals on stdio that is not a regular file open for reading are expected, with
        // kernel-patches/0002's errnos: EBADF not readable, EINVAL readable but not regular
        let stdio = [
            (0, Fail::Dynptr(-libc::EINVAL)),
            (1, Fail::Dynptr(-libc::EBADF)),
            (2, Fail::Dynptr(-libc::EBADF)),
        ];
        assert!(ok(Mode::ScopedDynptr, &fails(0, 3, &stdio)).is_ok());
        let nofile = [(0, Fail::NoFile), (1, Fail::NoFile), (2, Fail::NoFile)];
        assert!(ok(Mode::GetPut, &fails(3, 0, &nofile)).is_ok());
        assert!(ok(Mode::GetDynptrPut, &fails(3, 0, &nofile)).is_ok());
        // but not on the benchmark's files, nor with another errno
        let e = ok(
            Mode::GetDynptrPut,
            &fails(0, 1, &[(5, Fail::Dynptr(-libc::EBADF))]),
        );
        let e = e.unwrap_err().to_string();
        assert!(e.contains("regular, open for reading"), "{e}");
        let e = ok(Mode::GetPut, &fails(1, 0, &[(4, Fail::NoFile)])).unwrap_err();
        assert!(
            e.to_string().contains("get_file() returned NULL for fd 4"),
            "{e}"
        );
        assert!(ok(
            Mode::ScopedDynptr,
            &fails(0, 1, &[(1, Fail::Dynptr(-libc::EINVAL))])
        )
        .is_err());
        assert!(ok(
            Mode::ScopedDynptr,
            &fails(0, 1, &[(0, Fail::Dynptr(-libc::EBADF))])
        )
        .is_err());
        assert!(ok(
            Mode::ScopedDynptr,
            &fails(0, 1, &[(1, Fail::Dynptr(-libc::ENOMEM))])
        )
        .is_err());
        // an fd procfs does not list
        assert!(ok(Mode::GetPut, &fails(1, 0, &[(3, Fail::NoFile)])).is_err());
        // more failures than recorded
        assert!(ok(Mode::ScopedDynptr, &fails(0, 65, &stdio)).is_err());
        // failures of a call the mode does not make
        assert!(ok(Mode::Walk, &fails(1, 0, &[(0, Fail::NoFile)])).is_err());
        assert!(ok(
            Mode::GetPut,
            &fails(0, 1, &[(1, Fail::Dynptr(-libc::EBADF))])
        )
        .is_err());
        assert!(ok(Mode::ScopedDynptr, &fails(1, 0, &[(0, Fail::NoFile)])).is_err());
        // a failing program
        let mut s = sample(0, 0);
        s.retval = -libc::ESRCH;
        let e = check_sample(Mode::Walk, 0, 9, &s, &t).unwrap_err();
        assert!(e.to_string().contains("-ESRCH"), "{e}");
    }

    #[test]
    fn report_renders_ratios_and_the_unavailable_mode() {
        let m = |ns: u64| Measured {
            nr_fds: 6,
            fails: vec![],
            walk_ns: vec![ns * 6],
            wall_ns: vec![1000],
        };
        let mut r = Report {
            kernel: "7.3.0".into(),
            flavor: Some("stock".into()),
            cpus: 2,
            pid: 9,
            files: 4,
            table: table(),
            rounds: 1,
            warmup: 0,
            modes: vec![
                (Mode::Walk, Outcome::Measured(m(100))),
                (Mode::GetPut, Outcome::Measured(m(150))),
                (Mode::GetDynptrPut, Outcome::Measured(m(400))),
                (
                    Mode::ScopedDynptr,
                    Outcome::Unavailable(SCOPED_UNAVAILABLE.into()),
                ),
            ],
        };
        let text = r.render();
        assert!(
            text.contains(
                "4 regular files (O_RDONLY) + 0 /dev/null (readable, not regular), 1 pipe:[7] \
                 (not readable, not regular), 2 /tmp/log (not readable)"
            ),
            "{text}"
        );
        assert!(text.contains("1.50x"), "{text}");
        assert!(
            text.contains(
                "mode 2 - mode 1:            50.0 ns/fd (medians), 50.0 (paired), 50.0 (mins)"
            ),
            "{text}"
        );
        assert!(text.contains(SCOPED_UNAVAILABLE), "{text}");
        r.modes[3] = (Mode::ScopedDynptr, Outcome::Measured(m(320)));
        let text = r.render();
        assert!(
            text.contains("mode 3 - mode 4:      80.0 ns/fd (medians), 80.0 (paired), 80.0 (mins)"),
            "{text}"
        );
        assert!(
            text.contains("mode 3 / mode 4:                              1.25x (medians), 1.25x (paired), 1.25x (mins)"),
            "{text}"
        );
    }

    #[test]
    fn paired_statistics_compare_runs_of_the_same_round() {
        // Per-round ratios 4x and 1x: the paired median is their mean of two (2.5x); the ratio
        // of the minimums compares round 2 of one mode with round 1 of the other (2x).
        let m = |ns: [u64; 2]| Measured {
            nr_fds: 1,
            fails: vec![],
            walk_ns: ns.to_vec(),
            wall_ns: vec![1, 1],
        };
        let r = Report {
            kernel: "k".into(),
            flavor: None,
            cpus: 2,
            pid: 1,
            files: 1,
            table: vec![],
            rounds: 2,
            warmup: 0,
            modes: vec![
                (Mode::Walk, Outcome::Measured(m([100, 200]))),
                (Mode::GetPut, Outcome::Measured(m([400, 200]))),
            ],
        };
        assert_eq!(r.paired(Mode::GetPut, Mode::Walk, |a, b| a / b), Some(2.5));
        assert_eq!(
            r.paired(Mode::GetPut, Mode::Walk, |a, b| a - b),
            Some(150.0)
        );
        assert_eq!(
            r.ratio(Mode::GetPut, Mode::Walk, Measured::min_ns_per_fd),
            Some(2.0)
        );
        assert_eq!(r.paired(Mode::GetDynptrPut, Mode::Walk, |a, b| a / b), None);
    }

    #[test]
    fn bench_files_are_recognised() {
        let t = |link: &str| TableFd {
            fd: 5,
            link: link.into(),
            readable: true,
            regular: true,
        };
        assert!(is_bench_file(&t("/tmp/crib-bench-Ab12/f17")));
        assert!(!is_bench_file(&t("/tmp/crib-bench-Ab12/g17")));
        assert!(!is_bench_file(&t("/tmp/other/f17")));
        assert!(!is_bench_file(&t("pipe:[3]")));
    }
}

//! The benchmark's target: a forked child holding N fds of a mix of kinds, from fd 3 up with no
//! holes, until told to exit.
//!
//! The mix, in quarters: regular files (opens of 64 files on a tmpfs at different offsets, read
//! or write, some O_APPEND or O_CLOEXEC), pipes (both ends), unix socket pairs (stream and
//! datagram), eventfds. Every fd is its own open file (no dup()s), so every method has to look
//! at N files, not N names of a few. `crate::target` builds the tests' tables with every kind
//! there is, but only a few dozen fds of them beside its dense dup()s of /dev/null; this table
//! is for sizes of 1k-100k+ of each kind.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{
    dup2_stderr, dup2_stdin, dup2_stdout, fork, lseek, pipe2, read, write, ForkResult, Pid, Whence,
};

/// Files the regular fds are spread over.
const FILES: usize = 64;
/// Bytes in each of them (offsets go up to this).
const FILE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("the target child failed to build its {fds}-fd table: {msg}")]
    Child { fds: u32, msg: String },
    #[error("the target child exited {0}")]
    Exit(String),
}

fn io_err<E: Into<io::Error>>(what: impl Into<String>) -> impl FnOnce(E) -> TableError {
    let what = what.into();
    move |source| TableError::Io {
        what,
        source: source.into(),
    }
}

/// How many fds of each kind a table of `fds` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mix {
    pub regular: u32,
    pub pipe_ends: u32,
    pub unix_sockets: u32,
    pub eventfds: u32,
}

impl Mix {
    /// Quarters, pipes and socket pairs rounded down to pairs, the rest eventfds.
    pub fn of(fds: u32) -> Mix {
        let q = fds / 4;
        let regular = q;
        let pipe_ends = q / 2 * 2;
        let unix_sockets = q / 2 * 2;
        Mix {
            regular,
            pipe_ends,
            unix_sockets,
            eventfds: fds - regular - pipe_ends - unix_sockets,
        }
    }
}

/// The running target child.
pub struct FdTable {
    pid: Pid,
    control: Option<OwnedFd>,
    report: BufReader<File>,
    reaped: bool,
    pub fds: u32,
    pub mix: Mix,
}

impl FdTable {
    /// Fork a child that opens `fds` fds (files in `dir`, a tmpfs) and waits.
    pub fn spawn(dir: &Path, fds: u32) -> Result<FdTable, TableError> {
        let mix = Mix::of(fds);
        // Made by the parent: the child only opens them.
        for i in 0..FILES {
            std::fs::write(file_path(dir, i), vec![b'x'; FILE_BYTES])
                .map_err(io_err(format!("writing {}", file_path(dir, i).display())))?;
        }
        let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(io_err("pipe"))?;
        let (control_r, control_w) = pipe2(OFlag::O_CLOEXEC).map_err(io_err("pipe"))?;
        let dir = dir.to_path_buf();
        // SAFETY: the child runs `child_main`, which ends in _exit; like `crate::target`, it
        // allocates, which the single-threaded benchmark and the guest test bodies allow.
        let pid = match unsafe { fork() }.map_err(io_err("fork"))? {
            ForkResult::Child => {
                drop(report_r);
                drop(control_w);
                child_main(&dir, mix, report_w, control_r)
            }
            ForkResult::Parent { child } => child,
        };
        drop(report_w);
        drop(control_r);
        let mut t = FdTable {
            pid,
            control: Some(control_w),
            report: BufReader::new(File::from(report_r)),
            reaped: false,
            fds,
            mix,
        };
        let line = t.read_line()?;
        if line != "ready" {
            let msg = line.strip_prefix("error ").unwrap_or(&line).to_string();
            return Err(TableError::Child { fds, msg });
        }
        Ok(t)
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    fn read_line(&mut self) -> Result<String, TableError> {
        let mut line = String::new();
        let n = self
            .report
            .read_line(&mut line)
            .map_err(io_err("reading the target's report pipe"))?;
        if n == 0 {
            return Err(TableError::Child {
                fds: self.fds,
                msg: "it exited without a word (EOF)".into(),
            });
        }
        Ok(line.trim_end().to_string())
    }

    /// Tell the child to exit and reap it.
    pub fn stop(mut self) -> Result<(), TableError> {
        self.control.take();
        let status = self.wait()?;
        match status {
            WaitStatus::Exited(_, 0) => Ok(()),
            s => Err(TableError::Exit(format!("{s:?}"))),
        }
    }

    fn wait(&mut self) -> Result<WaitStatus, TableError> {
        loop {
            match waitpid(self.pid, None) {
                Ok(s) => {
                    self.reaped = true;
                    return Ok(s);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(io_err("waitpid")(e)),
            }
        }
    }
}

impl Drop for FdTable {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = self.wait();
        }
    }
}

fn file_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("f{i:02}"))
}

fn child_main(dir: &Path, mix: Mix, report: OwnedFd, control: OwnedFd) -> ! {
    let code = match setup(mix, report, control) {
        Err((report, msg)) => {
            if let Some(r) = report {
                let _ = write(&r, format!("error {}\n", msg.replace('\n', " ")).as_bytes());
            }
            1
        }
        Ok((report, control)) => match build(dir, mix) {
            Ok(keep) => {
                let _ = write(&report, b"ready\n");
                let mut b = [0u8; 1];
                loop {
                    match read(&control, &mut b) {
                        Ok(0) => break,
                        Ok(_) | Err(Errno::EINTR) => continue,
                        Err(_) => break,
                    }
                }
                drop(keep);
                0
            }
            Err(msg) => {
                let _ = write(
                    &report,
                    format!("error {}\n", msg.replace('\n', " ")).as_bytes(),
                );
                1
            }
        },
    };
    // SAFETY: leave without running the parent's atexit handlers or flushing its buffers.
    unsafe { libc::_exit(code) }
}

fn fail(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> String {
    move |e| format!("{what}: {}", io::Error::from(e))
}

fn total(mix: Mix) -> u32 {
    mix.regular + mix.pipe_ends + mix.unix_sockets + mix.eventfds
}

/// Put stdio on /dev/null, raise RLIMIT_NOFILE, move the two harness pipes just above the table (3..3+total) and
/// close everything else but stdio, so the table has no holes. On failure, the report pipe (if
/// still open) to say why.
type Pipes = (OwnedFd, OwnedFd);
fn setup(mix: Mix, report: OwnedFd, control: OwnedFd) -> Result<Pipes, (Option<OwnedFd>, String)> {
    // Stdio on /dev/null: inherited, the child's fds 0-2 would be the benchmark's own output,
    // whose position moves while it prints (a file it is redirected to), so every method would
    // see another pos in every round.
    let null = match open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => return Err((Some(report), fail("open /dev/null")(e))),
    };
    let stdio = dup2_stdin(&null)
        .and_then(|()| dup2_stdout(&null))
        .and_then(|()| dup2_stderr(&null));
    if let Err(e) = stdio {
        return Err((Some(report), fail("dup2 of /dev/null onto stdio")(e)));
    }
    drop(null);
    let total = total(mix);
    let limit = (u64::from(total) + 64).max(1024);
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, limit, limit) {
        let msg = fail(format!("setrlimit(RLIMIT_NOFILE, {limit})"))(e);
        return Err((Some(report), msg));
    }
    let high = (total + 3) as RawFd;
    let moved = rustix::io::fcntl_dupfd_cloexec(&report, high)
        .and_then(|r| Ok((r, rustix::io::fcntl_dupfd_cloexec(&control, high + 1)?)));
    let (report_hi, control_hi) = match moved {
        Ok(p) => p,
        Err(e) => return Err((Some(report), format!("moving the harness pipes up: {e}"))),
    };
    drop((report, control));
    let (lo, hi) = (report_hi.as_raw_fd(), control_hi.as_raw_fd());
    if (lo, hi) != (high, high + 1) {
        let msg = format!(
            "the harness pipes landed at {lo} and {hi}, not {high} and {} (fds inherited there?)",
            high + 1
        );
        return Err((Some(report_hi), msg));
    }
    // SAFETY: this forked child owns its fd table, and no Rust object of it owns an fd in the
    // closed ranges (the harness pipes are at `high` and `high + 1`, between them; their old
    // numbers were closed above). nix has no close_range.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, (high - 1) as u32, 0u32);
        libc::syscall(libc::SYS_close_range, (high + 2) as u32, u32::MAX, 0u32);
    }
    Ok((report_hi, control_hi))
}

/// Open the table from fd 3 up (the lowest free fds: the range is empty after `setup`).
fn build(dir: &Path, mix: Mix) -> Result<Vec<OwnedFd>, String> {
    let total = total(mix);
    let mut keep: Vec<OwnedFd> = Vec::with_capacity(total as usize);
    for i in 0..mix.regular as usize {
        let (flags, what) = match i % 4 {
            0 => (OFlag::O_RDONLY, "O_RDONLY"),
            1 => (OFlag::O_RDWR | OFlag::O_CLOEXEC, "O_RDWR|O_CLOEXEC"),
            2 => (OFlag::O_WRONLY | OFlag::O_APPEND, "O_WRONLY|O_APPEND"),
            _ => (OFlag::O_RDONLY | OFlag::O_NONBLOCK, "O_RDONLY|O_NONBLOCK"),
        };
        let p = file_path(dir, i % FILES);
        let fd =
            open(&p, flags, Mode::empty()).map_err(fail(format!("open {} {what}", p.display())))?;
        if i % 4 != 2 {
            lseek(&fd, ((i * 7) % FILE_BYTES) as i64, Whence::SeekSet).map_err(fail("lseek"))?;
        }
        keep.push(fd);
    }
    for i in 0..mix.pipe_ends / 2 {
        let flags = if i % 2 == 0 {
            OFlag::empty()
        } else {
            OFlag::O_CLOEXEC | OFlag::O_NONBLOCK
        };
        let (r, w) = pipe2(flags).map_err(fail("pipe2"))?;
        keep.extend([r, w]);
    }
    for i in 0..mix.unix_sockets / 2 {
        let ty = if i % 2 == 0 {
            SockType::Stream
        } else {
            SockType::Datagram
        };
        let (a, b) = socketpair(AddressFamily::Unix, ty, None, SockFlag::empty())
            .map_err(fail("socketpair"))?;
        keep.extend([a, b]);
    }
    for i in 0..mix.eventfds {
        let flags = if i % 2 == 0 {
            EfdFlags::empty()
        } else {
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK
        };
        let ev: OwnedFd = EventFd::from_value_and_flags(i, flags)
            .map_err(fail("eventfd"))?
            .into();
        keep.push(ev);
    }
    if let Some(last) = keep.last() {
        let want = (total + 2) as RawFd;
        if last.as_fd().as_raw_fd() != want {
            return Err(format!(
                "the last fd of the table is {}, not {want}: the table has holes",
                last.as_raw_fd()
            ));
        }
    }
    Ok(keep)
}

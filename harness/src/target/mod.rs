//! A process with a known fd table, for dump tests (run inside a guest, as root).
//!
//! [`Target::spawn`] forks a child that builds the table described by [`TargetSpec`] (regular
//! files at different offsets and open flags, a directory, pipes, unix/TCP/UDP sockets,
//! eventfd, epoll, signalfd, timerfd, memfd, pidfd, O_PATH fds, dup'd fds sharing one file,
//! sparse fd numbers up to 131,071, holes), reports every fd it made (number, kind,
//! close-on-exec, expected socket identity, anon_inode name, offset, which fd it shares a
//! file with) over a pipe, and then waits until [`Target::stop`] tells it to exit.
//!
//! With [`TargetSpec::race`], a thread of the child keeps opening, closing and dup2()ing fds
//! until stopped, and logs every (fd, inode) pair it ever installed; [`Target::stop`] returns
//! that log, so a test can check that every fd a concurrent dump reported was really open.
//!
//! Files: `expected.rs` (what the child reports and its line protocol), `child.rs` (the forked
//! child), `table.rs` (the fd table it builds), `race.rs` (the racing thread), `tmpfs.rs` (the
//! tmpfs the tests put the target's files on).

mod child;
mod expected;
mod race;
mod table;
mod tmpfs;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

pub use expected::{ExpectedFd, RaceLog};
pub use tmpfs::Tmpfs;

/// fds the child keeps for talking to the parent.
const REPORT_FD: RawFd = 500;
const CONTROL_FD: RawFd = 501;
/// RLIMIT_NOFILE of the child: room for the sparse fds and the dense table.
const NOFILE: u64 = 200_000;
/// Sparse fd numbers (the table grows to hold them).
pub const SPARSE_FDS: [u32; 3] = [65_536, 100_000, 131_071];
/// fds the racing thread dup2()s onto.
pub const RACE_FDS: std::ops::Range<u32> = 1_000..1_064;
/// A second race window, far up, so early races also grow the fd table.
pub const RACE_FDS_HIGH: std::ops::Range<u32> = 4_000..4_016;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("target child failed while building its fd table: {0}")]
    Child(String),
    #[error("target child sent a line the parent cannot parse: {0:?}")]
    Protocol(String),
    #[error("target child did not exit 0: {0}")]
    Exit(String),
    #[error("target child did not report ready within {0:?}")]
    Timeout(Duration),
}

fn io_err<E: Into<io::Error>>(what: impl Into<String>) -> impl FnOnce(E) -> TargetError {
    let what = what.into();
    move |source| TargetError::Io {
        what,
        source: source.into(),
    }
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// Directory (on a tmpfs) for the target's files.
    pub dir: PathBuf,
    /// Also install fds at [`SPARSE_FDS`].
    pub sparse: bool,
    /// Also fill fds 3.. with `dense` dup()s of one file (beyond the rest of the table).
    pub dense: u32,
    /// Run a thread that opens/closes/dup2()s fds until stopped.
    pub race: bool,
}

/// The running child.
pub struct Target {
    pid: Pid,
    control: Option<OwnedFd>,
    report: BufReader<File>,
    reaped: bool,
    pub expected: Vec<ExpectedFd>,
}

impl Target {
    /// Fork the child, wait until it built its table, and return what it built.
    pub fn spawn(spec: &TargetSpec) -> Result<Self, TargetError> {
        let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(io_err("pipe"))?;
        let (control_r, control_w) = pipe2(OFlag::O_CLOEXEC).map_err(io_err("pipe"))?;
        // SAFETY: the child only runs `child::main`, which never returns (it ends in _exit);
        // it allocates, which the tests that fork it (single-threaded guest test bodies) allow.
        let pid = match unsafe { fork() }.map_err(io_err("fork"))? {
            ForkResult::Child => {
                drop(report_r);
                drop(control_w);
                child::main(spec, report_w, control_r)
            }
            ForkResult::Parent { child } => child,
        };
        drop(report_w);
        drop(control_r);
        let mut t = Target {
            pid,
            control: Some(control_w),
            report: BufReader::new(File::from(report_r)),
            reaped: false,
            expected: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = t.read_line()?;
            if line == "ready" {
                break;
            }
            if let Some(msg) = line.strip_prefix("error ") {
                return Err(TargetError::Child(msg.to_string()));
            }
            let e = ExpectedFd::decode(&line).ok_or_else(|| TargetError::Protocol(line.clone()))?;
            t.expected.push(e);
            if Instant::now() > deadline {
                return Err(TargetError::Timeout(Duration::from_secs(120)));
            }
        }
        Ok(t)
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    fn read_line(&mut self) -> Result<String, TargetError> {
        let mut line = String::new();
        let n = self
            .report
            .read_line(&mut line)
            .map_err(io_err("read from target"))?;
        if n == 0 {
            return Err(TargetError::Child("exited without a report (EOF)".into()));
        }
        Ok(line.trim_end_matches('\n').to_string())
    }

    /// Tell the child to exit, collect the race log, reap it and check it exited 0.
    pub fn stop(mut self) -> Result<RaceLog, TargetError> {
        // Closing the control pipe is the signal to exit.
        self.control.take();
        let mut log = RaceLog::default();
        loop {
            let line = self.read_line()?;
            if line == "done" {
                break;
            }
            if let Some(msg) = line.strip_prefix("error ") {
                return Err(TargetError::Child(msg.to_string()));
            }
            if let Some(rest) = line.strip_prefix("ever ") {
                let mut it = rest.split(' ').map(str::parse::<u64>);
                match (it.next(), it.next()) {
                    (Some(Ok(fd)), Some(Ok(ino))) => {
                        log.installed.insert((fd as u32, ino));
                    }
                    _ => return Err(TargetError::Protocol(line)),
                }
            } else if let Some(ops) = line.strip_prefix("ops ") {
                log.ops = ops
                    .parse()
                    .map_err(|_| TargetError::Protocol(line.clone()))?;
            } else {
                return Err(TargetError::Protocol(line));
            }
        }
        match self.wait()? {
            WaitStatus::Exited(_, 0) => Ok(log),
            status => Err(TargetError::Exit(format!("{status:?}"))),
        }
    }

    fn wait(&mut self) -> Result<WaitStatus, TargetError> {
        loop {
            match waitpid(self.pid, None) {
                Ok(status) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(io_err("waitpid")(e)),
            }
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = self.wait();
        }
    }
}

/// Flush stdout (the guest's test output) so interleaved child output stays readable.
pub fn flush() {
    let _ = io::stdout().flush();
}

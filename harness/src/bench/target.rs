//! The target child: a process holding the benchmark's files open, and nothing else but stdio.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, getpid, getppid, pause, pipe2, write, ForkResult, Pid};

use super::{io_err, BenchError};

/// A child that holds `files` read-only regular files open (plus its inherited stdio) and
/// sleeps until killed.
pub struct BenchTarget {
    pid: Pid,
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

        let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(nix_err("pipe"))?;
        let parent_pid = getpid();
        // SAFETY: the child only runs `child_main`, which makes async-signal-safe system calls
        // on memory prepared before the fork and never returns.
        let pid = match unsafe { fork() }.map_err(nix_err("fork"))? {
            ForkResult::Child => {
                drop(report_r);
                child_main(report_w, parent_pid, &paths)
            }
            ForkResult::Parent { child } => child,
        };
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
                    "exited before it was ready (sent {other:?}, {status})"
                )))
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Regular files the child opened.
    pub fn files(&self) -> u32 {
        self.files
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL the child and reap it; says how it ended.
    fn kill_and_reap(&mut self) -> String {
        if self.reaped {
            return "already reaped".into();
        }
        let _ = kill(self.pid, Signal::SIGKILL);
        loop {
            match waitpid(self.pid, None) {
                Ok(status) => {
                    self.reaped = true;
                    return format!("{status:?}");
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    self.reaped = true;
                    return format!("waitpid: {e}");
                }
            }
        }
    }
}

impl Drop for BenchTarget {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

fn nix_err(what: &str) -> impl FnOnce(Errno) -> BenchError + '_ {
    move |e| io_err(what)(io::Error::from(e))
}

/// Make sure RLIMIT_NOFILE allows `want` descriptors (raising the hard limit needs root).
fn raise_nofile(want: u64) -> Result<(), BenchError> {
    let (cur, max) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(nix_err("getrlimit(RLIMIT_NOFILE)"))?;
    if cur >= want {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, max.max(want)).map_err(|e| {
        io_err(format!(
            "raising RLIMIT_NOFILE from {cur}/{max} to {want} for the target's files (fewer \
             --fds, or run as root)"
        ))(io::Error::from(e))
    })
}

/// `_exit(code)`: leave the forked child without running the parent's atexit handlers or
/// flushing the stdio buffers it inherited.
fn exit(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; nix has no wrapper for it.
    unsafe { libc::_exit(code) }
}

/// The target child, after fork(): only async-signal-safe system calls on memory prepared
/// before the fork (the parent may have other threads). Its table: stdio, the report pipe
/// until it is ready, then the files.
fn child_main(report: OwnedFd, parent: Pid, paths: &[CString]) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if getppid() != parent {
        exit(1);
    }
    // Nothing of the parent's but stdio and the report pipe: the table is ours to describe.
    let r = report.as_raw_fd() as u32;
    // SAFETY: this forked child owns its fd table and never returns to code of the parent's
    // that could use a closed fd; the one fd it keeps (the report pipe) is outside both
    // ranges. nix and rustix have no close_range.
    unsafe {
        if r > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, r - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, r + 1, u32::MAX, 0u32);
    }
    for (i, p) in paths.iter().enumerate() {
        match open(p.as_c_str(), OFlag::O_RDONLY, Mode::empty()) {
            // Held open until the child is killed.
            Ok(fd) => std::mem::forget(fd),
            Err(e) => {
                let mut msg = [0u8; 9];
                msg[0] = b'E';
                msg[1..5].copy_from_slice(&(i as u32).to_ne_bytes());
                msg[5..9].copy_from_slice(&(e as i32).to_ne_bytes());
                let _ = write(&report, &msg);
                exit(1);
            }
        }
    }
    let _ = write(&report, b"R");
    drop(report);
    loop {
        pause();
    }
}

//! The forked target child: moves the harness pipes to fixed numbers, closes everything else,
//! builds its table (`table.rs`), reports it, optionally races (`race.rs`), and waits for the
//! parent to close the control pipe.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, FdFlag, OFlag};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::stat::Mode;
use nix::unistd::{close, lseek, read, write, Whence};

use super::expected::ExpectedFd;
use super::{race, table, TargetSpec, CONTROL_FD, NOFILE, REPORT_FD};
use crate::dump::FileKind;

pub(super) type CResult<T> = Result<T, String>;

/// `what: strerror` for a failed call in the child.
pub(super) fn fail(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> String {
    move |e| format!("{what}: {}", io::Error::from(e))
}

pub(super) fn open_at(p: &Path, flags: OFlag) -> CResult<OwnedFd> {
    open(p, flags, Mode::from_bits_truncate(0o644)).map_err(fail(format!("open {}", p.display())))
}

pub(super) fn seek(fd: impl AsFd, pos: i64) -> CResult<()> {
    lseek(fd, pos, Whence::SeekSet)
        .map(drop)
        .map_err(fail("lseek"))
}

pub(super) fn write_n(fd: impl AsFd, n: usize) -> CResult<()> {
    let fd = fd.as_fd();
    let buf = vec![0x5au8; n];
    match write(fd, &buf) {
        Ok(w) if w == n => Ok(()),
        Ok(w) => Err(format!(
            "write {n} bytes to fd {}: only {w}",
            fd.as_raw_fd()
        )),
        Err(e) => Err(fail(format!("write {n} bytes to fd {}", fd.as_raw_fd()))(e)),
    }
}

pub(super) fn set_cloexec(fd: impl AsFd, on: bool) -> CResult<()> {
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))
        .map(drop)
        .map_err(fail("fcntl(F_SETFD)"))
}

fn write_all(fd: impl AsFd, mut buf: &[u8]) {
    let fd = fd.as_fd();
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return,
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// A copy of `fd` at number `at` (close-on-exec), which must be free.
fn copy_to(fd: &OwnedFd, at: i32, what: &str) -> CResult<OwnedFd> {
    let moved = rustix::io::fcntl_dupfd_cloexec(fd, at).map_err(|e| format!("{what}: {e}"))?;
    if moved.as_raw_fd() != at {
        return Err(format!(
            "{what}: fd {at} is taken (inherited?), got {}",
            moved.as_raw_fd()
        ));
    }
    Ok(moved)
}

pub(super) fn main(spec: &TargetSpec, report: OwnedFd, control: OwnedFd) -> ! {
    let pipes = copy_to(&report, REPORT_FD, "report pipe")
        .and_then(|r| Ok((r, copy_to(&control, CONTROL_FD, "control pipe")?)));
    let code = match pipes {
        Ok((report_at, control_at)) => {
            // Only the copies at their fixed numbers stay.
            drop((report, control));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                body(spec, &report_at, &control_at)
            }));
            match result {
                Ok(Ok(())) => 0,
                Ok(Err(msg)) => {
                    let msg = format!("error {}\n", msg.replace('\n', " "));
                    write_all(&report_at, msg.as_bytes());
                    1
                }
                Err(_) => {
                    write_all(&report_at, b"error panic in the target child\n");
                    2
                }
            }
        }
        Err(msg) => {
            write_all(&report, format!("error {msg}\n").as_bytes());
            3
        }
    };
    // SAFETY: leave without running the parent's atexit handlers or flushing the stdio
    // buffers this child inherited from it (nix has no _exit).
    unsafe { libc::_exit(code) }
}

fn body(spec: &TargetSpec, report: &OwnedFd, control: &OwnedFd) -> CResult<()> {
    // Keep only the two harness pipes, at fixed numbers, plus stdio. The pipes' old numbers
    // (from pipe2 in the parent) were closed in main(); whatever else is open was inherited.
    // SAFETY: this forked child owns its whole fd table, and no Rust object of it refers to
    // an fd in the closed ranges (the two pipes are at REPORT_FD and CONTROL_FD, between them).
    // nix and rustix have no close_range.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, (REPORT_FD - 1) as u32, 0u32);
        libc::syscall(
            libc::SYS_close_range,
            (CONTROL_FD + 1) as u32,
            u32::MAX,
            0u32,
        );
    }
    if spec.sparse || spec.dense > 0 || spec.race {
        setrlimit(Resource::RLIMIT_NOFILE, NOFILE, NOFILE)
            .map_err(fail("setrlimit(RLIMIT_NOFILE)"))?;
    }

    let mut exp = vec![
        ExpectedFd::new(REPORT_FD, "harness report pipe", FileKind::Fifo, true),
        ExpectedFd::new(CONTROL_FD, "harness control pipe", FileKind::Fifo, true),
    ];
    // stdin: /dev/null, read-only; stdout/stderr stay what the test runner gave us.
    let _ = close(0);
    let null = open_at(Path::new("/dev/null"), OFlag::O_RDONLY)?;
    if null.as_raw_fd() != 0 {
        return Err(format!(
            "/dev/null opened as fd {}, expected 0",
            null.as_raw_fd()
        ));
    }
    exp.push(ExpectedFd::new(0, "stdin /dev/null", FileKind::CharDev, false).pos(0));
    let stdio = [
        (1, fcntl(io::stdout(), FcntlArg::F_GETFD)),
        (2, fcntl(io::stderr(), FcntlArg::F_GETFD)),
    ];
    for (fd, open) in stdio {
        if open.is_ok() {
            let mut e = ExpectedFd::new(fd, "inherited", FileKind::Other, false);
            e.kind = None;
            e.cloexec = None;
            exp.push(e);
        }
    }

    // Held until the parent says stop, then closed as the child exits.
    let _table = table::build(spec, &mut exp)?;

    let mut out = String::new();
    for e in &exp {
        out.push_str(&e.encode());
        out.push('\n');
    }
    out.push_str("ready\n");
    write_all(report, out.as_bytes());

    let stop = Arc::new(AtomicBool::new(false));
    let racer = if spec.race {
        let dir = spec.dir.clone();
        let stop = stop.clone();
        Some(std::thread::spawn(move || race::race(&dir, &stop)))
    } else {
        None
    };

    // Wait until the parent closes the control pipe.
    let mut b = [0u8; 1];
    loop {
        match read(control, &mut b) {
            Ok(0) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut out = String::new();
    if let Some(r) = racer {
        let log = r
            .join()
            .map_err(|_| "racing thread panicked".to_string())??;
        for (fd, ino) in &log.installed {
            out.push_str(&format!("ever {fd} {ino}\n"));
        }
        out.push_str(&format!("ops {}\n", log.ops));
    }
    out.push_str("done\n");
    write_all(report, out.as_bytes());
    Ok(())
}

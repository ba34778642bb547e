//! The benchmark's target: a child holding N client ends of loopback TCP connections, whose
//! peers this process holds; both ends write and nobody reads.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, SockaddrIn,
};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{self, ForkResult, Pid};

use super::{io_err, SockBenchError};
use crate::sock_truth;

/// fd the target child reports readiness on (it closes everything else above stdio).
const CHILD_REPORT_FD: RawFd = 3;

/// A child holding `n` connected TCP sockets, and their peers held here.
pub struct SockTarget {
    pid: Pid,
    reaped: bool,
    peers: Vec<OwnedFd>,
}

fn set_rcvbuf(fd: &impl AsFd, bytes: usize) -> nix::Result<()> {
    setsockopt(fd, sockopt::RcvBuf, &bytes)
}

/// Send `data` without blocking until it is all queued or the socket is full; the count.
fn send_some(fd: RawFd, data: &[u8]) -> usize {
    let mut sent = 0;
    while sent < data.len() {
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        match socket::send(fd, &data[sent..], flags) {
            Ok(n) if n > 0 => sent += n,
            _ => break,
        }
    }
    sent
}

/// Tell the parent why the child failed (step, socket index, errno) and exit.
fn child_fail(what: u8, i: u32) -> ! {
    let errno = Errno::last_raw();
    let mut m = [0u8; 9];
    m[0] = what;
    m[1..5].copy_from_slice(&i.to_ne_bytes());
    m[5..9].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: CHILD_REPORT_FD is the report pipe, open until the child exits.
    let report = unsafe { std::os::fd::BorrowedFd::borrow_raw(CHILD_REPORT_FD) };
    let _ = unistd::write(report, &m);
    child_exit()
}

fn child_exit() -> ! {
    // SAFETY: _exit ends the forked child without running the parent's atexit handlers or
    // destructors (std::process::exit would); no wrapper in nix or rustix.
    unsafe { libc::_exit(1) }
}

/// The child: async-signal-safe system calls only, on memory prepared before the fork.
fn child_main(
    report: RawFd,
    parent: Pid,
    addr: &SockaddrIn,
    n: u32,
    rcvbuf: usize,
    data: &[u8],
) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if unistd::getppid() != parent {
        child_exit();
    }
    // SAFETY: dup2 onto a fixed number that need not be open (nix's dup2 wants an OwnedFd
    // there), then close_range (no wrapper in nix): system calls on this process's own fds.
    unsafe {
        if report != CHILD_REPORT_FD && libc::dup2(report, CHILD_REPORT_FD) < 0 {
            child_exit();
        }
        libc::syscall(libc::SYS_close_range, CHILD_REPORT_FD + 1, u32::MAX, 0);
    }
    for i in 0..n {
        let s = socket::socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap_or_else(|_| child_fail(b'S', i));
        if set_rcvbuf(&s, rcvbuf).is_err() {
            child_fail(b'B', i);
        }
        if socket::connect(s.as_raw_fd(), addr).is_err() {
            child_fail(b'C', i);
        }
        send_some(s.as_raw_fd(), data);
        // Held open until the child dies (no allocation after the fork to keep it).
        let _ = s.into_raw_fd();
    }
    // SAFETY: as in child_fail.
    let report = unsafe { std::os::fd::BorrowedFd::borrow_raw(CHILD_REPORT_FD) };
    let _ = unistd::write(report, b"R");
    let _ = unistd::close(CHILD_REPORT_FD);
    loop {
        unistd::pause();
    }
}

/// Make sure RLIMIT_NOFILE allows `want` descriptors (raising the hard limit needs root).
fn raise_nofile(want: u64) -> Result<(), SockBenchError> {
    let errno = |what: String| move |e: Errno| io_err(what)(io::Error::from(e));
    let (cur, max) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(errno("getrlimit(RLIMIT_NOFILE)".into()))?;
    if cur >= want {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, max.max(want)).map_err(errno(format!(
        "raising RLIMIT_NOFILE from {cur}/{max} to {want}"
    )))
}

impl SockTarget {
    /// Fork a child that connects `n` sockets to a listener here and writes `bytes` on each;
    /// accept the `n` peers and write `bytes` on each of them too. Nobody reads.
    pub fn spawn(n: u32, bytes: u32, rcvbuf: u32) -> Result<Self, SockBenchError> {
        raise_nofile(2 * u64::from(n) + 256)?;
        let errno = |what: &str| {
            let what = what.to_string();
            move |e: Errno| io_err(what)(io::Error::from(e))
        };
        let rcvbuf = usize::try_from(rcvbuf)
            .ok()
            .filter(|&b| i32::try_from(b).is_ok())
            .ok_or_else(|| SockBenchError::Usage(format!("--rcvbuf {rcvbuf} is too large")))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(io_err("binding a listener on 127.0.0.1"))?;
        // Accepted sockets inherit the listener's receive buffer; a backlog of n lets every
        // connect complete before the first accept().
        set_rcvbuf(&listener, rcvbuf).map_err(errno("SO_RCVBUF on the listener"))?;
        let backlog = Backlog::new(n.saturating_add(16).min(i32::MAX as u32) as i32)
            .map_err(errno("listen backlog"))?;
        socket::listen(&listener, backlog).map_err(errno("listen"))?;
        let port = listener
            .local_addr()
            .map_err(io_err("the listener's address"))?
            .port();
        let addr = SockaddrIn::new(127, 0, 0, 1, port);
        let to_peer = sock_truth::pattern(1, 0, bytes as usize);
        let to_target = sock_truth::pattern(2, 0, bytes as usize);
        let (report_r, report_w) =
            unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(errno("pipe"))?;
        let parent = unistd::getpid();
        // SAFETY: the child only runs `child_main`, which makes async-signal-safe system calls
        // on memory prepared before the fork and never returns.
        let pid = match unsafe { unistd::fork() }.map_err(errno("fork"))? {
            ForkResult::Child => {
                child_main(report_w.as_raw_fd(), parent, &addr, n, rcvbuf, &to_peer)
            }
            ForkResult::Parent { child } => child,
        };
        drop(report_w);
        let mut t = SockTarget {
            pid,
            reaped: false,
            peers: Vec::with_capacity(n as usize),
        };
        let mut msg = Vec::new();
        std::fs::File::from(report_r)
            .read_to_end(&mut msg)
            .map_err(io_err("reading the target child's report"))?;
        match msg.as_slice() {
            [b'R'] => {}
            [what, rest @ ..] if rest.len() == 8 => {
                let i = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let errno = i32::from_ne_bytes([rest[4], rest[5], rest[6], rest[7]]);
                let step = match what {
                    b'S' => "socket",
                    b'B' => "SO_RCVBUF",
                    _ => "connect",
                };
                return Err(SockBenchError::Target(format!(
                    "{step} of socket {} of {n}: {}",
                    i + 1,
                    io::Error::from_raw_os_error(errno)
                )));
            }
            other => {
                let status = t.kill_and_reap();
                return Err(SockBenchError::Target(format!(
                    "exited before it was ready (sent {other:?}, {status})"
                )));
            }
        }
        for i in 0..n {
            let (s, _) = listener
                .accept()
                .map_err(io_err(format!("accept of connection {} of {n}", i + 1)))?;
            let fd: OwnedFd = s.into();
            send_some(fd.as_raw_fd(), &to_target);
            t.peers.push(fd);
        }
        Ok(t)
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The peers of the target's sockets, held here.
    pub(super) fn peers(&self) -> &[OwnedFd] {
        &self.peers
    }

    /// SIGKILL the child and reap it; how it ended, for a message.
    fn kill_and_reap(&mut self) -> String {
        if self.reaped {
            return "already reaped".into();
        }
        self.reaped = true;
        let _ = kill(self.pid, Signal::SIGKILL);
        loop {
            match waitpid(self.pid, None) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::Exited(_, code)) => return format!("exit status {code}"),
                Ok(s) => return format!("{s:?}"),
                Err(e) => return format!("waitpid: {e}"),
            }
        }
    }
}

impl Drop for SockTarget {
    fn drop(&mut self) {
        self.kill_and_reap();
        self.peers.clear();
    }
}

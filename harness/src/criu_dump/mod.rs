//! CRIU's way of dumping a process's TCP sockets, without BPF: the baseline of
//! `crib bench-socks` (`sock_bench.rs`).
//!
//! What CRIU does for an established TCP socket (`criu/sockets.c`, `criu/sk-inet.c`,
//! `criu/sk-tcp.c`, `soccr/soccr.c`), in the same order:
//!
//! 1. `collect_sockets()`: one `NETLINK_SOCK_DIAG` dump (`SOCK_DIAG_BY_FAMILY`,
//!    `inet_diag_req_v2`, all states) per family, keyed by socket inode: state, addresses,
//!    ports. CRIU dumps TCP, UDP, UDP-lite, raw, unix, packet and netlink sockets this way; here
//!    only TCP over IPv4 and IPv6.
//! 2. The target's fds: `readdir(/proc/<pid>/fd)`, each fd brought over (CRIU's parasite sends
//!    them over a unix socket; here `pidfd_getfd()`), `fstat()`, and a socket's inode looked up
//!    in the table of step 1.
//! 3. Per TCP socket, `libsoccr_pause()` + `libsoccr_save()`: `TCP_REPAIR` on; `TCP_INFO`
//!    (state, options, window scales, MSS); `SIOCOUTQ`, `SIOCOUTQNSD`, `SIOCINQ`;
//!    `TCP_REPAIR_WINDOW`; `TCP_MAXSEG` (the MSS clamp in repair mode) and, with timestamps on,
//!    `TCP_TIMESTAMP`; then per queue `TCP_REPAIR_QUEUE`, `TCP_QUEUE_SEQ` and one
//!    `recv(MSG_PEEK)` of its bytes. `TCP_REPAIR_OPTIONS` is set only on restore; the dump
//!    side reads the options through `TCP_INFO`, `TCP_MAXSEG` and `TCP_TIMESTAMP` as above.
//!    Repair mode is left with `TCP_REPAIR_OFF_NO_WP` (no window probe, the socket stays as
//!    it was; `sock_truth::Repair`).
//!
//! Left out, which makes this baseline cheaper than CRIU itself: the other families' diag
//! dumps, `/proc/<pid>/fdinfo`, the ~20 `getsockopt()`s of generic socket options CRIU dumps
//! per socket (`dump_socket_opts()`), and freezing the task.
//!
//! One deviation: CRIU peeks `SIOCOUTQ + 1` bytes of the send queue and fails when it gets
//! more than `SIOCOUTQ`; `tcp_peek_sndq()` copies whole packets, so a partly acked head packet
//! gives more. Here the buffer has room for one more packet and the last `SIOCOUTQ` bytes are
//! kept (as `sock_truth::tcp_unacked_bytes`), so such a socket is dumped, not refused.

//!
//! Modules: `diag` (step 1), `soccr` (step 3); here the dump's shape, its comparison, step 2
//! and the whole dump.

mod diag;
mod soccr;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub use diag::diag_tcp_sockets;
use soccr::save_tcp;

use crate::sock_truth::{self, TcpWindow};

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("sock_diag: {0}")]
    Diag(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CriuError {
    let what = what.into();
    move |source| CriuError::Io { what, source }
}

fn nix_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> CriuError {
    let what = what.into();
    move |e| CriuError::Io {
        what,
        source: io::Error::from(e),
    }
}

/// What both dumpers give of one TCP socket, and what `sock_bench` compares: identity,
/// addresses, state, the sequence numbers, windows, MSS and scales, and the bytes of the
/// receive queue (unread) and of the send queue (unacked + unsent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSock {
    pub fd: u32,
    pub family: u16,
    pub state: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub write_seq: u32,
    pub rcv_nxt: u32,
    pub copied_seq: u32,
    pub window: TcpWindow,
    /// `tp->mss_cache` (`TCP_INFO` tcpi_snd_mss)
    pub mss: u32,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// rcv_nxt - copied_seq bytes
    pub recv: Vec<u8>,
    /// write_seq - snd_una bytes
    pub send: Vec<u8>,
}

impl TcpSock {
    /// Every field that differs from `other`, one line each naming the fd and the field.
    pub fn differences(&self, other: &TcpSock) -> Vec<String> {
        let mut d = Vec::new();
        let fd = self.fd;
        macro_rules! cmp {
            ($($f:ident).+) => {
                if self.$($f).+ != other.$($f).+ {
                    d.push(format!(
                        "fd {fd}: {}: {:?} vs {:?}",
                        stringify!($($f).+),
                        self.$($f).+,
                        other.$($f).+
                    ));
                }
            };
        }
        cmp!(fd);
        cmp!(family);
        cmp!(state);
        cmp!(src);
        cmp!(dst);
        cmp!(snd_una);
        cmp!(snd_nxt);
        cmp!(write_seq);
        cmp!(rcv_nxt);
        cmp!(copied_seq);
        cmp!(window.snd_wl1);
        cmp!(window.snd_wnd);
        cmp!(window.max_window);
        cmp!(window.rcv_wnd);
        cmp!(window.rcv_wup);
        cmp!(mss);
        cmp!(snd_wscale);
        cmp!(rcv_wscale);
        for (what, a, b) in [
            ("receive queue", &self.recv, &other.recv),
            ("send queue", &self.send, &other.send),
        ] {
            if let Some(x) = sock_truth::first_difference(what, a, b) {
                d.push(format!("fd {fd}: {x}"));
            }
        }
        d
    }
}

/// The differences between two dumps of the same sockets (both sorted by fd), at most `max`
/// lines; empty when they are equal.
pub fn compare(a: &[TcpSock], b: &[TcpSock], max: usize) -> Vec<String> {
    let mut d = Vec::new();
    if a.len() != b.len() {
        d.push(format!("{} sockets vs {}", a.len(), b.len()));
    }
    let bf: HashMap<u32, &TcpSock> = b.iter().map(|s| (s.fd, s)).collect();
    for s in a {
        match bf.get(&s.fd) {
            Some(o) => d.extend(s.differences(o)),
            None => d.push(format!("fd {}: only in the first dump", s.fd)),
        }
        if d.len() >= max {
            break;
        }
    }
    d.truncate(max);
    d
}

/// What CRIU saves of a TCP socket beyond [`TcpSock`] (read here as CRIU does, not compared:
/// the CRIB program does not read these fields, though CO-RE would give them at no cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriuExtra {
    pub inode: u64,
    /// `TCP_MAXSEG` in repair mode: `rx_opt.mss_clamp`
    pub mss_clamp: u32,
    /// `TCP_INFO` tcpi_options
    pub options: u8,
    /// `TCP_TIMESTAMP`, with timestamps on
    pub timestamp: Option<u32>,
}

/// One socket of the sock_diag table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSock {
    pub family: u16,
    pub state: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// Time spent per step of one dump, summed over the sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// the sock_diag dumps, parsed
    pub diag: Duration,
    /// readdir of `/proc/<pid>/fd`, pidfd_open
    pub list: Duration,
    /// pidfd_getfd + fstat + close per fd
    pub getfd: Duration,
    /// TCP_REPAIR on/off
    pub repair: Duration,
    /// TCP_INFO, the three ioctls, TCP_REPAIR_WINDOW, TCP_MAXSEG, TCP_TIMESTAMP
    pub state: Duration,
    /// TCP_REPAIR_QUEUE + TCP_QUEUE_SEQ + the peek, both queues
    pub queues: Duration,
    pub sockets: u32,
    pub syscalls: u64,
}

impl fmt::Display for Phases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "sock_diag {:.2} ms, readdir {:.2} ms, pidfd_getfd+fstat+close {:.2} ms, \
             repair on/off {:.2} ms, state (TCP_INFO, ioctls, window, options) {:.2} ms, \
             queues (select, seq, peek) {:.2} ms; {} sockets, {} syscalls",
            ms(self.diag),
            ms(self.list),
            ms(self.getfd),
            ms(self.repair),
            ms(self.state),
            ms(self.queues),
            self.sockets,
            self.syscalls
        )
    }
}

/// Stopwatch for [`Phases`] that costs nothing when off.
struct Clock {
    on: bool,
    at: Option<Instant>,
}

impl Clock {
    fn new(on: bool) -> Self {
        Self {
            on,
            at: on.then(Instant::now),
        }
    }

    /// Time since the last lap (zero when off).
    fn lap(&mut self) -> Duration {
        if !self.on {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let d = self.at.map(|t| now - t).unwrap_or_default();
        self.at = Some(now);
        d
    }
}

/// pidfd_getfd(2): a copy of fd `fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: u32) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    rustix::process::pidfd_getfd(pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        .map_err(io::Error::from)
}

/// One TCP socket as CRIU dumps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriuSock {
    pub sock: TcpSock,
    pub extra: CriuExtra,
}

/// Dump every TCP socket of `pid` CRIU's way (needs CAP_NET_ADMIN for repair mode and ptrace
/// attach access for `pidfd_getfd()`); sorted by fd. With `phases`, the time of each step is
/// added to it.
pub fn dump_tcp(pid: i32, phases: Option<&mut Phases>) -> Result<Vec<CriuSock>, CriuError> {
    let mut local = Phases::default();
    let timed = phases.is_some();
    let ph = phases.unwrap_or(&mut local);
    let mut clock = Clock::new(timed);
    let diag = diag_tcp_sockets()?;
    ph.syscalls += 4 + 2; // socket, 2 x sendto, >= 2 x recv, close
    ph.diag += clock.lap();

    let pidfd = crate::truth::pidfd_open(pid).map_err(io_err(format!("pidfd_open({pid})")))?;
    let dir = format!("/proc/{pid}/fd");
    let mut fds = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(io_err(format!("readdir {dir}")))? {
        let e = e.map_err(io_err(format!("readdir {dir}")))?;
        if let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    ph.syscalls += 4;
    ph.list += clock.lap();

    let mut out = Vec::new();
    for fd in fds {
        let copy = match pidfd_getfd(&pidfd, fd) {
            Ok(c) => c,
            // closed since the readdir, or an O_PATH fd: not a socket to dump
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => continue,
            Err(e) => return Err(io_err(format!("pidfd_getfd({pid}, {fd})"))(e)),
        };
        let st = nix::sys::stat::fstat(&copy).map_err(nix_err(format!("fstat of fd {fd}")))?;
        ph.syscalls += 3;
        let tcp = (st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
            .then(|| diag.get(&st.st_ino))
            .flatten();
        let Some(d) = tcp else {
            drop(copy);
            ph.getfd += clock.lap();
            continue;
        };
        ph.getfd += clock.lap();
        out.push(save_tcp(
            copy.as_raw_fd(),
            fd,
            d,
            st.st_ino,
            &mut clock,
            ph,
        )?);
        drop(copy);
        ph.getfd += clock.lap();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::diag::{diag_request, sockaddr, SOCK_DIAG_BY_FAMILY};
    use super::*;

    fn sock(fd: u32) -> TcpSock {
        TcpSock {
            fd,
            family: libc::AF_INET as u16,
            state: 1,
            src: "127.0.0.1:1".parse().unwrap(),
            dst: "127.0.0.1:2".parse().unwrap(),
            snd_una: 1,
            snd_nxt: 2,
            write_seq: 3,
            rcv_nxt: 4,
            copied_seq: 5,
            window: TcpWindow {
                snd_wl1: 6,
                snd_wnd: 7,
                max_window: 8,
                rcv_wnd: 9,
                rcv_wup: 10,
            },
            mss: 11,
            snd_wscale: 7,
            rcv_wscale: 7,
            recv: b"abc".to_vec(),
            send: b"defg".to_vec(),
        }
    }

    #[test]
    fn compare_names_the_fd_and_field() {
        let a = vec![sock(3), sock(4)];
        assert!(compare(&a, &a.clone(), 10).is_empty());
        let mut b = a.clone();
        b[1].window.rcv_wnd = 99;
        b[1].send[2] = b'X';
        let d = compare(&a, &b, 10);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("fd 4: window.rcv_wnd: 9 vs 99"), "{d:?}");
        assert!(
            d[1].contains("send queue") && d[1].contains("byte 2"),
            "{d:?}"
        );
        let d = compare(&a, &a[..1], 10);
        assert!(d[0].contains("2 sockets vs 1"), "{d:?}");
    }

    #[test]
    fn diag_request_layout() {
        let r = diag_request(libc::AF_INET6 as u8, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]), 72);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(r[16], libc::AF_INET6 as u8);
        assert_eq!(r[17], libc::IPPROTO_TCP as u8);
        assert_eq!(&r[20..24], &[0xff; 4]);
    }

    #[test]
    fn sockaddr_decodes_both_families() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[127, 0, 0, 1]);
        let s = sockaddr(libc::AF_INET as u16, &a, 8080u16.to_be_bytes());
        assert_eq!(s, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        let six = Ipv6Addr::LOCALHOST.octets();
        let s = sockaddr(libc::AF_INET6 as u16, &six, 1u16.to_be_bytes());
        assert_eq!(s, "[::1]:1".parse::<SocketAddr>().unwrap());
    }
}

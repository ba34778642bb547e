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

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use crate::sock_truth::{self, Repair, TcpWindow, TCP_RECV_QUEUE, TCP_SEND_QUEUE};

/// Room for a partly acked head packet in the send-queue peek (see the module comment).
const SEND_PEEK_SLACK: usize = 1 << 17;

/// include/uapi/linux/sock_diag.h, inet_diag.h
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// include/uapi/linux/tcp.h
const TCP_TIMESTAMP: i32 = 24;

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
    /// readdir of /proc/<pid>/fd, pidfd_open
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

fn sockaddr(family: u16, addr: &[u8], port: [u8; 2]) -> SocketAddr {
    let port = u16::from_be_bytes(port);
    let ip = if i32::from(family) == libc::AF_INET6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&addr[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    SocketAddr::new(ip, port)
}

/// `inet_diag_req_v2` for all TCP sockets of `family`, in an `nlmsghdr`.
fn diag_request(family: u8, seq: u32) -> Vec<u8> {
    const NLMSG_HDR: usize = 16;
    const REQ: usize = 56; // inet_diag_req_v2 with its 48-byte inet_diag_sockid
    let len = (NLMSG_HDR + REQ) as u32;
    let mut m = Vec::with_capacity(len as usize);
    m.extend(len.to_ne_bytes());
    m.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend(((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // nlmsg_pid
    m.push(family); // sdiag_family
    m.push(libc::IPPROTO_TCP as u8); // sdiag_protocol
    m.push(0); // idiag_ext
    m.push(0); // pad
    m.extend(u32::MAX.to_ne_bytes()); // idiag_states: all
    m.resize(len as usize, 0); // the socket id: no filter
    m
}

/// The TCP sockets of this network namespace by inode, as `collect_sockets()` gets them:
/// one sock_diag dump per family.
pub fn diag_tcp_sockets() -> Result<HashMap<u64, DiagSock>, CriuError> {
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(nix_err("socket(NETLINK_SOCK_DIAG)"))?;
    let kernel = NetlinkAddr::new(0, 0);
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 32 << 10];
    for (seq, family) in [(1u32, libc::AF_INET), (2, libc::AF_INET6)] {
        let req = diag_request(family as u8, seq);
        sendto(nl.as_raw_fd(), &req, &kernel, MsgFlags::empty())
            .map_err(nix_err("sendto(sock_diag request)"))?;
        'dump: loop {
            let n = recv(nl.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(nix_err("recv(sock_diag)"))?;
            if n == 0 {
                return Err(CriuError::Diag("end of stream before NLMSG_DONE".into()));
            }
            let mut off = 0;
            while off + 16 <= n {
                let h = &buf[off..n];
                let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let ty = u16::from_ne_bytes([h[4], h[5]]);
                if len < 16 || len > h.len() {
                    return Err(CriuError::Diag(format!(
                        "message of {len} bytes at offset {off} of {n}"
                    )));
                }
                match i32::from(ty) {
                    libc::NLMSG_DONE => break 'dump,
                    libc::NLMSG_ERROR => {
                        let errno = h
                            .get(16..20)
                            .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
                            .unwrap_or(0);
                        return Err(CriuError::Io {
                            what: format!("sock_diag dump of family {family}"),
                            source: io::Error::from_raw_os_error(-errno),
                        });
                    }
                    _ => {
                        // inet_diag_msg: family, state, timer, retrans, then the socket id
                        // (sport, dport, src[16], dst[16], if, cookie[2]), expires, rqueue,
                        // wqueue, uid, inode.
                        let m = &h[16..len];
                        if m.len() < 72 {
                            return Err(CriuError::Diag(format!(
                                "inet_diag_msg of {} bytes",
                                m.len()
                            )));
                        }
                        let fam = u16::from(m[0]);
                        let inode = u32::from_ne_bytes([m[68], m[69], m[70], m[71]]);
                        out.insert(
                            u64::from(inode),
                            DiagSock {
                                family: fam,
                                state: m[1],
                                src: sockaddr(fam, &m[8..24], [m[4], m[5]]),
                                dst: sockaddr(fam, &m[24..40], [m[6], m[7]]),
                            },
                        );
                    }
                }
                // NLMSG_ALIGN
                off += (len + 3) & !3;
            }
        }
    }
    Ok(out)
}

/// pidfd_getfd(2): a copy of fd `fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall, no pointers.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// One TCP socket as CRIU dumps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriuSock {
    pub sock: TcpSock,
    pub extra: CriuExtra,
}

/// `libsoccr_pause()` + `libsoccr_save()` on `fd` (a copy of the target's fd `tfd`).
fn save_tcp(
    fd: RawFd,
    tfd: u32,
    d: &DiagSock,
    inode: u64,
    clock: &mut Clock,
    ph: &mut Phases,
) -> Result<CriuSock, CriuError> {
    let what = |s: &str| format!("fd {tfd}: {s}");
    clock.lap();
    let repair = Repair::enter(fd).map_err(io_err(what("TCP_REPAIR on")))?;
    ph.repair += clock.lap();
    let info = sock_truth::tcp_info_head(fd).map_err(io_err(what("TCP_INFO")))?;
    let outq = sock_truth::outq(fd).map_err(io_err(what("SIOCOUTQ")))?;
    let outq_nsd = sock_truth::outq_nsd(fd).map_err(io_err(what("SIOCOUTQNSD")))?;
    let inq = sock_truth::inq(fd).map_err(io_err(what("SIOCINQ")))?;
    let window = repair.window().map_err(io_err(what("TCP_REPAIR_WINDOW")))?;
    let mss_clamp = sock_truth::getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, "")
        .map_err(io_err(what("TCP_MAXSEG")))? as u32;
    let timestamp = if info.options & sock_truth::TCPI_OPT_TIMESTAMPS != 0 {
        ph.syscalls += 1;
        Some(
            sock_truth::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP, "")
                .map_err(io_err(what("TCP_TIMESTAMP")))? as u32,
        )
    } else {
        None
    };
    ph.state += clock.lap();
    let rcv_nxt = repair
        .queue_seq(TCP_RECV_QUEUE)
        .map_err(io_err(what("TCP_QUEUE_SEQ (receive)")))?;
    // CRIU peeks one byte more than SIOCINQ, to see that there are no more.
    let recv = if inq > 0 {
        repair
            .peek(inq as usize + 1)
            .map_err(io_err(what("peek of the receive queue")))?
    } else {
        Vec::new()
    };
    if recv.len() != inq as usize {
        return Err(CriuError::Diag(format!(
            "fd {tfd}: peeked {} bytes of the receive queue, SIOCINQ says {inq}",
            recv.len()
        )));
    }
    let write_seq = repair
        .queue_seq(TCP_SEND_QUEUE)
        .map_err(io_err(what("TCP_QUEUE_SEQ (send)")))?;
    // As CRIU: SIOCOUTQ + 1 bytes. Only a partly acked head packet gives more; then once
    // more with room for it.
    let mut send = Vec::new();
    if outq > 0 {
        send = repair
            .peek(outq as usize + 1)
            .map_err(io_err(what("peek of the send queue")))?;
        if send.len() > outq as usize {
            ph.syscalls += 1;
            send = repair
                .peek(outq as usize + SEND_PEEK_SLACK)
                .map_err(io_err(what("peek of the send queue")))?;
        }
    }
    if send.len() < outq as usize {
        return Err(CriuError::Diag(format!(
            "fd {tfd}: peeked {} bytes of the send queue, SIOCOUTQ says {outq}",
            send.len()
        )));
    }
    send.drain(..send.len() - outq as usize);
    ph.queues += clock.lap();
    drop(repair);
    ph.repair += clock.lap();
    // on, TCP_INFO, 3 ioctls, window, maxseg, 2 x (select, seq), the peeks, and leaving
    // (select no queue, off)
    ph.syscalls += 1 + 1 + 3 + 1 + 1 + 4 + u64::from(inq > 0) + u64::from(outq > 0) + 2;
    ph.sockets += 1;
    Ok(CriuSock {
        sock: TcpSock {
            fd: tfd,
            family: d.family,
            state: d.state,
            src: d.src,
            dst: d.dst,
            snd_una: write_seq.wrapping_sub(outq),
            snd_nxt: write_seq.wrapping_sub(outq_nsd),
            write_seq,
            rcv_nxt,
            copied_seq: rcv_nxt.wrapping_sub(inq),
            window,
            mss: info.snd_mss,
            snd_wscale: info.snd_wscale,
            rcv_wscale: info.rcv_wscale,
            recv,
            send,
        },
        extra: CriuExtra {
            inode,
            mss_clamp,
            options: info.options,
            timestamp,
        },
    })
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

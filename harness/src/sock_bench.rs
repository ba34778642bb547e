//! `crib bench-socks`: dumping N TCP sockets with data queued both ways, CRIB against CRIU's
//! method (issue 7, item 11).
//!
//! A target child holds N client ends of loopback TCP connections; this process holds the N
//! peers. Both ends have a small receive buffer (`--rcvbuf`) and each writes `--bytes` of a
//! known pattern to the other without anyone reading: every target socket then has unread
//! bytes in its receive queue and bytes its peer's closed window holds back in its send queue.
//!
//! - **CRIB**: one `BPF_PROG_RUN` of `selftests/progs/dump_socks.bpf.c` for the target pid
//!   (`sock_dump::SockDumper`: run, drain the ring buffer, decode and check the records), the
//!   TCP sockets turned into [`TcpSock`]. Loading the program is timed apart, once.
//! - **CRIU's method** (`criu_dump.rs`, no BPF): sock_diag, `pidfd_getfd()` per fd, repair
//!   mode, `TCP_QUEUE_SEQ` and a peek per queue, as CRIU's libsoccr.
//!
//! Before anything is timed, both dumps must give the same [`TcpSock`]s (fd, family, state,
//! addresses, the five sequence numbers, the repair window, MSS, window scales, and the bytes
//! of both queues), and every target socket must have bytes queued both ways. Then the rounds
//! run both methods back to back, alternating which goes first; every timed run's result is
//! compared (outside the timed part) with the checked one, so the numbers are those of dumps
//! of the same state. Reported per size: min and median of each, the ratio of the medians and
//! the median of the per-round ratios, and one more run of each split into its parts.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::criu_dump::{self, CriuError, Phases, TcpSock};
use crate::dump::{DumpError, RecordCount};
use crate::sock_dump::{self, Queue, SockDecoder, SockDump, SockDumper};
use crate::sock_truth::{self, TcpWindow};

pub const DEFAULT_SOCKETS: &[u32] = &[100, 1000];
pub const DEFAULT_ROUNDS: u32 = 5;
/// Bytes each end writes to the other.
pub const DEFAULT_BYTES: u32 = 16384;
/// SO_RCVBUF of both ends (the kernel doubles it).
pub const DEFAULT_RCVBUF: u32 = 4096;
/// Upper bound for one size: the target's fds, and the dump's records in the 64 MiB ring
/// buffer at the default sizes.
pub const MAX_SOCKETS: u32 = 10_000;
/// How often the pre-timing equality check is tried while the sockets settle.
const EQUAL_ATTEMPTS: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum SockBenchError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("target: {0}")]
    Target(String),
    #[error("CRIB dump: {0}")]
    Crib(#[from] DumpError),
    #[error("CRIU-method dump: {0}")]
    Criu(#[from] CriuError),
    #[error("{0}")]
    Check(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SockBenchError {
    let what = what.into();
    move |source| SockBenchError::Io { what, source }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub sockets: Vec<u32>,
    pub rounds: u32,
    pub bytes: u32,
    pub rcvbuf: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sockets: DEFAULT_SOCKETS.to_vec(),
            rounds: DEFAULT_ROUNDS,
            bytes: DEFAULT_BYTES,
            rcvbuf: DEFAULT_RCVBUF,
        }
    }
}

impl Options {
    pub fn check(&self) -> Result<(), SockBenchError> {
        let bad = |m: String| Err(SockBenchError::Usage(m));
        if self.sockets.is_empty() || self.sockets.iter().any(|&n| n == 0 || n > MAX_SOCKETS) {
            return bad(format!(
                "--sockets: each size must be 1..={MAX_SOCKETS}, got {:?}",
                self.sockets
            ));
        }
        if self.rounds == 0 {
            return bad("--rounds must be at least 1".into());
        }
        if self.bytes == 0 || self.bytes > 1 << 20 {
            return bad(format!("--bytes must be 1..=1048576, got {}", self.bytes));
        }
        if self.rcvbuf == 0 {
            return bad("--rcvbuf must be positive".into());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The target

/// fd the target child reports readiness on (it closes everything else above stdio).
const CHILD_REPORT_FD: RawFd = 3;

/// A child holding `n` connected TCP sockets, and their peers held here.
pub struct SockTarget {
    pid: i32,
    reaped: bool,
    peers: Vec<OwnedFd>,
}

fn setsockopt_int(fd: RawFd, level: i32, opt: i32, val: i32) -> i32 {
    // SAFETY: val outlives the call; the size is that of an int.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    }
}

/// Send `data` without blocking until it is all queued or the socket is full; the count.
fn send_some(fd: RawFd, data: &[u8]) -> usize {
    let mut sent = 0;
    while sent < data.len() {
        // SAFETY: the tail of data is valid for reads of its length.
        let n = unsafe {
            libc::send(
                fd,
                data[sent..].as_ptr().cast(),
                data.len() - sent,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n <= 0 {
            break;
        }
        sent += n as usize;
    }
    sent
}

/// The child: async-signal-safe system calls only, on memory prepared before the fork.
fn child_main(
    report: RawFd,
    parent: i32,
    addr: &libc::sockaddr_in,
    n: u32,
    rcvbuf: i32,
    data: &[u8],
) -> ! {
    // SAFETY: system calls on this process's own fds and memory prepared before the fork;
    // the child never returns into the harness.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        if report != CHILD_REPORT_FD && libc::dup2(report, CHILD_REPORT_FD) < 0 {
            libc::_exit(1);
        }
        libc::syscall(libc::SYS_close_range, CHILD_REPORT_FD + 1, u32::MAX, 0);
        let fail = |what: u8, i: u32| -> ! {
            let errno = *libc::__errno_location();
            let mut m = [0u8; 9];
            m[0] = what;
            m[1..5].copy_from_slice(&i.to_ne_bytes());
            m[5..9].copy_from_slice(&errno.to_ne_bytes());
            libc::write(CHILD_REPORT_FD, m.as_ptr().cast(), m.len());
            libc::_exit(1)
        };
        for i in 0..n {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            if s < 0 {
                fail(b'S', i);
            }
            if setsockopt_int(s, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf) != 0 {
                fail(b'B', i);
            }
            if libc::connect(
                s,
                (addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) != 0
            {
                fail(b'C', i);
            }
            send_some(s, data);
        }
        libc::write(CHILD_REPORT_FD, b"R".as_ptr().cast(), 1);
        libc::close(CHILD_REPORT_FD);
        loop {
            libc::pause();
        }
    }
}

/// Make sure RLIMIT_NOFILE allows `want` descriptors (raising the hard limit needs root).
fn raise_nofile(want: u64) -> Result<(), SockBenchError> {
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
            "raising RLIMIT_NOFILE from {}/{} to {want}",
            lim.rlim_cur, lim.rlim_max
        ))(io::Error::last_os_error()));
    }
    Ok(())
}

impl SockTarget {
    /// Fork a child that connects `n` sockets to a listener here and writes `bytes` on each;
    /// accept the `n` peers and write `bytes` on each of them too. Nobody reads.
    pub fn spawn(n: u32, bytes: u32, rcvbuf: u32) -> Result<Self, SockBenchError> {
        raise_nofile(2 * u64::from(n) + 256)?;
        let rcvbuf = i32::try_from(rcvbuf)
            .map_err(|_| SockBenchError::Usage(format!("--rcvbuf {rcvbuf} is too large")))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(io_err("binding a listener on 127.0.0.1"))?;
        let lfd = listener.as_raw_fd();
        // Accepted sockets inherit the listener's receive buffer; a backlog of n lets every
        // connect complete before the first accept().
        if setsockopt_int(lfd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf) != 0 {
            return Err(io_err("SO_RCVBUF on the listener")(
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: listen on a bound socket we own.
        if unsafe { libc::listen(lfd, n as i32 + 16) } != 0 {
            return Err(io_err("listen")(io::Error::last_os_error()));
        }
        let port = listener
            .local_addr()
            .map_err(io_err("the listener's address"))?
            .port();
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let to_peer = sock_truth::pattern(1, 0, bytes as usize);
        let to_target = sock_truth::pattern(2, 0, bytes as usize);
        let (report_r, report_w) = pipe().map_err(io_err("pipe"))?;
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child only runs `child_main`, which makes async-signal-safe system calls
        // on memory prepared before the fork and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io_err("fork")(io::Error::last_os_error()));
        }
        if pid == 0 {
            child_main(report_w.as_raw_fd(), parent, &addr, n, rcvbuf, &to_peer);
        }
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
                    "exited before it was ready (sent {other:?}, wait status {status:#x})"
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
        self.pid
    }

    /// SIGKILL the child and reap it; the wait status (or -1 if it was gone).
    fn kill_and_reap(&mut self) -> i32 {
        if self.reaped {
            return -1;
        }
        self.reaped = true;
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut status = 0;
            loop {
                let rc = libc::waitpid(self.pid, &mut status, 0);
                if rc == self.pid {
                    return status;
                }
                if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return -1;
                }
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

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

// ---------------------------------------------------------------------------------------------
// The two dumps, in one shape

/// A CRIB socket dump as a [`TcpSock`], its queues' bytes moved, not copied (but for a send
/// queue split between the retransmit and write queues); None for a socket that is not TCP
/// over IP.
pub fn tcp_sock_of(mut d: SockDump) -> Result<Option<TcpSock>, SockBenchError> {
    let r = &d.sock;
    let inet = matches!(i32::from(r.family), libc::AF_INET | libc::AF_INET6);
    if !inet || i32::from(r.protocol) != libc::IPPROTO_TCP {
        return Ok(None);
    }
    let bad = |m: String| SockBenchError::Check(format!("CRIB dump, fd {}: {m}", r.fd));
    if r.queue_err != 0 {
        return Err(bad(format!(
            "queues refused: {}",
            sock_dump::errno_str(-r.queue_err)
        )));
    }
    if r.nr_of(Queue::TcpOfo) != 0 {
        return Err(bad(format!(
            "{} out-of-order packets, which CRIU's method cannot see",
            r.nr_of(Queue::TcpOfo)
        )));
    }
    let addr = |a: Option<(std::net::IpAddr, u16)>, which: &str| {
        a.map(|(ip, port)| std::net::SocketAddr::new(ip, port))
            .ok_or_else(|| bad(format!("no {which} address")))
    };
    let src = addr(r.src, "local")?;
    let dst = addr(r.dst, "peer")?;
    let recv = d.take_queue_bytes(Queue::TcpRecv);
    let mut send = d.take_queue_bytes(Queue::TcpRtx);
    if send.is_empty() {
        send = d.take_queue_bytes(Queue::TcpWrite);
    } else {
        send.extend_from_slice(d.queue_data(Queue::TcpWrite));
    }
    let r = &d.sock;
    Ok(Some(TcpSock {
        fd: r.fd,
        family: r.family,
        state: r.state,
        src,
        dst,
        snd_una: r.snd_una,
        snd_nxt: r.snd_nxt,
        write_seq: r.write_seq,
        rcv_nxt: r.rcv_nxt,
        copied_seq: r.copied_seq,
        window: TcpWindow {
            snd_wl1: r.snd_wl1,
            snd_wnd: r.snd_wnd,
            max_window: r.max_window,
            rcv_wnd: r.rcv_wnd,
            rcv_wup: r.rcv_wup,
        },
        mss: r.mss_cache,
        snd_wscale: r.snd_wscale,
        rcv_wscale: r.rcv_wscale,
        recv,
        send,
    }))
}

fn tcp_socks(dumps: Vec<SockDump>) -> Result<Vec<TcpSock>, SockBenchError> {
    let mut v = Vec::with_capacity(dumps.len());
    for d in dumps {
        if let Some(s) = tcp_sock_of(d)? {
            v.push(s);
        }
    }
    v.sort_by_key(|s| s.fd);
    Ok(v)
}

/// CRIB: one program run, decoded, as [`TcpSock`]s.
pub fn crib_dump(d: &SockDumper, pid: i32) -> Result<Vec<TcpSock>, SockBenchError> {
    tcp_socks(d.dump(pid, None)?)
}

/// CRIU's method, as [`TcpSock`]s.
pub fn criu_method_dump(pid: i32) -> Result<Vec<TcpSock>, SockBenchError> {
    Ok(criu_dump::dump_tcp(pid, None)?
        .into_iter()
        .map(|c| c.sock)
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Two extra, untimed-for-the-table runs of CRIB split into their parts.
#[derive(Debug, Clone, Default)]
pub struct CribParts {
    /// `BPF_PROG_RUN` + draining the ring buffer, the records only counted
    pub run_drain: Duration,
    /// the program's own run time in that run, from the kernel's BPF stats, if they could be
    /// read
    pub prog: Option<Duration>,
    /// `BPF_PROG_RUN` + draining the ring buffer into the decoder, which checks the records
    /// in place (`SockDumper::dump` without the conversion)
    pub run_decode: Duration,
    /// turning the dumps into [`TcpSock`]s
    pub convert: Duration,
    pub records: usize,
    pub record_bytes: usize,
}

/// What was dumped and measured for one number of sockets.
#[derive(Debug, Clone, Default)]
pub struct SizeReport {
    pub sockets: u32,
    /// sockets whose receive and send queues both hold bytes (must be all)
    pub queued_both_ways: u32,
    pub recv_bytes: u64,
    pub send_bytes: u64,
    /// packets per queue in the CRIB dump: receive, retransmit, write
    pub packets: [u64; 3],
    /// attempts until both dumps agreed (the sockets settle after the writes)
    pub attempts: u32,
    pub crib_us: Vec<f64>,
    pub criu_us: Vec<f64>,
    pub crib_parts: CribParts,
    pub criu_phases: Phases,
}

impl SizeReport {
    pub fn crib_median(&self) -> f64 {
        median(&self.crib_us)
    }
    pub fn criu_median(&self) -> f64 {
        median(&self.criu_us)
    }
    /// CRIU-method time / CRIB time, median over rounds of each round's pair.
    pub fn paired_ratio(&self) -> f64 {
        let r: Vec<f64> = self
            .criu_us
            .iter()
            .zip(&self.crib_us)
            .map(|(c, b)| c / b)
            .collect();
        median(&r)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub kernel: String,
    pub flavor: Option<String>,
    pub cpus: usize,
    pub rounds: u32,
    pub bytes: u32,
    pub rcvbuf: u32,
    pub load: Duration,
    pub sizes: Vec<SizeReport>,
}

/// The machine-readable line [`Report::render`] prints per size (and the test parses).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine {
    pub sockets: u32,
    pub equal: bool,
    pub rounds: u32,
    pub crib_min_us: f64,
    pub crib_median_us: f64,
    pub criu_min_us: f64,
    pub criu_median_us: f64,
    pub ratio_median: f64,
    pub ratio_paired: f64,
}

pub const RESULT_PREFIX: &str = "bench-socks result:";

impl ResultLine {
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(RESULT_PREFIX)?;
        let kv: std::collections::HashMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let f = |k: &str| kv.get(k)?.parse::<f64>().ok();
        Some(Self {
            sockets: kv.get("sockets")?.parse().ok()?,
            equal: *kv.get("equal")? == "yes",
            rounds: kv.get("rounds")?.parse().ok()?,
            crib_min_us: f("crib_min_us")?,
            crib_median_us: f("crib_median_us")?,
            criu_min_us: f("criu_min_us")?,
            criu_median_us: f("criu_median_us")?,
            ratio_median: f("ratio_median")?,
            ratio_paired: f("ratio_paired")?,
        })
    }
}

impl Report {
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "bench-socks: {} kernel {}, {} CPUs; {} bytes written each way per connection, \
             SO_RCVBUF {} on both ends; {} rounds",
            self.flavor.as_deref().unwrap_or("?"),
            self.kernel,
            self.cpus,
            self.bytes,
            self.rcvbuf,
            self.rounds
        );
        let _ = writeln!(
            o,
            "  loading dump_socks.bpf.o (once, not in the times below): {:.1} ms",
            self.load.as_secs_f64() * 1e3
        );
        for s in &self.sizes {
            let ms = |v: f64| v / 1e3;
            let _ = writeln!(
                o,
                "\n  {} sockets: {} with bytes queued both ways; {} receive-queue bytes in {} \
                 packets, {} send-queue bytes in {} retransmit + {} write packets; both dumps \
                 equal (attempt {})",
                s.sockets,
                s.queued_both_ways,
                s.recv_bytes,
                s.packets[0],
                s.send_bytes,
                s.packets[1],
                s.packets[2],
                s.attempts
            );
            let _ = writeln!(
                o,
                "    {:<44} {:>10} {:>10}",
                "per dump of all sockets, ms", "min", "median"
            );
            let _ = writeln!(
                o,
                "    {:<44} {:>10.2} {:>10.2}",
                "CRIB (BPF_PROG_RUN + drain + decode)",
                ms(min(&s.crib_us)),
                ms(s.crib_median())
            );
            let _ = writeln!(
                o,
                "    {:<44} {:>10.2} {:>10.2}",
                "CRIU's method (diag + getfd + repair + peek)",
                ms(min(&s.criu_us)),
                ms(s.criu_median())
            );
            let _ = writeln!(
                o,
                "    CRIU's method / CRIB: {:.1}x (medians), {:.1}x (minimums), {:.1}x (median \
                 of the per-round ratios)",
                s.criu_median() / s.crib_median(),
                min(&s.criu_us) / min(&s.crib_us),
                s.paired_ratio()
            );
            let p = &s.crib_parts;
            let _ = writeln!(
                o,
                "    two more CRIB runs in parts: BPF_PROG_RUN + drain (records counted) {:.2} ms \
                 (program alone: {}); BPF_PROG_RUN + drain + decode in place {:.2} ms, to \
                 TcpSock {:.2} ms; {} records, {:.1} MiB",
                ms(us(p.run_drain)),
                p.prog
                    .map(|d| format!("{:.2} ms", ms(us(d))))
                    .unwrap_or_else(|| "n/a".into()),
                ms(us(p.run_decode)),
                ms(us(p.convert)),
                p.records,
                p.record_bytes as f64 / f64::from(1 << 20)
            );
            let _ = writeln!(
                o,
                "    one more CRIU-method run in parts: {}",
                s.criu_phases
            );
            let _ = writeln!(
                o,
                "  {RESULT_PREFIX} sockets={} equal=yes rounds={} crib_min_us={:.0} \
                 crib_median_us={:.0} criu_min_us={:.0} criu_median_us={:.0} \
                 ratio_median={:.2} ratio_paired={:.2}",
                s.sockets,
                s.crib_us.len(),
                min(&s.crib_us),
                s.crib_median(),
                min(&s.criu_us),
                s.criu_median(),
                s.criu_median() / s.crib_median(),
                s.paired_ratio()
            );
        }
        o
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// The program's total run time so far from the kernel's BPF stats (`bpf_prog_info.run_time_ns`,
/// counted while `BPF_ENABLE_STATS` is on), found by name.
fn prog_run_time_ns(name: &str) -> Option<u64> {
    let mut id = 0u32;
    let mut best: Option<(u32, u64)> = None;
    loop {
        let mut next = 0u32;
        // SAFETY: next is valid for writes.
        if unsafe { libbpf_sys::bpf_prog_get_next_id(id, &mut next) } != 0 {
            break;
        }
        id = next;
        // SAFETY: plain call with an id.
        let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
        if fd < 0 {
            continue;
        }
        // SAFETY: the kernel returned a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut info = libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        // SAFETY: info and len are valid for writes of their sizes.
        let rc =
            unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
        if rc != 0 {
            continue;
        }
        let n: Vec<u8> = info
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        if n == name.as_bytes() && best.is_none_or(|(b, _)| id > b) {
            best = Some((id, info.run_time_ns));
        }
    }
    best.map(|(_, ns)| ns)
}

/// One CRIB run in parts (and the program's own time, if BPF stats can be switched on).
fn crib_parts(d: &SockDumper, pid: i32) -> Result<CribParts, SockBenchError> {
    // SAFETY: plain call; the stats stay on while the returned fd is open.
    let stats = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    // SAFETY: a new fd we own, when non-negative.
    let stats = (stats >= 0).then(|| unsafe { OwnedFd::from_raw_fd(stats) });
    let before = stats.as_ref().and(prog_run_time_ns(sock_dump::PROG_NAME));
    let t = Instant::now();
    let (retval, count) = d.run_into(pid, None, RecordCount::default())?;
    let run_drain = t.elapsed();
    let after = stats.as_ref().and(prog_run_time_ns(sock_dump::PROG_NAME));
    drop(stats);
    if retval != 0 {
        return Err(SockBenchError::Check(format!(
            "the counting run failed: {}",
            sock_dump::errno_str(-retval)
        )));
    }
    let t = Instant::now();
    let (retval, dec) = d.run_into(pid, None, SockDecoder::new(false))?;
    let socks = dec.judge(pid, retval)?;
    let run_decode = t.elapsed();
    let t = Instant::now();
    let v = tcp_socks(socks)?;
    let convert = t.elapsed();
    drop(v);
    Ok(CribParts {
        run_drain,
        prog: match (before, after) {
            (Some(b), Some(a)) if a > b => Some(Duration::from_nanos(a - b)),
            _ => None,
        },
        run_decode,
        convert,
        records: count.records,
        record_bytes: count.bytes,
    })
}

/// Dump with both methods until they agree (the sockets settle after the writes): the
/// checked dump, and how many attempts it took.
fn equal_dumps(d: &SockDumper, pid: i32) -> Result<(Vec<TcpSock>, u32), SockBenchError> {
    let mut last = Vec::new();
    for attempt in 1..=EQUAL_ATTEMPTS {
        let a = crib_dump(d, pid)?;
        let c = criu_method_dump(pid)?;
        let b = crib_dump(d, pid)?;
        let moved = criu_dump::compare(&a, &b, 5);
        let diff = criu_dump::compare(&a, &c, 10);
        if moved.is_empty() && diff.is_empty() {
            return Ok((a, attempt));
        }
        last = if moved.is_empty() {
            diff.iter()
                .map(|l| format!("CRIB vs CRIU's method: {l}"))
                .collect()
        } else {
            moved
                .iter()
                .map(|l| format!("the sockets moved between two CRIB dumps: {l}"))
                .collect()
        };
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(SockBenchError::Check(format!(
        "the two dumps never agreed in {EQUAL_ATTEMPTS} attempts; the last differences:\n  {}",
        last.join("\n  ")
    )))
}

fn one_size(
    d: &SockDumper,
    opts: &Options,
    n: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<SizeReport, SockBenchError> {
    progress(&format!("{n} sockets: spawning the target and its peers"));
    let target = SockTarget::spawn(n, opts.bytes, opts.rcvbuf)?;
    let pid = target.pid();
    progress(&format!(
        "{n} sockets: target pid {pid}; checking that both methods give the same dump"
    ));
    let (reference, attempts) = equal_dumps(d, pid)?;
    if reference.len() != n as usize {
        return Err(SockBenchError::Check(format!(
            "the target holds {} TCP sockets, expected {n}",
            reference.len()
        )));
    }
    let both = reference
        .iter()
        .filter(|s| !s.recv.is_empty() && !s.send.is_empty())
        .count() as u32;
    if both != n {
        let s = reference
            .iter()
            .find(|s| s.recv.is_empty() || s.send.is_empty());
        return Err(SockBenchError::Check(format!(
            "only {both} of {n} sockets have bytes queued both ways (e.g. fd {:?}: {} bytes to \
             read, {} to send); try a smaller --rcvbuf or more --bytes",
            s.map(|s| s.fd),
            s.map_or(0, |s| s.recv.len()),
            s.map_or(0, |s| s.send.len())
        )));
    }
    let full = d.dump(pid, None)?;
    let mut packets = [0u64; 3];
    for s in &full {
        packets[0] += u64::from(s.sock.nr_of(Queue::TcpRecv));
        packets[1] += u64::from(s.sock.nr_of(Queue::TcpRtx));
        packets[2] += u64::from(s.sock.nr_of(Queue::TcpWrite));
    }
    drop(full);
    let mut rep = SizeReport {
        sockets: n,
        queued_both_ways: both,
        recv_bytes: reference.iter().map(|s| s.recv.len() as u64).sum(),
        send_bytes: reference.iter().map(|s| s.send.len() as u64).sum(),
        packets,
        attempts,
        ..Default::default()
    };
    progress(&format!(
        "{n} sockets: equal after {attempts} attempt(s); {} rounds",
        opts.rounds
    ));
    for round in 0..opts.rounds {
        let crib_first = round % 2 == 0;
        for which in [crib_first, !crib_first] {
            let t = Instant::now();
            let got = if which {
                crib_dump(d, pid)?
            } else {
                criu_method_dump(pid)?
            };
            let e = us(t.elapsed());
            let diff = criu_dump::compare(&reference, &got, 5);
            if !diff.is_empty() {
                return Err(SockBenchError::Check(format!(
                    "round {round}: the {} dump differs from the checked one (the sockets \
                     moved):\n  {}",
                    if which { "CRIB" } else { "CRIU-method" },
                    diff.join("\n  ")
                )));
            }
            if which {
                rep.crib_us.push(e);
            } else {
                rep.criu_us.push(e);
            }
        }
    }
    rep.crib_parts = crib_parts(d, pid)?;
    let mut phases = Phases::default();
    criu_dump::dump_tcp(pid, Some(&mut phases))?;
    rep.criu_phases = phases;
    drop(target);
    Ok(rep)
}

/// Run the benchmark (in a guest, as root).
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, SockBenchError> {
    opts.check()?;
    let t = Instant::now();
    let d = SockDumper::load()?;
    let load = t.elapsed();
    let mut rep = Report {
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        flavor: crate::settings::get().flavor.clone(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        rounds: opts.rounds,
        bytes: opts.bytes,
        rcvbuf: opts.rcvbuf,
        load,
        sizes: Vec::new(),
    };
    for &n in &opts.sockets {
        rep.sizes.push(one_size(&d, opts, n, progress)?);
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_check() {
        assert!(Options::default().check().is_ok());
        for bad in [
            Options {
                sockets: vec![],
                ..Options::default()
            },
            Options {
                sockets: vec![0],
                ..Options::default()
            },
            Options {
                rounds: 0,
                ..Options::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn result_line_round_trips() {
        let s = SizeReport {
            sockets: 20,
            crib_us: vec![100.0, 300.0],
            criu_us: vec![1000.0, 1500.0],
            ..Default::default()
        };
        let r = Report {
            sizes: vec![s],
            ..Default::default()
        };
        let text = r.render();
        let line = text
            .lines()
            .find_map(|l| ResultLine::parse(l.trim()))
            .unwrap_or_else(|| panic!("no result line in:\n{text}"));
        assert_eq!(line.sockets, 20);
        assert!(line.equal);
        assert_eq!(line.rounds, 2);
        assert_eq!(line.crib_min_us, 100.0);
        assert_eq!(line.crib_median_us, 200.0);
        assert_eq!(line.criu_median_us, 1250.0);
        assert!((line.ratio_median - 6.25).abs() < 0.01);
        // per round: 10x and 5x
        assert!((line.ratio_paired - 7.5).abs() < 0.01);
    }
}

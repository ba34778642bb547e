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

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dump::{FileKind, SockInfo};

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
    #[error("target child exited with status {0:#x}")]
    Exit(i32),
    #[error("target child did not report ready within {0:?}")]
    Timeout(Duration),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> TargetError {
    let what = what.into();
    move |source| TargetError::Io { what, source }
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

/// One fd the target made, and what a dump must say about it. `None` fields are not known
/// in advance (inherited stdout/stderr, for example).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFd {
    pub fd: u32,
    pub what: String,
    pub kind: Option<FileKind>,
    pub cloexec: Option<bool>,
    pub sock: Option<SockInfo>,
    pub anon_name: Option<String>,
    pub pos: Option<u64>,
    /// Another fd of the same open file (dup), which must show the same offset and inode.
    pub same_file_as: Option<u32>,
}

impl ExpectedFd {
    fn new(fd: RawFd, what: &str, kind: FileKind, cloexec: bool) -> Self {
        Self {
            fd: fd as u32,
            what: what.into(),
            kind: Some(kind),
            cloexec: Some(cloexec),
            sock: None,
            anon_name: None,
            pos: None,
            same_file_as: None,
        }
    }
    fn sock(mut self, family: i32, ty: i32, proto: i32) -> Self {
        self.sock = Some(SockInfo {
            family: family as u16,
            sock_type: ty as u16,
            protocol: proto as u16,
        });
        self
    }
    fn anon(mut self, name: &str) -> Self {
        self.anon_name = Some(name.into());
        self
    }
    fn pos(mut self, pos: u64) -> Self {
        self.pos = Some(pos);
        self
    }
    fn dup_of(mut self, fd: RawFd) -> Self {
        self.same_file_as = Some(fd as u32);
        self
    }

    fn encode(&self) -> String {
        let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
        let sock = self
            .sock
            .map(|s| format!("{},{},{}", s.family, s.sock_type, s.protocol));
        format!(
            "fd {} {} {} {} {} {} {} {}",
            self.fd,
            opt(self.kind.map(|k| k.as_str().to_string())),
            opt(self.cloexec.map(|c| u8::from(c).to_string())),
            opt(sock),
            opt(self.anon_name.clone()),
            opt(self.pos.map(|p| p.to_string())),
            opt(self.same_file_as.map(|p| p.to_string())),
            self.what
        )
    }

    fn decode(line: &str) -> Option<Self> {
        let mut it = line.strip_prefix("fd ")?.splitn(8, ' ');
        let fd = it.next()?.parse().ok()?;
        let field = |s: Option<&str>| s.filter(|s| *s != "-").map(str::to_string);
        let kind = match field(it.next()) {
            Some(k) => Some(kind_from_str(&k)?),
            None => None,
        };
        let cloexec = field(it.next()).map(|c| c == "1");
        let sock = match field(it.next()) {
            Some(s) => {
                let v: Vec<u16> = s.split(',').filter_map(|x| x.parse().ok()).collect();
                let [family, sock_type, protocol] = v[..] else {
                    return None;
                };
                Some(SockInfo {
                    family,
                    sock_type,
                    protocol,
                })
            }
            None => None,
        };
        let anon_name = field(it.next());
        let pos = match field(it.next()) {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        let same_file_as = match field(it.next()) {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        let what = it.next().unwrap_or("").to_string();
        Some(Self {
            fd,
            what,
            kind,
            cloexec,
            sock,
            anon_name,
            pos,
            same_file_as,
        })
    }
}

fn kind_from_str(s: &str) -> Option<FileKind> {
    [
        FileKind::Other,
        FileKind::Regular,
        FileKind::Directory,
        FileKind::Fifo,
        FileKind::Socket,
        FileKind::CharDev,
        FileKind::BlockDev,
        FileKind::Symlink,
        FileKind::Anon,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

/// What the racing thread did, reported when the target stops.
#[derive(Debug, Clone, Default)]
pub struct RaceLog {
    /// Every (fd, inode number) the thread ever installed, including fds it got from open().
    pub installed: BTreeSet<(u32, u64)>,
    /// Operations done.
    pub ops: u64,
}

/// The running child.
pub struct Target {
    pid: i32,
    control: Option<OwnedFd>,
    report: BufReader<File>,
    reaped: bool,
    pub expected: Vec<ExpectedFd>,
}

impl Target {
    /// Fork the child, wait until it built its table, and return what it built.
    pub fn spawn(spec: &TargetSpec) -> Result<Self, TargetError> {
        let (report_r, report_w) = pipe().map_err(io_err("pipe"))?;
        let (control_r, control_w) = pipe().map_err(io_err("pipe"))?;
        // SAFETY: the child only runs `child_main`, which never returns (it ends in _exit).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io_err("fork")(io::Error::last_os_error()));
        }
        if pid == 0 {
            drop(report_r);
            drop(control_w);
            child_main(spec, report_w, control_r);
        }
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
        self.pid
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
        let status = self.wait()?;
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(TargetError::Exit(status));
        }
        Ok(log)
    }

    fn wait(&mut self) -> Result<i32, TargetError> {
        let mut status = 0;
        loop {
            // SAFETY: plain waitpid on our own child.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                self.reaped = true;
                return Ok(status);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(io_err("waitpid")(e));
            }
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: signalling and reaping our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.wait();
        }
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
// The child

fn write_all(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

fn child_main(spec: &TargetSpec, report: OwnedFd, control: OwnedFd) -> ! {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child_body(spec, report, control)
    }));
    let code = match result {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => {
            write_all(
                REPORT_FD,
                format!("error {}\n", msg.replace('\n', " ")).as_bytes(),
            );
            1
        }
        Err(_) => {
            write_all(REPORT_FD, b"error panic in the target child\n");
            2
        }
    };
    // SAFETY: leave without running the parent's atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

type CResult<T> = Result<T, String>;

fn check(what: &str, rc: libc::c_long) -> CResult<RawFd> {
    if rc < 0 {
        return Err(format!("{what}: {}", io::Error::last_os_error()));
    }
    Ok(rc as RawFd)
}

fn cpath(p: &Path) -> CResult<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{}: NUL in path", p.display()))
}

fn open(p: &Path, flags: i32) -> CResult<RawFd> {
    let c = cpath(p)?;
    // SAFETY: c is NUL-terminated.
    let rc = unsafe { libc::open(c.as_ptr(), flags, 0o644) };
    check(&format!("open {}", p.display()), rc.into())
}

fn lseek(fd: RawFd, pos: i64) -> CResult<()> {
    // SAFETY: plain syscall.
    let rc = unsafe { libc::lseek(fd, pos, libc::SEEK_SET) };
    check("lseek", rc).map(|_| ())
}

fn write_n(fd: RawFd, n: usize) -> CResult<()> {
    let buf = vec![0x5au8; n];
    // SAFETY: buf is valid for n bytes.
    let rc = unsafe { libc::write(fd, buf.as_ptr().cast(), n) };
    if rc != n as isize {
        return Err(format!(
            "write {n} bytes to fd {fd}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn set_cloexec(fd: RawFd, on: bool) -> CResult<()> {
    // SAFETY: plain syscall.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) };
    check("fcntl(F_SETFD)", rc.into()).map(|_| ())
}

fn close(fd: RawFd) {
    // SAFETY: closing an fd this child owns.
    unsafe { libc::close(fd) };
}

fn ino_of(fd: RawFd) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: st has room for a struct stat.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: fstat filled it.
    unsafe { st.assume_init() }.st_ino
}

fn child_body(spec: &TargetSpec, report: OwnedFd, control: OwnedFd) -> CResult<()> {
    // Keep only the two harness pipes, at fixed numbers, plus stdout/stderr.
    // SAFETY: dup2/close_range on fds this child owns.
    unsafe {
        check(
            "dup2 report",
            libc::dup2(report.as_raw_fd(), REPORT_FD).into(),
        )?;
        check(
            "dup2 control",
            libc::dup2(control.as_raw_fd(), CONTROL_FD).into(),
        )?;
        std::mem::forget(report);
        std::mem::forget(control);
        libc::syscall(libc::SYS_close_range, 3u32, (REPORT_FD - 1) as u32, 0u32);
        libc::syscall(
            libc::SYS_close_range,
            (CONTROL_FD + 1) as u32,
            u32::MAX,
            0u32,
        );
    }
    set_cloexec(REPORT_FD, true)?;
    set_cloexec(CONTROL_FD, true)?;
    if spec.sparse || spec.dense > 0 || spec.race {
        let lim = libc::rlimit {
            rlim_cur: NOFILE,
            rlim_max: NOFILE,
        };
        // SAFETY: lim is a valid rlimit.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        check("setrlimit(RLIMIT_NOFILE)", rc.into())?;
    }

    let mut exp = vec![
        ExpectedFd::new(REPORT_FD, "harness report pipe", FileKind::Fifo, true),
        ExpectedFd::new(CONTROL_FD, "harness control pipe", FileKind::Fifo, true),
    ];
    // stdin: /dev/null, read-only; stdout/stderr stay what the test runner gave us.
    close(0);
    let null = open(Path::new("/dev/null"), libc::O_RDONLY)?;
    if null != 0 {
        return Err(format!("/dev/null opened as fd {null}, expected 0"));
    }
    exp.push(ExpectedFd::new(0, "stdin /dev/null", FileKind::CharDev, false).pos(0));
    for fd in [1, 2] {
        // SAFETY: F_GETFD on our own fd.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            let mut e = ExpectedFd::new(fd, "inherited", FileKind::Other, false);
            e.kind = None;
            e.cloexec = None;
            exp.push(e);
        }
    }

    build_table(spec, &mut exp)?;

    let mut out = String::new();
    for e in &exp {
        out.push_str(&e.encode());
        out.push('\n');
    }
    out.push_str("ready\n");
    write_all(REPORT_FD, out.as_bytes());

    let stop = Arc::new(AtomicBool::new(false));
    let racer = if spec.race {
        let dir = spec.dir.clone();
        let stop = stop.clone();
        Some(std::thread::spawn(move || race(&dir, &stop)))
    } else {
        None
    };

    // Wait until the parent closes the control pipe.
    let mut b = [0u8; 1];
    loop {
        // SAFETY: b is valid for 1 byte.
        let n = unsafe { libc::read(CONTROL_FD, b.as_mut_ptr().cast(), 1) };
        if n == 0 || (n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
            break;
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
    write_all(REPORT_FD, out.as_bytes());
    Ok(())
}

fn build_table(spec: &TargetSpec, exp: &mut Vec<ExpectedFd>) -> CResult<()> {
    use FileKind::*;
    let dir = &spec.dir;
    let data = dir.join("data");
    {
        let fd = open(&data, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?;
        write_n(fd, 8192)?;
        close(fd);
    }

    // Regular files: access modes, offsets, O_APPEND, O_CLOEXEC, O_NONBLOCK.
    let ro0 = open(&data, libc::O_RDONLY)?;
    exp.push(ExpectedFd::new(ro0, "reg O_RDONLY pos 0", Regular, false).pos(0));
    let ro = open(&data, libc::O_RDONLY)?;
    lseek(ro, 4096)?;
    exp.push(ExpectedFd::new(ro, "reg O_RDONLY pos 4096", Regular, false).pos(4096));
    let wo = open(&data, libc::O_WRONLY)?;
    lseek(wo, 12345)?;
    exp.push(ExpectedFd::new(wo, "reg O_WRONLY pos 12345", Regular, false).pos(12345));
    let rw = open(&data, libc::O_RDWR)?;
    lseek(rw, 1 << 40)?;
    exp.push(ExpectedFd::new(rw, "reg O_RDWR pos 2^40", Regular, false).pos(1 << 40));
    let ap = open(
        &dir.join("append"),
        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT,
    )?;
    write_n(ap, 100)?;
    exp.push(ExpectedFd::new(ap, "reg O_WRONLY|O_APPEND", Regular, false).pos(100));
    let ce = open(&data, libc::O_RDWR | libc::O_CLOEXEC)?;
    lseek(ce, 7)?;
    exp.push(ExpectedFd::new(ce, "reg O_RDWR|O_CLOEXEC pos 7", Regular, true).pos(7));
    let nb = open(&data, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOATIME)?;
    exp.push(ExpectedFd::new(
        nb,
        "reg O_RDONLY|O_NONBLOCK|O_NOATIME",
        Regular,
        false,
    ));

    // Holes: open three, close the middle one (and one more further up).
    let h1 = open(&data, libc::O_RDONLY)?;
    let h2 = open(&data, libc::O_RDONLY)?;
    let h3 = open(&data, libc::O_RDONLY)?;
    close(h2);
    exp.push(ExpectedFd::new(h1, "reg before a hole", Regular, false));
    exp.push(ExpectedFd::new(h3, "reg after a hole", Regular, false));

    // Directory.
    let d = open(dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
    exp.push(ExpectedFd::new(d, "directory", Directory, false));

    // Pipes, both ends.
    let mut p = [0; 2];
    // SAFETY: p has room for two fds.
    check("pipe2", unsafe { libc::pipe2(p.as_mut_ptr(), 0) }.into())?;
    write_n(p[1], 10)?;
    exp.push(ExpectedFd::new(p[0], "pipe read end", Fifo, false));
    exp.push(ExpectedFd::new(p[1], "pipe write end", Fifo, false));
    // SAFETY: as above.
    check(
        "pipe2",
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }.into(),
    )?;
    exp.push(ExpectedFd::new(
        p[0],
        "pipe read end O_CLOEXEC|O_NONBLOCK",
        Fifo,
        true,
    ));
    exp.push(ExpectedFd::new(
        p[1],
        "pipe write end O_CLOEXEC|O_NONBLOCK",
        Fifo,
        true,
    ));

    // Unix sockets.
    for (ty, name) in [
        (libc::SOCK_STREAM, "unix stream"),
        (libc::SOCK_DGRAM, "unix dgram"),
        (libc::SOCK_SEQPACKET, "unix seqpacket"),
    ] {
        let mut sv = [0; 2];
        // SAFETY: sv has room for two fds.
        check(
            "socketpair",
            unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, sv.as_mut_ptr()) }.into(),
        )?;
        for fd in sv {
            exp.push(ExpectedFd::new(fd, name, Socket, false).sock(libc::AF_UNIX, ty, 0));
        }
    }
    // A unix socket bound to a path, and an O_PATH fd of that socket inode (on tmpfs).
    let sock_path = dir.join("sock");
    let bound = bind_unix(&sock_path)?;
    exp.push(
        ExpectedFd::new(bound, "unix stream bound", Socket, true).sock(
            libc::AF_UNIX,
            libc::SOCK_STREAM,
            0,
        ),
    );
    let op_sock = open(&sock_path, libc::O_PATH)?;
    exp.push(ExpectedFd::new(
        op_sock,
        "O_PATH of a unix socket inode",
        Socket,
        false,
    ));

    // TCP listener + connected pair, UDP, on 127.0.0.1.
    let (lis, cli, acc, udp) = inet_sockets()?;
    exp.push(ExpectedFd::new(lis, "tcp listen", Socket, false).sock(
        libc::AF_INET,
        libc::SOCK_STREAM,
        libc::IPPROTO_TCP,
    ));
    exp.push(
        ExpectedFd::new(cli, "tcp connected (client)", Socket, false).sock(
            libc::AF_INET,
            libc::SOCK_STREAM,
            libc::IPPROTO_TCP,
        ),
    );
    exp.push(
        ExpectedFd::new(acc, "tcp accepted (server)", Socket, true).sock(
            libc::AF_INET,
            libc::SOCK_STREAM,
            libc::IPPROTO_TCP,
        ),
    );
    exp.push(ExpectedFd::new(udp, "udp bound", Socket, false).sock(
        libc::AF_INET,
        libc::SOCK_DGRAM,
        libc::IPPROTO_UDP,
    ));

    // eventfd made with EFD_CLOEXEC (O_CLOEXEC lands in f_flags), then FD_CLOEXEC cleared:
    // close-on-exec must come from the fdtable, not from f_flags.
    // SAFETY: plain syscalls.
    let ev = check(
        "eventfd",
        unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }.into(),
    )?;
    set_cloexec(ev, false)?;
    exp.push(
        ExpectedFd::new(ev, "eventfd EFD_CLOEXEC, FD_CLOEXEC cleared", Anon, false)
            .anon("[eventfd]"),
    );
    // SAFETY: plain syscall.
    let ev2 = check(
        "eventfd",
        unsafe { libc::eventfd(5, libc::EFD_NONBLOCK) }.into(),
    )?;
    set_cloexec(ev2, true)?;
    exp.push(ExpectedFd::new(ev2, "eventfd, FD_CLOEXEC set later", Anon, true).anon("[eventfd]"));

    // SAFETY: plain syscall.
    let ep = check("epoll_create1", unsafe { libc::epoll_create1(0) }.into())?;
    let mut evt = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 1,
    };
    // SAFETY: evt is a valid epoll_event.
    check(
        "epoll_ctl",
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ev, &mut evt) }.into(),
    )?;
    exp.push(ExpectedFd::new(ep, "epoll", Anon, false).anon("[eventpoll]"));

    let sfd = signalfd_usr1()?;
    exp.push(ExpectedFd::new(sfd, "signalfd SFD_CLOEXEC", Anon, true).anon("[signalfd]"));

    // SAFETY: plain syscall.
    let tfd = check(
        "timerfd_create",
        unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, 0) }.into(),
    )?;
    let its = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: 3600,
            tv_nsec: 0,
        },
    };
    // SAFETY: its is valid, old value not requested.
    check(
        "timerfd_settime",
        unsafe { libc::timerfd_settime(tfd, 0, &its, std::ptr::null_mut()) }.into(),
    )?;
    exp.push(ExpectedFd::new(tfd, "timerfd armed", Anon, false).anon("[timerfd]"));

    let name = c"crib-memfd";
    // SAFETY: name is NUL-terminated.
    let mfd = check(
        "memfd_create",
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) }.into(),
    )?;
    write_n(mfd, 3000)?;
    exp.push(ExpectedFd::new(mfd, "memfd", Regular, true).pos(3000));

    // SAFETY: plain syscall.
    let pfd = check("pidfd_open", unsafe {
        libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0)
    })?;
    exp.push(ExpectedFd::new(pfd, "pidfd of itself", Anon, true).anon("[pidfd]"));

    let opath = open(&data, libc::O_PATH)?;
    exp.push(ExpectedFd::new(
        opath,
        "O_PATH regular file",
        Regular,
        false,
    ));
    let link = dir.join("link");
    let (cl, cd) = (cpath(&link)?, cpath(&data)?);
    // SAFETY: both NUL-terminated.
    check(
        "symlink",
        unsafe { libc::symlink(cd.as_ptr(), cl.as_ptr()) }.into(),
    )?;
    let oplnk = open(&link, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)?;
    exp.push(ExpectedFd::new(
        oplnk,
        "O_PATH|O_NOFOLLOW of a symlink",
        Symlink,
        true,
    ));

    let devnull = open(Path::new("/dev/null"), libc::O_WRONLY)?;
    exp.push(ExpectedFd::new(
        devnull,
        "/dev/null O_WRONLY",
        CharDev,
        false,
    ));

    // dup()s share one open file: moving the offset through one moves it for the other.
    let orig = open(&data, libc::O_RDWR)?;
    // SAFETY: plain syscalls.
    let dupd = check("dup", unsafe { libc::dup(orig) }.into())?;
    let dupc = check(
        "F_DUPFD_CLOEXEC",
        unsafe { libc::fcntl(orig, libc::F_DUPFD_CLOEXEC, 200) }.into(),
    )?;
    lseek(dupd, 999)?;
    exp.push(ExpectedFd::new(orig, "reg O_RDWR, dup'd", Regular, false).pos(999));
    exp.push(
        ExpectedFd::new(dupd, "dup() of it", Regular, false)
            .pos(999)
            .dup_of(orig),
    );
    exp.push(
        ExpectedFd::new(dupc, "F_DUPFD_CLOEXEC of it", Regular, true)
            .pos(999)
            .dup_of(orig),
    );

    if spec.sparse {
        // SAFETY: plain syscalls.
        let a = check(
            "dup2",
            unsafe { libc::dup2(ro, SPARSE_FDS[0] as i32) }.into(),
        )?;
        exp.push(
            ExpectedFd::new(a, "sparse dup2 of reg pos 4096", Regular, false)
                .pos(4096)
                .dup_of(ro),
        );
        let b = check(
            "dup3",
            unsafe { libc::dup3(ev, SPARSE_FDS[1] as i32, libc::O_CLOEXEC) }.into(),
        )?;
        exp.push(
            ExpectedFd::new(b, "sparse dup3 O_CLOEXEC of eventfd", Anon, true)
                .anon("[eventfd]")
                .dup_of(ev),
        );
        let c = check(
            "dup2",
            unsafe { libc::dup2(acc, SPARSE_FDS[2] as i32) }.into(),
        )?;
        exp.push(
            ExpectedFd::new(c, "sparse dup2 of tcp accepted", Socket, false)
                .sock(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP)
                .dup_of(acc),
        );
        // A hole far up: install and close.
        let h = check("dup2", unsafe { libc::dup2(ro, 90_000) }.into())?;
        close(h);
    }

    if spec.dense > 0 {
        // SAFETY: plain syscall.
        let mut n = 0;
        let mut fd = 3;
        while n < spec.dense {
            // SAFETY: F_GETFD probes whether fd is in use.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                // SAFETY: plain syscall.
                let got = check("dup2 dense", unsafe { libc::dup2(devnull, fd) }.into())?;
                exp.push(
                    ExpectedFd::new(got, "dense dup2 of /dev/null", CharDev, false).dup_of(devnull),
                );
                n += 1;
            }
            fd += 1;
        }
    }
    Ok(())
}

fn bind_unix(path: &Path) -> CResult<RawFd> {
    // SAFETY: plain syscall.
    let s = check(
        "socket(AF_UNIX)",
        unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }.into(),
    )?;
    // SAFETY: all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(format!(
            "{}: path too long for a unix socket",
            path.display()
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of len bytes.
    check(
        "bind(AF_UNIX)",
        unsafe { libc::bind(s, (&addr as *const libc::sockaddr_un).cast(), len) }.into(),
    )?;
    // SAFETY: plain syscall.
    check("listen(AF_UNIX)", unsafe { libc::listen(s, 4) }.into())?;
    Ok(s)
}

fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn inet_sockets() -> CResult<(RawFd, RawFd, RawFd, RawFd)> {
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: all calls below pass valid sockaddr_in buffers of `len` bytes.
    unsafe {
        let lis = check(
            "socket(tcp)",
            libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0).into(),
        )?;
        let a = loopback(0);
        check(
            "bind(tcp 127.0.0.1:0)",
            libc::bind(lis, (&a as *const libc::sockaddr_in).cast(), len).into(),
        )?;
        check("listen(tcp)", libc::listen(lis, 4).into())?;
        let mut bound = loopback(0);
        let mut blen = len;
        check(
            "getsockname",
            libc::getsockname(
                lis,
                (&mut bound as *mut libc::sockaddr_in).cast(),
                &mut blen,
            )
            .into(),
        )?;
        let cli = check(
            "socket(tcp)",
            libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0).into(),
        )?;
        check(
            "connect(tcp 127.0.0.1) (is lo up?)",
            libc::connect(cli, (&bound as *const libc::sockaddr_in).cast(), len).into(),
        )?;
        let acc = check(
            "accept4",
            libc::accept4(
                lis,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
            .into(),
        )?;
        let udp = check(
            "socket(udp)",
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0).into(),
        )?;
        check(
            "bind(udp)",
            libc::bind(udp, (&a as *const libc::sockaddr_in).cast(), len).into(),
        )?;
        Ok((lis, cli, acc, udp))
    }
}

fn signalfd_usr1() -> CResult<RawFd> {
    // SAFETY: sigset operations on a local set; signalfd with a valid mask.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        check(
            "signalfd",
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC).into(),
        )
    }
}

/// The racing thread: until `stop`, open files, make pipes/eventfds/sockets, dup2() them onto
/// [`RACE_FDS`] and [`RACE_FDS_HIGH`], and close them again. Only touches fds it created.
fn race(dir: &Path, stop: &AtomicBool) -> CResult<RaceLog> {
    let mut log = RaceLog::default();
    let mut owned: BTreeSet<RawFd> = BTreeSet::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let files: Vec<PathBuf> = (0..4).map(|i| dir.join(format!("race{i}"))).collect();
    for f in &files {
        let fd = open(f, libc::O_WRONLY | libc::O_CREAT)?;
        close(fd);
    }
    let install = |fd: RawFd, log: &mut RaceLog, owned: &mut BTreeSet<RawFd>| {
        log.installed.insert((fd as u32, ino_of(fd)));
        owned.insert(fd);
    };
    while !stop.load(Ordering::Relaxed) {
        log.ops += 1;
        let r = next();
        match r % 8 {
            0..=2 => {
                let f = &files[(r >> 8) as usize % files.len()];
                let flags = if r & 0x800 != 0 {
                    libc::O_RDWR | libc::O_CLOEXEC
                } else {
                    libc::O_RDONLY
                };
                let fd = open(f, flags)?;
                install(fd, &mut log, &mut owned);
            }
            3 => {
                let mut p = [0; 2];
                // SAFETY: p has room for two fds.
                check("pipe2", unsafe { libc::pipe2(p.as_mut_ptr(), 0) }.into())?;
                install(p[0], &mut log, &mut owned);
                install(p[1], &mut log, &mut owned);
            }
            4 => {
                // SAFETY: plain syscall.
                let fd = check("eventfd", unsafe { libc::eventfd(0, 0) }.into())?;
                install(fd, &mut log, &mut owned);
            }
            5 | 6 => {
                // dup2 one of ours onto a race fd (replacing whatever was there, if ours).
                let Some(&src) = owned.iter().nth((r >> 8) as usize % owned.len().max(1)) else {
                    continue;
                };
                let window = if r & 0x10000 != 0 {
                    &RACE_FDS_HIGH
                } else {
                    &RACE_FDS
                };
                let dst = window.start + ((r >> 20) as u32 % (window.end - window.start));
                // SAFETY: dst is in a window only this thread uses.
                let fd = check("dup2 race", unsafe { libc::dup2(src, dst as i32) }.into())?;
                install(fd, &mut log, &mut owned);
            }
            _ => {
                // close one, or several when many are open
                let n = if owned.len() > 48 { 8 } else { 1 };
                for _ in 0..n {
                    let Some(&fd) = owned
                        .iter()
                        .nth((next() >> 8) as usize % owned.len().max(1))
                    else {
                        break;
                    };
                    owned.remove(&fd);
                    close(fd);
                }
            }
        }
    }
    for fd in owned {
        close(fd);
    }
    Ok(log)
}

/// A tmpfs mounted on a fresh directory under `/tmp`; unmounted (and checked) by
/// [`Tmpfs::umount`].
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    mounted: bool,
}

impl Tmpfs {
    pub fn mount() -> Result<Self, TargetError> {
        let dir = tempfile::Builder::new()
            .prefix("crib-dump-")
            .tempdir_in("/tmp")
            .map_err(io_err("mkdir under /tmp"))?;
        let p = CString::new(dir.path().as_os_str().as_bytes())
            .map_err(|_| io_err("tmpfs path")(io::Error::from_raw_os_error(libc::EINVAL)))?;
        // SAFETY: all strings are NUL-terminated.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                p.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=64m".as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io_err(format!("mount tmpfs on {}", dir.path().display()))(
                io::Error::last_os_error(),
            ));
        }
        Ok(Self {
            dir: Some(dir),
            mounted: true,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// umount(2) without MNT_DETACH or MNT_FORCE: EBUSY if any file on it is still referenced.
    pub fn umount(mut self) -> Result<(), TargetError> {
        let p = CString::new(self.path().as_os_str().as_bytes())
            .map_err(|_| io_err("tmpfs path")(io::Error::from_raw_os_error(libc::EINVAL)))?;
        // SAFETY: p is NUL-terminated.
        if unsafe { libc::umount2(p.as_ptr(), 0) } != 0 {
            return Err(io_err(format!(
                "umount {} (a file on it is still referenced)",
                self.path().display()
            ))(io::Error::last_os_error()));
        }
        self.mounted = false;
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            if let Ok(p) = CString::new(self.path().as_os_str().as_bytes()) {
                // SAFETY: p is NUL-terminated; lazy unmount so the directory can go.
                unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Flush stdout (the guest's test output) so interleaved child output stays readable.
pub fn flush() {
    let _ = io::stdout().flush();
}

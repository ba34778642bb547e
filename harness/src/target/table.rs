//! The fd table the target child builds, and what a dump must say about each entry.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::unistd::{close, dup, pipe2};

use super::child::{fail, open_at, seek, set_cloexec, write_n, CResult};
use super::expected::ExpectedFd;
use super::{TargetSpec, SPARSE_FDS};
use crate::dump::FileKind;

const TCP: Option<SockProtocol> = Some(SockProtocol::Tcp);
const UDP: Option<SockProtocol> = Some(SockProtocol::Udp);

/// `fcntl(fd, F_DUPFD[_CLOEXEC], at)`, which must land exactly on `at` (a free slot). The
/// new fd stays open until the child exits (a plain number: nothing closes it).
fn dup_at(fd: impl AsFd, at: u32, cloexec: bool) -> CResult<i32> {
    let at = at as i32;
    let arg = if cloexec {
        FcntlArg::F_DUPFD_CLOEXEC(at)
    } else {
        FcntlArg::F_DUPFD(at)
    };
    let got = fcntl(fd, arg).map_err(fail(format!("F_DUPFD {at}")))?;
    if got != at {
        let _ = close(got);
        return Err(format!("F_DUPFD {at}: fd {at} is taken, got {got}"));
    }
    Ok(got)
}

/// Build the table into the child's fd table, describing each fd in `exp`. The returned fds
/// must stay open as long as the table is to be dumped.
pub(super) fn build(spec: &TargetSpec, exp: &mut Vec<ExpectedFd>) -> CResult<Vec<OwnedFd>> {
    use FileKind::*;
    let mut keep: Vec<OwnedFd> = Vec::new();
    let dir = &spec.dir;
    let data = dir.join("data");
    {
        let fd = open_at(&data, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC)?;
        write_n(&fd, 8192)?;
    }

    // Regular files: access modes, offsets, O_APPEND, O_CLOEXEC, O_NONBLOCK.
    let ro0 = open_at(&data, OFlag::O_RDONLY)?;
    exp.push(ExpectedFd::new(&ro0, "reg O_RDONLY pos 0", Regular, false).pos(0));
    keep.push(ro0);
    let ro = open_at(&data, OFlag::O_RDONLY)?;
    seek(&ro, 4096)?;
    exp.push(ExpectedFd::new(&ro, "reg O_RDONLY pos 4096", Regular, false).pos(4096));
    let wo = open_at(&data, OFlag::O_WRONLY)?;
    seek(&wo, 12345)?;
    exp.push(ExpectedFd::new(&wo, "reg O_WRONLY pos 12345", Regular, false).pos(12345));
    keep.push(wo);
    let rw = open_at(&data, OFlag::O_RDWR)?;
    seek(&rw, 1 << 40)?;
    exp.push(ExpectedFd::new(&rw, "reg O_RDWR pos 2^40", Regular, false).pos(1 << 40));
    keep.push(rw);
    let ap = open_at(
        &dir.join("append"),
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
    )?;
    write_n(&ap, 100)?;
    exp.push(ExpectedFd::new(&ap, "reg O_WRONLY|O_APPEND", Regular, false).pos(100));
    keep.push(ap);
    let ce = open_at(&data, OFlag::O_RDWR | OFlag::O_CLOEXEC)?;
    seek(&ce, 7)?;
    exp.push(ExpectedFd::new(&ce, "reg O_RDWR|O_CLOEXEC pos 7", Regular, true).pos(7));
    keep.push(ce);
    let nb = open_at(
        &data,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOATIME,
    )?;
    exp.push(ExpectedFd::new(
        &nb,
        "reg O_RDONLY|O_NONBLOCK|O_NOATIME",
        Regular,
        false,
    ));
    keep.push(nb);

    // Holes: open three, close the middle one (and one more further up).
    let h1 = open_at(&data, OFlag::O_RDONLY)?;
    let h2 = open_at(&data, OFlag::O_RDONLY)?;
    let h3 = open_at(&data, OFlag::O_RDONLY)?;
    drop(h2);
    exp.push(ExpectedFd::new(&h1, "reg before a hole", Regular, false));
    exp.push(ExpectedFd::new(&h3, "reg after a hole", Regular, false));
    keep.extend([h1, h3]);

    // Directory.
    let d = open_at(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    exp.push(ExpectedFd::new(&d, "directory", Directory, false));
    keep.push(d);

    // Pipes, both ends.
    let (r, w) = pipe2(OFlag::empty()).map_err(fail("pipe2"))?;
    write_n(&w, 10)?;
    exp.push(ExpectedFd::new(&r, "pipe read end", Fifo, false));
    exp.push(ExpectedFd::new(&w, "pipe write end", Fifo, false));
    keep.extend([r, w]);
    let (r, w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(fail("pipe2"))?;
    exp.push(ExpectedFd::new(
        &r,
        "pipe read end O_CLOEXEC|O_NONBLOCK",
        Fifo,
        true,
    ));
    exp.push(ExpectedFd::new(
        &w,
        "pipe write end O_CLOEXEC|O_NONBLOCK",
        Fifo,
        true,
    ));
    keep.extend([r, w]);

    // Unix sockets.
    for (ty, name) in [
        (SockType::Stream, "unix stream"),
        (SockType::Datagram, "unix dgram"),
        (SockType::SeqPacket, "unix seqpacket"),
    ] {
        let (a, b) = socketpair(AddressFamily::Unix, ty, None, SockFlag::empty())
            .map_err(fail("socketpair"))?;
        for fd in [a, b] {
            exp.push(ExpectedFd::new(&fd, name, Socket, false).sock(AddressFamily::Unix, ty, None));
            keep.push(fd);
        }
    }
    // A unix socket bound to a path (std: SOCK_CLOEXEC), and an O_PATH fd of that socket
    // inode (on tmpfs).
    let sock_path = dir.join("sock");
    let bound = UnixListener::bind(&sock_path)
        .map_err(|e| format!("bind(AF_UNIX) {}: {e}", sock_path.display()))?;
    exp.push(
        ExpectedFd::new(&bound, "unix stream bound", Socket, true).sock(
            AddressFamily::Unix,
            SockType::Stream,
            None,
        ),
    );
    keep.push(bound.into());
    let op_sock = open_at(&sock_path, OFlag::O_PATH)?;
    exp.push(ExpectedFd::new(
        &op_sock,
        "O_PATH of a unix socket inode",
        Socket,
        false,
    ));
    keep.push(op_sock);

    // TCP listener + connected pair, UDP, on 127.0.0.1.
    let (lis, cli, acc, udp) = inet_sockets()?;
    let stream = |fd: &OwnedFd, what: &str, cloexec: bool| {
        ExpectedFd::new(fd, what, Socket, cloexec).sock(AddressFamily::Inet, SockType::Stream, TCP)
    };
    exp.push(stream(&lis, "tcp listen", false));
    exp.push(stream(&cli, "tcp connected (client)", false));
    exp.push(stream(&acc, "tcp accepted (server)", true));
    exp.push(ExpectedFd::new(&udp, "udp bound", Socket, false).sock(
        AddressFamily::Inet,
        SockType::Datagram,
        UDP,
    ));
    keep.extend([lis, cli, udp]);

    // eventfd made with EFD_CLOEXEC (O_CLOEXEC lands in f_flags), then FD_CLOEXEC cleared:
    // close-on-exec must come from the fdtable, not from f_flags.
    let ev: OwnedFd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
        .map_err(fail("eventfd"))?
        .into();
    set_cloexec(&ev, false)?;
    exp.push(
        ExpectedFd::new(&ev, "eventfd EFD_CLOEXEC, FD_CLOEXEC cleared", Anon, false)
            .anon("[eventfd]"),
    );
    let ev2: OwnedFd = EventFd::from_value_and_flags(5, EfdFlags::EFD_NONBLOCK)
        .map_err(fail("eventfd"))?
        .into();
    set_cloexec(&ev2, true)?;
    exp.push(ExpectedFd::new(&ev2, "eventfd, FD_CLOEXEC set later", Anon, true).anon("[eventfd]"));
    keep.push(ev2);

    let ep = Epoll::new(EpollCreateFlags::empty()).map_err(fail("epoll_create1"))?;
    ep.add(&ev, EpollEvent::new(EpollFlags::EPOLLIN, 1))
        .map_err(fail("epoll_ctl"))?;
    exp.push(ExpectedFd::new(&ep.0, "epoll", Anon, false).anon("[eventpoll]"));
    keep.push(ep.0);

    let sfd = signalfd_usr1()?;
    exp.push(ExpectedFd::new(&sfd, "signalfd SFD_CLOEXEC", Anon, true).anon("[signalfd]"));
    keep.push(sfd);

    let tfd = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::empty())
        .map_err(fail("timerfd_create"))?;
    tfd.set(
        Expiration::OneShot(TimeSpec::new(3600, 0)),
        TimerSetTimeFlags::empty(),
    )
    .map_err(fail("timerfd_settime"))?;
    let tfd: OwnedFd = tfd.into();
    exp.push(ExpectedFd::new(&tfd, "timerfd armed", Anon, false).anon("[timerfd]"));
    keep.push(tfd);

    let mfd = memfd_create(c"crib-memfd", MFdFlags::MFD_CLOEXEC).map_err(fail("memfd_create"))?;
    write_n(&mfd, 3000)?;
    exp.push(ExpectedFd::new(&mfd, "memfd", Regular, true).pos(3000));
    keep.push(mfd);

    let pfd = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| format!("pidfd_open: {e}"))?;
    exp.push(ExpectedFd::new(&pfd, "pidfd of itself", Anon, true).anon("[pidfd]"));
    keep.push(pfd);

    let opath = open_at(&data, OFlag::O_PATH)?;
    exp.push(ExpectedFd::new(
        &opath,
        "O_PATH regular file",
        Regular,
        false,
    ));
    keep.push(opath);
    let link = dir.join("link");
    std::os::unix::fs::symlink(&data, &link)
        .map_err(|e| format!("symlink {}: {e}", link.display()))?;
    let oplnk = open_at(&link, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)?;
    exp.push(ExpectedFd::new(
        &oplnk,
        "O_PATH|O_NOFOLLOW of a symlink",
        Symlink,
        true,
    ));
    keep.push(oplnk);

    let devnull = open_at(Path::new("/dev/null"), OFlag::O_WRONLY)?;
    exp.push(ExpectedFd::new(
        &devnull,
        "/dev/null O_WRONLY",
        CharDev,
        false,
    ));

    // dup()s share one open file: moving the offset through one moves it for the other.
    let orig = open_at(&data, OFlag::O_RDWR)?;
    let dupd = dup(&orig).map_err(fail("dup"))?;
    let dupc =
        rustix::io::fcntl_dupfd_cloexec(&orig, 200).map_err(|e| format!("F_DUPFD_CLOEXEC: {e}"))?;
    seek(&dupd, 999)?;
    exp.push(ExpectedFd::new(&orig, "reg O_RDWR, dup'd", Regular, false).pos(999));
    exp.push(
        ExpectedFd::new(&dupd, "dup() of it", Regular, false)
            .pos(999)
            .dup_of(&orig),
    );
    exp.push(
        ExpectedFd::new(&dupc, "F_DUPFD_CLOEXEC of it", Regular, true)
            .pos(999)
            .dup_of(&orig),
    );
    keep.extend([orig, dupd, dupc]);

    if spec.sparse {
        let a = dup_at(&ro, SPARSE_FDS[0], false)?;
        exp.push(
            ExpectedFd::new(a, "sparse dup2 of reg pos 4096", Regular, false)
                .pos(4096)
                .dup_of(&ro),
        );
        let b = dup_at(&ev, SPARSE_FDS[1], true)?;
        exp.push(
            ExpectedFd::new(b, "sparse dup3 O_CLOEXEC of eventfd", Anon, true)
                .anon("[eventfd]")
                .dup_of(&ev),
        );
        let c = dup_at(&acc, SPARSE_FDS[2], false)?;
        exp.push(
            ExpectedFd::new(c, "sparse dup2 of tcp accepted", Socket, false)
                .sock(AddressFamily::Inet, SockType::Stream, TCP)
                .dup_of(&acc),
        );
        // A hole far up: install and close.
        let h = dup_at(&ro, 90_000, false)?;
        close(h).map_err(fail("close"))?;
    }
    keep.extend([ro, ev, acc]);

    if spec.dense > 0 {
        // The lowest free fds from 3 up, holes of the table first.
        let mut next = 3;
        for _ in 0..spec.dense {
            let got = fcntl(&devnull, FcntlArg::F_DUPFD(next)).map_err(fail("F_DUPFD dense"))?;
            exp.push(
                ExpectedFd::new(got, "dense dup2 of /dev/null", CharDev, false).dup_of(&devnull),
            );
            next = got + 1;
        }
    }
    keep.push(devnull);
    Ok(keep)
}

/// A listening TCP socket, a connected client and the accepted server end, and a bound UDP
/// socket, all on 127.0.0.1. std makes them close-on-exec; only the accepted one stays so.
fn inet_sockets() -> CResult<(OwnedFd, OwnedFd, OwnedFd, OwnedFd)> {
    let lis =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind(tcp 127.0.0.1:0): {e}"))?;
    let addr = lis.local_addr().map_err(|e| format!("getsockname: {e}"))?;
    let cli =
        TcpStream::connect(addr).map_err(|e| format!("connect(tcp {addr}) (is lo up?): {e}"))?;
    let (acc, _) = lis.accept().map_err(|e| format!("accept: {e}"))?;
    let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind(udp): {e}"))?;
    let (lis, cli, acc, udp): (OwnedFd, OwnedFd, OwnedFd, OwnedFd) =
        (lis.into(), cli.into(), acc.into(), udp.into());
    for fd in [&lis, &cli, &udp] {
        set_cloexec(fd, false)?;
    }
    Ok((lis, cli, acc, udp))
}

/// A signalfd for SIGUSR1 (blocked in this thread first, as signalfd(2) wants).
fn signalfd_usr1() -> CResult<OwnedFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(fail("pthread_sigmask"))?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map_err(fail("signalfd"))?;
    Ok(sfd.into())
}

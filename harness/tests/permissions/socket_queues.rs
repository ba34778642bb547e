//! Another uid's socket queues (issue 7, item 5).

use super::child::{
    as_child, become_user, close_parent_ends, fork_child, kill_and_reap, pipe, Creds,
};
use super::sysctl::PtraceScope;
use super::*;

/// 16 bytes each: what the other uid's holder leaves unread in its receive queue, and what
/// the dumper leaves unread in its own.
const SOCK_SECRET: &[u8; 16] = b"other uid's data";
const SOCK_OWN: &[u8; 16] = b"dumper's own dat";

/// A loopback TCP connection with `data` written client -> server and never read; both ends
/// stay open (leaked into this process) for as long as it lives. Returns (server fd, client
/// fd) once the bytes are in the server's receive queue.
fn tcp_pair_with_unread(data: &[u8]) -> Result<(RawFd, RawFd), String> {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::IntoRawFd;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = l.local_addr().map_err(|e| format!("local_addr: {e}"))?;
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let (s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
    c.write_all(data).map_err(|e| format!("write: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = rustix::io::ioctl_fionread(&s).map_err(|e| format!("SIOCINQ: {e}"))?;
        if n == data.len() as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{n} of {} bytes arrived in 10 s", data.len()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((s.into_raw_fd(), c.into_raw_fd()))
}

/// A process of another uid holding a TCP connection with [`SOCK_SECRET`] unread.
struct SockHolder {
    pid: i32,
    /// the end with the unread bytes
    server_fd: i32,
    ctl: Option<File>,
}

impl SockHolder {
    fn spawn(creds: Creds) -> Result<Self> {
        let (ctl_r, ctl_w) = pipe()?;
        let (ack_r, ack_w) = pipe()?;
        // The child sets up its sockets, reports, and waits for its pipe to close.
        let pid = fork_child(|| {
            close_parent_ends(&[&ctl_w, &ack_r]);
            let mut ack = File::from(ack_w);
            let line = match become_user(creds).and_then(|_| tcp_pair_with_unread(SOCK_SECRET)) {
                Ok((s, c)) => format!("ready {s} {c}\n"),
                Err(e) => format!("ERR: {e}\n"),
            };
            let _ = ack.write_all(line.as_bytes());
            drop(ack);
            let mut b = [0u8; 1];
            let _ = File::from(ctl_r).read(&mut b);
            0
        })?
        .as_raw();
        let mut h = Self {
            pid,
            server_fd: -1,
            ctl: Some(File::from(ctl_w)),
        };
        let mut line = String::new();
        File::from(ack_r).read_to_string(&mut line)?;
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["ready", s, _] => h.server_fd = s.parse().context("server fd")?,
            _ => bail!("socket holder {pid}: {line}"),
        }
        Ok(h)
    }
}

impl Drop for SockHolder {
    fn drop(&mut self) {
        self.ctl.take();
        kill_and_reap(Pid::from_raw(self.pid));
    }
}

/// What one run of `dump_socks` gave: the return value, and per record type how many.
fn sock_dump_outcome(d: &SockDumper, pid: i32, fd: Option<i32>) -> Result<String, String> {
    let (ret, recs) = d.run_raw(pid, fd, 0).map_err(|e| format!("{e}"))?;
    let raw = sock_dump::decode_stream(&recs).map_err(|e| format!("{e}"))?;
    let bytes: usize = raw
        .socks
        .iter()
        .flat_map(|s| s.items.iter())
        .map(|i| i.data.len())
        .sum();
    let secret = raw
        .socks
        .iter()
        .any(|s| s.queue_bytes(Queue::TcpRecv) == SOCK_SECRET);
    Ok(format!(
        "returned {ret}, end error {:?}, {} socket records, {bytes} queue bytes{}",
        raw.end.map(|e| e.error),
        raw.socks.len(),
        if secret {
            ", the other uid's bytes"
        } else {
            ""
        }
    ))
}

/// An unprivileged dumper (uid 1000) tries to dump the sockets of a uid 2000 process: the task
/// iterator refuses it (`-EACCES`, kfuncs/README.md "Permission model": "other uid, no
/// CAP_SYS_PTRACE"), so the dump has no socket record and no queue byte, whether it asks for
/// all fds or the one socket. The same dumper dumps its own socket's queue, and root dumps the
/// holder's (so there were bytes to refuse). Both kernels alike.
pub(super) fn run(flavor: Flavor) -> Result<()> {
    step("socket holder: uid 2000, a TCP connection with 16 bytes unread");
    let _scope = PtraceScope::set(0)?;
    let d = SockDumper::load()?;
    let h = SockHolder::spawn(Creds {
        ruid: OTHER_UID,
        euid: OTHER_UID,
        setuid_cap: false,
    })?;
    let (pid, sfd) = (h.pid, h.server_fd);
    eprintln!("holder pid {pid}, unread bytes at fd {sfd}");

    step("control: root dumps the holder's socket");
    let root = d
        .dump(pid, Some(sfd))
        .context("root dumping the holder's socket")?;
    ensure!(
        root.len() == 1 && root[0].queue_bytes(Queue::TcpRecv) == SOCK_SECRET,
        "root (CAP_SYS_PTRACE) should get the holder's 16 unread bytes at fd {sfd}: {:?}",
        root.iter()
            .map(|s| (s.sock.fd, s.queue_bytes(Queue::TcpRecv)))
            .collect::<Vec<_>>()
    );

    step("uid 1000 dumper: the holder's sockets, then its own");
    let denied = format!(
        "returned {e}, end error Some({e}), 0 socket records, 0 queue bytes",
        e = -EACCES
    );
    let out = as_child(Some(Creds::user()), || {
        let mut lines = Vec::new();
        for fd in [None, Some(sfd)] {
            match sock_dump_outcome(&d, pid, fd) {
                Ok(s) => lines.push(format!("other uid, fd {fd:?}: {s}")),
                Err(e) => return format!("ERR: dumping pid {pid}: {e}"),
            }
        }
        let (own_s, _own_c) = match tcp_pair_with_unread(SOCK_OWN) {
            Ok(p) => p,
            Err(e) => return format!("ERR: own socket: {e}"),
        };
        match d.dump_own_fd(own_s) {
            Ok(s) => lines.push(format!(
                "own socket: {:?}",
                String::from_utf8_lossy(&s.queue_bytes(Queue::TcpRecv))
            )),
            Err(e) => lines.push(format!("own socket: error {e}")),
        }
        lines.join("\n")
    })?;
    eprintln!("  {}", out.replace('\n', "\n  "));
    let lines: Vec<&str> = out.lines().collect();
    let want = [
        format!("other uid, fd None: {denied}"),
        format!("other uid, fd Some({sfd}): {denied}"),
        format!("own socket: {:?}", String::from_utf8_lossy(SOCK_OWN)),
    ];
    ensure!(
        lines == want,
        "on the {flavor} kernel, uid {UID} dumping uid {OTHER_UID}'s sockets must get -EACCES \
         and nothing else, and its own socket's bytes:\n  got:  {lines:?}\n  want: {want:?}"
    );
    drop(h);
    Ok(())
}

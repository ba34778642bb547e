//! The holder: a target process that holds known files and changes its credentials on command.

use super::child::{become_user, close_parent_ends, fork_child, kill_and_reap, pipe, Creds};
use super::*;

pub(super) struct Holder {
    pub(super) pid: i32,
    pub(super) ctl: File,
    pub(super) ack: File,
    /// fd of the holder's own file, and of the root-only file it received, if any
    pub(super) own_fd: u32,
    pub(super) secret_fd: Option<u32>,
}

impl Holder {
    /// Fork a holder that becomes `creds`, opens `own` read-only and, if `secret` is given,
    /// receives it over SCM_RIGHTS from this (root) process.
    pub(super) fn spawn(creds: Creds, own: &Path, secret: Option<&OwnedFd>) -> Result<Self> {
        let (ctl_r, ctl_w) = pipe()?;
        let (ack_r, ack_w) = pipe()?;
        let (sock_parent, sock_child) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("socketpair")?;
        // fork() copies this process's own fd of the secret into the child: the holder closes
        // that copy, so that it holds the file only as received over SCM_RIGHTS.
        let inherited = secret.map(|s| s.as_raw_fd());
        let pid = fork_child(|| {
            close_parent_ends(&[&ctl_w, &ack_r, &sock_parent]);
            holder_main(creds, own, inherited, &sock_child, ctl_r, ack_w)
        })?
        .as_raw();
        drop(sock_child);
        if let Some(s) = secret {
            let fds = [s.as_raw_fd()];
            sendmsg::<()>(
                sock_parent.as_raw_fd(),
                &[IoSlice::new(b"f")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .context("sendmsg(SCM_RIGHTS) to the holder")?;
        }
        let mut h = Self {
            pid,
            ctl: File::from(ctl_w),
            ack: File::from(ack_r),
            own_fd: 0,
            secret_fd: None,
        };
        let line = h.read_line().context("holder's ready line")?;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ready", own, secret] => {
                h.own_fd = own.parse().context("own fd")?;
                let s: i64 = secret.parse().context("secret fd")?;
                h.secret_fd = u32::try_from(s).ok();
            }
            _ => bail!("holder {pid}: {line}"),
        }
        Ok(h)
    }

    pub(super) fn read_line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            let n = self.ack.read(&mut b)?;
            ensure!(n == 1, "holder {} closed its pipe after {line:?}", self.pid);
            if b[0] == b'\n' {
                break;
            }
            line.push(b[0]);
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// 'd': PR_SET_DUMPABLE(0); 'u': setresuid(2000, 2000, 2000), then dumpable again.
    pub(super) fn command(&mut self, c: u8) -> Result<()> {
        self.ctl.write_all(&[c])?;
        let line = self.read_line()?;
        ensure!(
            line == "ok",
            "holder {} on {:?}: {line}",
            self.pid,
            c as char
        );
        Ok(())
    }

    pub(super) fn status(&self) -> String {
        fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map(|s| {
                s.lines()
                    .filter(|l| l.starts_with("Uid:") || l.starts_with("CapPrm:"))
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.ctl.write_all(b"q");
        kill_and_reap(Pid::from_raw(self.pid));
    }
}

pub(super) fn holder_main(
    creds: Creds,
    own: &Path,
    inherited: Option<RawFd>,
    sock: &OwnedFd,
    ctl: OwnedFd,
    ack: OwnedFd,
) -> i32 {
    let mut ack = File::from(ack);
    let mut ctl = File::from(ctl);
    let mut say = |s: &str| {
        let _ = ack.write_all(format!("{s}\n").as_bytes());
    };
    if let Some(fd) = inherited {
        // This child's copy of the parent's fd, owned by nothing here.
        let _ = nix::unistd::close(fd);
    }
    if let Err(e) = become_user(creds) {
        say(&format!("ERR: {e}"));
        return 1;
    }
    // Plain O_RDONLY, no O_CLOEXEC; the fd stays open for the holder's life.
    let own_fd = match nix::fcntl::open(own, OFlag::O_RDONLY, nix::sys::stat::Mode::empty()) {
        Ok(fd) => fd.into_raw_fd(),
        Err(e) => {
            say(&format!("ERR: open own file: {e}"));
            return 1;
        }
    };
    let mut secret_fd: i64 = -1;
    if inherited.is_some() {
        let mut buf = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        ) {
            Ok(msg) => {
                let cmsgs = match msg.cmsgs() {
                    Ok(c) => c,
                    Err(e) => {
                        say(&format!("ERR: cmsgs: {e}"));
                        return 1;
                    }
                };
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        if let Some(fd) = fds.first() {
                            secret_fd = i64::from(*fd);
                        }
                    }
                }
            }
            Err(e) => {
                say(&format!("ERR: recvmsg: {e}"));
                return 1;
            }
        }
        if secret_fd < 0 {
            say("ERR: no fd in the SCM_RIGHTS message");
            return 1;
        }
    }
    say(&format!("ready {own_fd} {secret_fd}"));
    let mut c = [0u8; 1];
    while ctl.read(&mut c).unwrap_or(0) == 1 {
        let r = match c[0] {
            b'd' => prctl::set_dumpable(false),
            b'u' => {
                let other = Uid::from_raw(OTHER_UID);
                // the euid change makes it non-dumpable: undo that, so that only the
                // credentials differ
                setresuid(other, other, other).and_then(|()| prctl::set_dumpable(true))
            }
            _ => return 0,
        };
        match r {
            Ok(()) => say("ok"),
            Err(e) => say(&format!("ERR: command {:?}: {e}", c[0] as char)),
        }
    }
    0
}

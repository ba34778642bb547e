//! Forked children with given credentials (uids, groups, capabilities), and their pipes.

use super::*;

#[repr(C)]
pub(super) struct CapHeader {
    pub(super) version: u32,
    pub(super) pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct CapData {
    pub(super) effective: u32,
    pub(super) permitted: u32,
    pub(super) inheritable: u32,
}

/// Who a forked child becomes before it does its part.
#[derive(Clone, Copy, Debug)]
pub(super) struct Creds {
    pub(super) ruid: u32,
    pub(super) euid: u32,
    /// keep CAP_SETUID (effective and permitted), nothing else
    pub(super) setuid_cap: bool,
}

impl Creds {
    pub(super) fn user() -> Self {
        Self {
            ruid: UID,
            euid: UID,
            setuid_cap: false,
        }
    }
}

/// Drop this (forked) process to `c`; it stays dumpable.
pub(super) fn become_user(c: Creds) -> Result<(), String> {
    if c.setuid_cap {
        prctl::set_keepcaps(true).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    }
    setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let gid = Gid::from_raw(GID);
    setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    let (ruid, euid) = (Uid::from_raw(c.ruid), Uid::from_raw(c.euid));
    setresuid(ruid, euid, euid).map_err(|e| format!("setresuid: {e}"))?;
    if c.setuid_cap {
        let h = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let d = [
            CapData {
                effective: 1 << CAP_SETUID,
                permitted: 1 << CAP_SETUID,
                inheritable: 0,
            },
            CapData::default(),
        ];
        // SAFETY: capset(2) on this process: h is a version 3 header and d the two data
        // structs that version reads. Neither nix nor rustix's enabled features wrap capset.
        if unsafe { libc::syscall(libc::SYS_capset, &h as *const CapHeader, d.as_ptr()) } != 0 {
            return Err(format!("capset(CAP_SETUID): {}", Errno::last()));
        }
    }
    // A uid change made the process non-dumpable; the tests want a dumpable one.
    prctl::set_dumpable(true).map_err(|e| format!("PR_SET_DUMPABLE 1: {e}"))
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).context("pipe2")
}

/// Leave a forked child at once, without running the harness's destructors or atexit
/// handlers (the parent's buffers and files are not the child's to flush).
pub(super) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit(2) touches no memory of this process. No wrapper in nix; rustix's needs
    // its `runtime` feature.
    unsafe { libc::_exit(code) }
}

/// Fork; the child runs `child` and leaves with [`exit_child`] and its code. Returns the
/// child's pid in the parent.
pub(super) fn fork_child(child: impl FnOnce() -> i32) -> Result<Pid> {
    // SAFETY: the child runs `child` (syscalls, pipes, the BPF programs already loaded) and
    // leaves with _exit, never returning into the harness or the test framework.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => exit_child(child()),
        ForkResult::Parent { child } => Ok(child),
    }
}

/// In a forked child: close its copies of the parent's ends of pipes and sockets (they stay
/// open in the parent; the child's `OwnedFd`s are never dropped, it leaves with `_exit`).
pub(super) fn close_parent_ends(fds: &[&OwnedFd]) {
    for fd in fds {
        let _ = nix::unistd::close(fd.as_raw_fd());
    }
}

/// SIGKILL our own child and reap it.
pub(super) fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// A forked child that runs a closure and writes its result (a line of text) to a pipe.
pub(super) struct Child {
    pub(super) pid: Pid,
    pub(super) out: File,
    pub(super) status: Option<WaitStatus>,
}

impl Child {
    /// Fork; the child runs `f` and leaves with `_exit`, never returning into the harness.
    pub(super) fn spawn(f: impl FnOnce() -> String) -> Result<Self> {
        let (r, w) = pipe()?;
        let pid = fork_child(|| {
            close_parent_ends(&[&r]);
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| "ERR: panic in the child".into());
            let _ = File::from(w).write_all(out.as_bytes());
            0
        })?;
        Ok(Self {
            pid,
            out: File::from(r),
            status: None,
        })
    }

    /// Has the child exited (reaped here if so)?
    pub(super) fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = waitpid(self.pid, Some(WaitPidFlag::WNOHANG))
                .ok()
                .filter(|st| *st != WaitStatus::StillAlive);
        }
        self.status.is_some()
    }

    /// Wait for the child and return what it wrote.
    pub(super) fn wait(mut self) -> Result<String> {
        let mut out = String::new();
        self.out.read_to_string(&mut out)?;
        let st = match self.status {
            Some(st) => st,
            None => waitpid(self.pid, None).with_context(|| format!("waitpid {}", self.pid))?,
        };
        ensure!(
            st == WaitStatus::Exited(self.pid, 0),
            "child {}: {st:?}; it wrote: {out}",
            self.pid
        );
        Ok(out)
    }
}

/// Run `f` in a child with credentials `creds` (None: stay root) and return its text, which
/// must not start with "ERR".
pub(super) fn as_child(creds: Option<Creds>, f: impl FnOnce() -> String) -> Result<String> {
    let out = Child::spawn(move || match creds.map(become_user).transpose() {
        Ok(_) => f(),
        Err(e) => format!("ERR: dropping privileges to {creds:?}: {e}"),
    })?
    .wait()?;
    ensure!(!out.starts_with("ERR"), "{out}");
    Ok(out)
}

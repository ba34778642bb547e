//! Who may have another task's files through the task_file kfuncs, and when a walk must stop
//! (issue 8, items 1-3). Every file the kfuncs yield can be read through with
//! `bpf_dynptr_from_file()`, so they require what `pidfd_getfd()` requires: in-tree
//! `ptrace_may_access(PTRACE_MODE_ATTACH_REALCREDS)`, checked again before every step, each
//! check and lookup under the target's `exec_update_lock`; the module: own thread group or
//! `CAP_SYS_PTRACE` (kfuncs/README.md, "Permission model").
//!
//! - `exec_race`: a target execs a setuid-root program in a loop; the setuid image holds a
//!   root-only marker file (`permissions/exec_loop.c`). An unprivileged same-uid dumper walks
//!   it all the while and must never see the marker's inode. The target runs SCHED_FIFO on the
//!   dumper's CPU, so each of its wakeups preempts the dumper wherever it is, kfuncs included,
//!   and runs a whole exec before the dumper goes on; the plain image's 200 fds are
//!   close-on-exec and below the marker's, so a walk that goes on into the new image without a
//!   new check finds the marker next, at whatever step it was.
//! - `attach_level`: a target holds a file of its own and a root-only file it received over
//!   SCM_RIGHTS (which the dumper cannot open). A same-uid dumper that may not attach (Yama
//!   `ptrace_scope=1` and not an ancestor; or real uid other than its fs uid) gets nothing:
//!   no dump, no read through `get_file()` or `item->file`, no `bpf_fget_task()`. A dumper
//!   that may attach (control) gets both files on the patched kernel.
//! - `per_step`: a walk paused between two steps (perm_walk_pause spins until the harness
//!   resumes it) while the target calls `PR_SET_DUMPABLE(0)` or `setresuid()`: the walk
//!   yields nothing more, and reports `-EACCES`.
//!
//! On the stock kernel the module allows no unprivileged dumper at all (it cannot tell which
//! uid may attach without `ptrace_may_access()`), so there the unprivileged cases must see
//! `-EACCES` from the start, and a root dumper (CAP_SYS_PTRACE) is the control.
//!
//! Each test body runs in a guest booted from the built kernel (as root); the dumpers and
//! targets are forked children that drop to uid 1000. The host only starts the guest.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use crib_harness::dump::{decode_stream, DumpError, Dumper, RingbufProgram};
use crib_harness::file_read::{self, FileReader, Outcome, Via};
use crib_harness::kernel::Flavor;
use crib_harness::records::{crib_perm_ctx, crib_perm_sync};
use crib_harness::sock_dump::{self, Queue, SockDumper};
use crib_harness::target::Tmpfs;
use crib_harness::vm::{current_test_name, guest_test as run};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{
    dup2_stdout, execv, fork, pipe2, setgroups, setresgid, setresuid, ForkResult, Gid, Pid, Uid,
};
use rstest::rstest;

/// The unprivileged user of dumpers and targets, and another one.
const UID: u32 = 1000;
const GID: u32 = 1000;
const OTHER_UID: u32 = 2000;
const CAP_SETUID: u32 = 7;
/// What the kfuncs return (negated) and the dumps report when a dumper may not attach.
const EACCES: i32 = Errno::EACCES as i32;

const PERM_OBJ: &str = "permissions.bpf.o";
const PERM_MAP: &str = "perm_reads";
const PERM_SYNC: &str = "perm_sync";

/// 16 bytes each: what `crib_rec_read` carries of a file's start.
const OWN_CONTENT: &[u8; 16] = b"holder's own fil";
const SECRET_CONTENT: &[u8; 16] = b"root-only secret";
const MARKER_CONTENT: &[u8] = b"exec-loop marker";

fn step(what: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    eprintln!("[perm {:>7.2}s] {what}", t.as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Yama

const YAMA: &str = "/proc/sys/kernel/yama/ptrace_scope";

/// Sets `kernel.yama.ptrace_scope` and puts the old value back when dropped.
struct PtraceScope {
    old: String,
}

impl PtraceScope {
    fn set(scope: u8) -> Result<Self> {
        let old = fs::read_to_string(YAMA).with_context(|| {
            format!("reading {YAMA}: the guest kernel needs CONFIG_SECURITY_YAMA")
        })?;
        fs::write(YAMA, format!("{scope}\n"))
            .with_context(|| format!("writing {scope} to {YAMA}"))?;
        Ok(Self {
            old: old.trim().to_string(),
        })
    }
}

impl Drop for PtraceScope {
    fn drop(&mut self) {
        if let Err(e) = fs::write(YAMA, format!("{}\n", self.old)) {
            eprintln!("restoring {YAMA} to {}: {e}", self.old);
        }
    }
}

const RT_RUNTIME: &str = "/proc/sys/kernel/sched_rt_runtime_us";

/// Sets a sysctl and puts the old value back when dropped.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Result<Self> {
        let old = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        fs::write(path, format!("{value}\n"))
            .with_context(|| format!("writing {value} to {path}"))?;
        Ok(Self {
            path,
            old: old.trim().to_string(),
        })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(e) = fs::write(self.path, format!("{}\n", self.old)) {
            eprintln!("restoring {} to {}: {e}", self.path, self.old);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials of forked children

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Who a forked child becomes before it does its part.
#[derive(Clone, Copy, Debug)]
struct Creds {
    ruid: u32,
    euid: u32,
    /// keep CAP_SETUID (effective and permitted), nothing else
    setuid_cap: bool,
}

impl Creds {
    fn user() -> Self {
        Self {
            ruid: UID,
            euid: UID,
            setuid_cap: false,
        }
    }
}

/// Drop this (forked) process to `c`; it stays dumpable.
fn become_user(c: Creds) -> Result<(), String> {
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

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).context("pipe2")
}

/// Leave a forked child at once, without running the harness's destructors or atexit
/// handlers (the parent's buffers and files are not the child's to flush).
fn exit_child(code: i32) -> ! {
    // SAFETY: _exit(2) touches no memory of this process. No wrapper in nix; rustix's needs
    // its `runtime` feature.
    unsafe { libc::_exit(code) }
}

/// Fork; the child runs `child` and leaves with [`exit_child`] and its code. Returns the
/// child's pid in the parent.
fn fork_child(child: impl FnOnce() -> i32) -> Result<Pid> {
    // SAFETY: the child runs `child` (syscalls, pipes, the BPF programs already loaded) and
    // leaves with _exit, never returning into the harness or the test framework.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => exit_child(child()),
        ForkResult::Parent { child } => Ok(child),
    }
}

/// In a forked child: close its copies of the parent's ends of pipes and sockets (they stay
/// open in the parent; the child's `OwnedFd`s are never dropped, it leaves with `_exit`).
fn close_parent_ends(fds: &[&OwnedFd]) {
    for fd in fds {
        let _ = nix::unistd::close(fd.as_raw_fd());
    }
}

/// SIGKILL our own child and reap it.
fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// A forked child that runs a closure and writes its result (a line of text) to a pipe.
struct Child {
    pid: Pid,
    out: File,
    status: Option<WaitStatus>,
}

impl Child {
    /// Fork; the child runs `f` and leaves with `_exit`, never returning into the harness.
    fn spawn(f: impl FnOnce() -> String) -> Result<Self> {
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
    fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = waitpid(self.pid, Some(WaitPidFlag::WNOHANG))
                .ok()
                .filter(|st| *st != WaitStatus::StillAlive);
        }
        self.status.is_some()
    }

    /// Wait for the child and return what it wrote.
    fn wait(mut self) -> Result<String> {
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
fn as_child(creds: Option<Creds>, f: impl FnOnce() -> String) -> Result<String> {
    let out = Child::spawn(move || match creds.map(become_user).transpose() {
        Ok(_) => f(),
        Err(e) => format!("ERR: dropping privileges to {creds:?}: {e}"),
    })?
    .wait()?;
    ensure!(!out.starts_with("ERR"), "{out}");
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The holder: a target process that holds known files and changes its credentials on command

struct Holder {
    pid: i32,
    ctl: File,
    ack: File,
    /// fd of the holder's own file, and of the root-only file it received, if any
    own_fd: u32,
    secret_fd: Option<u32>,
}

impl Holder {
    /// Fork a holder that becomes `creds`, opens `own` read-only and, if `secret` is given,
    /// receives it over SCM_RIGHTS from this (root) process.
    fn spawn(creds: Creds, own: &Path, secret: Option<&OwnedFd>) -> Result<Self> {
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

    fn read_line(&mut self) -> Result<String> {
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
    fn command(&mut self, c: u8) -> Result<()> {
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

    fn status(&self) -> String {
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

fn holder_main(
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

// ---------------------------------------------------------------------------------------------
// The programs

/// `permissions.bpf.c`'s two programs, loaded.
struct PermProgs {
    walk: RingbufProgram,
    fget: RingbufProgram,
}

impl PermProgs {
    fn load() -> Result<Self> {
        let obj = Path::new(crib_harness::BPF_DIR).join(PERM_OBJ);
        Ok(Self {
            walk: RingbufProgram::load(&obj, "perm_walk_pause", PERM_MAP)?,
            fget: RingbufProgram::load(&obj, "perm_fget_read", PERM_MAP)?,
        })
    }

    /// bpf_fget_task(pid, fd) and a read through it: None if no reference was handed out.
    fn fget_read(&self, pid: i32, fd: u32) -> Result<Option<Outcome>> {
        let mut ctx = crib_perm_ctx {
            pid,
            fd,
            ..Default::default()
        };
        let (ret, recs) = self.fget.run(&mut ctx)?;
        match ret {
            0 => Ok(None),
            1 => {
                ensure!(recs.len() == 1, "perm_fget_read: {} records", recs.len());
                Ok(Some(file_read::decode(0, &recs[0])?.1))
            }
            r => bail!("perm_fget_read({pid}, {fd}) returned {r}"),
        }
    }

    /// Walk `pid`, pausing after `pause_after` elements (0: never). Return the program's
    /// return value and fd -> outcome in walk order.
    fn walk(&self, pid: i32, pause_after: u32) -> Result<(i32, Vec<(u32, Outcome)>)> {
        let mut ctx = crib_perm_ctx {
            pid,
            pause_after,
            ..Default::default()
        };
        let (ret, recs) = self.walk.run(&mut ctx)?;
        let mut out = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            out.push(file_read::decode(i, r)?);
        }
        Ok((ret, out))
    }

    fn sync_fd(&self) -> Result<RawFd> {
        self.walk
            .map_fd(PERM_SYNC)
            .context("no perm_sync map in permissions.bpf.o")
    }
}

fn sync_get(fd: RawFd) -> Result<crib_perm_sync> {
    let key = 0u32;
    let mut v = crib_perm_sync::default();
    // SAFETY: key and value have the map's key and value sizes (u32, struct crib_perm_sync).
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            fd,
            (&key as *const u32).cast(),
            (&mut v as *mut crib_perm_sync).cast(),
        )
    };
    ensure!(rc == 0, "perm_sync lookup: {rc}");
    Ok(v)
}

fn sync_set(fd: RawFd, v: crib_perm_sync) -> Result<()> {
    let key = 0u32;
    // SAFETY: as in sync_get.
    let rc = unsafe {
        libbpf_sys::bpf_map_update_elem(
            fd,
            (&key as *const u32).cast(),
            (&v as *const crib_perm_sync).cast(),
            0,
        )
    };
    ensure!(rc == 0, "perm_sync update: {rc}");
    Ok(())
}

fn errno_of(e: &DumpError) -> Option<i32> {
    match e {
        DumpError::Target { errno, .. } | DumpError::Stopped { errno, .. } => Some(*errno),
        _ => None,
    }
}

/// A root-owned file with `content` and `mode`.
fn write_file(path: &Path, content: &[u8], owner: u32, mode: u32) -> Result<()> {
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    chown(path, Some(owner), Some(owner)).with_context(|| format!("chown {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
}

fn ino_of(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok((m.ino(), m.dev()))
}

// ---------------------------------------------------------------------------------------------
// Item 2: the attach level

/// What a dumper got from the holder, by every path the kfuncs offer.
fn probe(
    dumper: &Dumper,
    readers: &[(Via, FileReader)],
    progs: &PermProgs,
    h: &Holder,
) -> Vec<String> {
    let pid = h.pid;
    let mut got = Vec::new();
    match dumper.dump(pid) {
        Ok(files) => got.push(format!(
            "dump: {} fds: {:?}",
            files.len(),
            files.iter().map(|f| (f.fd, f.ino)).collect::<Vec<_>>()
        )),
        Err(e) if errno_of(&e) == Some(EACCES) => {}
        Err(e) => got.push(format!("dump: unexpected error: {e}")),
    }
    for (via, r) in readers {
        match r.read_all(pid) {
            Ok(m) => got.push(format!("{}: {}", via.prog_name(), show_reads(&m, h))),
            Err(e) if errno_of(&e) == Some(EACCES) => {}
            Err(e) => got.push(format!("{}: unexpected error: {e}", via.prog_name())),
        }
    }
    for fd in [Some(h.own_fd), h.secret_fd].into_iter().flatten() {
        match progs.fget_read(pid, fd) {
            Ok(None) => {}
            Ok(Some(o)) => got.push(format!("bpf_fget_task(fd {fd}): {}", show_outcome(&o))),
            Err(e) => got.push(format!("bpf_fget_task(fd {fd}): error: {e:#}")),
        }
    }
    got
}

fn show_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Read(b) => format!("read {:?}", String::from_utf8_lossy(b)),
        o => format!("{o:?}"),
    }
}

fn show_reads(m: &BTreeMap<u32, Outcome>, h: &Holder) -> String {
    m.iter()
        .map(|(fd, o)| {
            let what = if Some(*fd) == h.secret_fd {
                " (the root-only file from SCM_RIGHTS)"
            } else if *fd == h.own_fd {
                " (the holder's own file)"
            } else {
                ""
            };
            format!("fd {fd}{what}: {}", show_outcome(o))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn attach_level(flavor: Flavor) -> Result<()> {
    step("files, programs");
    let fs_ = Tmpfs::mount()?;
    let own = fs_.path().join("own");
    let secret_path = fs_.path().join("secret");
    write_file(&own, OWN_CONTENT, UID, 0o600)?;
    write_file(&secret_path, SECRET_CONTENT, 0, 0o600)?;
    let secret: OwnedFd = File::open(&secret_path)
        .context("opening the root-only file")?
        .into();
    let dumper = Dumper::load()?;
    let mut readers = vec![(Via::GetFile, FileReader::load(Via::GetFile)?)];
    if flavor == Flavor::Patched {
        readers.push((Via::ItemFile, FileReader::load(Via::ItemFile)?));
    }
    let progs = PermProgs::load()?;

    step("holder: uid 1000, holds its own file and a root-only file received over SCM_RIGHTS");
    let h = Holder::spawn(Creds::user(), &own, Some(&secret))?;
    drop(secret);
    let secret_fd = h.secret_fd.context("the holder got no secret fd")?;
    eprintln!(
        "holder pid {}: own file at fd {}, root-only file at fd {secret_fd}",
        h.pid, h.own_fd
    );

    // The dumpers cannot open the root-only file themselves.
    let sp = secret_path.clone();
    let out = as_child(Some(Creds::user()), move || match File::open(&sp) {
        Err(e) if e.raw_os_error() == Some(EACCES) => "cannot open it: EACCES".into(),
        other => format!("ERR: uid {UID} opening {}: {other:?}", sp.display()),
    })?;
    eprintln!("uid {UID} opening {}: {out}", secret_path.display());

    // Dumpers that may not attach: they must get nothing.
    let cases: [(&str, u8, Creds); 2] = [
        (
            "uid 1000, not an ancestor, Yama ptrace_scope=1",
            1,
            Creds::user(),
        ),
        (
            "real uid 2000, effective/fs uid 1000, ptrace_scope=0",
            0,
            Creds {
                ruid: OTHER_UID,
                euid: UID,
                setuid_cap: false,
            },
        ),
    ];
    let mut failures = Vec::new();
    for (what, scope, creds) in cases {
        step(what);
        let _scope = PtraceScope::set(scope)?;
        let got = as_child(Some(creds), || {
            let g = probe(&dumper, &readers, &progs, &h);
            if g.is_empty() {
                "nothing".into()
            } else {
                format!("GOT {}", g.join("\n    "))
            }
        })?;
        eprintln!("  dumper ({what}): {got}");
        if got != "nothing" {
            failures.push(format!(
                "dumper {what} (holder {}, {}) must get nothing, but: {}",
                h.pid,
                h.status(),
                got.trim_start_matches("GOT ")
            ));
        }
    }

    // Control: a dumper that may attach. In-tree a same-uid dumper under ptrace_scope=0 gets
    // both files (as with pidfd_getfd()); the module allows only CAP_SYS_PTRACE.
    step("control: dumpers that may attach");
    let _scope = PtraceScope::set(0)?;
    let ctl = |creds: Option<Creds>| -> Result<Vec<String>> {
        let out = as_child(creds, || probe(&dumper, &readers, &progs, &h).join("\n"))?;
        Ok(out.lines().map(str::to_string).collect())
    };
    let secret_read = format!("read {:?}", String::from_utf8_lossy(SECRET_CONTENT));
    let root = ctl(None)?;
    eprintln!("  root dumper:\n    {}", root.join("\n    "));
    let want = format!("bpf_fget_task(fd {secret_fd}): {secret_read}");
    ensure!(
        root.iter().any(|l| l == &want),
        "root dumper (CAP_SYS_PTRACE) did not get the root-only file through bpf_fget_task(): \
         {root:?}"
    );
    ensure!(
        root.iter()
            .any(|l| l.starts_with("read_via_get_file:") && l.contains(&secret_read)),
        "root dumper did not read the root-only file through get_file(): {root:?}"
    );
    let user = ctl(Some(Creds::user()))?;
    eprintln!(
        "  uid 1000 dumper, ptrace_scope=0:\n    {}",
        user.join("\n    ")
    );
    match flavor {
        Flavor::Patched => ensure!(
            user.iter().any(|l| l == &want),
            "same-uid dumper under ptrace_scope=0 may attach in-tree, but did not get the file \
             through bpf_fget_task(): {user:?}"
        ),
        Flavor::Stock => ensure!(
            user.is_empty(),
            "the module allows no dumper without CAP_SYS_PTRACE, but uid 1000 got: {user:?}"
        ),
    }

    ensure!(
        failures.is_empty(),
        "{} dumper(s) that may not attach got the holder's files:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(h);
    fs_.umount()?;
    Ok(())
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn permissions_attach_level_yama_scm_rights(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), attach_level);
}

// ---------------------------------------------------------------------------------------------
// Item 3: a check on every step

/// What a paused walk gave: the program's return value, (fd, outcome) per element, and
/// whether it paused at all (a walk refused at `_new` never does).
struct PausedWalk {
    ret: i32,
    recs: Vec<(u32, String)>,
    paused: bool,
}

/// Walk the holder as `creds` (None: root), pausing after the first element; meanwhile send
/// `cmd` to the holder.
fn paused_walk(
    progs: &PermProgs,
    h: &mut Holder,
    creds: Option<Creds>,
    cmd: u8,
) -> Result<PausedWalk> {
    let sync = progs.sync_fd()?;
    sync_set(sync, crib_perm_sync::default())?;
    let pid = h.pid;
    let mut child = Child::spawn(|| {
        if let Some(c) = creds {
            if let Err(e) = become_user(c) {
                return format!("ERR: {e}");
            }
        }
        match progs.walk(pid, 1) {
            Ok((ret, recs)) => {
                let mut s = format!("{ret}");
                for (fd, o) in recs {
                    s.push_str(&format!("\n{fd}\t{}", show_outcome(&o)));
                }
                s
            }
            Err(e) => format!("ERR: {e:#}"),
        }
    })?;
    // Wait for the pause, or for the walk to end without one (denied at once).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut paused = false;
    loop {
        if sync_get(sync)?.paused != 0 {
            paused = true;
            break;
        }
        if child.exited() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the walk neither paused nor ended in 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    if paused {
        h.command(cmd)?;
        sync_set(
            sync,
            crib_perm_sync {
                paused: 1,
                resume: 1,
                ..Default::default()
            },
        )?;
    }
    let out = child.wait()?;
    ensure!(!out.starts_with("ERR"), "{out}");
    ensure!(sync_get(sync)?.timed_out == 0, "the paused walk timed out");
    let mut lines = out.lines();
    let ret: i32 = lines.next().unwrap_or("").parse().context("walk result")?;
    let mut recs = Vec::new();
    for l in lines {
        let (fd, o) = l.split_once('\t').context("record line")?;
        recs.push((fd.parse()?, o.to_string()));
    }
    Ok(PausedWalk { ret, recs, paused })
}

fn per_step(flavor: Flavor) -> Result<()> {
    let fs_ = Tmpfs::mount()?;
    let own = fs_.path().join("own");
    write_file(&own, OWN_CONTENT, UID, 0o644)?;
    let progs = PermProgs::load()?;
    let _scope = PtraceScope::set(0)?;
    // The holder keeps CAP_SETUID for the setresuid() case; a dumper then needs the same
    // permitted set (commoncap: a tracer's permitted set must cover the tracee's).
    let holder_creds = Creds {
        setuid_cap: true,
        ..Creds::user()
    };
    let mut failures = Vec::new();
    for (cmd, what) in [
        (b'd', "prctl(PR_SET_DUMPABLE, 0)"),
        (b'u', "setresuid(2000, 2000, 2000)"),
    ] {
        // Control: root (CAP_SYS_PTRACE) keeps access; the walk goes on to the end.
        let mut h = Holder::spawn(holder_creds, &own, None)?;
        step(&format!(
            "root dumper, holder {} does {what} mid-walk",
            h.pid
        ));
        let PausedWalk { ret, recs, paused } = paused_walk(&progs, &mut h, None, cmd)?;
        let fds: Vec<u32> = recs.iter().map(|r| r.0).collect();
        eprintln!("  root: returned {ret}, paused {paused}, fds {fds:?}");
        ensure!(
            paused && ret == 0 && fds.len() > 1 && fds.contains(&h.own_fd),
            "root dumper (CAP_SYS_PTRACE) must walk to the end across {what}: returned {ret}, \
             paused {paused}, fds {fds:?}"
        );
        let all = fds.len();
        drop(h);

        let mut h = Holder::spawn(holder_creds, &own, None)?;
        step(&format!(
            "uid 1000 dumper, holder {} does {what} mid-walk",
            h.pid
        ));
        let dumper = Creds {
            setuid_cap: true,
            ..Creds::user()
        };
        let PausedWalk { ret, recs, paused } = paused_walk(&progs, &mut h, Some(dumper), cmd)?;
        let fds: Vec<u32> = recs.iter().map(|r| r.0).collect();
        eprintln!("  uid 1000: returned {ret}, paused {paused}, fds {fds:?}");
        match flavor {
            // The module allows no unprivileged dumper: denied before the first element.
            Flavor::Stock => {
                if !(ret == -EACCES && fds.is_empty() && !paused) {
                    failures.push(format!(
                        "{what}: the module must deny uid 1000 at _new (-EACCES, no fds): \
                         returned {ret}, fds {fds:?}"
                    ));
                }
            }
            // Allowed for the first element, stopped right after the change, and the
            // stop reported as -EACCES, not a short walk that looks complete.
            Flavor::Patched => {
                if !paused || fds.len() != 1 || ret != -EACCES {
                    failures.push(format!(
                        "{what} in holder {} ({}) between step 1 and 2: the walk must stop \
                         after the first fd and return -EACCES ({}); it returned {ret} ({}) \
                         with fds {fds:?} (the whole table has {all}); after the change it saw \
                         {:?}",
                        h.pid,
                        h.status(),
                        -EACCES,
                        if ret == 0 {
                            "no stop reported"
                        } else {
                            "another error"
                        },
                        recs.iter().skip(1).collect::<Vec<_>>()
                    ));
                }
            }
        }
        drop(h);
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    fs_.umount()?;
    Ok(())
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn permissions_recheck_every_step(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), per_step);
}

// ---------------------------------------------------------------------------------------------
// Item 1: the exec race

const EXEC_LOOP_C: &str = include_str!("permissions/exec_loop.c");

/// How long the dumper races the exec loop: 20 s, or `CRIB_PERM_RACE_SECS`.
fn race_secs() -> Result<u64> {
    Ok(crib_harness::settings::checked()?.perm_race_secs.as_secs())
}

fn pin_to_cpu0() -> Result<(), String> {
    let mut set = CpuSet::new();
    set.set(0).map_err(|e| format!("CpuSet: {e}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("sched_setaffinity: {e}"))
}

/// Make this process SCHED_FIFO, priority 1.
fn sched_fifo() -> Result<(), Errno> {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: sched_setscheduler(2) on this process reads p only. Neither nix nor rustix
    // wraps it.
    Errno::result(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) }).map(drop)
}

/// Tally of the dumps of one race, as the dumper child reports it (one item per line).
#[derive(Default, Debug)]
struct RaceTally {
    dumps: u64,
    complete: u64,
    /// errno -> dumps refused before the first element
    denied: BTreeMap<i32, u64>,
    /// errno -> walks stopped after some elements
    stopped: BTreeMap<i32, u64>,
    other: Vec<String>,
    leaks: Vec<String>,
}

impl RaceTally {
    fn to_lines(&self) -> String {
        let mut s = format!("dumps {}\ncomplete {}\n", self.dumps, self.complete);
        for (e, n) in &self.denied {
            s.push_str(&format!("denied {e} {n}\n"));
        }
        for (e, n) in &self.stopped {
            s.push_str(&format!("stopped {e} {n}\n"));
        }
        for o in &self.other {
            s.push_str(&format!("other {o}\n"));
        }
        for l in &self.leaks {
            s.push_str(&format!("leak {l}\n"));
        }
        s
    }

    fn parse(text: &str) -> Result<Self> {
        let mut t = Self::default();
        for line in text.lines() {
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            let num = |v: &str| -> Result<u64> { v.parse().with_context(|| format!("{line:?}")) };
            let pair = |v: &str| -> Result<(i32, u64)> {
                let (e, n) = v.split_once(' ').with_context(|| format!("{line:?}"))?;
                Ok((e.parse()?, n.parse()?))
            };
            match k {
                "dumps" => t.dumps = num(v)?,
                "complete" => t.complete = num(v)?,
                "denied" => {
                    let (e, n) = pair(v)?;
                    t.denied.insert(e, n);
                }
                "stopped" => {
                    let (e, n) = pair(v)?;
                    t.stopped.insert(e, n);
                }
                "other" => t.other.push(v.into()),
                "leak" => t.leaks.push(v.into()),
                _ => bail!("dumper child sent {line:?}"),
            }
        }
        Ok(t)
    }
}

fn exec_race(flavor: Flavor) -> Result<()> {
    step("build the exec loop: a plain and a setuid-root copy");
    let fs_ = Tmpfs::mount()?;
    let dir = fs_.path().to_path_buf();
    let nosuid = statvfs(&dir)
        .with_context(|| format!("statvfs {}", dir.display()))?
        .flags()
        .contains(FsFlags::ST_NOSUID);
    ensure!(
        !nosuid,
        "{} is mounted nosuid: a setuid copy there would not run as root",
        dir.display()
    );
    let src = dir.join("exec_loop.c");
    fs::write(&src, EXEC_LOOP_C)?;
    let plain = dir.join("exec_loop");
    let suid = dir.join("exec_loop_suid");
    let cc = std::process::Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&plain)
        .arg(&src)
        .output()
        .context("running cc in the guest (the host's compiler, through the shared root)")?;
    ensure!(
        cc.status.success(),
        "cc exec_loop.c: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    fs::copy(&plain, &suid)?;
    chown(&suid, Some(0), Some(0))?;
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755))?;
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o755))?;
    let marker = dir.join("marker");
    write_file(&marker, MARKER_CONTENT, 0, 0o600)?;
    let (m_ino, _) = ino_of(&marker)?;

    let dumper = Dumper::load()?;
    let _scope = PtraceScope::set(0)?;
    // No RT throttling: the exec loop must run a whole exec and the setuid image's open()
    // before the dumper it preempted goes on (it sleeps 2 ms per image, so CPU 0 is not lost).
    let _rt = Sysctl::set(RT_RUNTIME, "-1")?;

    step("start the exec loop (uid 1000, SCHED_FIFO, on CPU 0 with the dumper)");
    let (count_r, count_w) = pipe()?;
    // exec_loop <setuid copy> <plain copy> <marker>, started as the plain copy
    let argv: Vec<CString> = [&plain, &suid, &plain, &marker]
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<Result<_, _>>()
        .context("argv")?;
    let target = fork_child(|| {
        if pin_to_cpu0().is_err()
            || sched_fifo().is_err()
            || dup2_stdout(&count_w).is_err()
            || become_user(Creds::user()).is_err()
        {
            return 126;
        }
        let _ = execv(&argv[0], &argv);
        127
    })?;
    drop(count_w);
    std::thread::sleep(Duration::from_millis(500));
    let sched = fs::read_to_string(format!("/proc/{target}/status"))
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with("Cpus_allowed_list") || l.starts_with("Uid"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    // SAFETY: sched_getscheduler(2) takes no memory. Neither nix nor rustix wraps it.
    let policy = unsafe { libc::sched_getscheduler(target.as_raw()) };
    eprintln!("exec loop pid {target}: {sched}, policy {policy} (SCHED_FIFO = 1)");
    ensure!(
        policy == libc::SCHED_FIFO && sched.contains("Cpus_allowed_list: 0"),
        "the exec loop is not SCHED_FIFO on CPU 0 (policy {policy}, {sched})"
    );
    let secs = race_secs()?;

    step(&format!("race for {secs} s: uid 1000 dumper on CPU 0"));
    let tally = as_child(Some(Creds::user()), || {
        if let Err(e) = pin_to_cpu0() {
            return format!("ERR: {e}");
        }
        let mut t = RaceTally::default();
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let i = t.dumps;
            t.dumps += 1;
            let (ret, recs) = match dumper.run_raw(target.as_raw()) {
                Ok(r) => r,
                Err(e) => return format!("ERR: dump #{i}: {e}"),
            };
            let raw = match decode_stream(&recs) {
                Ok(r) => r,
                Err(e) => return format!("ERR: dump #{i}: {e}"),
            };
            for f in &raw.files {
                if f.ino == m_ino && f.kind == crib_harness::dump::FileKind::Regular {
                    t.leaks.push(format!(
                        "dump #{i} (returned {ret}) saw fd {} with inode {} = the root-only \
                         marker the setuid image opens (f_mode {:#x}, f_flags {:#o})",
                        f.fd, f.ino, f.f_mode, f.f_flags
                    ));
                }
            }
            let n = raw.files.len();
            match (ret, n) {
                (0, _) => t.complete += 1,
                (r, 0) if r < 0 => *t.denied.entry(-r).or_default() += 1,
                (r, _) if r < 0 => *t.stopped.entry(-r).or_default() += 1,
                (r, n) => t
                    .other
                    .push(format!("dump #{i}: returned {r} with {n} records")),
            }
        }
        t.to_lines()
    });
    kill_and_reap(target);
    let tally = RaceTally::parse(&tally?)?;
    let mut counts = String::new();
    File::from(count_r).read_to_string(&mut counts)?;
    let setuid_execs = counts.bytes().filter(|&b| b == b's').count();
    let plain_execs = counts.bytes().filter(|&b| b == b'u').count();
    eprintln!(
        "exec loop: {plain_execs} plain and {setuid_execs} setuid-root images; {} dumps: {} \
         complete, refused at _new {:?}, stopped mid-walk {:?} (errno: count)",
        tally.dumps, tally.complete, tally.denied, tally.stopped
    );
    ensure!(
        tally.leaks.is_empty(),
        "the uid {UID} dumper saw a file of the setuid-root image ({} times; marker inode \
         {m_ino}):\n{}",
        tally.leaks.len(),
        tally
            .leaks
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    ensure!(
        setuid_execs >= 20 && plain_execs >= 20,
        "the race did not happen: only {setuid_execs} setuid and {plain_execs} plain execs"
    );
    ensure!(
        tally.other.is_empty(),
        "unexpected results: {:?}",
        tally.other
    );
    let only_refusals =
        |m: &BTreeMap<i32, u64>| m.keys().all(|e| [EACCES, Errno::EBUSY as i32].contains(e));
    ensure!(
        only_refusals(&tally.denied) && only_refusals(&tally.stopped),
        "errors other than EACCES/EBUSY: refused {:?}, stopped {:?}",
        tally.denied,
        tally.stopped
    );
    match flavor {
        // In-tree a same-uid dumper may attach to the plain image: some dumps must get
        // through (else the test proves nothing), and the setuid image must be refused.
        Flavor::Patched => ensure!(
            tally.complete > 0 && tally.denied.get(&EACCES).copied().unwrap_or(0) > 0,
            "the dumper must both walk the plain image and be refused the setuid one: \
             {tally:?}"
        ),
        // The module refuses every dumper without CAP_SYS_PTRACE.
        Flavor::Stock => ensure!(
            tally.complete == 0
                && tally.stopped.is_empty()
                && tally.denied.get(&EACCES).copied().unwrap_or(0) > 0,
            "the module must refuse uid {UID} every time: {tally:?}"
        ),
    }
    drop(dumper);
    fs_.umount()?;
    Ok(())
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn permissions_exec_race_setuid(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), exec_race);
}

// ---------------------------------------------------------------------------------------------
// Another uid's socket queues (issue 7, item 5)

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
fn other_uid_socket_queues(flavor: Flavor) -> Result<()> {
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

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn permissions_other_uid_socket_queues(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), other_uid_socket_queues);
}

//! Running a case in the guest: load the program (privileged, or with capabilities dropped
//! in a thread of its own), check the verdict, the errno and the messages, and run
//! `__retval` cases once with `BPF_PROG_RUN`.

use std::path::Path;
use std::time::Instant;

use libbpf_rs::btf::types::{Func, Var};
use libbpf_rs::{Btf, ProgramType};

use crate::loader::{self, LoadOpts};

use super::caps;
use super::discovery::{self, Case};
use super::matching::{match_msgs, tail};
use super::report::{errno_name, load_failure_context, CaseReport, Verdict};
use super::spec::{LoadMode, Mode, Retval};

/// Is the BPF JIT on (`/proc/sys/net/core/bpf_jit_enable` != 0)?
fn jit_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
        .map(|s| s.trim() != "0")
        .unwrap_or(true)
}

/// What the runner keeps open while cases run. Cases that take file references walk the
/// runner's own fd table, and the CRIB kfuncs hand out references only for regular files open
/// for reading (a guest's stdio is pipes and `/dev/null`): hold one, our own executable. The
/// socket cases (`selftests/progs/sock_*.bpf.c`) walk the queues of the runner's sockets: hold
/// a few with known data queued ([`SocketFixtures`]).
pub struct Fixtures {
    _regular_file: std::fs::File,
    _sockets: SocketFixtures,
}

/// Open the [`Fixtures`]; keep the result alive while the cases run.
pub fn fixtures() -> std::io::Result<Fixtures> {
    let exe = std::env::current_exe()?;
    let regular_file = std::fs::File::open(exe)?;
    let sockets = SocketFixtures::open(&regular_file)
        .map_err(|e| std::io::Error::new(e.kind(), format!("the cases' socket fixtures: {e}")))?;
    Ok(Fixtures {
        _regular_file: regular_file,
        _sockets: sockets,
    })
}

/// The payloads the socket fixtures queue; `selftests/progs/sock_common.h` has the same
/// strings (`SOCK_FIX_*_MSG`), and the cases compare the bytes they read with them.
pub const SOCK_FIX_UNIX_MSG: &[u8] = b"crib sock fixture: one unix stream message, one fd";
pub const SOCK_FIX_UDP_MSG: &[u8] = b"crib sock fixture: one udp datagram to itself";
pub const SOCK_FIX_TCP_MSG: &[u8] =
    b"crib sock fixture: tcp bytes the server side has not read yet, over lo, 0123456789";

/// Sockets with known queued data, none of it ever read: a unix stream pair whose second end
/// holds one message with one passed fd (SCM_RIGHTS: the runner's executable), a UDP socket
/// on 127.0.0.1 that sent one datagram to itself, and a TCP connection over lo whose accepted
/// end holds unread bytes, with its listener kept open (a queue walk refuses a listening
/// socket). Every queue is a fresh socket's, so a case knows exactly what it must find.
pub struct SocketFixtures {
    _unix: (
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ),
    _udp: std::net::UdpSocket,
    _tcp_listener: std::net::TcpListener,
    _tcp_client: std::net::TcpStream,
    _tcp_server: std::net::TcpStream,
}

impl SocketFixtures {
    fn open(passed: &std::fs::File) -> std::io::Result<Self> {
        use std::io::{IoSlice, Write};
        use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
        use std::time::Duration;

        let ctx = |what: &'static str| {
            move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
        };
        // Waits (up to 10 s) until the datagram / the bytes are in the receive queue: over lo
        // they arrive through the loopback device's softirq, not inside send().
        let timeout = Some(Duration::from_secs(10));

        let (u0, u1) = UnixStream::pair().map_err(ctx("unix socketpair"))?;
        let fds = [passed.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let sent = nix::sys::socket::sendmsg::<()>(
            u0.as_raw_fd(),
            &[IoSlice::new(SOCK_FIX_UNIX_MSG)],
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map_err(std::io::Error::from)
        .map_err(ctx("unix sendmsg with SCM_RIGHTS"))?;
        if sent != SOCK_FIX_UNIX_MSG.len() {
            return Err(std::io::Error::other(format!(
                "unix sendmsg sent {sent} of {} bytes",
                SOCK_FIX_UNIX_MSG.len()
            )));
        }

        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ctx("udp bind"))?;
        let me = udp.local_addr().map_err(ctx("udp local_addr"))?;
        udp.send_to(SOCK_FIX_UDP_MSG, me)
            .map_err(ctx("udp send_to itself"))?;
        udp.set_read_timeout(timeout).map_err(ctx("udp timeout"))?;
        let mut buf = [0u8; 256];
        let (n, _) = udp.peek_from(&mut buf).map_err(ctx("udp peek"))?;
        if buf[..n] != *SOCK_FIX_UDP_MSG {
            return Err(std::io::Error::other("udp: another datagram arrived first"));
        }

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ctx("tcp bind"))?;
        let addr = listener.local_addr().map_err(ctx("tcp local_addr"))?;
        let mut client = TcpStream::connect(addr).map_err(ctx("tcp connect over lo"))?;
        let (server, _) = listener.accept().map_err(ctx("tcp accept"))?;
        client
            .write_all(SOCK_FIX_TCP_MSG)
            .map_err(ctx("tcp write"))?;
        server
            .set_read_timeout(timeout)
            .map_err(ctx("tcp timeout"))?;
        // MSG_PEEK until all bytes are queued (copied_seq does not move).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = server.peek(&mut buf).map_err(ctx("tcp peek"))?;
            if n >= SOCK_FIX_TCP_MSG.len() {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "tcp: only {n} of {} bytes arrived in 10 s",
                    SOCK_FIX_TCP_MSG.len()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(SocketFixtures {
            _unix: (u0, u1),
            _udp: udp,
            _tcp_listener: listener,
            _tcp_client: client,
            _tcp_server: server,
        })
    }
}

/// Load and check one case. Call in the guest (it loads into the running kernel).
pub fn run_case(case: &Case) -> CaseReport {
    let t0 = Instant::now();
    let mut notes = Vec::new();
    let verdict = run_case_inner(case, &mut notes);
    CaseReport {
        verdict,
        notes,
        elapsed: t0.elapsed(),
    }
}

fn run_case_inner(case: &Case, notes: &mut Vec<String>) -> Verdict {
    if !case.spec.unsupported.is_empty() {
        return Verdict::Fail(format!(
            "unsupported annotation(s) {}: this runner cannot check them, so the case is not \
             counted as passed",
            case.spec.unsupported.join(", ")
        ));
    }
    if let Some(why) = case.static_skip() {
        return Verdict::Skip(why);
    }
    if let Some(mode) = case.spec.load_mode {
        let jit = jit_enabled();
        if (mode == LoadMode::Jited) != jit {
            let want = if mode == LoadMode::Jited {
                "a JIT"
            } else {
                "no JIT"
            };
            return Verdict::Skip(format!("needs {want}; bpf_jit_enable says otherwise"));
        }
    }
    let (set, clear) = case.spec.flags();
    let opts = LoadOpts {
        log_level: case.spec.log_level,
        prog_flags: set,
        clear_flags: clear,
        also_load: case.aux.clone(),
        unpriv_maps_only: case.mode == Mode::Unpriv,
        ..LoadOpts::default()
    };
    match case.mode {
        Mode::Priv => load_and_check(case, &opts, None, notes),
        Mode::Unpriv => {
            if let Err(e) = caps::enable_unpriv_bpf(notes) {
                return Verdict::Fail(format!("unprivileged variant not run: {e}"));
            }
            // Capabilities are per thread: drop them in a thread of our own.
            let case2 = case.clone();
            let caps = case.expect().caps;
            let handle = std::thread::spawn(move || {
                let mut notes = Vec::new();
                let v = load_and_check(&case2, &opts, Some(caps), &mut notes);
                (v, notes)
            });
            match handle.join() {
                Ok((v, n)) => {
                    notes.extend(n);
                    v
                }
                Err(_) => Verdict::Fail("the unprivileged load thread panicked".into()),
            }
        }
    }
}

/// The errno check of a load that failed as expected: with a `__crib_load_errno`, the errno
/// must be exactly that one. `Ok(note)` says what was checked; `Err(report)` names the
/// expected and the actual errno (name and number), libbpf's messages and the log's end.
fn check_load_errno(
    prog: &str,
    want: Option<i32>,
    got: i32,
    libbpf: &str,
    log: &str,
) -> Result<String, String> {
    match want {
        None => Ok(format!("rejected as expected: {}", errno_name(got))),
        Some(w) if w == got => Ok(format!(
            "rejected as expected, with the expected errno {}",
            errno_name(got)
        )),
        Some(w) => Err(format!(
            "expected the load of '{prog}' to fail with {}, but it failed with {}\n{}",
            errno_name(w),
            errno_name(got),
            load_failure_context(libbpf, log)
        )),
    }
}

/// The `__ksym` externs of `obj` that vmlinux's BTF lacks, so that libbpf must look for
/// them in module BTF.
fn ksyms_outside_vmlinux(obj: &Path) -> Result<Vec<String>, String> {
    let ksyms = discovery::ksym_externs(obj).map_err(|e| e.to_string())?;
    if ksyms.is_empty() {
        return Ok(Vec::new());
    }
    let vmlinux = Btf::from_vmlinux()
        .map_err(|e| format!("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"))?;
    Ok(ksyms
        .into_iter()
        .filter(|k| {
            if k.func {
                vmlinux.type_by_name::<Func<'_>>(&k.name).is_none()
            } else {
                vmlinux.type_by_name::<Var<'_>>(&k.name).is_none()
            }
        })
        .map(|k| k.name)
        .collect())
}

/// The unprivileged load, as test_loader does it where the kernel allows: drop
/// CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_PERFMON and CAP_BPF (giving back `extra`), then open,
/// prepare and load the object with the reduced set, then restore them for the test run.
///
/// The exception: an object with `__ksym` externs that vmlinux's BTF lacks (the CRIB kfuncs
/// on the stock kernel live in `crib_kfuncs.ko`). libbpf finds those by listing module BTF
/// with `BPF_BTF_GET_NEXT_ID`/`BPF_BTF_GET_FD_BY_ID`, which need CAP_SYS_ADMIN: with the
/// reduced set it skips module BTF and the kfunc calls stay unresolved, so no such case could
/// load. For those, `bpf_object__prepare()` (externs, BTF, maps) runs with full capabilities
/// and only the program load with the reduced set. See harness/README.md, "Unprivileged
/// cases". Call in a thread of its own: capabilities are per thread.
fn load_unprivileged(
    case: &Case,
    opts: &LoadOpts,
    extra: u64,
    notes: &mut Vec<String>,
) -> Result<loader::Loaded, String> {
    let in_modules = ksyms_outside_vmlinux(&case.object)?;
    let cur = caps::get().map_err(|e| format!("capget: {e}"))?;
    let reduced = caps::reduced(cur, extra);
    let loaded = if in_modules.is_empty() {
        caps::set(reduced).map_err(|e| format!("capset (dropping capabilities): {e}"))?;
        let loaded = loader::open_one(&case.object, &case.spec.prog, opts).map(|p| p.load());
        caps::set(cur).map_err(|e| format!("capset (restoring capabilities): {e}"))?;
        notes.push(
            "opened, prepared and loaded with the capabilities already dropped, as test_loader \
             does"
                .into(),
        );
        loaded.map_err(|e| format!("cannot load: {e}"))?
    } else {
        let pending = loader::open_one(&case.object, &case.spec.prog, opts)
            .map_err(|e| format!("cannot load: {e}"))?;
        let pending = pending.prepare().map_err(|e| {
            format!(
                "{e}\n(the unprivileged variant of an object with kfuncs in module BTF runs \
                 bpf_object__prepare() with full capabilities before dropping them: this \
                 failure is not caused by the dropped capabilities, and the unprivileged \
                 program load was not attempted)"
            )
        })?;
        caps::set(reduced).map_err(|e| format!("capset (dropping capabilities): {e}"))?;
        let loaded = pending.load();
        caps::set(cur).map_err(|e| format!("capset (restoring capabilities): {e}"))?;
        notes.push(format!(
            "prepared with full capabilities (bpf_object__prepare: externs, module BTF, object \
             BTF, maps): listing module BTF needs CAP_SYS_ADMIN, and vmlinux's BTF lacks {}",
            in_modules.join(", ")
        ));
        loaded
    };
    notes.push(format!(
        "unprivileged program load: effective capabilities {:#x} (dropped SYS_ADMIN, NET_ADMIN, \
         PERFMON, BPF{})",
        reduced.effective,
        if extra != 0 {
            format!("; granted {extra:#x}")
        } else {
            String::new()
        }
    ));
    Ok(loaded)
}

fn load_and_check(
    case: &Case,
    opts: &LoadOpts,
    unpriv_caps: Option<u64>,
    notes: &mut Vec<String>,
) -> Verdict {
    let prog = &case.spec.prog;
    let expect = case.expect();
    let loaded = match unpriv_caps {
        None => match loader::load_one(&case.object, prog, opts) {
            Ok(l) => l,
            Err(e) => return Verdict::Fail(format!("cannot load: {e}")),
        },
        Some(extra) => match load_unprivileged(case, opts, extra, notes) {
            Ok(l) => l,
            Err(e) => return Verdict::Fail(e),
        },
    };
    let log = &loaded.log;
    match (&loaded.error, expect.failure) {
        (None, true) => {
            let what = match expect.load_errno {
                Some(e) => format!("the load of '{prog}' to fail with {}", errno_name(e)),
                None => format!("the verifier to reject '{prog}'"),
            };
            return Verdict::Fail(format!(
                "expected {what}, but it loaded.\nlast 30 lines of the verifier log (log level \
                 {}):\n{}",
                opts.log_level,
                tail(log, 30)
            ));
        }
        (Some((errno, msgs)), false) => {
            return Verdict::Fail(format!(
                "expected '{prog}' to load, but it was rejected: {}\nlibbpf:\n{}\nlast 30 lines \
                 of the verifier log:\n{}",
                errno_name(*errno),
                msgs.trim_end(),
                tail(log, 30)
            ))
        }
        (Some((errno, msgs)), true) => {
            match check_load_errno(prog, expect.load_errno, *errno, msgs, log) {
                Ok(note) => notes.push(note),
                Err(report) => return Verdict::Fail(report),
            }
        }
        (None, false) => notes.push("loaded as expected".into()),
    }
    match match_msgs(log, &expect.msgs) {
        Ok(0) => {}
        Ok(n) => notes.push(format!("{n} message(s) matched in order")),
        Err(f) => return Verdict::Fail(f.report),
    }
    let Some(want) = expect.retval.filter(|_| !expect.failure) else {
        return Verdict::Pass;
    };
    let Some(p) = loaded.prog(prog) else {
        return Verdict::Fail(format!("'{prog}' loaded but is not in the loaded object"));
    };
    let got = if p.prog_type() == ProgramType::Syscall {
        let mut empty = ();
        loader::run_syscall(&p, &mut empty)
    } else {
        loader::run_packet(&p)
    };
    match (got, want) {
        (Err(e), _) => Verdict::Fail(format!("test run failed: {e}")),
        (Ok(v), Retval::Any) => {
            notes.push(format!("retval {v} (any accepted)"));
            Verdict::Pass
        }
        (Ok(v), Retval::Value(w)) if v == w => {
            notes.push(format!("retval {v} as expected"));
            Verdict::Pass
        }
        (Ok(v), Retval::Value(w)) => Verdict::Fail(format!(
            "unexpected return value: got {v} ({v:#x}), expected {w} ({w:#x})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "0: (b7) r0 = 0\n1: (b7) r1 = 42\n2: (79) r0 = *(u64 *)(r1 +0)\n\
                       R1 invalid mem access 'scalar'\nprocessed 3 insns\n";

    #[test]
    fn load_errno_check() {
        const LIBBPF: &str = "libbpf: prog 'p': BPF program load failed: Invalid argument\n";
        // No errno asked for: any rejection is fine, as before.
        let note = check_load_errno("p", None, libc::EINVAL, LIBBPF, "").unwrap();
        assert_eq!(note, "rejected as expected: EINVAL (22: Invalid argument)");
        let note = check_load_errno("p", Some(libc::EPERM), libc::EPERM, "", "").unwrap();
        assert!(
            note.contains("expected errno EPERM (1: Operation not permitted)"),
            "{note}"
        );
        // The wrong errno fails, naming both, with libbpf's messages; no log here.
        let r = check_load_errno("p", Some(libc::EPERM), libc::EINVAL, LIBBPF, "").unwrap_err();
        assert!(
            r.starts_with(
                "expected the load of 'p' to fail with EPERM (1: Operation not permitted), but \
                 it failed with EINVAL (22: Invalid argument)\n"
            ),
            "{r}"
        );
        assert!(r.contains(LIBBPF.trim_end()), "{r}");
        assert!(r.contains("verifier log: empty"), "{r}");
        // With a log, its end is shown.
        let r = check_load_errno("p", Some(libc::EPERM), libc::EACCES, "", LOG).unwrap_err();
        assert!(r.contains("EACCES (13: Permission denied)"), "{r}");
        assert!(r.contains("libbpf: (no messages)"), "{r}");
        assert!(r.contains("last 30 lines of the verifier log"), "{r}");
        assert!(r.contains("R1 invalid mem access"), "{r}");
        assert_eq!(errno_name(524), "ENOTSUPP (524: Unknown error 524)");
        assert_eq!(errno_name(4000), "errno 4000 (Unknown error 4000)");
    }
}

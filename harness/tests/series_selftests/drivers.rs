//! Ports of the `prog_tests/*.c` user-space code that drives the series' objects with no
//! annotated program ([`DRIVERS`]): each sets up what its C test sets up, runs the program
//! and checks what the C test asserts, every check kept going and printed.

use std::os::fd::AsRawFd;
use std::path::Path;

use crib_harness::cases;
use crib_harness::globals::Globals;
use crib_harness::loader;

/// The checks of one driver: what passed (notes) and what differed (failures), both kept
/// going as `ASSERT_*` of test_progs does.
#[derive(Default)]
struct Checks {
    notes: Vec<String>,
    failures: Vec<String>,
}

impl Checks {
    /// `what` must be `want`; a failure names it with expected and got.
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, want: T, got: T) {
        if want == got {
            self.notes.push(format!("ok: {what} == {want:?}"));
        } else {
            self.failures
                .push(format!("{what}: expected {want:?}, got {got:?}"));
        }
    }

    /// Bytes compared as text (`"IBDA"`).
    fn bytes(&mut self, what: &str, want: &[u8], got: &[u8]) {
        let show = |b: &[u8]| format!("\"{}\" ({} bytes)", b.escape_ascii(), b.len());
        if want == got {
            self.notes.push(format!("ok: {what} == {}", show(want)));
        } else {
            self.failures.push(format!(
                "{what}: expected {}, got {}",
                show(want),
                show(got)
            ));
        }
    }

    fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }
}

/// A kernel function's return value: `0`, or a negative errno shown with its name
/// (`-EBADF (-9)`).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ret(i32);

impl std::fmt::Debug for Ret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match crib_harness::errno::symbol(self.0) {
            Some(sym) if self.0 < 0 => write!(f, "-{sym} ({})", self.0),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// A port of the user-space part of one `prog_tests/*.c` subtest, for an object of the
/// series that has no annotated program. `run` returns `Err` when the set-up failed (the
/// C test's `goto out`); checks that differ are collected in [`Checks`].
pub(crate) struct Driver {
    pub(crate) stem: &'static str,
    /// The test's name under `patched::<stem>::`.
    pub(crate) test: &'static str,
    /// The C code it ports.
    ports: &'static str,
    run: fn(&Path, &mut Checks) -> Result<(), String>,
}

impl Driver {
    pub(crate) fn run(&self, path: &Path) -> cases::CaseReport {
        let start = std::time::Instant::now();
        let mut c = Checks::default();
        let setup = (self.run)(path, &mut c);
        let mut notes = vec![format!("ports {}", self.ports)];
        notes.append(&mut c.notes);
        let mut why = Vec::new();
        if let Err(e) = setup {
            why.push(format!("set-up failed, the rest was not checked: {e}"));
        }
        why.append(&mut c.failures);
        cases::CaseReport {
            verdict: if why.is_empty() {
                cases::Verdict::Pass
            } else {
                cases::Verdict::Fail(why.join("\n"))
            },
            notes,
            elapsed: start.elapsed(),
        }
    }
}

pub(crate) const DRIVERS: &[Driver] = &[
    Driver {
        stem: "crib_sock_queue",
        test: "dynptr_reads_queued_bytes_and_leaves_queue_intact",
        ports: "prog_tests/crib_sock_queue.c test_crib_sq_dynptr() (kernel-patches/0011)",
        run: crib_sq_dynptr,
    },
    Driver {
        stem: "file_reader_mode",
        test: "only_preadable_files",
        ports: "prog_tests/file_reader.c test_file_mode() (kernel-patches/0002)",
        run: file_mode,
    },
];

/// Load `prog` of the object at `path` (all of its programs are `prog`), or why not.
fn load_prog(path: &Path, prog: &str) -> Result<libbpf_rs::Object, String> {
    let loaded =
        loader::load_one(path, prog, &loader::LoadOpts::default()).map_err(|e| e.to_string())?;
    if let Some((errno, libbpf)) = &loaded.error {
        return Err(format!(
            "loading {prog} from {} failed with {}\n{}",
            path.display(),
            cases::report::errno_name(*errno),
            cases::report::load_failure_context(libbpf, &loaded.log)
        ));
    }
    loaded
        .object
        .ok_or_else(|| format!("loading {prog}: no object and no error"))
}

/// prog_tests/crib_sock_queue.c, `test_crib_sq_dynptr()`: the SYSCALL program reads a unix
/// stream socket's queued bytes through a read-only skb dynptr and leaves the queue as it was.
fn crib_sq_dynptr(path: &Path, c: &mut Checks) -> Result<(), String> {
    use nix::sys::socket::{recv, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

    let (sv0, sv1) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::empty(),
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    let obj = load_prog(path, "crib_sq_dynptr")?;
    let g = Globals::of(&obj).map_err(|e| e.to_string())?;

    // Two queued chunks, the first one partly read.
    for (what, data) in [("write 1", b"CRIBDATA"), ("write 2", b"12345678")] {
        let n = nix::unistd::write(&sv0, data).map_err(|e| format!("{what}: {e}"))?;
        if n != data.len() {
            return Err(format!("{what}: wrote {n} of {} bytes", data.len()));
        }
    }
    let mut buf = [0u8; 16];
    let n = recv(sv1.as_raw_fd(), &mut buf[..2], MsgFlags::empty())
        .map_err(|e| format!("recv 2: {e}"))?;
    if n != 2 {
        return Err(format!("recv 2: got {n} bytes"));
    }

    g.write_i32(&obj, "target_fd", sv1.as_raw_fd())
        .map_err(|e| format!("setting target_fd: {e}"))?;
    let prog = loader::find_prog(&obj, "crib_sq_dynptr")
        .ok_or("crib_sq_dynptr is not in the loaded object")?;
    let retval = loader::run_syscall(&prog, &mut ()).map_err(|e| e.to_string())?;
    c.eq("retval of crib_sq_dynptr", 0, retval);
    if retval != 0 {
        return Ok(());
    }

    let int = |name: &str| g.read_i32(&obj, name).map_err(|e| e.to_string());
    let ret = |name: &str| int(name).map(Ret);
    let uint = |name: &str| g.read_u32(&obj, name).map_err(|e| e.to_string());
    let arr = |name: &str| g.read_array::<4>(&obj, name).map_err(|e| e.to_string());
    c.eq("new_ret (bpf_iter_sock_queue_new)", Ret(0), ret("new_ret")?);
    c.eq("nr_elems", 2, int("nr_elems")?);
    c.eq("queue_ok (queue == CRIB_SQ_UNIX_RECV)", 1, int("queue_ok")?);
    c.eq("skip", 2, uint("skip")?);
    c.eq("len", 6, uint("len")?);
    c.eq(
        "from_skb_ret (bpf_dynptr_from_skb)",
        Ret(0),
        ret("from_skb_ret")?,
    );
    c.eq("read_ret (bpf_dynptr_read)", Ret(0), ret("read_ret")?);
    c.bytes("read_data", b"IBDA", &arr("read_data")?);
    c.bytes("slice_data", b"IBDA", &arr("slice_data")?);
    c.eq(
        "write_ret (bpf_dynptr_write)",
        Ret(-libc::EINVAL),
        ret("write_ret")?,
    );

    // The snapshot left the queue as it was.
    let n = recv(sv1.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
        .map_err(|e| format!("recv after the run: {e}"))?;
    c.eq("bytes recv() gets after the run", 14, n);
    c.bytes("queued data after the run", b"IBDATA12345678", &buf[..n]);
    Ok(())
}

const TRACE_PIPE: &str = "/sys/kernel/tracing/trace_pipe";

/// Make [`TRACE_PIPE`] readable: mount tracefs on `/sys/kernel/tracing` if it is not (the
/// guest's init mounts it only under debugfs). `Ok(true)` if this mounted it.
fn trace_pipe_available() -> Result<bool, String> {
    use nix::unistd::{access, AccessFlags};

    if access(TRACE_PIPE, AccessFlags::R_OK).is_ok() {
        return Ok(false);
    }
    nix::mount::mount(
        Some("tracefs"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| format!("{TRACE_PIPE} is not readable and mounting tracefs failed: {e}"))?;
    if let Err(e) = access(TRACE_PIPE, AccessFlags::R_OK) {
        let _ = nix::mount::umount("/sys/kernel/tracing");
        return Err(format!(
            "{TRACE_PIPE} is not readable even with tracefs mounted: {e}"
        ));
    }
    Ok(true)
}

/// prog_tests/file_reader.c, `test_file_mode()`: the sleepable LSM program on
/// file_post_open makes a file dynptr of every file this thread opens; only what pread(2)
/// could read is taken.
fn file_mode(path: &Path, c: &mut Checks) -> Result<(), String> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;

    let dir = tempfile::Builder::new()
        .prefix("file_reader_mode_")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let file = dir.path().join("file");
    std::fs::write(&file, b"bpf!").map_err(|e| format!("{}: {e}", file.display()))?;
    let fifo = dir.path().join("file.fifo");
    nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|e| format!("mkfifo {}: {e}", fifo.display()))?;

    let obj = load_prog(path, "file_mode")?;
    let g = Globals::of(&obj).map_err(|e| e.to_string())?;
    let tid = nix::unistd::gettid().as_raw();
    g.write_i32(&obj, "tid", tid)
        .map_err(|e| format!("setting tid: {e}"))?;
    let prog = obj
        .progs_mut()
        .find(|p| p.name() == "file_mode")
        .ok_or("file_mode is not in the loaded object")?;
    let _link = prog
        .attach()
        .map_err(|e| format!("attach file_mode: {e}"))?;

    // check_open(): open and close `p`; the program recorded bpf_dynptr_from_file()'s
    // result in `err`. None if the open itself failed (recorded as a failure).
    let check_open = |c: &mut Checks, what: &str, p: &Path, flags: OFlag, want: i32, read| {
        let set = g
            .write_i32(&obj, "err", 1)
            .and_then(|()| g.write_i32(&obj, "read_err", 1))
            .and_then(|()| g.write_bool(&obj, "do_read", read));
        if let Err(e) = set {
            c.fail(format!("{what}: setting the globals: {e}"));
            return None;
        }
        match open(p, flags, Mode::empty()) {
            Ok(fd) => drop(fd),
            Err(e) => {
                c.fail(format!("{what}: open({}) failed: {e}", p.display()));
                return None;
            }
        }
        match g.read_i32(&obj, "err") {
            Ok(err) => c.eq(
                &format!("{what}: err (bpf_dynptr_from_file)"),
                Ret(want),
                Ret(err),
            ),
            Err(e) => c.fail(format!("{what}: reading err: {e}")),
        }
        Some(())
    };

    let ro = "regular file, O_RDONLY";
    if check_open(c, ro, &file, OFlag::O_RDONLY, 0, true).is_some() {
        let read_err = g.read_i32(&obj, "read_err").map_err(|e| e.to_string())?;
        c.eq(
            &format!("{ro}: read_err (bpf_dynptr_read)"),
            Ret(0),
            Ret(read_err),
        );
        let buf = g.read_array::<4>(&obj, "buf").map_err(|e| e.to_string())?;
        c.bytes(&format!("{ro}: buf"), b"bpf!", &buf);
    }
    check_open(c, "regular file, O_RDWR", &file, OFlag::O_RDWR, 0, false);
    // __kernel_read() would WARN: no FMODE_READ.
    let wo = OFlag::O_WRONLY;
    check_open(c, "regular file, O_WRONLY", &file, wo, -libc::EBADF, false);
    // A read would consume the FIFO's data.
    let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK;
    check_open(
        c,
        "FIFO, O_RDWR|O_NONBLOCK",
        &fifo,
        flags,
        -libc::EINVAL,
        false,
    );
    // Regular, but nonseekable_open(): reads consume the trace buffer.
    match trace_pipe_available() {
        Ok(mounted) => {
            if mounted {
                c.notes
                    .push("mounted tracefs on /sys/kernel/tracing for trace_pipe".into());
            }
            let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK;
            let what = "trace_pipe, O_RDONLY|O_NONBLOCK";
            let tp = Path::new(TRACE_PIPE);
            check_open(c, what, tp, flags, -libc::ESPIPE, false);
            if mounted {
                if let Err(e) = nix::mount::umount("/sys/kernel/tracing") {
                    c.notes
                        .push(format!("note: unmounting /sys/kernel/tracing: {e}"));
                }
            }
        }
        // test_file_mode() skips this case; here a case not run is never a pass.
        Err(e) => c.fail(format!(
            "the trace_pipe case (-ESPIPE) was not available: {e}"
        )),
    }
    Ok(())
}

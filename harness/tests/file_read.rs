//! Which files a BPF program can read through a trusted `struct file *` from the task_file
//! iterator (issue 3, items 3 and 4): `selftests/progs/file_read.bpf.c` reads the first bytes
//! of each of this process's files with `bpf_dynptr_from_file()`.
//!
//! In a sleepable program those reads go through the file's `->read_iter`: for a pipe that
//! would consume the target's data, for a write-only file it trips a WARN in
//! `__kernel_read()`. So:
//!
//! - stock + module: only through a reference from `bpf_iter_task_file_get_file()`, which is
//!   handed out only for regular files open for reading (O_WRONLY, O_PATH and the pipe get
//!   none); `item->file` passed directly is rejected by the verifier.
//! - patched: `item->file` is trusted for the step (KF_ITER_NEXT_SCOPED) whatever the file,
//!   and `bpf_dynptr_from_file()` refuses files not open for reading (EBADF) and files that
//!   are not regular (EINVAL; kernel-patches/0001).
//!
//! - On both, a regular file without pread(2) semantics (opened with `nonseekable_open()` or
//!   `stream_open()`: tracefs's `trace_pipe` here, a FUSE `FOPEN_STREAM` file elsewhere) is
//!   no file to read through: its reads consume data. The getters hand out no reference for
//!   it, and in-tree `bpf_dynptr_from_file()` refuses it with ESPIPE, as pread(2) does.
//!
//! Either way the pipe and `trace_pipe` still hold their bytes afterwards, and the guest's
//! dmesg has no splat.
//!
//! Each test body runs in a guest booted from the built kernel; the host only starts it.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use crib_harness::file_read::{self, FileReader, Outcome, Via};
use crib_harness::kernel::Flavor;
use crib_harness::loader::{self, LoadOpts};
use crib_harness::vm::{current_test_name, guest_test as run};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use rstest::rstest;

const CONTENT: &[u8; 16] = b"crib-read-probe!";

const PIPE_DATA: &[u8] = b"pipe bytes nobody may consume";

/// Written to tracefs's `trace_marker`; must still come out of `trace_pipe` afterwards.
const TRACE_MARKER: &str = "crib-trace-marker-nobody-may-consume";

const TRACEFS: &str = "/sys/kernel/tracing";

/// The files under test, each open in one mode, with the fd it got, and the pipe's write end.
struct Files {
    fds: Vec<(&'static str, OwnedFd)>,
    _pipe_w: OwnedFd,
}

/// A pipe holding [`PIPE_DATA`]: (read end, write end).
fn pipe_with_data() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe2()")?;
    let mut wf = fs::File::from(w.try_clone().context("dup of the pipe's write end")?);
    wf.write_all(PIPE_DATA).context("writing into the pipe")?;
    Ok((r, w))
}

/// tracefs's `trace_pipe` (a regular file opened with `nonseekable_open()`: no FMODE_PREAD,
/// and its reads consume the trace) with [`TRACE_MARKER`] in the trace, opened non-blocking so
/// that a read through it can never hang a program.
fn trace_pipe_with_marker() -> Result<OwnedFd> {
    let tracefs = Path::new(TRACEFS);
    if !tracefs.join("trace_marker").exists() {
        nix::mount::mount(
            Some("tracefs"),
            tracefs,
            Some("tracefs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting tracefs on {TRACEFS}"))?;
    }
    fs::write(tracefs.join("tracing_on"), "1").context("tracing_on")?;
    let pipe = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(tracefs.join("trace_pipe"))
        .context("opening trace_pipe")?;
    fs::write(tracefs.join("trace_marker"), TRACE_MARKER).context("writing trace_marker")?;
    Ok(pipe.into())
}

/// `trace_pipe` must still yield [`TRACE_MARKER`]: nothing consumed by the programs.
fn check_trace_pipe_intact(files: &Files) -> Result<()> {
    let (_, fd) = files
        .fds
        .iter()
        .find(|(m, _)| *m == "trace_pipe")
        .context("no trace_pipe among the files under test")?;
    let mut all = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        // O_NONBLOCK: EAGAIN once the trace is drained.
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&all);
    ensure!(
        text.contains(TRACE_MARKER),
        "trace_pipe lost the marker to the programs: it yields {text:?}"
    );
    eprintln!("trace_pipe: still yields the marker");
    Ok(())
}

/// The pipe must still hold exactly [`PIPE_DATA`]: nothing consumed by the programs.
fn check_pipe_intact(files: &Files) -> Result<()> {
    let (_, r) = files
        .fds
        .iter()
        .find(|(m, _)| *m == "pipe")
        .context("no pipe among the files under test")?;
    let mut buf = vec![0u8; PIPE_DATA.len() + 16];
    // O_NONBLOCK is not set, but the pipe holds data, so read() returns at once.
    let n = nix::unistd::read(r, &mut buf).context("reading the pipe back")?;
    let got = &buf[..n];
    ensure!(
        got == PIPE_DATA,
        "the pipe lost data to the programs: holds {:?}, expected {:?}",
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(PIPE_DATA)
    );
    eprintln!("pipe: still holds its {} bytes", PIPE_DATA.len());
    Ok(())
}

fn open_path(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .with_context(|| format!("open({}, O_PATH)", path.display()))
}

fn open_files(dir: &Path) -> Result<Files> {
    let data = dir.join("data");
    fs::write(&data, CONTENT).with_context(|| format!("writing {}", data.display()))?;
    let open = |read: bool, write: bool| -> Result<OwnedFd> {
        let f = OpenOptions::new()
            .read(read)
            .write(write)
            .open(&data)
            .with_context(|| format!("opening {} (read {read}, write {write})", data.display()))?;
        Ok(f.into())
    };
    let (pipe_r, pipe_w) = pipe_with_data()?;
    Ok(Files {
        fds: vec![
            ("O_RDONLY", open(true, false)?),
            ("O_WRONLY", open(false, true)?),
            ("O_RDWR", open(true, true)?),
            ("O_PATH", open_path(&data)?),
            ("pipe", pipe_r),
            ("trace_pipe", trace_pipe_with_marker()?),
        ],
        _pipe_w: pipe_w,
    })
}

/// Run `via` over this process and compare the outcome of our files with `expect`.
fn check(via: Via, files: &Files, expect: impl Fn(&str) -> Outcome) -> Result<()> {
    let reader = FileReader::load(via).with_context(|| format!("loading {}", via.prog_name()))?;
    let got: BTreeMap<u32, Outcome> = reader
        .read_all(std::process::id() as i32)
        .with_context(|| format!("running {}", via.prog_name()))?;
    let mut wrong = Vec::new();
    for (mode, fd) in &files.fds {
        let fd = fd.as_raw_fd() as u32;
        let want = expect(mode);
        match got.get(&fd) {
            None => wrong.push(format!("fd {fd} ({mode}): not reported, expected {want:?}")),
            Some(o) if *o != want => {
                wrong.push(format!("fd {fd} ({mode}): got {o:?}, expected {want:?}"))
            }
            Some(_) => {}
        }
    }
    ensure!(
        wrong.is_empty(),
        "{} over this process's files:\n  {}",
        via.prog_name(),
        wrong.join("\n  ")
    );
    eprintln!(
        "{}: {} fds reported, the {} under test as expected",
        via.prog_name(),
        got.len(),
        files.fds.len()
    );
    Ok(())
}

fn readable() -> Outcome {
    Outcome::Read(CONTENT.to_vec())
}

/// Both kernels: references only for regular files open for reading.
fn get_file_expect(mode: &str) -> Outcome {
    match mode {
        "O_RDONLY" | "O_RDWR" => readable(),
        _ => Outcome::NoReference,
    }
}

/// Which of this process's files each way of reading yields (module doc); on stock also that
/// the verifier refuses `item->file` passed directly.
fn reads(flavor: Flavor) -> Result<()> {
    let dir = Path::new("/tmp/crib-file-read");
    fs::create_dir_all(dir).context("creating /tmp/crib-file-read")?;
    let files = open_files(dir)?;
    match flavor {
        Flavor::Stock => item_file_untrusted()?,
        Flavor::Patched => check(Via::ItemFile, &files, |mode| match mode {
            "O_RDONLY" | "O_RDWR" => readable(),
            "pipe" => Outcome::DynptrRefused(Errno::EINVAL as i32),
            "trace_pipe" => Outcome::DynptrRefused(Errno::ESPIPE as i32),
            _ => Outcome::DynptrRefused(Errno::EBADF as i32),
        })?,
    }
    check(Via::GetFile, &files, get_file_expect)?;
    check_pipe_intact(&files)?;
    check_trace_pipe_intact(&files)
}

/// Stock: `item->file` passed directly to a kfunc must be refused by the verifier as untrusted.
fn item_file_untrusted() -> Result<()> {
    let obj = Path::new(crib_harness::BPF_DIR).join(file_read::OBJ_FILE);
    let prog = Via::ItemFile.prog_name();
    let loaded = loader::load_one(&obj, prog, &LoadOpts::default())
        .with_context(|| format!("loading {prog} from {}", obj.display()))?;
    let Some((errno, msg)) = &loaded.error else {
        bail!("{prog} loaded on the stock kernel: item->file must be untrusted there");
    };
    let want = "R1 must be referenced or trusted";
    ensure!(
        loaded.log.contains(want),
        "{prog} was rejected (errno {errno}: {msg}) but the log lacks {want:?}:\n{}",
        loaded.log
    );
    eprintln!("{prog}: rejected by the stock verifier ({want})");
    Ok(())
}

/// Stock: through get_file() only. Patched: through item->file too, which
/// bpf_dynptr_from_file() refuses for all but regular files open for reading.
#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn file_reads_only_regular_readable_files(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), reads);
}

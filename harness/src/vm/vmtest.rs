//! The vmtest backend (the default): vmtest runs the guest script,
//! `vmtest -k <bzImage> --kargs ... [-q scripts/qemu-tcg] -- <script>`, in its own process group
//! with a timeout, and its stdout is read line by line with arrival times; also vmtest's
//! interactive shell mode.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::accel::Accel;
use super::script::{make_nonce, setup_steps, write_executable};
use super::transcript::{
    find_marker, interpret, save_transcript, section_of, transcript_path, RawRun, Section,
};
use super::{Backend, GuestRun, Vm, VmError, EXIT_VM_FAILED};
use crate::kernel::cache_dir;

/// vmtest arguments for a TCG guest. vmtest 0.18 derives "KVM" from `arch == host arch &&
/// /dev/kvm exists`, and with KVM it waits only 80 s (instead of 120 s) for the guest agent,
/// which a KASAN+lockdep kernel under TCG on a busy 2-core host can miss. vmtest uses `arch`
/// for nothing else that matters here (the QEMU binary comes from `-q`, the console device is
/// the same for every non-aarch64 arch), so a non-host arch name turns its KVM logic off; the
/// `-q scripts/qemu-tcg` wrapper then supplies `-accel tcg,thread=multi -cpu max`.
const TCG_VMTEST_ARGS: &[&str] = &["--arch", "x86_64-tcg"];

/// `scripts/qemu-tcg`, or `$CRIB_QEMU_TCG`.
pub fn tcg_wrapper() -> PathBuf {
    crate::settings::get().qemu_tcg.clone()
}

/// The vmtest binary: `$VMTEST`, else `vmtest` on PATH, else `~/.cargo/bin/vmtest`.
pub fn vmtest_program() -> PathBuf {
    if let Some(p) = std::env::var_os("VMTEST") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("vmtest");
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cargo/bin/vmtest")
}

/// One boot through vmtest: the guest script handed to vmtest's agent, vmtest's stdout read
/// line by line (the command's own output echoed live if asked), the transcript saved, and
/// what came back split into a [`GuestRun`].
pub(super) fn run(
    vm: &Vm,
    accel: Accel,
    argv: &[OsString],
    timeout: Duration,
    transcript: Option<&Path>,
) -> Result<GuestRun, VmError> {
    check_wrapper(accel)?;
    let nonce = make_nonce();
    let script = vm.guest_script(argv, &nonce)?;
    let cmd = vm.vmtest_command(accel, &vm.kargs(), &script);
    let echo = vm.echo;
    let mut last_section = Section::Console;
    let raw = run_vmtest(cmd, timeout, |line| {
        if !echo {
            return;
        }
        // Echo only the command's own output, live.
        match find_marker(line, &nonce) {
            Some((before, _, _)) if last_section == Section::Output && !before.is_empty() => {
                println!("{before}")
            }
            None if last_section == Section::Output => println!("{line}"),
            _ => {}
        }
        last_section = section_of(line, &nonce, last_section);
    })?;
    if let Some(path) = transcript_path(transcript) {
        save_transcript(&path, &raw, "vmtest");
    }
    interpret(raw, &nonce, timeout)
}

impl Vm {
    pub(super) fn vmtest_command(&self, accel: Accel, kargs: &str, script: &str) -> Command {
        let mut cmd = Command::new(vmtest_program());
        cmd.arg("-k")
            .arg(&self.kernel.bzimage)
            .arg("--kargs")
            .arg(kargs);
        if accel == Accel::Tcg {
            cmd.args(TCG_VMTEST_ARGS).arg("-q").arg(tcg_wrapper());
        }
        cmd.arg("--").arg(script);
        cmd.env("VMTEST_NO_UI", "1");
        cmd
    }

    /// Boot the guest with an interactive shell on this terminal (vmtest's `-` mode). The
    /// setup (bpffs, lo, tmpfs, module) runs from the shell's first prompt through
    /// `PROMPT_COMMAND`, because vmtest runs no command in this mode. Returns vmtest's exit
    /// code. No timeout.
    pub fn interactive(&self) -> Result<i32, VmError> {
        crate::settings::checked()?;
        // The direct backend has no terminal to give; vmtest does, so an interactive shell
        // boots through vmtest unless the caller asked for direct.
        if self.explicit_backend()? == Some(Backend::Direct) {
            return Err(VmError::InteractiveNeedsVmtest);
        }
        let accel = self.accel_choice()?;
        check_wrapper(accel.accel)?;
        let dir = cache_dir().join("tmp");
        std::fs::create_dir_all(&dir).map_err(|source| VmError::Io {
            what: format!("mkdir {}", dir.display()),
            source,
        })?;
        let path = dir.join(format!("guest-setup-{}.sh", std::process::id()));
        let mut s = String::from("#!/bin/bash\n[ -e /run/crib-setup.done ] && exit 0\n");
        s.push_str("touch /run/crib-setup.done\n");
        s.push_str(
            "crib_step() { \"$@\" || { echo \"crib: setup failed at: $*\" >&2; exit 1; }; }\n",
        );
        s.push_str(&setup_steps(&self.kernel));
        let _ = writeln!(
            s,
            "echo 'crib: guest ready ({} kernel {}, bpffs, lo, tmpfs /tmp{}); exit the shell to power off' >&2",
            self.kernel.flavor,
            self.kernel.release,
            if self.kernel.module.is_some() { ", module loaded" } else { "" }
        );
        write_executable(&path, &s)?;
        let kargs = format!("{} PROMPT_COMMAND={}", self.kargs(), path.display());
        let mut cmd = Command::new(vmtest_program());
        cmd.arg("-k")
            .arg(&self.kernel.bzimage)
            .arg("--kargs")
            .arg(&kargs);
        if accel.accel == Accel::Tcg {
            cmd.args(TCG_VMTEST_ARGS).arg("-q").arg(tcg_wrapper());
        }
        cmd.arg("-");
        let program = cmd.get_program().to_string_lossy().into_owned();
        let status = cmd
            .status()
            .map_err(|source| VmError::Spawn { program, source });
        let _ = std::fs::remove_file(&path);
        Ok(status?.code().unwrap_or(EXIT_VM_FAILED))
    }
}

fn check_wrapper(accel: Accel) -> Result<(), VmError> {
    let w = tcg_wrapper();
    if accel == Accel::Tcg && !w.is_file() {
        return Err(VmError::NoTcgWrapper(w));
    }
    Ok(())
}

/// Run a vmtest command with a timeout: its own process group (killed as a whole on
/// timeout), SIGKILLed if this thread dies, stdout read line by line.
pub(super) fn run_vmtest(
    mut cmd: Command,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<RawRun, VmError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure makes one async-signal-safe system call (prctl) between fork and
    // exec, and touches no memory of the parent's.
    unsafe {
        cmd.pre_exec(|| Ok(set_pdeathsig(Signal::SIGKILL)?));
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|source| VmError::Spawn { program, source })?;
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        if let Some(out) = stdout {
            let mut r = BufReader::new(out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_string();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let mut buf = Vec::new();
            let _ = e.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    });
    let deadline = start + timeout;
    let mut raw = RawRun::default();
    loop {
        let now = Instant::now();
        if now >= deadline {
            raw.timed_out = true;
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                on_line(&line);
                raw.lines.push((start.elapsed(), line));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                raw.timed_out = true;
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if raw.timed_out {
        kill_group(pgid, &mut child);
    }
    let status = wait_bounded(
        &mut child,
        pgid,
        deadline.max(Instant::now()) + Duration::from_secs(10),
    );
    raw.total = start.elapsed();
    // The pipes close once vmtest and qemu are gone.
    while let Ok(line) = rx.try_recv() {
        raw.lines.push((raw.total, line));
    }
    let _ = reader.join();
    raw.stderr = err_reader.join().unwrap_or_default();
    raw.code = status.and_then(|s| s.code());
    Ok(raw)
}

pub(super) fn kill_group(pgid: i32, child: &mut Child) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    let _ = child.kill();
}

/// Wait for vmtest to exit after its stdout closed; kill the group if it lingers.
pub(super) fn wait_bounded(
    child: &mut Child,
    pgid: i32,
    deadline: Instant,
) -> Option<std::process::ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => {
                // qemu is normally gone by now; make sure nothing of the group survives.
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                return Some(s);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                kill_group(pgid, child);
                return child.wait().ok();
            }
            Err(_) => return None,
        }
    }
}

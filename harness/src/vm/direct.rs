//! The `direct` backend: boot the kernel with QEMU itself, no vmtest and no guest agent.
//!
//! vmtest drives the guest through qemu-guest-agent with fixed limits (120 s for the agent to
//! answer, 5 s per setup request such as mkdir and the 9p mount) that a KASAN+lockdep kernel
//! under TCG on a loaded 2-core host does not meet. Here the guest's PID 1 is a bash script of
//! ours, so nothing but the run's own timeout (`CRIB_VM_TIMEOUT`) bounds a slow guest:
//!
//! - QEMU: `-kernel <bzImage>`, the host's `/` over virtio-9p as the root (read-only unless
//!   `Vm::ro_root(false)`: both QEMU's `readonly=on` and the kernel's `ro`), the serial console
//!   written to `console.log` in a run directory under `$CRIB_CACHE/tmp`, no network, no
//!   display, `-no-reboot` with `panic=-1` so a panic ends QEMU instead of hanging.
//! - `init` (same directory, so the guest sees it even though it covers `/tmp` with a tmpfs)
//!   does what vmtest's init does (proc, sys, devtmpfs, /dev/shm, /run, debugfs, tracefs,
//!   cgroup2, /mnt, /dev/fd), changes to the host's current directory and runs `cmd.sh` with
//!   exactly the host's environment (`env -i`, as vmtest hands the host's environment to the
//!   agent), stdin `/dev/null`, stdout and stderr a pipe to the console (not a tty, like
//!   vmtest's output port: on a tty dmesg and libtest would colour their output). `cmd.sh` is the very script the vmtest backend runs
//!   ([`Vm::guest_script`]): the same setup steps, exports, markers and dmesg. Then init
//!   waits for the console to drain, syncs and powers off.
//! - The host reads `console.log` as it grows, line by line with arrival times, and splits it
//!   at the run's markers with the same code as the vmtest backend; so a run gives the same
//!   [`GuestRun`] with either backend. On timeout it kills QEMU's process group; the run
//!   directory (console log, scripts) is kept when a run fails and named in the error.
//!
//! What it costs: the command's output reaches the host only through the serial console,
//! interleaved with any kernel message that is loud enough to reach the console (the setup
//! lowers the console log level to 1, so only emergencies and panics do); there is no
//! interactive shell.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::accel::Accel;
use super::script::{make_nonce, shell_quote, write_executable};
use super::splat::{is_crash, scan_splats};
use super::transcript::{
    find_marker, save_transcript, section_of, split_transcript, tail, transcript_path, RawRun,
    Section, TAIL_LINES,
};
use super::vmtest::{kill_group, wait_bounded};
use super::{GuestRun, Vm, VmError};
use crate::kernel::cache_dir;

/// 9p mount options of the root. vmtest mounts with `cache=mmap`, which sends every read to the
/// host; `cache=loose` keeps pages and metadata in the guest, which the read-only root of one
/// short run allows (the host does not change the files a test runs while it runs; a `--rw`
/// run's writes reach the host at the latest with the sync before power-off). Measured in
/// one guest: an exec of `/bin/true` 0.36 s with `mmap`, 0.23 s with `loose`; boot to
/// command 9.0 s -> 7.2 s.
const ROOTFLAGS_9P: &str = "trans=virtio,cache=loose,msize=1048576";
/// How often the console log is read.
const POLL: Duration = Duration::from_millis(50);
/// After the END marker, how long QEMU gets to power off before it is killed.
const POWEROFF_GRACE: Duration = Duration::from_secs(30);
/// The kernel command line is cut at 2048 bytes on x86 (COMMAND_LINE_SIZE).
const CMDLINE_MAX: usize = 2047;
/// Host variables bash sets or keeps read-only itself; passing them in changes nothing.
const SHELL_OWNED: &[&str] = &["PWD", "OLDPWD", "SHLVL", "_"];

/// Run `argv` in a guest of `vm`'s kernel booted by QEMU directly.
pub(super) fn run(
    vm: &Vm,
    accel: Accel,
    argv: &[OsString],
    timeout: Duration,
    transcript: Option<&Path>,
) -> Result<GuestRun, VmError> {
    let nonce = make_nonce();
    let cmd_script = vm.guest_script(argv, &nonce)?;
    let cwd = std::env::current_dir().map_err(|source| VmError::Io {
        what: "the current directory".into(),
        source,
    })?;
    let cwd = utf8_path(&cwd, "the current directory")?;

    let base = cache_dir().join("tmp");
    std::fs::create_dir_all(&base).map_err(|source| VmError::Io {
        what: format!("mkdir {}", base.display()),
        source,
    })?;
    let dir = tempfile::Builder::new()
        .prefix("vd")
        .tempdir_in(&base)
        .map_err(|source| VmError::Io {
            what: format!("tempdir in {}", base.display()),
            source,
        })?;
    let init_path = dir.path().join("init");
    let cmd_path = dir.path().join("cmd.sh");
    let log = dir.path().join("console.log");

    let host_path = std::env::var("PATH").unwrap_or_default();
    let env = host_env();
    let init = init_script(&InitSpec {
        nonce: &nonce,
        cwd,
        env: &env,
        cmd_script: utf8_path(&cmd_path, "the run directory")?,
        path: &host_path,
    });
    write_executable(&cmd_path, &cmd_script)?;
    write_executable(&init_path, &init)?;
    std::fs::write(&log, b"").map_err(|source| VmError::Io {
        what: format!("create {}", log.display()),
        source,
    })?;

    let cmdline = kernel_cmdline(utf8_path(&init_path, "the run directory")?, &vm.kargs())?;
    let settings = crate::settings::get();
    let program = settings.qemu.clone();
    let mut cmd = Command::new(&program);
    cmd.args(qemu_args(&QemuSpec {
        accel,
        bzimage: &vm.kernel.bzimage,
        cmdline: &cmdline,
        console_log: &log,
        ro_root: vm.ro_root,
        mem: &settings.vm_mem,
        cpus: &settings.vm_cpus.to_string(),
    }));
    eprintln!(
        "crib vm: direct backend ({} guest, {}s limit): console in {}",
        accel.as_str(),
        timeout.as_secs(),
        log.display()
    );

    let echo = vm.echo;
    let mut last_section = Section::Console;
    let raw = run_qemu(cmd, &log, timeout, POWEROFF_GRACE, |line| {
        if echo {
            // Echo only the command's own output, live.
            match find_marker(line, &nonce) {
                Some((before, _, _)) if last_section == Section::Output && !before.is_empty() => {
                    println!("{before}")
                }
                None if last_section == Section::Output => println!("{line}"),
                _ => {}
            }
        }
        last_section = section_of(line, &nonce, last_section);
        last_section == Section::After
    });
    let raw = match raw {
        Ok(r) => r,
        Err(e) => {
            let _ = dir.keep();
            return Err(e);
        }
    };
    if let Some(path) = transcript_path(transcript) {
        save_transcript(&path, &raw, "qemu");
    }
    let result = interpret(raw, &nonce, timeout, &log);
    if result.is_err() {
        // Keep the console log and the scripts for a look at what happened.
        let _ = dir.keep();
    }
    result
}

fn utf8_path<'a>(p: &'a Path, what: &str) -> Result<&'a str, VmError> {
    p.to_str().ok_or_else(|| VmError::Direct {
        what: format!("{what} {}", p.display()),
        why: "the path goes into a shell script and the kernel command line, and is not UTF-8",
    })
}

/// The host's environment as `KEY=value` pairs for the guest command: what vmtest hands its
/// guest agent. Variables that are not UTF-8 are left out (vmtest panics on them).
fn host_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| !SHELL_OWNED.contains(&k.as_str()))
        .collect()
}

/// What the guest's init script needs.
pub(super) struct InitSpec<'a> {
    /// The run's marker nonce.
    pub nonce: &'a str,
    /// The host's current directory, where the command runs.
    pub cwd: &'a str,
    /// The command's whole environment.
    pub env: &'a [(String, String)],
    /// The command script ([`Vm::guest_script`]) as the guest sees it.
    pub cmd_script: &'a str,
    /// The host's PATH, for init's own commands.
    pub path: &'a str,
}

/// The guest's PID 1: vmtest's init mounts, then the command script with the host's
/// environment in the host's current directory, then drain, sync and power off. A failing
/// mount prints a SETUP-FAILED marker (the run fails as a setup failure, exit 70 in `crib vm`)
/// and powers off; init never exits on purpose (PID 1 exiting panics the kernel, which
/// `panic=-1` and `-no-reboot` turn into QEMU exiting anyway).
pub(super) fn init_script(spec: &InitSpec) -> String {
    let nonce = spec.nonce;
    let mut s = String::new();
    s.push_str(
        "#!/bin/busybox sh\n# PID 1 of a guest booted by the crib direct backend \
         (harness/src/vm/direct.rs); generated per run.\n",
    );
    let mut path = spec.path.to_string();
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        if !path.split(':').any(|p| p == d) {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(d);
        }
    }
    let _ = writeln!(s, "export PATH={}", shell_quote(&path));
    s.push_str("umask 022\n");
    let _ = writeln!(
        s,
        "crib_mark() {{ printf '@@CRIB:{nonce}:%s@@%s\\n' \"$1\" \"${{2-}}\"; }}"
    );
    // TCSADRAIN (what stty does when it sets a mode) waits until the console has sent every
    // byte, so the last marker is out before the power goes.
    s.push_str(
        "crib_off() {\n\
         \t/bin/busybox stty -F /dev/console onlcr >/dev/null 2>&1 || /bin/busybox sleep 2\n\
         \t/bin/busybox sync\n\
         \t/bin/busybox poweroff -f >/dev/null 2>&1\n\
         \techo o >/proc/sysrq-trigger 2>/dev/null\n\
         \t/bin/busybox sleep 5\n\
         \texit 1\n\
         }\n",
    );
    s.push_str(
        "crib_init() { local out; if ! out=$(\"$@\" 2>&1); then printf '%s\\n' \"$out\"; \
         crib_mark SETUP-FAILED \"$*\"; crib_off; fi; }\n",
    );
    // vmtest's init, step by step (src/init/init.sh.template in vmtest 0.18), with the static
    // busybox instead of util-linux and coreutils: under TCG each dynamically linked exec
    // costs 0.2-0.8 s of loading shared libraries over 9p, busybox's 0.03-0.05 s, which
    // took 3 s off every boot (harness/README.md, "Guest boot time").
    s.push_str(
        "crib_init /bin/busybox mount -t proc -o nosuid,nodev,noexec proc /proc\n\
         if ! /bin/busybox grep -q '^[^ ]* /dev ' /proc/mounts; then\n\
         \tcrib_init /bin/busybox mount -t devtmpfs -o nosuid,noexec dev /dev\n\
         fi\n\
         if [ ! -d /dev/shm ]; then\n\
         \tcrib_init /bin/busybox mkdir /dev/shm\n\
         \tcrib_init /bin/busybox mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm\n\
         fi\n\
         crib_init /bin/busybox mount -t tmpfs -o nosuid,nodev tmpfs /run\n\
         crib_init /bin/busybox mount -t sysfs -o nosuid,nodev,noexec sys /sys\n\
         /bin/busybox mount -t debugfs debugfs /sys/kernel/debug >/dev/null 2>&1\n\
         /bin/busybox mount -t tracefs tracefs /sys/kernel/debug/tracing >/dev/null 2>&1\n\
         crib_init /bin/busybox mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup\n\
         crib_init /bin/busybox mount -t tmpfs -o nosuid,nodev tmpfs /mnt\n\
         [ -e /dev/fd ] || /bin/busybox ln -s /proc/self/fd /dev/fd\n",
    );
    let cwd = shell_quote(spec.cwd);
    let _ = writeln!(
        s,
        "cd {cwd} || {{ crib_mark SETUP-FAILED {}; crib_off; }}",
        shell_quote(&format!("cd {}", spec.cwd))
    );
    let mut words = vec!["/bin/busybox env -i".to_string()];
    words.extend(
        spec.env
            .iter()
            .map(|(k, v)| shell_quote(&format!("{k}={v}"))),
    );
    // busybox's shell, not bash, for init and the command script (both POSIX sh with `local`,
    // which the vmtest backend runs with bash): bash is linked dynamically, and its two execs
    // cost 0.4 s of every TCG boot.
    words.push(format!("/bin/busybox sh {}", shell_quote(spec.cmd_script)));
    // stdout and stderr are a pipe that cat copies to the console, not the console itself:
    // on a tty dmesg and libtest colour their output (and other programs may change their
    // ways), while under vmtest they write to a virtio port, which is no tty either.
    let _ = writeln!(
        s,
        "{} </dev/null 2>&1 | /bin/busybox cat >/dev/console",
        words.join(" \\\n\t")
    );
    s.push_str("crib_off\n");
    s
}

/// The kernel command line: 9p root, serial console, our init, panic behaviour, then the
/// arguments both backends pass ([`Vm::kargs`]: `ro`/`rw`, `acpi=noirq tsc=reliable`,
/// `CRIB_VM_KARGS` last so it can override).
pub(super) fn kernel_cmdline(init: &str, kargs: &str) -> Result<String, VmError> {
    if init.is_empty() || init.contains(|c: char| c.is_whitespace() || c == '"') {
        return Err(VmError::Direct {
            what: format!("the init path {init:?}"),
            why: "it goes on the kernel command line and must not hold whitespace or quotes",
        });
    }
    let line = format!(
        "rootfstype=9p rootflags={ROOTFLAGS_9P} console=ttyS0,115200 \
         earlyprintk=serial,ttyS0,115200 printk.devkmsg=on loglevel=7 raid=noautodetect \
         init={init} panic=-1 {kargs}"
    );
    if line.len() > CMDLINE_MAX {
        return Err(VmError::Direct {
            what: format!("the kernel command line ({} bytes)", line.len()),
            why: "x86 keeps only 2047 bytes of it (shorten CRIB_VM_KARGS)",
        });
    }
    Ok(line)
}

/// What the QEMU command line needs.
pub(super) struct QemuSpec<'a> {
    pub accel: Accel,
    pub bzimage: &'a Path,
    pub cmdline: &'a str,
    pub console_log: &'a Path,
    pub ro_root: bool,
    pub mem: &'a str,
    pub cpus: &'a str,
}

/// QEMU option values separate suboptions with commas; a comma in a value is doubled.
fn qemu_opt_value(p: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

pub(super) fn qemu_args(spec: &QemuSpec) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push("-nodefaults");
    push("-no-reboot");
    push("-display");
    push("none");
    match spec.accel {
        Accel::Tcg => {
            push("-accel");
            push("tcg,thread=multi");
            push("-cpu");
            push("max");
        }
        Accel::Kvm => {
            push("-accel");
            push("kvm");
            push("-cpu");
            push("host");
        }
    }
    push("-m");
    push(spec.mem);
    push("-smp");
    push(spec.cpus);
    push("-chardev");
    let mut con = OsString::from("file,id=con,append=on,path=");
    con.push(qemu_opt_value(spec.console_log));
    a.push(con);
    a.push("-serial".into());
    a.push("chardev:con".into());
    a.push("-virtfs".into());
    a.push(
        format!(
            "local,id=root,path=/,mount_tag=/dev/root,security_model=none,multidevs=remap{}",
            if spec.ro_root { ",readonly=on" } else { "" }
        )
        .into(),
    );
    a.push("-kernel".into());
    a.push(spec.bzimage.into());
    a.push("-append".into());
    a.push(spec.cmdline.into());
    a
}

/// Splits console bytes into lines; a line ends at `\n`, trailing `\r`s (the tty's and the
/// serial console's CRLF) are dropped.
#[derive(Default)]
pub(super) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8], mut line: impl FnMut(String)) {
        self.pending.extend_from_slice(bytes);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let rest = self.pending.split_off(i + 1);
            let l = std::mem::replace(&mut self.pending, rest);
            line(clean_line(&l));
        }
    }

    /// The last line, if it has no newline.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let l = std::mem::take(&mut self.pending);
        Some(clean_line(&l))
    }
}

fn clean_line(l: &[u8]) -> String {
    let s = String::from_utf8_lossy(l);
    s.trim_end_matches(['\n', '\r']).to_string()
}

/// Start QEMU and follow its console log until QEMU exits or `timeout` passes (then kill its
/// process group). `on_line` sees each console line as it arrives and returns true once the
/// guest has printed everything (the END marker); QEMU then gets `grace` to power off before
/// it is killed, and the run does not count as timed out.
fn run_qemu(
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
    grace: Duration,
    mut on_line: impl FnMut(&str) -> bool,
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
    let mut console = std::fs::File::open(log).map_err(|source| VmError::Io {
        what: format!("open {}", log.display()),
        source,
    })?;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|source| VmError::Spawn { program, source })?;
    let pgid = child.id() as i32;
    // QEMU prints its own complaints (bad option, missing file) to stdout or stderr.
    let collect = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_reader = collect(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err_reader = collect(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );

    let deadline = start + timeout;
    let mut raw = RawRun::default();
    let mut split = LineSplitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done_at: Option<Instant> = None;
    let mut read_console = |raw: &mut RawRun, done_at: &mut Option<Instant>| loop {
        match console.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => split.push(&buf[..n], |line| {
                if on_line(&line) && done_at.is_none() {
                    *done_at = Some(Instant::now());
                }
                raw.lines.push((start.elapsed(), line));
            }),
        }
    };
    let status = loop {
        read_console(&mut raw, &mut done_at);
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        let now = Instant::now();
        let gave_up = done_at.is_some_and(|t| now >= t + grace);
        if now >= deadline || gave_up {
            raw.timed_out = done_at.is_none();
            kill_group(pgid, &mut child);
            break wait_bounded(&mut child, pgid, Instant::now() + Duration::from_secs(10));
        }
        std::thread::sleep(POLL);
    };
    // QEMU has no children, but make sure nothing of its group survives.
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    raw.total = start.elapsed();
    read_console(&mut raw, &mut done_at);
    if let Some(last) = split.finish() {
        let _ = on_line(&last);
        raw.lines.push((raw.total, last));
    }
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    raw.stderr = format!("{out}{err}");
    raw.code = status.and_then(|s| s.code());
    Ok(raw)
}

/// Turn the console transcript into a [`GuestRun`] or the reason the run failed.
pub(super) fn interpret(
    raw: RawRun,
    nonce: &str,
    timeout: Duration,
    log: &Path,
) -> Result<GuestRun, VmError> {
    let t = split_transcript(&raw.lines, nonce);
    if let Some(e) = t.setup_error() {
        return Err(e);
    }
    // A complete transcript is the run, however QEMU ended afterwards (killed when it did not
    // power off).
    if let Some(run) = t.finished(raw.total) {
        return Ok(run);
    }
    let phase = t.phase();
    let all: Vec<&str> = raw.lines.iter().map(|(_, l)| l.as_str()).collect();
    let splats = scan_splats(&all.join("\n"));
    if raw.timed_out {
        return Err(VmError::GuestTimeout {
            timeout,
            phase,
            tail: tail(&all, TAIL_LINES),
            splats,
            log: log.to_path_buf(),
        });
    }
    if all.is_empty() && raw.code != Some(0) {
        return Err(VmError::QemuStart {
            program: crate::settings::get().qemu.display().to_string(),
            code: raw.code,
            stderr: raw.stderr,
        });
    }
    if is_crash(&splats) {
        return Err(VmError::Crashed {
            phase,
            splats,
            tail: tail(&all, TAIL_LINES),
        });
    }
    let mut reason = if all.is_empty() {
        "QEMU exited before the guest printed anything".to_string()
    } else {
        "the guest powered off or rebooted before the command finished".to_string()
    };
    let err = raw.stderr.trim();
    if !err.is_empty() {
        reason.push_str(&format!("\nQEMU said:\n{err}"));
    }
    Err(VmError::GuestStopped {
        phase,
        code: raw.code,
        reason,
        tail: tail(&all, TAIL_LINES),
        log: log.to_path_buf(),
    })
}

#[cfg(test)]
mod tests;

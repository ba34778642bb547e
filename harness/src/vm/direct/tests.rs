//! Host-side unit tests of the direct backend: init script, kernel and QEMU command lines,
//! console line splitting, transcript interpretation, and the QEMU follower driven by fake
//! QEMUs (shell one-liners). No guest is booted, and the init script is never executed here
//! (it mounts and powers off): only `bash -n` checks it.

use super::*;
use crate::vm::{Backend, SplatKind};
use std::path::PathBuf;

fn spec_env() -> Vec<(String, String)> {
    vec![
        ("HOME".into(), "/root".into()),
        ("WEIRD".into(), "it's $x\nline".into()),
        ("BASH_FUNC_f%%".into(), "() {  echo f\n}".into()),
    ]
}

fn script() -> String {
    let env = spec_env();
    init_script(&InitSpec {
        nonce: "N0NCE",
        cwd: "/work/main/harness",
        env: &env,
        cmd_script: "/c/tmp/vdX/cmd.sh",
        path: "/root/.cargo/bin:/usr/bin",
    })
}

fn pos(s: &str, needle: &str) -> usize {
    s.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} missing in\n{s}"))
}

#[test]
fn init_script_is_valid_busybox_sh() {
    let s = script();
    assert!(s.starts_with("#!/bin/busybox sh\n"));
    let st = std::process::Command::new("/bin/busybox")
        .args(["sh", "-n"])
        .arg("-c")
        .arg(&s)
        .status()
        .unwrap();
    assert!(st.success(), "{s}");
}

#[test]
fn init_script_mounts_like_vmtest_then_runs_the_command_then_powers_off() {
    let s = script();
    // PATH first: the host's, then the system directories it lacks.
    assert!(s.contains("export PATH=/root/.cargo/bin:/usr/bin:/usr/sbin:/sbin:/bin\n"));
    assert!(pos(&s, "export PATH") < pos(&s, "mount -t proc"));
    assert!(pos(&s, "mount -t proc") < pos(&s, "mount -t devtmpfs"));
    for m in [
        "tmpfs /dev/shm",
        "tmpfs /run",
        "sys /sys",
        "cgroup2 /sys/fs/cgroup",
        "tmpfs /mnt",
    ] {
        assert!(pos(&s, "mount -t proc") < pos(&s, m), "{m}");
        assert!(pos(&s, m) < pos(&s, "cd /work/main/harness"), "{m}");
    }
    assert!(pos(&s, "cd /work/main/harness") < pos(&s, "env -i"));
    assert!(pos(&s, "env -i") < pos(&s, "/bin/busybox sh /c/tmp/vdX/cmd.sh"));
    // The command: stdin /dev/null, stdout and stderr a pipe to the console (no tty).
    assert!(s.contains(
        "/bin/busybox sh /c/tmp/vdX/cmd.sh </dev/null 2>&1 | /bin/busybox cat >/dev/console\n"
    ));
    // Then drain, sync, power off; the markers carry the nonce.
    assert!(s.trim_end().ends_with("crib_off"));
    assert!(pos(&s, "stty -F /dev/console") < pos(&s, "sync"));
    assert!(pos(&s, "busybox sync") < pos(&s, "/bin/busybox poweroff -f"));
    // Setup runs the static busybox, never a dynamically linked mount (slow to exec under TCG).
    for l in s.lines().filter(|l| l.contains("mount -t")) {
        assert!(l.contains("/bin/busybox mount -t"), "{l}");
    }
    assert!(pos(&s, "poweroff -f") < pos(&s, "echo o >/proc/sysrq-trigger"));
    assert!(s.contains("@@CRIB:N0NCE:%s@@%s"));
}

/// The `env -i` words give the command exactly the given environment, odd values and names
/// included. Evaluated by busybox sh with `env -i ... /bin/busybox sh` replaced by `printf`.
#[test]
fn init_script_passes_the_environment_verbatim() {
    let s = script();
    let start = pos(&s, "env -i");
    let end = pos(&s, "/bin/busybox sh /c/tmp/vdX/cmd.sh");
    let words = s[start + "env -i".len()..end].replace("\\\n", " ");
    let out = std::process::Command::new("/bin/busybox")
        .args(["sh", "-c"])
        .arg(format!("printf '%s\\0' {words}"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_string)
        .collect();
    let want: Vec<String> = spec_env().iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(got, want);
}

#[test]
fn init_script_markers_parse() {
    let s = script();
    let func = s.lines().find(|l| l.starts_with("crib_mark()")).unwrap();
    let out = std::process::Command::new("/bin/busybox")
        .args(["sh", "-c"])
        .arg(format!("{func}\ncrib_mark SETUP-FAILED 'mount -t proc'"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        find_marker(text.trim_end(), "N0NCE"),
        Some(("", "SETUP-FAILED", "mount -t proc"))
    );
}

#[test]
fn host_env_leaves_out_what_bash_owns() {
    let env = host_env();
    assert!(env.iter().all(|(k, _)| k != "PWD" && k != "SHLVL"));
    assert!(env.iter().any(|(k, _)| k == "PATH"));
}

#[test]
fn kernel_cmdline_has_root_console_init_panic_then_the_shared_kargs() {
    let c = kernel_cmdline("/c/tmp/vd1/init", "ro acpi=noirq tsc=reliable quiet").unwrap();
    for a in [
        "rootfstype=9p",
        "rootflags=trans=virtio,cache=loose,msize=1048576",
        "console=ttyS0,115200",
        "printk.devkmsg=on",
        "init=/c/tmp/vd1/init",
        "panic=-1",
    ] {
        assert!(c.split(' ').any(|w| w == a), "{a} missing: {c}");
    }
    // The shared arguments come last, CRIB_VM_KARGS (here `quiet`) at the very end.
    assert!(
        c.ends_with(" panic=-1 ro acpi=noirq tsc=reliable quiet"),
        "{c}"
    );
}

#[test]
fn kernel_cmdline_refuses_what_the_kernel_would_mangle() {
    let e = kernel_cmdline("/a b/init", "ro").unwrap_err().to_string();
    assert!(e.contains("whitespace"), "{e}");
    let long = "x".repeat(2100);
    let e = kernel_cmdline("/i", &long).unwrap_err().to_string();
    assert!(e.contains("CRIB_VM_KARGS"), "{e}");
}

fn qemu(accel: Accel, ro: bool, log: &str) -> Vec<String> {
    qemu_args(&QemuSpec {
        accel,
        bzimage: Path::new("/k/bzImage"),
        cmdline: "init=/i ro",
        console_log: Path::new(log),
        ro_root: ro,
        mem: "2G",
        cpus: "2",
    })
    .into_iter()
    .map(|a| a.into_string().unwrap())
    .collect()
}

fn has_pair(args: &[String], a: &str, b: &str) -> bool {
    args.windows(2).any(|w| w[0] == a && w[1] == b)
}

#[test]
fn qemu_args_tcg_ro_root_console_to_file() {
    let a = qemu(Accel::Tcg, true, "/c/tmp/vd1/console.log");
    assert!(has_pair(&a, "-accel", "tcg,thread=multi"), "{a:?}");
    assert!(has_pair(&a, "-cpu", "max"));
    assert!(has_pair(&a, "-m", "2G"));
    assert!(has_pair(&a, "-smp", "2"));
    assert!(a.contains(&"-no-reboot".to_string()));
    assert!(a.contains(&"-nodefaults".to_string()));
    assert!(has_pair(&a, "-display", "none"));
    assert!(has_pair(
        &a,
        "-chardev",
        "file,id=con,append=on,path=/c/tmp/vd1/console.log"
    ));
    assert!(has_pair(&a, "-serial", "chardev:con"));
    assert!(has_pair(
        &a,
        "-virtfs",
        "local,id=root,path=/,mount_tag=/dev/root,security_model=none,multidevs=remap,readonly=on"
    ));
    assert!(has_pair(&a, "-kernel", "/k/bzImage"));
    assert!(has_pair(&a, "-append", "init=/i ro"));
    assert!(!a.iter().any(|x| x.contains("kvm")), "{a:?}");
    assert!(!a.iter().any(|x| x.contains("netdev")), "{a:?}");
}

#[test]
fn qemu_args_rw_root_kvm_and_a_comma_in_the_log_path() {
    let a = qemu(Accel::Kvm, false, "/c,d/console.log");
    assert!(has_pair(&a, "-accel", "kvm"));
    assert!(has_pair(&a, "-cpu", "host"));
    assert!(a.iter().any(|x| x.ends_with("multidevs=remap")), "{a:?}");
    assert!(has_pair(
        &a,
        "-chardev",
        "file,id=con,append=on,path=/c,,d/console.log"
    ));
}

#[test]
fn line_splitter_joins_partial_reads_and_drops_crlf() {
    let mut s = LineSplitter::default();
    let mut lines = Vec::new();
    s.push(b"[    0.1] Linux ver", |l| lines.push(l));
    assert!(lines.is_empty());
    s.push(b"sion 7.3\r\n@@CRIB:n:START@@\r\nhel", |l| lines.push(l));
    s.push(b"lo\r\r\n\r\nno newline", |l| lines.push(l));
    assert_eq!(
        lines,
        vec![
            "[    0.1] Linux version 7.3",
            "@@CRIB:n:START@@",
            "hello",
            ""
        ]
    );
    assert_eq!(s.finish().as_deref(), Some("no newline"));
    assert_eq!(s.finish(), None);
}

fn raw(lines: &[&str]) -> RawRun {
    RawRun {
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, l)| (Duration::from_millis(100 * i as u64), l.to_string()))
            .collect(),
        stderr: String::new(),
        code: Some(0),
        total: Duration::from_secs(12),
        timed_out: false,
    }
}

const T: Duration = Duration::from_secs(300);

fn log() -> &'static Path {
    Path::new("/c/tmp/vd1/console.log")
}

/// What a direct guest's console looks like: boot, setup, the command, its exit code, the
/// dmesg, then the power-off.
const CONSOLE: &[&str] = &[
    "[    0.000000] Linux version 7.3.0-rc7 (root@host) #1 SMP",
    "[    0.000000] Command line: rootfstype=9p init=/c/tmp/vd1/init panic=-1 ro",
    "[    9.100000] Run /c/tmp/vd1/init as init process",
    "[    9.900000] crib_kfuncs: loading out-of-tree module taints kernel.",
    "@@CRIB:n1:START@@",
    "hello from the guest",
    "no newline@@CRIB:n1:RC@@3",
    "@@CRIB:n1:DMESG@@",
    "[    0.000000] Linux version 7.3.0-rc7 (root@host) #1 SMP",
    "[   10.500000] WARNING: kernel/bpf/crib_fake.c:42 at crib_fake+0x1c/0x30, CPU#0: t/1",
    "@@CRIB:n1:END@@",
    "[   11.000000] reboot: Power down",
];

#[test]
fn a_complete_console_gives_exit_code_output_and_dmesg() {
    let run = interpret(raw(CONSOLE), "n1", T, log()).unwrap();
    assert_eq!(run.exit_code, 3);
    assert_eq!(run.output, "hello from the guest\nno newline");
    assert_eq!(run.dmesg.lines().count(), 2);
    assert!(run.dmesg.starts_with("[    0.000000] Linux version"));
    assert_eq!(run.boot, Duration::from_millis(400));
    assert_eq!(run.total, Duration::from_secs(12));
    assert!(run.console.contains("Run /c/tmp/vd1/init as init process"));
    assert!(run.console.contains("reboot: Power down"));
    // Boot messages before START are not the dmesg: the splat scan sees only the dmesg.
    let splats = run.splats();
    assert_eq!(splats.len(), 1, "{splats:#?}");
    assert_eq!(splats[0].kind, SplatKind::Warning);
}

#[test]
fn a_command_exiting_69_or_70_is_not_a_vm_failure() {
    for rc in ["69", "70", "0"] {
        let rc_line = format!("@@CRIB:n:RC@@{rc}");
        let r = raw(&[
            "@@CRIB:n:START@@",
            &rc_line,
            "@@CRIB:n:DMESG@@",
            "@@CRIB:n:END@@",
        ]);
        assert_eq!(
            interpret(r, "n", T, log()).unwrap().exit_code.to_string(),
            rc
        );
    }
}

#[test]
fn a_complete_console_counts_even_if_qemu_had_to_be_killed_after_it() {
    let mut r = raw(CONSOLE);
    r.code = None; // SIGKILLed: the guest did not power off within the grace period
    assert_eq!(interpret(r, "n1", T, log()).unwrap().exit_code, 3);
}

#[test]
fn a_timeout_says_guest_did_not_finish_with_the_console_tail_and_log() {
    let mut r = raw(&[
        "[    0.000000] Linux version 7.3.0-rc7",
        "[  200.000000] kasan: KernelAddressSanitizer initialized (generic)",
    ]);
    r.timed_out = true;
    r.code = None;
    let e = interpret(r, "n", Duration::from_secs(20), log()).unwrap_err();
    assert!(matches!(e, VmError::GuestTimeout { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.starts_with(
            "guest did not finish in 20 s (while booting and setting up the guest); killed QEMU"
        ),
        "{m}"
    );
    assert!(m.contains("CRIB_VM_TIMEOUT"), "{m}");
    assert!(m.contains("console log: /c/tmp/vd1/console.log"), "{m}");
    assert!(
        m.contains("last console lines:\n[    0.000000] Linux version"),
        "{m}"
    );
    assert!(m.contains("KernelAddressSanitizer initialized"), "{m}");
}

#[test]
fn a_timeout_while_the_command_runs_names_that_phase() {
    let mut r = raw(&["@@CRIB:n:START@@", "working..."]);
    r.timed_out = true;
    let m = interpret(r, "n", T, log()).unwrap_err().to_string();
    assert!(m.contains("while running the command"), "{m}");
    assert!(m.contains("working..."), "{m}");
}

#[test]
fn qemu_failing_to_start_is_a_clear_error_with_what_it_said() {
    let mut r = raw(&[]);
    r.code = Some(1);
    r.stderr = "qemu-system-x86_64: -virtfs local,...: cannot initialize fsdev 'root'\n".into();
    let e = interpret(r, "n", T, log()).unwrap_err();
    assert!(matches!(e, VmError::QemuStart { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.starts_with("QEMU failed to start ("), "{m}");
    assert!(m.contains("exit 1"), "{m}");
    assert!(m.contains("cannot initialize fsdev"), "{m}");
}

#[test]
fn a_panic_on_the_console_is_a_crash() {
    let r = raw(&[
        "@@CRIB:n:START@@",
        "[   41.000000] Oops: general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] SMP KASAN NOPTI",
        "[   41.000011] Kernel panic - not syncing: Fatal exception",
    ]);
    match interpret(r, "n", T, log()) {
        Err(e @ VmError::Crashed { .. }) => {
            let m = e.to_string();
            assert!(m.contains("running the command"), "{m}");
            assert!(m.contains("Kernel panic"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_guest_that_stops_without_its_end_marker_is_a_failure() {
    let mut r = raw(&[
        "@@CRIB:n:START@@",
        "partial",
        "[   12.0] reboot: Power down",
    ]);
    r.stderr = "qemu: terminating on signal 15".into();
    let e = interpret(r, "n", T, log()).unwrap_err();
    assert!(matches!(e, VmError::GuestStopped { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("while running the command (QEMU exit 0)"), "{m}");
    assert!(m.contains("terminating on signal 15"), "{m}");
    assert!(m.contains("reboot: Power down"), "{m}");
}

#[test]
fn a_failed_init_mount_is_a_setup_failure() {
    let r = raw(&[
        "[    9.1] Run /c/init as init process",
        "mount: /sys/fs/cgroup: unknown filesystem type 'cgroup2'.",
        "@@CRIB:n:SETUP-FAILED@@mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup",
        "[    9.3] reboot: Power down",
    ]);
    match interpret(r, "n", T, log()) {
        Err(e @ VmError::Setup { .. }) => {
            let m = e.to_string();
            assert!(m.contains("`mount -t cgroup2"), "{m}");
            assert!(m.contains("unknown filesystem type"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn backend_names_parse_and_junk_is_refused() {
    assert_eq!("direct".parse::<Backend>().unwrap(), Backend::Direct);
    assert_eq!("vmtest".parse::<Backend>().unwrap(), Backend::Vmtest);
    let m = "qemu".parse::<Backend>().unwrap_err().to_string();
    assert!(m.contains("CRIB_VM_BACKEND=\"qemu\""), "{m}");
    assert!(m.contains("'vmtest' or 'direct'"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// The QEMU follower, with shell one-liners in QEMU's place writing the console log.

fn fake(log: &Path, script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).arg("fake-qemu").arg(log);
    c
}

fn log_file() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("console.log");
    std::fs::write(&p, b"").unwrap();
    (d, p)
}

#[test]
fn follower_reads_the_console_until_qemu_exits() {
    let (_d, log) = log_file();
    let cmd = fake(
        &log,
        "printf 'boot\\r\\n@@CRIB:n:START@@\\r\\n' >>\"$1\"; sleep 0.3; \
         printf 'out\\r\\n@@CRIB:n:RC@@0\\r\\n@@CRIB:n:DMESG@@\\r\\n@@CRIB:n:END@@\\r\\ntail' >>\"$1\"",
    );
    let mut seen = Vec::new();
    let raw = run_qemu(cmd, &log, T, POWEROFF_GRACE, |l| {
        seen.push(l.to_string());
        l.contains("END")
    })
    .unwrap();
    assert!(!raw.timed_out);
    assert_eq!(raw.code, Some(0));
    let lines: Vec<&str> = raw.lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        lines,
        vec![
            "boot",
            "@@CRIB:n:START@@",
            "out",
            "@@CRIB:n:RC@@0",
            "@@CRIB:n:DMESG@@",
            "@@CRIB:n:END@@",
            "tail"
        ]
    );
    assert_eq!(seen, lines);
    // Arrival times: the output came after the sleep.
    assert!(raw.lines[2].0 >= Duration::from_millis(250), "{raw:?}");
    assert_eq!(interpret(raw, "n", T, &log).unwrap().output, "out");
}

#[test]
fn follower_kills_a_hung_qemu_at_the_timeout() {
    let (_d, log) = log_file();
    let cmd = fake(&log, "printf 'booting\\n' >>\"$1\"; exec sleep 60");
    let started = Instant::now();
    let raw = run_qemu(cmd, &log, Duration::from_secs(1), POWEROFF_GRACE, |_| false).unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "{raw:?}");
    assert!(raw.timed_out);
    assert_eq!(raw.code, None, "killed by a signal");
    let m = interpret(raw, "n", Duration::from_secs(1), &log)
        .unwrap_err()
        .to_string();
    assert!(m.starts_with("guest did not finish in 1 s"), "{m}");
    assert!(m.contains("last console lines:\nbooting"), "{m}");
}

#[test]
fn follower_stops_waiting_for_poweroff_after_the_end_marker() {
    let (_d, log) = log_file();
    let cmd = fake(
        &log,
        "printf '@@CRIB:n:START@@\\n@@CRIB:n:RC@@5\\n@@CRIB:n:DMESG@@\\n@@CRIB:n:END@@\\n' \
         >>\"$1\"; exec sleep 60",
    );
    let started = Instant::now();
    let raw = run_qemu(cmd, &log, T, Duration::from_millis(500), |l| {
        l.contains("END")
    })
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "{raw:?}");
    assert!(!raw.timed_out);
    assert_eq!(interpret(raw, "n", T, &log).unwrap().exit_code, 5);
}

#[test]
fn follower_reports_qemu_refusing_to_start() {
    let (_d, log) = log_file();
    let cmd = fake(
        &log,
        "echo 'qemu-system-x86_64: -m 2Q: bad size' >&2; exit 1",
    );
    let raw = run_qemu(cmd, &log, T, POWEROFF_GRACE, |_| false).unwrap();
    let m = interpret(raw, "n", T, &log).unwrap_err().to_string();
    assert!(m.contains("QEMU failed to start"), "{m}");
    assert!(m.contains("exit 1"), "{m}");
    assert!(m.contains("-m 2Q: bad size"), "{m}");
}

#[test]
fn follower_reports_a_missing_qemu_binary() {
    let (_d, log) = log_file();
    let cmd = Command::new("/nonexistent/qemu-system-x86_64");
    match run_qemu(cmd, &log, T, POWEROFF_GRACE, |_| false) {
        Err(e @ VmError::Spawn { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("cannot run /nonexistent/qemu-system-x86_64"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
}

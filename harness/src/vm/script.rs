//! The guest script: the bash the guest runs (setup steps, the exports, the command between
//! markers carrying a per-run nonce, then the whole dmesg), and the shell quoting it needs.
//! Both backends hand the guest the same script: vmtest's agent runs it, the direct backend's
//! init runs it as `cmd.sh`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::{Vm, VmError, EXIT_SETUP_FAILED};
use crate::kernel::Kernel;

/// Quote a string for bash (shlex; a string with a NUL, which no shell word can hold, becomes
/// the empty word: the callers refuse such arguments before they get here).
pub fn shell_quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| "''".into(), |q| q.into_owned())
}

impl Vm {
    /// The bash script vmtest runs in the guest.
    pub(super) fn guest_script(&self, argv: &[OsString], nonce: &str) -> Result<String, VmError> {
        let mut words = Vec::with_capacity(argv.len());
        for a in argv {
            let s = a.to_str().filter(|s| !s.contains('\0'));
            let s = s.ok_or_else(|| VmError::NonUtf8Arg(a.clone()))?;
            words.push(shell_quote(s));
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "crib_mark() {{ printf '@@CRIB:{nonce}:%s@@%s\\n' \"$1\" \"${{2-}}\"; }}"
        );
        let _ = writeln!(
            s,
            "crib_step() {{ local out; if ! out=$(\"$@\" 2>&1); then printf '%s\\n' \"$out\"; \
             crib_mark SETUP-FAILED \"$*\"; exit {EXIT_SETUP_FAILED}; fi; }}"
        );
        s.push_str(&setup_steps(&self.kernel));
        for (k, v) in self.guest_env() {
            if !is_env_name(&k) || v.contains('\0') {
                return Err(VmError::BadEnvVar(k));
            }
            let _ = writeln!(s, "export {k}={}", shell_quote(&v));
        }
        let _ = writeln!(s, "crib_mark START");
        if words.is_empty() {
            let _ = writeln!(s, "true");
        } else {
            let _ = writeln!(s, "{}", words.join(" "));
        }
        let _ = writeln!(s, "rc=$?");
        let _ = writeln!(s, "crib_mark RC \"$rc\"");
        s.push_str(&teardown_steps(&self.kernel));
        let _ = writeln!(s, "crib_mark DMESG");
        let _ = writeln!(s, "dmesg");
        let _ = writeln!(s, "crib_mark END");
        let _ = writeln!(s, "exit $rc");
        Ok(s)
    }

    fn guest_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CRIB_IN_GUEST".to_string(), "1".to_string()),
            (
                "CRIB_FLAVOR".to_string(),
                self.kernel.flavor.as_str().to_string(),
            ),
            ("CRIB_VARIANT".to_string(), self.kernel.variant.clone()),
        ];
        // The kernel the guest runs on, so Kernel::locate there need not look it up again.
        env.extend(self.kernel.guest_env());
        env.extend(self.env.iter().cloned());
        env
    }
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `/tmp/<name>` for each of the current directory, the current executable and the CRIB cache
/// that lives under the host's `/tmp`: what the guest must still see once its own tmpfs covers
/// `/tmp`.
pub fn tmp_keep_dirs() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let candidates = [
        std::env::current_dir().ok(),
        std::env::current_exe().ok(),
        Some(crate::kernel::cache_dir()),
    ];
    for p in candidates.into_iter().flatten() {
        let Ok(rest) = p.strip_prefix("/tmp") else {
            continue;
        };
        let Some(first) = rest.components().next() else {
            continue;
        };
        let d = Path::new("/tmp")
            .join(first.as_os_str())
            .to_string_lossy()
            .into_owned();
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// Guest setup shared by command runs and the interactive shell.
pub(super) fn setup_steps(kernel: &Kernel) -> String {
    let mut s = String::new();
    // Setup runs busybox (static) rather than util-linux, iproute2 and kmod: under TCG each
    // dynamically linked exec costs 0.2-0.8 s of loading and relocating shared libraries over
    // 9p, busybox 0.03-0.05 s (harness/README.md, "Guest boot time").
    let _ = writeln!(s, "crib_step {BB} mount -t bpf bpf /sys/fs/bpf");
    let _ = writeln!(s, "crib_step {BB} ip link set lo up");
    // Guest writes to /tmp must never land in the host's /tmp (the root is the host's /). A
    // checkout, target dir or cache that lives under the host's /tmp is carried through the
    // tmpfs with a bind mount, or the guest could not see the binaries it is asked to run.
    let keep = tmp_keep_dirs();
    for (i, d) in keep.iter().enumerate() {
        let q = shell_quote(d);
        let _ = writeln!(s, "crib_step {BB} mkdir -p /run/crib-keep/{i}");
        let _ = writeln!(s, "crib_step {BB} mount --bind {q} /run/crib-keep/{i}");
    }
    let _ = writeln!(
        s,
        "crib_step {BB} mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp"
    );
    for (i, d) in keep.iter().enumerate() {
        let q = shell_quote(d);
        let _ = writeln!(s, "crib_step {BB} mkdir -p {q}");
        let _ = writeln!(s, "crib_step {BB} mount --bind /run/crib-keep/{i} {q}");
    }
    if let Some(module) = &kernel.module {
        let _ = writeln!(
            s,
            "crib_step {BB} insmod {}",
            shell_quote(&module.to_string_lossy())
        );
    }
    // kmemleak (debug variant): forget what boot and setup allocated, so the scan at teardown
    // reports only what the command leaked.
    s.push_str(KMEMLEAK_CLEAR);
    // Kernel messages below KERN_EMERG stay in dmesg (collected at the end) instead of
    // interleaving with the command's output on the console; panics and oopses still reach
    // the console (they call console_verbose()).
    let _ = writeln!(s, "{BB} dmesg -n 1 2>/dev/null || true");
    s
}

/// The guest's static busybox (`busybox-static`, scripts/install-deps.sh) for setup and
/// teardown steps.
pub(super) const BB: &str = "/bin/busybox";

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

const KMEMLEAK_CLEAR: &str = "\
if [ -e /sys/kernel/debug/kmemleak ] || /bin/busybox mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; then
  [ -w /sys/kernel/debug/kmemleak ] && echo clear > /sys/kernel/debug/kmemleak
fi
";

/// What runs after the command, before dmesg is collected, so that a report the kernel only
/// makes once everything is released (an RCU callback freeing a snapshot, a leaked reference,
/// a leaked object) is in the dmesg the splat scanner reads. Programs and maps die with their
/// last fd or pin: the command's processes have exited, the bpffs pins go with the unmount.
/// Unloading the module waits for the programs' RCU-deferred frees (their module reference is
/// dropped there); a module that stays in use 10 s after that leaked a reference, reported as
/// a `crib-teardown:` line in dmesg. On kernels with kmemleak, a scan (objects must be 5 s old
/// to count, so it waits) whose leaks are copied into dmesg.
pub(super) fn teardown_steps(kernel: &Kernel) -> String {
    let mut s = String::new();
    // Lines written to /dev/kmsg are rate limited (10 per 5 s) unless this is on.
    s.push_str("echo on > /proc/sys/kernel/printk_devkmsg 2>/dev/null\n");
    let _ = writeln!(s, "{BB} umount /sys/fs/bpf 2>/dev/null");
    if kernel.module.is_some() {
        s.push_str(
            "i=0; while [ -e /sys/module/crib_kfuncs ] && [ $i -lt 40 ]; do \
             /bin/busybox rmmod crib_kfuncs 2>/dev/null || /bin/busybox sleep 0.25; i=$((i + 1)); done\n\
             if [ -e /sys/module/crib_kfuncs ]; then \
             echo \"crib-teardown: crib_kfuncs still in use (refcnt \
             $(cat /sys/module/crib_kfuncs/refcnt 2>/dev/null)) 10 s after the command ended: \
             a leaked reference\" > /dev/kmsg; fi\n",
        );
    }
    let _ = writeln!(
        s,
        "if [ -w {KMEMLEAK} ]; then sleep 6; echo scan > {KMEMLEAK}; echo scan > {KMEMLEAK}; \
         head -n 300 {KMEMLEAK} | while IFS= read -r l; do echo \"kmemleak-report: $l\" \
         > /dev/kmsg; done; fi"
    );
    s
}

pub(super) fn write_executable(path: &Path, text: &str) -> Result<(), VmError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| VmError::Io {
        what: format!("write {}", path.display()),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

pub(super) fn make_nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), t & 0xffff_ffff_ffff)
}

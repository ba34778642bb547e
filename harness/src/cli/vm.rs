//! `crib vm`: boot a built kernel under QEMU and run one command in it, open an interactive
//! shell, boot many times in a row (`--repeat`, boot stress) or summarize the boot log.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{report_run, KernelArg};
use crate::kernel::{Flavor, Kernel};
use crate::vm::{
    self, stats, Backend, FailureClass, Vm, VmError, EXIT_SETUP_FAILED, EXIT_VM_FAILED,
};

/// Boot a built kernel under QEMU and run a command in it
///
/// Boots the kernel `scripts/build` made, sets the guest up (bpffs, `lo`, a tmpfs on /tmp,
/// `crib_kfuncs.ko` on stock), runs CMD and exits with its exit code.
///
/// Exit codes: CMD's own; 69 the VM failed (boot, crash, timeout); 70 the guest setup failed;
/// 72 CMD ran but the kernel splatted (the excerpts go to stderr).
///
/// `crib vm -- bash` (on a terminal) or `crib vm -- -` gives an interactive shell.
///
/// Environment: CRIB_ACCEL=tcg|kvm forces the accelerator, CRIB_VM_TIMEOUT=S the timeout (300),
/// CRIB_VM_BACKEND=vmtest|direct the backend (vmtest for release kernels, direct for the debug
/// variant), CRIB_CACHE and CRIB_VARIANT select the kernel build (harness/README.md,
/// "Settings").
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(after_help = "Example: crib vm --kernel patched -- target/debug/crib dump --pid 1")]
pub struct VmArgs {
    /// Which kernel to boot
    #[arg(long, value_enum, default_value_t = KernelArg::Stock)]
    pub kernel: KernelArg,
    /// Mount the shared host root read-write (default: read-only)
    #[arg(long)]
    pub rw: bool,
    /// Kill the guest after S seconds (default: CRIB_VM_TIMEOUT or 300)
    #[arg(long, value_name = "S", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,
    /// How to boot: vmtest (QEMU + guest agent) or direct (QEMU alone, for slow kernels: only
    /// the timeout bounds the boot; output over the serial console; no shell)
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Boot N times in a row, one at a time and with no retry, each running CMD (boot
    /// stress); print one line per boot, then the failures by class with each failure's
    /// transcript and the per-boot times. Exit 0 only if every boot ran CMD with exit 0 and a
    /// clean dmesg
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    /// Summarize the boot log every guest boot appends to ($CRIB_CACHE/vm-boots.log): boots,
    /// failures and retries by class, for the last 24 h and in all
    #[arg(long, exclusive = true)]
    pub stats: bool,
    /// The command to run in the guest, after `--`
    #[arg(
        last = true,
        value_name = "CMD",
        required_unless_present = "stats",
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Vmtest,
    Direct,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Vmtest => Backend::Vmtest,
            BackendArg::Direct => Backend::Direct,
        }
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    vm::parse_secs(s).ok_or_else(|| format!("{s:?}: want whole seconds > 0"))
}

/// Run `crib vm`.
pub fn run(a: &VmArgs) -> Result<i32> {
    if a.stats {
        println!("crib vm: {}", stats::summary_line(&stats::log_path()));
        return Ok(0);
    }
    let kernel = match Kernel::locate(Flavor::from(a.kernel)) {
        Ok(k) => k,
        Err(e) => {
            log::error!("{e}");
            return Ok(EXIT_VM_FAILED);
        }
    };
    let mut vm = Vm::new(&kernel).ro_root(!a.rw).echo(true);
    if let Some(t) = a.timeout {
        vm = vm.timeout(t);
    }
    if let Some(b) = a.backend {
        vm = vm.backend(b.into());
    }
    if let Some(n) = a.repeat {
        return repeat_boots(&vm, &kernel, n, &a.command);
    }
    if wants_shell(&a.command, std::io::stdin().is_terminal()) {
        return match vm.interactive() {
            Ok(code) => Ok(code),
            Err(e) => {
                log::error!("{e}");
                Ok(EXIT_VM_FAILED)
            }
        };
    }
    let run = match vm.run(&a.command) {
        Ok(r) => r,
        Err(e @ VmError::Setup { .. }) => {
            log::error!("{e}");
            return Ok(EXIT_SETUP_FAILED);
        }
        Err(e) => {
            log::error!("{e}");
            return Ok(EXIT_VM_FAILED);
        }
    };
    Ok(report_run(module_path!(), &kernel, &run))
}

/// Whether `CMD` asks for an interactive shell.
pub fn wants_shell(command: &[OsString], stdin_is_tty: bool) -> bool {
    match command {
        [one] => one == "-" || (stdin_is_tty && (one == "bash" || one == "sh")),
        _ => false,
    }
}

/// A failed boot of a `--repeat` run: its number, class and kept transcript.
pub type RepeatFailure = (u32, FailureClass, PathBuf);

/// `crib vm --repeat N`: boot `n` times with no retry, class every outcome, keep the transcript
/// of each failure, and report counts by class and the per-boot times.
pub fn repeat_boots(vm: &Vm, kernel: &Kernel, n: u32, command: &[OsString]) -> Result<i32> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = crate::kernel::cache_dir()
        .join("logs")
        .join(format!("vm-repeat-{}-{stamp}", kernel.flavor));
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let vm = vm.clone().echo(false);
    log::info!(
        "--repeat: {n} boots of the {} kernel {} running {:?}; transcripts of failures stay in {}",
        kernel.flavor,
        kernel.release,
        command,
        dir.display()
    );
    let mut times = Vec::with_capacity(n as usize);
    let mut failures: Vec<RepeatFailure> = Vec::new();
    for i in 1..=n {
        let path = dir.join(format!("boot-{i:04}.log"));
        let result = vm.run_single(command, Some(&path));
        let class = vm::classify(&result);
        match (&result, class) {
            (Ok(run), None) => {
                times.push((run.boot, run.total));
                let _ = std::fs::remove_file(&path);
                log::info!(
                    "--repeat: boot {i}/{n}: ok (boot to command {:.1}s, total {:.1}s)",
                    run.boot.as_secs_f64(),
                    run.total.as_secs_f64()
                );
            }
            (_, class) => {
                let class = class.unwrap_or(FailureClass::Other);
                if let Ok(run) = &result {
                    times.push((run.boot, run.total));
                }
                let why = match &result {
                    Err(e) => e.to_string(),
                    Ok(run) => format!(
                        "command exited {}, {} splat(s)",
                        run.exit_code,
                        run.splats().len()
                    ),
                };
                log::warn!(
                    "--repeat: boot {i}/{n}: FAILED, class {class} ({}); transcript {}\n{why}",
                    class.describe(),
                    path.display()
                );
                failures.push((i, class, path));
            }
        }
    }
    let summary = repeat_summary(kernel, n, &times, &failures);
    println!("{summary}");
    std::fs::write(dir.join("summary.txt"), format!("{summary}\n"))
        .with_context(|| format!("write {}", dir.join("summary.txt").display()))?;
    log::info!("{}", stats::summary_line(&stats::log_path()));
    Ok(if failures.is_empty() { 0 } else { 1 })
}

/// min/median/max of durations, in seconds.
pub fn min_median_max(mut v: Vec<Duration>) -> Option<(f64, f64, f64)> {
    v.sort();
    let (first, last) = (v.first()?, v.last()?);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2
    };
    Some((
        first.as_secs_f64(),
        median.as_secs_f64(),
        last.as_secs_f64(),
    ))
}

/// The report of a `--repeat` run.
pub fn repeat_summary(
    kernel: &Kernel,
    n: u32,
    times: &[(Duration, Duration)],
    failures: &[RepeatFailure],
) -> String {
    let mut out = format!(
        "crib vm --repeat: {n} boots of the {} kernel {}: {} ok, {} failed",
        kernel.flavor,
        kernel.release,
        n as usize - failures.len(),
        failures.len()
    );
    let fmt = |v: Vec<Duration>| {
        min_median_max(v).map_or("-".to_string(), |(a, b, c)| {
            format!("{a:.1}/{b:.1}/{c:.1} s")
        })
    };
    out.push_str(&format!(
        "\n  per boot (min/median/max): boot to command {}, total {}",
        fmt(times.iter().map(|t| t.0).collect()),
        fmt(times.iter().map(|t| t.1).collect())
    ));
    for class in FailureClass::ALL {
        let of: Vec<_> = failures.iter().filter(|f| f.1 == class).collect();
        if of.is_empty() {
            continue;
        }
        out.push_str(&format!("\n  {class}: {} ({})", of.len(), class.describe()));
        for (i, _, path) in of {
            out.push_str(&format!("\n    boot {i}: {}", path.display()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn repeat_summary_counts_failures_by_class_with_their_transcripts() {
        let k = crate::test_support::fake_kernel(Flavor::Stock);
        let s = |v: u64| Duration::from_millis(v);
        let times = [(s(8000), s(9000)), (s(7000), s(12000)), (s(9000), s(10000))];
        let failures = [
            (2, FailureClass::TcgStaleInt3, "/l/boot-0002.log".into()),
            (4, FailureClass::Timeout, "/l/boot-0004.log".into()),
            (5, FailureClass::TcgStaleInt3, "/l/boot-0005.log".into()),
        ];
        let r = repeat_summary(&k, 6, &times, &failures);
        assert!(
            r.contains("6 boots of the stock kernel 7.3.0-rc7: 3 ok, 3 failed"),
            "{r}"
        );
        assert!(
            r.contains("boot to command 7.0/8.0/9.0 s, total 9.0/10.0/12.0 s"),
            "{r}"
        );
        assert!(r.contains("tcg-stale-int3: 2 ("), "{r}");
        assert!(
            r.contains("boot 2: /l/boot-0002.log\n    boot 5: /l/boot-0005.log"),
            "{r}"
        );
        assert!(r.contains("timeout: 1 ("), "{r}");
        assert!(!r.contains("kernel-crash"), "{r}");
        assert_eq!(
            min_median_max(vec![s(1000), s(3000), s(2000), s(4000)]),
            Some((1.0, 2.5, 4.0))
        );
        assert_eq!(min_median_max(vec![]), None);
    }

    #[test]
    fn shell_only_for_bare_bash_on_a_tty_or_dash() {
        assert!(wants_shell(&os(&["-"]), false));
        assert!(wants_shell(&os(&["bash"]), true));
        assert!(!wants_shell(&os(&["bash"]), false));
        assert!(!wants_shell(&os(&["bash", "-c", "true"]), true));
    }
}

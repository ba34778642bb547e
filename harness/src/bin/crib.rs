//! `crib`: command-line entry points of the CRIB harness.
//!
//! Each subcommand is one function taking the arguments after its name and returning the
//! process exit code; `main` only dispatches on the first argument.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crib_harness::kernel::{Flavor, Kernel};
use crib_harness::vm::{self, Backend, Vm, VmError, EXIT_SETUP_FAILED, EXIT_SPLAT, EXIT_VM_FAILED};

const USAGE: &str = "\
usage: crib <subcommand> [args]

subcommands:
  vm [--kernel stock|patched] [--rw] [--timeout S] [--backend vmtest|direct] [--repeat N]
     -- CMD...
        boot the built kernel under QEMU (vmtest), set the guest up (bpffs, lo, tmpfs /tmp,
        crib_kfuncs.ko on stock), run CMD, exit with its exit code.
        --repeat N boots N times in a row, one at a time, with no retry, each running CMD
        (boot stress: `crib vm --repeat 200 --kernel patched -- true`); prints one line per
        boot, then the failures by class with each failure's transcript and the per-boot
        times (min/median/max). Exit 0 only if every boot ran CMD with exit 0 and a clean
        dmesg.
  vm --stats
        summarize the boot log every guest boot appends to ($CRIB_CACHE/vm-boots.log):
        boots, failures and retries by class, for the last 24 h and in all.
        `crib vm -- bash` (on a terminal) or `crib vm -- -` gives an interactive shell.
        --backend direct boots with QEMU itself and no guest agent (for slow kernels: only
        the timeout bounds the boot; output comes over the serial console; no shell).
        Exit codes: CMD's own; 69 the VM failed (boot, crash, timeout); 70 guest setup failed;
        72 CMD ran but the kernel splatted (excerpt on stderr).
        Env: CRIB_ACCEL=tcg|kvm forces the accelerator, CRIB_VM_TIMEOUT=S the timeout (300),
        CRIB_VM_BACKEND=vmtest|direct the backend (vmtest for release kernels, direct for
        the debug variant), CRIB_CACHE / CRIB_VARIANT select the kernel build.
  cases [--kernel stock|patched] [--list] OBJ...
        list the verifier-acceptance cases (__success/__failure/__msg/... annotations, as in
        selftests/bpf) of any BPF objects, then boot one guest and run them all there; prints
        one PASS/FAIL/SKIP block per case and `N passed, N failed`. Exit 0 only if none failed.
        --list only lists (no VM). Env as for `vm`.
  demo
        (in a guest) the main job scripts/setup runs in each kernel: check the CRIB ABI with
        the hello program, dump this process's own fd table and compare every field with
        procfs. Exit 0 only if everything matched.
  bench [--fds N] [--rounds N] [--warmup N]
        (in a guest, as root) measure what one get_file/put pair costs per use of the current
        file: a child holds N read-only regular files (default 4096); four programs walk its
        fd table (1 walk, 2 + get_file/put, 3 + get_file/dynptr/put, 4 + dynptr of item->file,
        patched kernel only), interleaved for --rounds rounds (default 100) after --warmup
        (default 5); prints median/min ns per fd and the ratios. Exit 1 if a check failed
        (the modes walked different tables, an unexpected dynptr error).
  dump --pid N [--json]
        (in a guest, as root) dump the fd table of pid N with the CRIB dump program: one
        line (or JSON object) per fd. Exit 1 with the translated errno when the dump fails
        (no such pid, zombie, kernel thread, permission denied, incomplete dump).
";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let sub = args.next();
    let rest: Vec<OsString> = args.collect();
    let result = match sub.as_ref().and_then(|s| s.to_str()) {
        Some("vm") => cmd_vm(rest),
        Some("dump") => cmd_dump(rest),
        Some("bench") => cmd_bench(rest),
        Some("demo") => cmd_demo(rest),
        Some("cases") => cmd_cases(rest),
        Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            Ok(0)
        }
        Some(other) => {
            eprintln!("crib: unknown subcommand '{other}'\n\n{USAGE}");
            Ok(2)
        }
        None => {
            eprint!("{USAGE}");
            Ok(2)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("crib: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Parsed `crib vm` arguments.
#[derive(Debug, PartialEq, Eq)]
struct VmArgs {
    flavor: Flavor,
    rw: bool,
    timeout: Option<Duration>,
    backend: Option<Backend>,
    repeat: Option<u32>,
    command: Vec<OsString>,
}

fn parse_vm_args(args: Vec<OsString>) -> Result<VmArgs> {
    let mut out = VmArgs {
        flavor: Flavor::Stock,
        rw: false,
        timeout: None,
        backend: None,
        repeat: None,
        command: Vec::new(),
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let s = a.to_str().map(str::to_string);
        let Some(s) = s else {
            bail!("unexpected argument {a:?} before `--`");
        };
        let (flag, inline) = match s.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (s.clone(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .with_context(|| format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "--" => {
                out.command = it.collect();
                break;
            }
            "--kernel" => out.flavor = value("--kernel")?.parse()?,
            "--rw" => out.rw = true,
            "--timeout" => {
                let v = value("--timeout")?;
                out.timeout = Some(
                    vm::parse_secs(&v)
                        .with_context(|| format!("--timeout {v:?}: want whole seconds > 0"))?,
                );
            }
            "--backend" => {
                let v = value("--backend")?;
                out.backend = Some(match v.as_str() {
                    "vmtest" => Backend::Vmtest,
                    "direct" => Backend::Direct,
                    _ => bail!("--backend {v:?}: use 'vmtest' or 'direct'"),
                });
            }
            "--repeat" => {
                let v = value("--repeat")?;
                out.repeat = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .with_context(|| format!("--repeat {v:?}: want a whole number > 0"))?,
                );
            }
            _ => bail!("unexpected argument {s:?}; put the guest command after `--`\n\n{USAGE}"),
        }
    }
    if out.command.is_empty() {
        bail!(
            "no command given: crib vm [--kernel stock|patched] [--rw] [--timeout S] \
             [--backend vmtest|direct] [--repeat N] -- CMD..."
        );
    }
    Ok(out)
}

/// Whether `CMD` asks for an interactive shell.
fn wants_shell(command: &[OsString], stdin_is_tty: bool) -> bool {
    match command {
        [one] => one == "-" || (stdin_is_tty && (one == "bash" || one == "sh")),
        _ => false,
    }
}

fn cmd_vm(args: Vec<OsString>) -> Result<i32> {
    if args.first().is_some_and(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return Ok(0);
    }
    if args.len() == 1 && args[0] == "--stats" {
        println!(
            "crib vm: {}",
            vm::stats::summary_line(&vm::stats::log_path())
        );
        return Ok(0);
    }
    let a = parse_vm_args(args)?;
    let kernel = match Kernel::locate(a.flavor) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("crib vm: {e}");
            return Ok(EXIT_VM_FAILED);
        }
    };
    let mut vm = Vm::new(&kernel).ro_root(!a.rw).echo(true);
    if let Some(t) = a.timeout {
        vm = vm.timeout(t);
    }
    if let Some(b) = a.backend {
        vm = vm.backend(b);
    }
    if let Some(n) = a.repeat {
        return repeat_boots(&vm, &kernel, n, &a.command);
    }
    use std::io::IsTerminal as _;
    if wants_shell(&a.command, std::io::stdin().is_terminal()) {
        return match vm.interactive() {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("crib vm: {e}");
                Ok(EXIT_VM_FAILED)
            }
        };
    }
    let run = match vm.run(&a.command) {
        Ok(r) => r,
        Err(e @ VmError::Setup { .. }) => {
            eprintln!("crib vm: {e}");
            return Ok(EXIT_SETUP_FAILED);
        }
        Err(e) => {
            eprintln!("crib vm: {e}");
            return Ok(EXIT_VM_FAILED);
        }
    };
    Ok(report_run("crib vm", &kernel, &run))
}

/// `crib vm --repeat N`: boot `n` times with no retry, class every outcome, keep the transcript
/// of each failure, and report counts by class and the per-boot times.
fn repeat_boots(vm: &Vm, kernel: &Kernel, n: u32, command: &[OsString]) -> Result<i32> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = crib_harness::kernel::cache_dir()
        .join("logs")
        .join(format!("vm-repeat-{}-{stamp}", kernel.flavor));
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let vm = vm.clone().echo(false);
    eprintln!(
        "crib vm --repeat: {n} boots of the {} kernel {} running {:?}; transcripts of failures \
         stay in {}",
        kernel.flavor,
        kernel.release,
        command,
        dir.display()
    );
    let mut times = Vec::with_capacity(n as usize);
    let mut failures: Vec<(u32, vm::FailureClass, std::path::PathBuf)> = Vec::new();
    for i in 1..=n {
        let path = dir.join(format!("boot-{i:04}.log"));
        let result = vm.run_single(command, Some(&path));
        let class = vm::classify(&result);
        match (&result, class) {
            (Ok(run), None) => {
                times.push((run.boot, run.total));
                let _ = std::fs::remove_file(&path);
                eprintln!(
                    "crib vm --repeat: boot {i}/{n}: ok (boot to command {:.1}s, total {:.1}s)",
                    run.boot.as_secs_f64(),
                    run.total.as_secs_f64()
                );
            }
            (_, class) => {
                let class = class.unwrap_or(vm::FailureClass::Other);
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
                eprintln!(
                    "crib vm --repeat: boot {i}/{n}: FAILED, class {class} ({}); transcript {}\n{why}",
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
    eprintln!(
        "crib vm: {}",
        vm::stats::summary_line(&vm::stats::log_path())
    );
    Ok(if failures.is_empty() { 0 } else { 1 })
}

/// min/median/max of durations, in seconds.
fn min_median_max(mut v: Vec<Duration>) -> Option<(f64, f64, f64)> {
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
fn repeat_summary(
    kernel: &Kernel,
    n: u32,
    times: &[(Duration, Duration)],
    failures: &[(u32, vm::FailureClass, std::path::PathBuf)],
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
    for class in vm::FailureClass::ALL {
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

/// Print how a guest run went and turn it into `crib`'s exit code: the command's own, or
/// EXIT_SPLAT (with every excerpt printed) when the guest's dmesg holds a kernel splat.
fn report_run(who: &str, kernel: &Kernel, run: &vm::GuestRun) -> i32 {
    eprintln!(
        "{who}: {} kernel {}: command exited {} (boot to command {:.1}s, total {:.1}s)",
        kernel.flavor,
        kernel.release,
        run.exit_code,
        run.boot.as_secs_f64(),
        run.total.as_secs_f64()
    );
    let splats = run.splats();
    if splats.is_empty() {
        return run.exit_code;
    }
    eprintln!(
        "{who}: {} kernel splat(s) in the guest's dmesg:",
        splats.len()
    );
    for s in &splats {
        eprintln!("---\n{}", s.excerpt);
    }
    EXIT_SPLAT
}

/// `crib dump --pid N [--json]`: dump one process's fd table with `dump_files.bpf.c`.
fn cmd_dump(args: Vec<OsString>) -> Result<i32> {
    use crib_harness::dump;
    let mut pid: Option<i32> = None;
    let mut json = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--json") => json = true,
            Some("--pid") => {
                let v = it.next().context("--pid needs a value")?;
                let v = v.to_str().context("--pid: not UTF-8")?;
                pid = Some(v.parse().with_context(|| format!("--pid {v}: not a pid"))?);
            }
            Some(s) if s.starts_with("--pid=") => {
                let v = &s["--pid=".len()..];
                pid = Some(v.parse().with_context(|| format!("--pid {v}: not a pid"))?);
            }
            _ => bail!("crib dump: unexpected argument {a:?} (usage: crib dump --pid N [--json])"),
        }
    }
    let pid = pid.context("crib dump: --pid N is required")?;
    let files = match dump::Dumper::load().and_then(|d| d.dump(pid)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("crib dump: {e}");
            return Ok(1);
        }
    };
    if json {
        println!("[");
        for (i, f) in files.iter().enumerate() {
            let sep = if i + 1 < files.len() { "," } else { "" };
            println!("  {}{sep}", dump::format_json(f));
        }
        println!("]");
    } else {
        for f in &files {
            println!("{}", dump::format_line(f));
        }
        eprintln!("crib dump: pid {pid}: {} fds", files.len());
    }
    Ok(0)
}

/// `crib bench [--fds N] [--rounds N] [--warmup N]`: the get/put benchmark (`bench.rs`).
fn cmd_bench(args: Vec<OsString>) -> Result<i32> {
    use crib_harness::bench;
    let Some(opts) = bench::Options::parse(&args)? else {
        println!("{}", bench::USAGE);
        return Ok(0);
    };
    let report = bench::run(&opts, &mut |msg| eprintln!("crib bench: {msg}"));
    match report {
        Ok(r) => {
            print!("{}", r.render());
            Ok(0)
        }
        Err(e) => {
            eprintln!(
                "crib bench: {e}{}",
                if vm::in_guest() {
                    ""
                } else {
                    "\n(the programs need the CRIB kfuncs: run it in a guest, e.g. \
                     scripts/vm --kernel stock -- target/debug/crib bench)"
                }
            );
            Ok(1)
        }
    }
}

/// `crib cases [--kernel stock|patched] [--list] OBJ...`: list the verifier-acceptance cases
/// of any objects (selftests/bpf annotations), then run them all in one guest.
fn cmd_cases(args: Vec<OsString>) -> Result<i32> {
    use crib_harness::cases::{self, Verdict};
    const CASES_USAGE: &str = "usage: crib cases [--kernel stock|patched] [--list] OBJ...";
    let mut flavor = Flavor::Stock;
    let mut list_only = false;
    let mut objs = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--kernel") => {
                let v = it.next().context("--kernel needs a value")?;
                flavor = v.to_str().context("--kernel: not UTF-8")?.parse()?;
            }
            Some(s) if s.starts_with("--kernel=") => flavor = s["--kernel=".len()..].parse()?,
            Some("--list") => list_only = true,
            Some("-h") | Some("--help") => {
                println!("{CASES_USAGE}");
                return Ok(0);
            }
            Some(s) if s.starts_with('-') => bail!("crib cases: unknown option {s}\n{CASES_USAGE}"),
            _ => {
                let p = std::path::PathBuf::from(&a);
                objs.push(
                    p.canonicalize()
                        .with_context(|| format!("{}", p.display()))?,
                );
            }
        }
    }
    if objs.is_empty() {
        bail!("crib cases: no object given\n{CASES_USAGE}");
    }
    let mut all = Vec::new();
    for obj in &objs {
        if let Some(why) = cases::guest_invisible(obj) {
            bail!("crib cases: {why}");
        }
        let oc = cases::discover(obj)?;
        let found = oc.cases();
        if found.is_empty() {
            eprintln!("crib cases: {}: no annotated programs", obj.display());
        }
        for c in found {
            if c.runs_on(flavor) {
                all.push(c);
            } else {
                println!("  not on {flavor}: {}", c.name());
            }
        }
    }
    let in_guest = vm::in_guest();
    if !in_guest || list_only {
        for c in &all {
            let e = c.expect();
            let verdict = if e.failure { "failure" } else { "success" };
            let desc = c.spec.description.as_deref().unwrap_or("");
            let skip = c
                .static_skip()
                .map(|s| format!(" [SKIP: {s}]"))
                .unwrap_or_default();
            println!("  {:<50} {verdict:<8} {desc}{skip}", c.name());
        }
        println!("{} case(s) for the {flavor} kernel", all.len());
    }
    if all.is_empty() {
        eprintln!("crib cases: nothing to run");
        return Ok(1);
    }
    if list_only {
        return Ok(0);
    }
    if in_guest {
        let _fixtures = cases::fixtures()
            .context("opening this executable read-only (the cases' regular-file fixture)")?;
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        for c in &all {
            let r = cases::run_case(c);
            println!("{}", r.render(&c.name()));
            match r.verdict {
                Verdict::Pass => passed += 1,
                Verdict::Fail(_) => failed += 1,
                Verdict::Skip(_) => skipped += 1,
            }
        }
        let extra = if skipped > 0 {
            format!(" ({skipped} skipped, not run)")
        } else {
            String::new()
        };
        println!("{passed} passed, {failed} failed{extra}");
        return Ok(if failed > 0 { 1 } else { 0 });
    }
    let kernel = match Kernel::locate(flavor) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("crib cases: {e}");
            return Ok(EXIT_VM_FAILED);
        }
    };
    let exe = std::env::current_exe().context("cannot find the crib binary")?;
    let mut argv: Vec<OsString> = vec![
        exe.into(),
        "cases".into(),
        "--kernel".into(),
        flavor.as_str().into(),
    ];
    argv.extend(objs.into_iter().map(OsString::from));
    let run = match Vm::new(&kernel).echo(true).run(&argv) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crib cases: {e}");
            return Ok(EXIT_VM_FAILED);
        }
    };
    Ok(report_run("crib cases", &kernel, &run))
}

/// `crib demo`: the main job `scripts/setup` runs in each freshly booted kernel. Checks the CRIB
/// ABI through the hello program, then dumps this process's own file table with the CRIB dump
/// program and compares every field with procfs. Exit 0 only if everything matched.
fn cmd_demo(args: Vec<OsString>) -> Result<i32> {
    use crib_harness::{dump, hello, truth};
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    if let Some(a) = args.first() {
        bail!("crib demo takes no arguments (got {a:?})");
    }
    if !vm::in_guest() {
        bail!(
            "crib demo loads BPF programs that need the CRIB kernel: run it in a guest, \
             e.g. scripts/vm --kernel stock -- target/debug/crib demo"
        );
    }
    let uname = nix::sys::utsname::uname().context("uname")?;
    let flavor = crib_harness::settings::get()
        .flavor
        .clone()
        .unwrap_or_else(|| "?".into());
    println!(
        "crib demo: {flavor} kernel {}",
        uname.release().to_string_lossy()
    );

    let me = std::process::id();
    let h = hello::run(u64::from(me)).context("running the hello program")?;
    println!(
        "  hello: CRIB ABI {}.{}, run by pid {} tgid {} uid {} comm {:?}",
        h.abi_version >> 16,
        h.abi_version & 0xffff,
        h.pid,
        h.tgid,
        h.uid,
        h.comm()
    );
    if h.tgid != me {
        bail!("hello record says tgid {}, this process is {me}", h.tgid);
    }

    // A few files of different kinds, so the dump has something to show.
    let dir = tempfile::tempdir_in("/tmp").context("temp dir in /tmp")?;
    let mut f = std::fs::File::create(dir.path().join("data")).context("creating a file")?;
    std::io::Write::write_all(&mut f, b"checkpoint me").context("writing the file")?;
    let (r, w) = nix::unistd::pipe().context("pipe")?;
    let (s1, s2) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    let keep = [
        f.as_raw_fd(),
        r.as_raw_fd(),
        w.as_raw_fd(),
        s1.as_raw_fd(),
        s2.as_raw_fd(),
    ];

    let dumper = dump::Dumper::load().context("loading the dump program")?;
    let t = Instant::now();
    let recs = dumper
        .dump(me as i32)
        .context("dumping this process's file table")?;
    let dump_time = t.elapsed();
    let t = Instant::now();
    let table = truth::read_fd_table(me as i32).context("reading /proc/self/fd")?;
    let proc_time = t.elapsed();

    let mut mismatches = Vec::new();
    for rec in &recs {
        println!("  {}", dump::format_line(rec));
        // The dump's own objects (the program's fds, the ring buffer) may come and go between
        // the dump and the procfs read; the files made above must be there and match.
        match table.get(&rec.fd) {
            Some(t) => mismatches.extend(truth::compare(rec, t)),
            None if keep.contains(&(rec.fd as i32)) => {
                bail!("fd {} was dumped but is not in /proc/self/fd", rec.fd)
            }
            None => {}
        }
    }
    for fd in keep {
        if !recs.iter().any(|r| r.fd as i32 == fd) {
            bail!("fd {fd} is open but the dump does not list it");
        }
    }
    if !mismatches.is_empty() {
        for m in &mismatches {
            eprintln!("  MISMATCH {m}");
        }
        bail!("{} field(s) differ from procfs", mismatches.len());
    }
    // A small table's fixed cost, side by side: the loaded program's dump (one BPF_PROG_RUN,
    // ring buffer drain, decode) against the procfs walk of the same table, interleaved.
    const ROUNDS: usize = 21;
    let (mut crib_us, mut proc_us, mut open_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let open = dumper.program().reader_open_close_cost()?;
        open_us.push(open.as_secs_f64() * 1e6);
        let t = Instant::now();
        dumper
            .dump(me as i32)
            .context("dumping this process's file table")?;
        crib_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        truth::read_fd_table(me as i32).context("reading /proc/self/fd")?;
        proc_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (crib_med, proc_med) = (median_of(&mut crib_us), median_of(&mut proc_us));
    let open_med = median_of(&mut open_us);
    println!(
        "  dump: {} fds, every field matches procfs (first dump {:?}, first procfs walk {:?})",
        recs.len(),
        dump_time,
        proc_time
    );
    println!(
        "  small-table cost, median of {ROUNDS} interleaved: CRIB {crib_med:.0} us, procfs \
         walk {proc_med:.0} us (procfs/CRIB {:.2}); opening and closing a ring buffer \
         reader {open_med:.0} us (kept open now; every dump used to do it twice); \
         informational, see the benchmarks",
        proc_med / crib_med
    );
    drop((r, w, s1, s2));
    Ok(0)
}

/// Median of `v` (sorted in place); NaN for an empty slice.
fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn vm_args_take_flags_then_the_command_verbatim() {
        let a = parse_vm_args(os(&[
            "--kernel",
            "patched",
            "--rw",
            "--timeout=30",
            "--backend",
            "direct",
            "--",
            "ls",
            "--rw",
        ]))
        .unwrap();
        assert_eq!(a.flavor, Flavor::Patched);
        assert!(a.rw);
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        assert_eq!(a.backend, Some(Backend::Direct));
        assert_eq!(a.command, os(&["ls", "--rw"]));
    }

    #[test]
    fn vm_args_default_to_stock_ro_and_env_timeout() {
        let a = parse_vm_args(os(&["--", "true"])).unwrap();
        assert_eq!(
            a,
            VmArgs {
                flavor: Flavor::Stock,
                rw: false,
                timeout: None,
                backend: None,
                repeat: None,
                command: os(&["true"])
            }
        );
    }

    #[test]
    fn vm_args_reject_junk_with_a_reason() {
        let e = |v: &[&str]| parse_vm_args(os(v)).unwrap_err().to_string();
        assert!(e(&["--kernel", "vanilla", "--", "x"]).contains("stock"));
        assert!(e(&["--timeout", "0", "--", "x"]).contains("--timeout"));
        assert!(e(&["--timeout"]).contains("needs a value"));
        assert!(e(&["--backend=qemu", "--", "x"]).contains("'vmtest' or 'direct'"));
        assert!(e(&["--repeat", "0", "--", "x"]).contains("--repeat"));
        assert!(e(&["--repeat=many", "--", "x"]).contains("--repeat"));
        assert!(e(&["ls"]).contains("after `--`"));
        assert!(e(&["--"]).contains("no command"));
    }

    #[test]
    fn vm_args_take_repeat() {
        let a = parse_vm_args(os(&[
            "--repeat", "200", "--kernel", "patched", "--", "true",
        ]))
        .unwrap();
        assert_eq!(a.repeat, Some(200));
        assert_eq!(a.flavor, Flavor::Patched);
    }

    #[test]
    fn repeat_summary_counts_failures_by_class_with_their_transcripts() {
        let k = Kernel {
            flavor: Flavor::Stock,
            variant: "release".into(),
            dir: "/k".into(),
            bzimage: "/k/bzImage".into(),
            vmlinux: "/k/vmlinux".into(),
            vmlinux_h: "/k/vmlinux.h".into(),
            release: "7.3.0-rc7".into(),
            base: "linux-source-7.3".into(),
            module: None,
            manifest: Default::default(),
        };
        let s = |v: u64| Duration::from_millis(v);
        let times = [(s(8000), s(9000)), (s(7000), s(12000)), (s(9000), s(10000))];
        let failures = [
            (2, vm::FailureClass::TcgStaleInt3, "/l/boot-0002.log".into()),
            (4, vm::FailureClass::Timeout, "/l/boot-0004.log".into()),
            (5, vm::FailureClass::TcgStaleInt3, "/l/boot-0005.log".into()),
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

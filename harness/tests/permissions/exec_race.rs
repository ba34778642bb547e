//! Item 1: the exec race (a setuid exec loop against an unprivileged dumper).

use super::child::{as_child, become_user, fork_child, kill_and_reap, pipe, Creds};
use super::progs::{ino_of, write_file};
use super::sysctl::{PtraceScope, Sysctl, RT_RUNTIME};
use super::*;

const EXEC_LOOP_C: &str = include_str!("exec_loop.c");

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

pub(super) fn run(flavor: Flavor) -> Result<()> {
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

//! Item 3: a check on every step (`PR_SET_DUMPABLE(0)` and `setresuid()` mid-walk).

use super::child::{become_user, Child, Creds};
use super::holder::Holder;
use super::progs::{show_outcome, sync_get, sync_set, write_file, PermProgs};
use super::sysctl::PtraceScope;
use super::*;

/// What a paused walk gave: the program's return value, (fd, outcome) per element, and
/// whether it paused at all (a walk refused at `_new` never does).
struct PausedWalk {
    ret: i32,
    recs: Vec<(u32, String)>,
    paused: bool,
}

/// Walk the holder as `creds` (None: root), pausing after the first element; meanwhile send
/// `cmd` to the holder.
fn paused_walk(
    progs: &PermProgs,
    h: &mut Holder,
    creds: Option<Creds>,
    cmd: u8,
) -> Result<PausedWalk> {
    let sync = progs.sync_fd()?;
    sync_set(sync, crib_perm_sync::default())?;
    let pid = h.pid;
    let mut child = Child::spawn(|| {
        if let Some(c) = creds {
            if let Err(e) = become_user(c) {
                return format!("ERR: {e}");
            }
        }
        match progs.walk(pid, 1) {
            Ok((ret, recs)) => {
                let mut s = format!("{ret}");
                for (fd, o) in recs {
                    s.push_str(&format!("\n{fd}\t{}", show_outcome(&o)));
                }
                s
            }
            Err(e) => format!("ERR: {e:#}"),
        }
    })?;
    // Wait for the pause, or for the walk to end without one (denied at once).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut paused = false;
    loop {
        if sync_get(sync)?.paused != 0 {
            paused = true;
            break;
        }
        if child.exited() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the walk neither paused nor ended in 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    if paused {
        h.command(cmd)?;
        sync_set(
            sync,
            crib_perm_sync {
                paused: 1,
                resume: 1,
                ..Default::default()
            },
        )?;
    }
    let out = child.wait()?;
    ensure!(!out.starts_with("ERR"), "{out}");
    ensure!(sync_get(sync)?.timed_out == 0, "the paused walk timed out");
    let mut lines = out.lines();
    let ret: i32 = lines.next().unwrap_or("").parse().context("walk result")?;
    let mut recs = Vec::new();
    for l in lines {
        let (fd, o) = l.split_once('\t').context("record line")?;
        recs.push((fd.parse()?, o.to_string()));
    }
    Ok(PausedWalk { ret, recs, paused })
}

pub(super) fn run(flavor: Flavor) -> Result<()> {
    let fs_ = Tmpfs::mount()?;
    let own = fs_.path().join("own");
    write_file(&own, OWN_CONTENT, UID, 0o644)?;
    let progs = PermProgs::load()?;
    let _scope = PtraceScope::set(0)?;
    // The holder keeps CAP_SETUID for the setresuid() case; a dumper then needs the same
    // permitted set (commoncap: a tracer's permitted set must cover the tracee's).
    let holder_creds = Creds {
        setuid_cap: true,
        ..Creds::user()
    };
    let mut failures = Vec::new();
    for (cmd, what) in [
        (b'd', "prctl(PR_SET_DUMPABLE, 0)"),
        (b'u', "setresuid(2000, 2000, 2000)"),
    ] {
        // Control: root (CAP_SYS_PTRACE) keeps access; the walk goes on to the end.
        let mut h = Holder::spawn(holder_creds, &own, None)?;
        step(&format!(
            "root dumper, holder {} does {what} mid-walk",
            h.pid
        ));
        let PausedWalk { ret, recs, paused } = paused_walk(&progs, &mut h, None, cmd)?;
        let fds: Vec<u32> = recs.iter().map(|r| r.0).collect();
        eprintln!("  root: returned {ret}, paused {paused}, fds {fds:?}");
        ensure!(
            paused && ret == 0 && fds.len() > 1 && fds.contains(&h.own_fd),
            "root dumper (CAP_SYS_PTRACE) must walk to the end across {what}: returned {ret}, \
             paused {paused}, fds {fds:?}"
        );
        let all = fds.len();
        drop(h);

        let mut h = Holder::spawn(holder_creds, &own, None)?;
        step(&format!(
            "uid 1000 dumper, holder {} does {what} mid-walk",
            h.pid
        ));
        let dumper = Creds {
            setuid_cap: true,
            ..Creds::user()
        };
        let PausedWalk { ret, recs, paused } = paused_walk(&progs, &mut h, Some(dumper), cmd)?;
        let fds: Vec<u32> = recs.iter().map(|r| r.0).collect();
        eprintln!("  uid 1000: returned {ret}, paused {paused}, fds {fds:?}");
        match flavor {
            // The module allows no unprivileged dumper: denied before the first element.
            Flavor::Stock => {
                if !(ret == -EACCES && fds.is_empty() && !paused) {
                    failures.push(format!(
                        "{what}: the module must deny uid 1000 at _new (-EACCES, no fds): \
                         returned {ret}, fds {fds:?}"
                    ));
                }
            }
            // Allowed for the first element, stopped right after the change, and the
            // stop reported as -EACCES, not a short walk that looks complete.
            Flavor::Patched => {
                if !paused || fds.len() != 1 || ret != -EACCES {
                    failures.push(format!(
                        "{what} in holder {} ({}) between step 1 and 2: the walk must stop \
                         after the first fd and return -EACCES ({}); it returned {ret} ({}) \
                         with fds {fds:?} (the whole table has {all}); after the change it saw \
                         {:?}",
                        h.pid,
                        h.status(),
                        -EACCES,
                        if ret == 0 {
                            "no stop reported"
                        } else {
                            "another error"
                        },
                        recs.iter().skip(1).collect::<Vec<_>>()
                    ));
                }
            }
        }
        drop(h);
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    fs_.umount()?;
    Ok(())
}

//! Item 2: the attach level (Yama `ptrace_scope=1`, fs uid != real uid, SCM_RIGHTS).

use super::child::{as_child, Creds};
use super::holder::Holder;
use super::progs::{errno_of, show_outcome, write_file, PermProgs};
use super::sysctl::PtraceScope;
use super::*;

/// What a dumper got from the holder, by every path the kfuncs offer.
fn probe(
    dumper: &Dumper,
    readers: &[(Via, FileReader)],
    progs: &PermProgs,
    h: &Holder,
) -> Vec<String> {
    let pid = h.pid;
    let mut got = Vec::new();
    match dumper.dump(pid) {
        Ok(files) => got.push(format!(
            "dump: {} fds: {:?}",
            files.len(),
            files.iter().map(|f| (f.fd, f.ino)).collect::<Vec<_>>()
        )),
        Err(e) if errno_of(&e) == Some(EACCES) => {}
        Err(e) => got.push(format!("dump: unexpected error: {e}")),
    }
    for (via, r) in readers {
        match r.read_all(pid) {
            Ok(m) => got.push(format!("{}: {}", via.prog_name(), show_reads(&m, h))),
            Err(e) if errno_of(&e) == Some(EACCES) => {}
            Err(e) => got.push(format!("{}: unexpected error: {e}", via.prog_name())),
        }
    }
    for fd in [Some(h.own_fd), h.secret_fd].into_iter().flatten() {
        match progs.fget_read(pid, fd) {
            Ok(None) => {}
            Ok(Some(o)) => got.push(format!("bpf_fget_task(fd {fd}): {}", show_outcome(&o))),
            Err(e) => got.push(format!("bpf_fget_task(fd {fd}): error: {e:#}")),
        }
    }
    got
}

fn show_reads(m: &BTreeMap<u32, Outcome>, h: &Holder) -> String {
    m.iter()
        .map(|(fd, o)| {
            let what = if Some(*fd) == h.secret_fd {
                " (the root-only file from SCM_RIGHTS)"
            } else if *fd == h.own_fd {
                " (the holder's own file)"
            } else {
                ""
            };
            format!("fd {fd}{what}: {}", show_outcome(o))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn run(flavor: Flavor) -> Result<()> {
    step("files, programs");
    let fs_ = Tmpfs::mount()?;
    let own = fs_.path().join("own");
    let secret_path = fs_.path().join("secret");
    write_file(&own, OWN_CONTENT, UID, 0o600)?;
    write_file(&secret_path, SECRET_CONTENT, 0, 0o600)?;
    let secret: OwnedFd = File::open(&secret_path)
        .context("opening the root-only file")?
        .into();
    let dumper = Dumper::load()?;
    let mut readers = vec![(Via::GetFile, FileReader::load(Via::GetFile)?)];
    if flavor == Flavor::Patched {
        readers.push((Via::ItemFile, FileReader::load(Via::ItemFile)?));
    }
    let progs = PermProgs::load()?;

    step("holder: uid 1000, holds its own file and a root-only file received over SCM_RIGHTS");
    let h = Holder::spawn(Creds::user(), &own, Some(&secret))?;
    drop(secret);
    let secret_fd = h.secret_fd.context("the holder got no secret fd")?;
    eprintln!(
        "holder pid {}: own file at fd {}, root-only file at fd {secret_fd}",
        h.pid, h.own_fd
    );

    // The dumpers cannot open the root-only file themselves.
    let sp = secret_path.clone();
    let out = as_child(Some(Creds::user()), move || match File::open(&sp) {
        Err(e) if e.raw_os_error() == Some(EACCES) => "cannot open it: EACCES".into(),
        other => format!("ERR: uid {UID} opening {}: {other:?}", sp.display()),
    })?;
    eprintln!("uid {UID} opening {}: {out}", secret_path.display());

    // Dumpers that may not attach: they must get nothing.
    let cases: [(&str, u8, Creds); 2] = [
        (
            "uid 1000, not an ancestor, Yama ptrace_scope=1",
            1,
            Creds::user(),
        ),
        (
            "real uid 2000, effective/fs uid 1000, ptrace_scope=0",
            0,
            Creds {
                ruid: OTHER_UID,
                euid: UID,
                setuid_cap: false,
            },
        ),
    ];
    let mut failures = Vec::new();
    for (what, scope, creds) in cases {
        step(what);
        let _scope = PtraceScope::set(scope)?;
        let got = as_child(Some(creds), || {
            let g = probe(&dumper, &readers, &progs, &h);
            if g.is_empty() {
                "nothing".into()
            } else {
                format!("GOT {}", g.join("\n    "))
            }
        })?;
        eprintln!("  dumper ({what}): {got}");
        if got != "nothing" {
            failures.push(format!(
                "dumper {what} (holder {}, {}) must get nothing, but: {}",
                h.pid,
                h.status(),
                got.trim_start_matches("GOT ")
            ));
        }
    }

    // Control: a dumper that may attach. In-tree a same-uid dumper under ptrace_scope=0 gets
    // both files (as with pidfd_getfd()); the module allows only CAP_SYS_PTRACE.
    step("control: dumpers that may attach");
    let _scope = PtraceScope::set(0)?;
    let ctl = |creds: Option<Creds>| -> Result<Vec<String>> {
        let out = as_child(creds, || probe(&dumper, &readers, &progs, &h).join("\n"))?;
        Ok(out.lines().map(str::to_string).collect())
    };
    let secret_read = format!("read {:?}", String::from_utf8_lossy(SECRET_CONTENT));
    let root = ctl(None)?;
    eprintln!("  root dumper:\n    {}", root.join("\n    "));
    let want = format!("bpf_fget_task(fd {secret_fd}): {secret_read}");
    ensure!(
        root.iter().any(|l| l == &want),
        "root dumper (CAP_SYS_PTRACE) did not get the root-only file through bpf_fget_task(): \
         {root:?}"
    );
    ensure!(
        root.iter()
            .any(|l| l.starts_with("read_via_get_file:") && l.contains(&secret_read)),
        "root dumper did not read the root-only file through get_file(): {root:?}"
    );
    let user = ctl(Some(Creds::user()))?;
    eprintln!(
        "  uid 1000 dumper, ptrace_scope=0:\n    {}",
        user.join("\n    ")
    );
    match flavor {
        Flavor::Patched => ensure!(
            user.iter().any(|l| l == &want),
            "same-uid dumper under ptrace_scope=0 may attach in-tree, but did not get the file \
             through bpf_fget_task(): {user:?}"
        ),
        Flavor::Stock => ensure!(
            user.is_empty(),
            "the module allows no dumper without CAP_SYS_PTRACE, but uid 1000 got: {user:?}"
        ),
    }

    ensure!(
        failures.is_empty(),
        "{} dumper(s) that may not attach got the holder's files:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(h);
    fs_.umount()?;
    Ok(())
}

//! CRIU parity (issue 10, items 8-9): the demo process of `crib demo` (regular and deleted
//! files, a pipe, unix, TCP and UDP sockets with queued bytes, an eventfd) dumped by CRIU 4.2.1
//! (`criu dump --leave-running --tcp-established`, images decoded with `crit decode`) and by
//! `crib dump --format json`; every field both describe must agree (fd, kind, cloexec,
//! flags, pos, path, inode and device where CRIU keeps them, socket family, type, protocol,
//! state, addresses, queue sizes). The table of fields, with those only one side has, is
//! printed. crib dump runs before and after CRIU and must see the same: CRIU's dump with
//! --leave-running must leave the process as it was.
//!
//! CRIU comes from `scripts/setup-criu` (run by `scripts/setup`); without it the tests fail,
//! saying so, before booting anything.
//!
//! Each test body runs in a guest (root, tmpfs on /tmp, crib_kfuncs.ko loaded on stock).

use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use crib_harness::cli::demo::DemoProcess;
use crib_harness::criu_parity::{self, compare, crib, tools, Known, View};
use crib_harness::kernel::Flavor;
use crib_harness::vm::{current_test_name, guest_test as run, in_guest, run_test_in_guest};
use rstest::rstest;

const CRIB: &str = env!("CARGO_BIN_EXE_crib");

/// Disagreements found and explained (README.md, "CRIU parity"); each must still occur.
const KNOWN: &[Known] = &[];

fn crib_json(pid: i32) -> Result<(String, View)> {
    let out = Command::new(CRIB)
        .args(["dump", "--pid", &pid.to_string(), "--format", "json"])
        .output()
        .with_context(|| format!("running {CRIB} dump"))?;
    ensure!(
        out.status.success(),
        "crib dump --pid {pid} --format json: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).context("crib dump's JSON is not UTF-8")?;
    let view = crib::view(&text)?;
    Ok((text, view))
}

/// CRIU refuses a task whose session id is 0 ("A session leader of N is outside of its pid
/// namespace"), which every process in the guest has: init is started without a session. A
/// session of our own, inherited by the demo, is outside the dump, which --shell-job accepts.
fn own_session() -> Result<()> {
    let sid = nix::unistd::getsid(None).context("getsid")?;
    if sid.as_raw() == 0 {
        nix::unistd::setsid().context("setsid (CRIU cannot dump a task in session 0)")?;
    }
    Ok(())
}

fn parity(flavor: Flavor) -> Result<()> {
    let tools = tools::locate()?;
    own_session()?;
    let dir = tempfile::tempdir_in("/tmp")?;
    let demo = DemoProcess::spawn(dir.path())?;
    let pid = demo.pid();
    let (json, before) = crib_json(pid)?;

    let images_dir = dir.path().join("criu-images");
    std::fs::create_dir(&images_dir)?;
    tools.dump(pid, &images_dir)?;
    let images = tools.decode(&images_dir)?;
    let criu = images.view()?;

    let (_, after) = crib_json(pid)?;
    let moved = compare(&before, &after);
    if let Some(m) = moved.mismatches.first() {
        bail!(
            "{flavor}: the demo changed while CRIU dumped it (--leave-running): {} {}: before \
             {:?}, after {:?}",
            m.fd,
            m.field,
            m.criu,
            m.crib
        );
    }

    let c = compare(&criu, &before);
    println!(
        "{flavor}: CRIU {} and crib dump of the demo (pid {pid}, {} fds)",
        tools::CRIU_VERSION,
        before.len()
    );
    print!("{}", c.table());
    for m in &c.mismatches {
        println!("differs: {m}");
    }
    if let Err(e) = c.check(KNOWN) {
        println!("crib dump's JSON:\n{json}");
        for (name, v) in &images.by_name {
            println!("crit decode -i {name}:\n{v}");
        }
        bail!("{flavor}: CRIU and crib dump disagree: {e}");
    }
    for k in KNOWN {
        println!(
            "known disagreement on {} of {} fds: {}",
            k.field, k.kind, k.why
        );
    }
    println!(
        "{flavor}: every field both describe agrees ({} fields compared)",
        c.fields.values().map(|n| n.agree).sum::<usize>()
    );
    Ok(())
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn criu_and_crib_dump_agree(#[case] flavor: Flavor) {
    // Before booting: without CRIU the test fails, and says what to run.
    if let Err(e) = criu_parity::tools::locate() {
        panic!("{e}");
    }
    if in_guest() {
        run(flavor, &current_test_name(), parity);
        return;
    }
    // Host: show the guest's table (nextest shows it on failure, or with --no-capture).
    match run_test_in_guest(flavor, &current_test_name()) {
        Ok(r) => print!("{}", r.output),
        Err(e) => panic!("{e:#}"),
    }
}

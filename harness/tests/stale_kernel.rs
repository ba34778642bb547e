//! The developer's loop: edit a kfunc, run the tests, and the tests run the edit.
//!
//! A copy of this checkout gets a changed kfunc (`bpf_crib_abi_version()` returns another
//! value). Before a build the harness refuses the cached kernel for that tree and names
//! `kfuncs/`; `scripts/build` of the copy (what nextest's `build-kernels` setup script runs)
//! builds its module; a guest booted with that module reports the new value. The patched
//! kernel takes the same path (kfuncs/ is built over the series) but costs minutes of
//! incremental build, so this test covers the module, where a stale build was silent before.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use crib_harness::kernel::{cache_dir, variant, Exports, Flavor, Kernel, KernelError};
use crib_harness::vm::{self, Vm};

const TEST: &str = "edited_kfunc_is_what_the_next_run_tests_stock";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copy the checkout's files (tracked and untracked, not ignored: no target/) to `dst`.
fn copy_checkout(dst: &Path) -> Result<()> {
    let root = repo_root();
    let out = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .context("git ls-files")?;
    ensure!(out.status.success(), "git ls-files failed: {}", out.status);
    for rel in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).context("file name")?);
        let (src, to) = (root.join(rel), dst.join(rel));
        if !src.is_file() {
            continue; // deleted in the work tree but still in the index
        }
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        }
        std::fs::copy(&src, &to).with_context(|| format!("copy {}", src.display()))?;
    }
    Ok(())
}

/// Give the copy's `bpf_crib_abi_version()` a new minor version; returns the new ABI value.
fn edit_kfunc(tree: &Path) -> Result<u32> {
    let path = tree.join("kfuncs/crib.h");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let (mut major, mut edited) = (None, None);
    let mut out = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#define"), Some("CRIB_ABI_MAJOR"), Some(v)) => major = v.parse::<u32>().ok(),
            (Some("#define"), Some("CRIB_ABI_MINOR"), Some(v)) => {
                let minor = v.parse::<u32>().context("CRIB_ABI_MINOR")? + 0x7e5;
                out.push_str(&format!("#define CRIB_ABI_MINOR\t{minor}\n"));
                edited = Some(minor);
                continue;
            }
            _ => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    let (Some(major), Some(minor)) = (major, edited) else {
        bail!(
            "{} no longer defines CRIB_ABI_MAJOR/MINOR: point this test at another kfunc",
            path.display()
        );
    };
    std::fs::write(&path, out).with_context(|| path.display().to_string())?;
    Ok((major << 16) | minor)
}

/// In the guest: the ABI version the loaded kfunc set reports.
fn report_abi_in_guest() -> Result<()> {
    let want = std::env::var("CRIB_EXPECT_ABI").context("CRIB_EXPECT_ABI not passed")?;
    let rec = crib_harness::hello::run(0x57a1e)?;
    let got = format!("{:#x}", rec.abi_version);
    println!("bpf_crib_abi_version() = {got}");
    ensure!(
        got == want,
        "the guest's kfunc returned {got}, the edited source says {want}: the run did not test the edit"
    );
    Ok(())
}

fn on_host() -> Result<()> {
    let cache = cache_dir();
    let variant = variant();
    let copy = tempfile::Builder::new()
        .prefix("crib-stale-")
        .tempdir_in(&cache)
        .context("temporary checkout in the cache")?;
    copy_checkout(copy.path())?;
    let abi = edit_kfunc(copy.path())?;

    // Before a build: the cached module is not the copy's, and the harness says so.
    match Kernel::locate_for_tree(copy.path(), &cache, &variant, Flavor::Stock) {
        Err(e @ KernelError::Stale { .. }) => {
            let msg = e.to_string();
            ensure!(
                msg.contains("kfuncs/"),
                "stale, but not blamed on kfuncs/: {msg}"
            );
            println!("before the build: {msg}");
        }
        Err(e) => return Err(e).context("locating the copy's stock kernel before its build"),
        Ok(k) => bail!(
            "the copy's edited kfuncs/ has no module yet, but the harness accepted {:?}",
            k.module
        ),
    }

    let status = Command::new(copy.path().join("scripts/build"))
        .args(["--only", "stock"])
        .env("CRIB_CACHE", &cache)
        .status()
        .context("running the copy's scripts/build")?;
    ensure!(
        status.success(),
        "the copy's scripts/build --only stock failed: {status}"
    );

    let kernel = Kernel::locate_for_tree(copy.path(), &cache, &variant, Flavor::Stock)
        .context("the copy's stock kernel after its build")?;
    let ours = Kernel::locate(Flavor::Stock).context("this checkout's stock kernel")?;
    ensure!(
        kernel.module != ours.module,
        "the copy and this checkout resolved the same module {:?}",
        ours.module
    );
    let exe = std::env::current_exe().context("current_exe")?;
    let run = Vm::new(&kernel)
        .env("CRIB_EXPECT_ABI", format!("{abi:#x}"))
        .run(&vm::argv(&[
            exe.as_os_str(),
            "--exact".as_ref(),
            TEST.as_ref(),
            "--nocapture".as_ref(),
        ]))?;
    let run = vm::check_guest_test(TEST, run)?;
    print!("{}", run.output);

    // The module built from the copy stays out of the way of this checkout's runs.
    let copy_module = Exports::of_tree(copy.path(), &cache, &variant, &kernel.base)?.module;
    std::fs::remove_dir_all(&copy_module).ok();
    if let Some(m) = ours.module.as_ref().and_then(|m| m.parent()) {
        let link = ours.dir.join("module");
        std::fs::remove_file(&link).ok();
        std::os::unix::fs::symlink(m, &link).ok();
    }
    Ok(())
}

#[test]
fn edited_kfunc_is_what_the_next_run_tests_stock() {
    let result = if vm::in_guest() {
        report_abi_in_guest()
    } else {
        on_host()
    };
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

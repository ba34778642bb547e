//! The developer's loop: edit a kfunc, run the tests, and the tests run the edit.
//!
//! A copy of this checkout gets a new kfunc, `bpf_crib_stale_probe()`, that returns a value
//! chosen by this run. Before a build the harness refuses the cached kernel for that tree and
//! names `kfuncs/`; `scripts/build` of the copy (what nextest's `build-kernels` setup script
//! runs) builds its module; in a guest booted with that module `stale_probe.bpf.o` finds the
//! kfunc (`bpf_ksym_exists()`) and gets the value. Any other module lacks the kfunc, and the
//! program says so (-ENOENT). The patched
//! kernel takes the same path (kfuncs/ is built over the series) but costs minutes of
//! incremental build, so this test covers the module, where a stale build was silent before.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use crib_harness::kernel::{cache_dir, variant, Exports, Flavor, Kernel, KernelError};
use crib_harness::loader::{self, LoadOpts};
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

/// Add `bpf_crib_stale_probe()`, returning `value`, to the copy's kfunc set.
fn edit_kfunc(tree: &Path, value: u32) -> Result<()> {
    let path = tree.join("kfuncs/crib_main.c");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    const SET: &str = "BTF_KFUNCS_START(crib_kfunc_ids)\n";
    ensure!(
        text.matches(SET).count() == 1,
        "{} no longer has one `{}`: point this test at the kfunc set",
        path.display(),
        SET.trim_end()
    );
    let kfunc = format!(
        "__bpf_kfunc_start_defs();\n\n\
         __bpf_kfunc u32 bpf_crib_stale_probe(void)\n{{\n\treturn {value:#x};\n}}\n\n\
         __bpf_kfunc_end_defs();\n\n\
         {SET}BTF_ID_FLAGS(func, bpf_crib_stale_probe)\n"
    );
    std::fs::write(&path, text.replace(SET, &kfunc)).with_context(|| path.display().to_string())
}

/// In the guest: what the loaded kfunc set's `bpf_crib_stale_probe()` returns.
fn report_probe_in_guest() -> Result<()> {
    let want = std::env::var("CRIB_EXPECT_PROBE").context("CRIB_EXPECT_PROBE not passed")?;
    let obj = Path::new(crib_harness::BPF_DIR).join("stale_probe.bpf.o");
    let loaded = loader::load_one(&obj, "crib_stale_probe", &LoadOpts::default())?;
    if let Some((errno, msg)) = &loaded.error {
        bail!(
            "crib_stale_probe was rejected (errno {errno}: {msg}):\n{}",
            loaded.log
        );
    }
    let object = loaded.object.as_ref().context("no object")?;
    let prog = loader::find_prog(object, "crib_stale_probe").context("no program")?;
    let got = loader::run_syscall(&prog, &mut 0u64)?;
    let got = if got < 0 {
        format!("{got} (no such kfunc)")
    } else {
        format!("{got:#x}")
    };
    println!("bpf_crib_stale_probe() = {got}");
    ensure!(
        got == want,
        "the guest's kfunc set returned {got}, the edited source says {want}: the run did not \
         test the edit"
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
    let probe = 0x5a1e_0000 | (std::process::id() & 0xffff);
    edit_kfunc(copy.path(), probe)?;

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
        .env("CRIB_EXPECT_PROBE", format!("{probe:#x}"))
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
        report_probe_in_guest()
    } else {
        on_host()
    };
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

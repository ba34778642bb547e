//! `CRIB_KERNEL_DIR`: the suite against a kernel built elsewhere, addressed by its build
//! directory. The build directories `scripts/build` keeps in the cache stand in for a user's:
//! they are plain `make O=` trees. For the stock one the harness builds `kfuncs/` as a module
//! against that tree itself; the patched one is recognised by its BTF. Each then runs the hello
//! program in a guest booted from that directory's bzImage.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use crib_harness::kernel::{cache_dir, Flavor, Kernel};
use crib_harness::kernel_dir::{self, KernelDirError};
use crib_harness::vm::{self, Vm};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The object directory scripts/build built the exported `flavor` kernel in.
fn build_dir(flavor: Flavor) -> Result<PathBuf> {
    let k = Kernel::locate(flavor).context("the cache's kernel")?;
    k.manifest
        .get("CRIB_BUILD_DIR")
        .map(PathBuf::from)
        .with_context(|| format!("no CRIB_BUILD_DIR in {}/manifest.env", k.dir.display()))
}

fn in_guest() -> Result<()> {
    let want = std::env::var("CRIB_EXPECT_RELEASE").context("CRIB_EXPECT_RELEASE not passed")?;
    let uname = nix::sys::utsname::uname().context("uname")?;
    let release = uname.release().to_string_lossy().to_string();
    ensure!(
        release == want,
        "guest runs '{release}', the build directory's kernel is '{want}'"
    );
    let rec = crib_harness::hello::run(0xd1)?;
    let ino = std::fs::metadata(crib_harness::hello::FILE)
        .context("stat of the hello program's file")?
        .ino();
    ensure!(
        rec.ino == ino,
        "bpf_fget_task() found inode {}, stat says {ino}",
        rec.ino
    );
    println!("kernel {release}: bpf_fget_task() found inode {ino}");
    Ok(())
}

fn on_host(flavor: Flavor, test: &str) -> Result<()> {
    let dir = build_dir(flavor)?;
    let kernel = kernel_dir::locate(&dir, &repo(), &cache_dir(), flavor)
        .with_context(|| format!("CRIB_KERNEL_DIR={}", dir.display()))?;
    ensure!(kernel.flavor == flavor, "detected {:?}", kernel.flavor);
    match flavor {
        Flavor::Stock => {
            let ko = kernel
                .module
                .as_ref()
                .context("no module for a stock kernel")?;
            ensure!(
                ko.starts_with(cache_dir().join("user")),
                "module {} was not built by the harness",
                ko.display()
            );
        }
        Flavor::Patched => ensure!(kernel.module.is_none(), "{:?}", kernel.module),
    }
    let exe = std::env::current_exe()?;
    let run = Vm::new(&kernel)
        .env("CRIB_EXPECT_RELEASE", &kernel.release)
        .run(&vm::argv(&[
            exe.as_os_str(),
            "--exact".as_ref(),
            test.as_ref(),
            "--nocapture".as_ref(),
        ]))?;
    let run = vm::check_guest_test(test, run)?;
    print!("{}", run.output);
    Ok(())
}

fn case(flavor: Flavor, test: &str) {
    let r = if vm::in_guest() {
        in_guest()
    } else {
        on_host(flavor, test)
    };
    if let Err(e) = r {
        panic!("{e:#}");
    }
}

#[test]
fn kernel_dir_stock_tree_gets_a_module_built_and_runs_hello_stock() {
    case(
        Flavor::Stock,
        "kernel_dir_stock_tree_gets_a_module_built_and_runs_hello_stock",
    );
}

#[test]
fn kernel_dir_patched_tree_is_recognised_by_its_btf_and_runs_hello_patched() {
    case(
        Flavor::Patched,
        "kernel_dir_patched_tree_is_recognised_by_its_btf_and_runs_hello_patched",
    );
}

/// Host only: the patched tests asked of a stock tree get told why and what to select.
#[test]
fn kernel_dir_refuses_patched_tests_on_a_stock_tree() {
    let dir = build_dir(Flavor::Stock).expect("stock build dir");
    match kernel_dir::locate(&dir, &repo(), &cache_dir(), Flavor::Patched) {
        Err(e @ KernelDirError::WrongFlavor { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("not built in"), "{msg}");
            assert!(msg.contains("not test(/patched/)"), "{msg}");
        }
        other => panic!("expected WrongFlavor, got {other:?}"),
    }
}

//! Build script: generates the record types from the one C header the BPF programs include
//! (bindgen, so no struct is mirrored by hand), and compiles the BPF programs under
//! `selftests/progs/` against the `vmlinux.h` of the kernel `scripts/build` produced.
//!
//! A missing kernel build is not an error here (host-only unit tests still build); the BPF
//! object directory is then empty and every VM test fails, saying to run `scripts/build`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

// `CRIB_CACHE` and `CRIB_VARIANT`, shared with `crib_harness::settings` (build.rs cannot link
// the library it builds).
include!("src/settings/kernel_cache.rs");

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let root = root.canonicalize().unwrap();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let include = root.join("selftests/include");

    println!("cargo:rerun-if-changed={}", include.display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("selftests/progs").display()
    );
    println!("cargo:rerun-if-env-changed=CRIB_CACHE");
    println!("cargo:rerun-if-env-changed=CRIB_VARIANT");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=HOME");
    println!("cargo:rerun-if-changed=src/settings/kernel_cache.rs");

    bindgen::Builder::default()
        .header(include.join("crib_records.h").to_string_lossy())
        .header(include.join("crib_bench.h").to_string_lossy())
        .allowlist_type("crib_.*")
        .allowlist_var("CRIB_.*")
        .derive_default(true)
        .derive_debug(true)
        .derive_copy(true)
        .prepend_enum_name(false)
        .layout_tests(true)
        .generate()
        .expect("bindgen failed on selftests/include/crib_records.h or crib_bench.h")
        .write_to_file(out.join("records.rs"))
        .expect("cannot write records.rs");

    // Benchmarks print how the harness was built: user space's share of a dump depends on it.
    println!(
        "cargo:rustc-env=CRIB_HARNESS_BUILD={} build, opt-level {}",
        env::var("PROFILE").unwrap_or_else(|_| "unknown".into()),
        env::var("OPT_LEVEL").unwrap_or_else(|_| "?".into())
    );

    let bpf_out = out.join("bpf");
    fs::create_dir_all(&bpf_out).unwrap();
    println!("cargo:rustc-env=CRIB_BPF_DIR={}", bpf_out.display());

    // The library's settings module reads these two the same way (same file).
    let get = |k: &str| env::var_os(k);
    let cache = cache_from(&get);
    let variant = variant_from(&get);
    let kdir = cache.join("kernels").join(&variant).join("stock");
    let vmlinux_h = kdir.join("vmlinux.h");
    let libbpf_inc = kdir.join("libbpf-include");
    println!("cargo:rerun-if-changed={}", vmlinux_h.display());
    if !vmlinux_h.exists() || !libbpf_inc.exists() {
        println!(
            "cargo:warning=no kernel build at {} (vmlinux.h, libbpf-include): BPF programs not \
             compiled; run scripts/build, then cargo build again",
            kdir.display()
        );
        fs::write(bpf_out.join("MISSING"), kdir.display().to_string()).unwrap();
        return;
    }
    let _ = fs::remove_file(bpf_out.join("MISSING"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-19".into());
    let mut failed = Vec::new();
    for dir in ["selftests/progs"] {
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            let src = entry.unwrap().path();
            let name = src.file_name().unwrap().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".bpf.c") else {
                continue;
            };
            let obj = bpf_out.join(format!("{stem}.bpf.o"));
            if let Err(e) = compile_bpf(&clang, &src, &obj, &[&kdir, &libbpf_inc, &include]) {
                failed.push(format!("{}: {e}", src.display()));
            }
        }
    }
    if !failed.is_empty() {
        panic!("BPF programs failed to compile:\n{}", failed.join("\n"));
    }
}

fn compile_bpf(clang: &str, src: &Path, obj: &Path, incs: &[&Path]) -> Result<(), String> {
    let mut cmd = Command::new(clang);
    cmd.args([
        "-g",
        "-O2",
        "-target",
        "bpf",
        "-mcpu=v3",
        "-D__TARGET_ARCH_x86",
    ])
    .args([
        "-Wall",
        "-Wno-missing-declarations",
        "-Wno-unused-function",
        "-Werror",
    ]);
    for i in incs {
        cmd.arg(format!("-I{}", i.display()));
    }
    cmd.arg("-c").arg(src).arg("-o").arg(obj);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {clang}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(())
}

//! A kernel the user built elsewhere: `CRIB_KERNEL_DIR=<kernel build directory>`.
//!
//! The directory is what `make` (or `make O=<dir>`) leaves: `arch/x86/boot/bzImage`,
//! `vmlinux`, `.config`, `include/config/kernel.release`. The harness checks the config for
//! what the guests and the tests need (refusing the kernel with the whole list of what is
//! missing), reads vmlinux's BTF to see whether the CRIB kfuncs are built in (then it is a
//! patched kernel), and otherwise builds `kfuncs/` as a module against that tree (a stock
//! kernel). What it makes (vmlinux.h, the module) goes to `$CRIB_CACHE/user/<key>/`, keyed by
//! the bzImage's path, size and mtime and the kfuncs/ sources, and is reused while they hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::kernel::{Flavor, Kernel};

/// The kfunc whose presence in vmlinux BTF makes a kernel "patched".
pub const BUILT_IN_MARKER: &str = "bpf_iter_task_file_new";

#[derive(Debug, Error)]
pub enum KernelDirError {
    #[error("CRIB_KERNEL_DIR={dir}: {what} missing; point it at a kernel build directory (where `make` left arch/x86/boot/bzImage and vmlinux)")]
    Missing { dir: PathBuf, what: String },
    #[error("CRIB_KERNEL_DIR={dir}: the kernel lacks what the tests need:\n{}\nEnable them (e.g. `scripts/kconfig/merge_config.sh -m .config <crib>/configs/vmtest.config <crib>/configs/bpf.config`, then `make olddefconfig`) and rebuild", .missing.join("\n"))]
    Config { dir: PathBuf, missing: Vec<String> },
    #[error("CRIB_KERNEL_DIR={dir}: reading vmlinux BTF: {why}")]
    Btf { dir: PathBuf, why: String },
    #[error(
        "CRIB_KERNEL_DIR={dir} is a {found} kernel (the CRIB kfuncs are {}), so the {wanted} \
         tests cannot run on it; select the {found} tests, e.g. \
         `cargo nextest run -E 'not test(/{wanted}/)'`",
        if *.found == Flavor::Patched { "built in" } else { "not built in" }
    )]
    WrongFlavor {
        dir: PathBuf,
        found: Flavor,
        wanted: Flavor,
    },
    #[error("CRIB_KERNEL_DIR={dir}: {step} failed: {why}")]
    Step {
        dir: PathBuf,
        step: &'static str,
        why: String,
    },
}

/// One required option: its name and why the tests need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub option: String,
    pub value: String,
    pub why: &'static str,
}

/// What a kernel must have for the guests and tests: every `=y` of `configs/vmtest.config`
/// (the VM), BPF with BTF, and for a stock kernel module loading with module BTF.
pub fn needs(repo: &Path, flavor: Flavor) -> Vec<Need> {
    let mut needs: Vec<Need> = std::fs::read_to_string(repo.join("configs/vmtest.config"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, v)| k.starts_with("CONFIG_") && *v == "y")
        .map(|(k, v)| Need {
            option: k.to_string(),
            value: v.to_string(),
            why: "boot the guest (configs/vmtest.config)",
        })
        .collect();
    let mut extra: Vec<(&str, &'static str)> = [
        "CONFIG_BPF_SYSCALL",
        "CONFIG_BPF_JIT",
        "CONFIG_DEBUG_INFO_BTF",
    ]
    .map(|o| (o, "load BPF programs with kfuncs"))
    .to_vec();
    if flavor == Flavor::Stock {
        extra.extend(
            [
                "CONFIG_MODULES",
                "CONFIG_MODULE_UNLOAD",
                "CONFIG_DEBUG_INFO_BTF_MODULES",
            ]
            .map(|o| (o, "load crib_kfuncs.ko and register its kfuncs")),
        );
    }
    needs.extend(extra.into_iter().map(|(o, why)| Need {
        option: o.to_string(),
        value: "y".into(),
        why,
    }));
    needs
}

/// `KEY=value` lines of a .config (comments and `# ... is not set` are absent options).
pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The needs `config` does not meet, one line each: `CONFIG_X=y (is: n): why`.
pub fn missing(config: &BTreeMap<String, String>, needs: &[Need]) -> Vec<String> {
    needs
        .iter()
        .filter(|n| config.get(&n.option) != Some(&n.value))
        .map(|n| {
            let is = config.get(&n.option).map_or("not set", String::as_str);
            format!("  {}={} (is: {is}): to {}", n.option, n.value, n.why)
        })
        .collect()
}

/// Whether vmlinux's BTF has the CRIB kfuncs built in.
pub fn has_builtin_kfuncs(vmlinux: &Path) -> Result<bool, String> {
    use libbpf_rs::btf::types::Func;
    let btf = libbpf_rs::Btf::from_path(vmlinux).map_err(|e| e.to_string())?;
    Ok(btf.type_by_name::<Func<'_>>(BUILT_IN_MARKER).is_some())
}

fn run(dir: &Path, step: &'static str, cmd: &mut Command) -> Result<Vec<u8>, KernelDirError> {
    let err = |why: String| KernelDirError::Step {
        dir: dir.to_path_buf(),
        step,
        why,
    };
    let out = cmd.output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(err(format!("{}\n{}", out.status, tail.join("\n"))));
    }
    Ok(out.stdout)
}

/// A bpftool to dump BTF with: the one `scripts/build` made, else one on PATH.
fn bpftool(cache: &Path) -> PathBuf {
    let tools = cache.join("tools");
    std::fs::read_dir(&tools)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bpftool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("bpftool"))
}

/// A cache key over `parts` (hex). Not stable across Rust releases, which only costs a rebuild.
fn digest(parts: &[String]) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The kernel in `dir` for tests of `flavor`.
pub fn locate(
    dir: &Path,
    repo: &Path,
    cache: &Path,
    flavor: Flavor,
) -> Result<Kernel, KernelDirError> {
    let dir = dir.canonicalize().map_err(|_| KernelDirError::Missing {
        dir: dir.to_path_buf(),
        what: "the directory".into(),
    })?;
    let file = |rel: &str| -> Result<PathBuf, KernelDirError> {
        let p = dir.join(rel);
        if p.is_file() {
            Ok(p)
        } else {
            Err(KernelDirError::Missing {
                dir: dir.clone(),
                what: rel.to_string(),
            })
        }
    };
    let bzimage = file("arch/x86/boot/bzImage")?;
    let vmlinux = file("vmlinux")?;
    let config_path = file(".config")?;
    let release = std::fs::read_to_string(file("include/config/kernel.release")?)
        .unwrap_or_default()
        .trim()
        .to_string();
    let config = parse_config(&std::fs::read_to_string(&config_path).unwrap_or_default());

    let found = if has_builtin_kfuncs(&vmlinux).map_err(|why| KernelDirError::Btf {
        dir: dir.clone(),
        why,
    })? {
        Flavor::Patched
    } else {
        Flavor::Stock
    };
    let lacking = missing(&config, &needs(repo, found));
    if !lacking.is_empty() {
        return Err(KernelDirError::Config {
            dir,
            missing: lacking,
        });
    }
    if found != flavor {
        return Err(KernelDirError::WrongFlavor {
            dir,
            found,
            wanted: flavor,
        });
    }

    // What the harness makes for this kernel, reused while the kernel and kfuncs/ hold.
    let meta = std::fs::metadata(&bzimage).map_err(|e| KernelDirError::Step {
        dir: dir.clone(),
        step: "stat bzImage",
        why: e.to_string(),
    })?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut key_parts = vec![
        bzimage.display().to_string(),
        meta.len().to_string(),
        mtime.to_string(),
    ];
    let mut kfuncs: Vec<PathBuf> = std::fs::read_dir(repo.join("kfuncs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    kfuncs.sort();
    if found == Flavor::Stock {
        for f in &kfuncs {
            key_parts.push(std::fs::read_to_string(f).unwrap_or_default());
        }
    }
    let out = cache.join("user").join(digest(&key_parts));
    std::fs::create_dir_all(&out).map_err(|e| KernelDirError::Step {
        dir: dir.clone(),
        step: "create the cache directory",
        why: format!("{}: {e}", out.display()),
    })?;

    let vmlinux_h = out.join("vmlinux.h");
    if !vmlinux_h.is_file() {
        let text = run(
            &dir,
            "bpftool btf dump (vmlinux.h)",
            Command::new(bpftool(cache))
                .args(["btf", "dump", "file"])
                .arg(&vmlinux)
                .args(["format", "c"]),
        )?;
        std::fs::write(&vmlinux_h, text).map_err(|e| KernelDirError::Step {
            dir: dir.clone(),
            step: "write vmlinux.h",
            why: e.to_string(),
        })?;
    }

    let module = if found == Flavor::Stock {
        let mdir = out.join("module");
        let ko = mdir.join("crib_kfuncs.ko");
        if !ko.is_file() {
            std::fs::create_dir_all(&mdir).ok();
            for f in &kfuncs {
                if let Some(name) = f.file_name() {
                    std::fs::copy(f, mdir.join(name)).map_err(|e| KernelDirError::Step {
                        dir: dir.clone(),
                        step: "copy kfuncs/",
                        why: e.to_string(),
                    })?;
                }
            }
            let mut make = Command::new("make");
            make.arg("-C")
                .arg(&dir)
                .arg(format!("M={}", mdir.display()));
            if config.contains_key("CONFIG_CC_IS_CLANG") {
                make.arg("LLVM=-19");
            }
            make.args(["-j2", "modules"]);
            run(&dir, "building kfuncs/ as a module against it", &mut make)?;
        }
        Some(ko)
    } else {
        None
    };

    let mut manifest = BTreeMap::new();
    manifest.insert("CRIB_KERNEL_DIR".to_string(), dir.display().to_string());
    manifest.insert("CRIB_KERNEL_RELEASE".to_string(), release.clone());
    Ok(Kernel {
        flavor,
        variant: "user".into(),
        dir: dir.clone(),
        bzimage,
        vmlinux,
        vmlinux_h,
        release,
        base: format!("user-dir:{}", dir.display()),
        module,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn needs_come_from_vmtest_config_and_module_needs_only_for_stock() {
        let stock = needs(&repo(), Flavor::Stock);
        let patched = needs(&repo(), Flavor::Patched);
        let has = |n: &[Need], o: &str| n.iter().any(|x| x.option == o);
        assert!(has(&stock, "CONFIG_NET_9P_VIRTIO"), "{stock:?}");
        assert!(has(&patched, "CONFIG_DEBUG_INFO_BTF"));
        assert!(has(&stock, "CONFIG_DEBUG_INFO_BTF_MODULES"));
        assert!(!has(&patched, "CONFIG_DEBUG_INFO_BTF_MODULES"));
    }

    #[test]
    fn missing_lists_every_unmet_option_with_its_reason() {
        let config = parse_config(
            "CONFIG_BPF_SYSCALL=y\n# CONFIG_DEBUG_INFO_BTF is not set\nCONFIG_BPF_JIT=m\n",
        );
        let needs = needs(&repo(), Flavor::Patched);
        let m = missing(&config, &needs);
        let text = m.join("\n");
        assert!(
            text.contains("CONFIG_DEBUG_INFO_BTF=y (is: not set)"),
            "{text}"
        );
        assert!(text.contains("CONFIG_BPF_JIT=y (is: m)"), "{text}");
        assert!(!text.contains("CONFIG_BPF_SYSCALL"), "{text}");
        assert!(text.contains("CONFIG_9P_FS=y"), "{text}");
    }

    #[test]
    fn a_directory_without_a_kernel_says_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let err = locate(tmp.path(), &repo(), tmp.path(), Flavor::Stock).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("arch/x86/boot/bzImage missing"), "{msg}");
    }
}

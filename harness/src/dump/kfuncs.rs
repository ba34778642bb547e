//! Whether the running kernel has the CRIB kfuncs, and what to do when it has not.
//!
//! They are built in on the patched kernel (vmlinux's BTF has them) and come with the module
//! `crib_kfuncs.ko` on a stock kernel (its BTF is `/sys/kernel/btf/crib_kfuncs`).

use std::path::Path;

use libbpf_rs::btf::types::Func;
use libbpf_rs::btf::Btf;

/// A kfunc every CRIB kernel has.
pub const PROBE_KFUNC: &str = "bpf_iter_task_file_new";
/// The module's name, as in `/sys/module` and `/sys/kernel/btf`.
pub const MODULE: &str = "crib_kfuncs";

/// Where the CRIB kfuncs come from in the running kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Built in (the patched kernel).
    BuiltIn,
    /// `crib_kfuncs.ko` is loaded.
    Module,
}

/// Where the kfuncs come from, or why they are unavailable (a message that says how to get
/// them).
pub fn provider() -> Result<Provider, String> {
    provider_in(Path::new("/sys"))
}

/// [`provider`] with sysfs mounted at `sys`.
pub fn provider_in(sys: &Path) -> Result<Provider, String> {
    if sys.join("kernel/btf").join(MODULE).exists() {
        return Ok(Provider::Module);
    }
    let vmlinux = sys.join("kernel/btf/vmlinux");
    let btf = if sys == Path::new("/sys") {
        Btf::from_vmlinux()
    } else {
        Btf::from_path(&vmlinux)
    };
    match btf {
        Ok(btf) if btf.type_by_name::<Func<'_>>(PROBE_KFUNC).is_some() => Ok(Provider::BuiltIn),
        Ok(_) => Err(how_to_get_them(&format!(
            "{} has no {PROBE_KFUNC} and the module {MODULE}.ko is not loaded",
            vmlinux.display()
        ))),
        Err(e) => Err(how_to_get_them(&format!(
            "cannot read {} ({e}) and the module {MODULE}.ko is not loaded",
            vmlinux.display()
        ))),
    }
}

/// Whether the running kernel (or a loaded module) has function `name`, from /proc/kallsyms
/// (names are listed even where addresses are hidden). For kfuncs added after a kernel was
/// built, e.g. [`PATH_KFUNC`] on a patched kernel whose series predates it.
pub fn has(name: &str) -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .is_ok_and(|k| k.lines().any(|l| l.split_whitespace().nth(2) == Some(name)))
}

/// The kfunc `crib dump` needs for paths.
pub const PATH_KFUNC: &str = "bpf_iter_task_file_get_path";

/// `Some(message)` when the kfuncs are unavailable.
pub fn unavailable() -> Option<String> {
    provider().err()
}

fn how_to_get_them(why: &str) -> String {
    let module = std::env::var("CRIB_GUEST_KERNEL_MODULE")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "~/.cache/crib/kernels/release/stock/crib_kfuncs.ko".into());
    format!(
        "the CRIB kfuncs are not available in this kernel: {why}. On a stock kernel, load the \
         module built for it: `insmod {module}` (`scripts/build --only stock` builds it; \
         `scripts/vm --kernel stock` boots the stock kernel with it loaded); or boot the \
         patched kernel, which has them built in: `scripts/vm --kernel patched -- ...`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_module_provides_them_and_nothing_says_how_to_get_them() {
        let sys = tempfile::tempdir().unwrap();
        let btf = sys.path().join("kernel/btf");
        std::fs::create_dir_all(&btf).unwrap();
        let e = provider_in(sys.path()).unwrap_err();
        assert!(e.contains("not loaded"), "{e}");
        assert!(e.contains("insmod"), "{e}");
        assert!(e.contains("--kernel patched"), "{e}");
        std::fs::write(btf.join(MODULE), b"").unwrap();
        assert_eq!(provider_in(sys.path()), Ok(Provider::Module));
    }
}

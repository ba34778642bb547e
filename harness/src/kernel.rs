//! Where the kernels built by `scripts/build` live, and what they are.
//!
//! `scripts/build` exports each kernel to `$CRIB_CACHE/kernels/<variant>/<flavor>/` with a
//! `manifest.env`; this module only reads that. Building stays in the script, where apt, tar,
//! git and make are driven most plainly.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;

/// Which kernel: the unmodified base with our out-of-tree module, or base + the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Base kernel, no patches; CRIB kfuncs come from `crib_kfuncs.ko`.
    Stock,
    /// Base kernel with `kernel-patches/*.patch` applied; CRIB kfuncs are built in.
    Patched,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Stock => "stock",
            Flavor::Patched => "patched",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavor {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stock" => Ok(Flavor::Stock),
            "patched" => Ok(Flavor::Patched),
            other => Err(KernelError::BadFlavor(other.to_string())),
        }
    }
}

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("unknown kernel flavor '{0}': use 'stock' or 'patched'")]
    BadFlavor(String),
    #[error(
        "no {flavor} kernel built for variant '{variant}' (looked in {dir}): run `scripts/build` \
         (or set CRIB_CACHE to the cache that holds your build)"
    )]
    NotBuilt {
        flavor: Flavor,
        variant: String,
        dir: PathBuf,
    },
    #[error("{path}: {what}; the kernel build looks incomplete: run `scripts/build` again")]
    Incomplete { path: PathBuf, what: String },
    #[error(
        "the {flavor} kernel in the cache ({built}) was not built from this checkout: {changed} \
         changed since; this tree's build would be {want}. Run `scripts/build` (`cargo nextest \
         run` does that itself through its setup script)"
    )]
    Stale {
        flavor: Flavor,
        built: PathBuf,
        want: PathBuf,
        changed: String,
    },
    #[error("asking `{script} --exports-for` where this checkout's kernels are: {why}")]
    Exports { script: PathBuf, why: String },
    #[error(transparent)]
    Dir(#[from] crate::kernel_dir::KernelDirError),
}

/// One built kernel, as exported by `scripts/build`.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub flavor: Flavor,
    pub variant: String,
    /// The export directory (symlink resolved).
    pub dir: PathBuf,
    pub bzimage: PathBuf,
    pub vmlinux: PathBuf,
    pub vmlinux_h: PathBuf,
    /// `uname -r` of this kernel.
    pub release: String,
    /// Base version, e.g. `linux-source-7.3-7.3~rc7-1~exp1` or `user-<sha>`.
    pub base: String,
    /// The out-of-tree module, for the stock flavor.
    pub module: Option<PathBuf>,
    pub manifest: BTreeMap<String, String>,
}

/// `$CRIB_CACHE`, default `~/.cache/crib`.
pub fn cache_dir() -> PathBuf {
    crate::settings::get().cache.clone()
}

/// `$CRIB_VARIANT`, default `release` (see harness/README.md: why tests do not boot the debug kernel by default).
pub fn variant() -> String {
    crate::settings::get().variant.clone()
}

/// Parse `KEY=value` lines; blank lines and `#` comments are skipped.
pub fn parse_manifest(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The export directories `scripts/build` uses for one checkout's inputs, and the inputs' keys
/// (`scripts/build --exports-for BASE`: the naming lives in the script alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exports {
    pub stock: PathBuf,
    pub module: PathBuf,
    pub patched: PathBuf,
    /// `CRIB_CFG_KEY`, `CRIB_PATCH_KEY`, `CRIB_KFUNCS_KEY`, `CRIB_KFUNCS_SRC_KEY`.
    pub keys: BTreeMap<String, String>,
}

impl Exports {
    /// Ask `<root>/scripts/build` where the exports of the tree at `root` for `base` live.
    pub fn of_tree(
        root: &Path,
        cache: &Path,
        variant: &str,
        base: &str,
    ) -> Result<Exports, KernelError> {
        Self::parse(root, &Self::script_output(root, cache, variant, base)?)
    }

    /// [`Exports::of_tree`], asked once per nextest run (`per_run`): every VM test process
    /// locates this checkout's kernels, and the script takes 0.5-1.5 s on a 2-core machine
    /// (200 test processes: 2-4 minutes of a serial run). nextest's setup script ran
    /// `scripts/build` just before, so the answer holds for the run; an input edited while
    /// the run is under way is caught by the next run.
    pub fn of_tree_once_per_run(
        root: &Path,
        cache: &Path,
        variant: &str,
        base: &str,
    ) -> Result<Exports, KernelError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (root, cache, variant, base).hash(&mut h);
        let key = format!("exports-{:016x}", h.finish());
        let lock_err = |why: String| KernelError::Exports {
            script: root.join("scripts/build"),
            why,
        };
        let text = crate::per_run::once(
            &key,
            || Self::script_output(root, cache, variant, base),
            lock_err,
        )?;
        Self::parse(root, &text)
    }

    fn script_output(
        root: &Path,
        cache: &Path,
        variant: &str,
        base: &str,
    ) -> Result<String, KernelError> {
        let script = root.join("scripts/build");
        let err = |why: String| KernelError::Exports {
            script: script.clone(),
            why,
        };
        let out = std::process::Command::new(&script)
            .args(["--exports-for", base])
            .env("CRIB_CACHE", cache)
            .env("CRIB_VARIANT", variant)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            return Err(err(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn parse(root: &Path, text: &str) -> Result<Exports, KernelError> {
        let mut m = parse_manifest(text);
        let mut take = |k: &str| {
            m.remove(k)
                .map(PathBuf::from)
                .ok_or_else(|| KernelError::Exports {
                    script: root.join("scripts/build"),
                    why: format!("no '{k}=' line in its output"),
                })
        };
        Ok(Exports {
            stock: take("stock")?,
            module: take("module")?,
            patched: take("patched")?,
            keys: m,
        })
    }

    /// Which inputs differ between this tree and the export whose manifest is `built`.
    fn changed(&self, flavor: Flavor, built: &BTreeMap<String, String>) -> String {
        let mut inputs = vec![("CRIB_CFG_KEY", "configs/")];
        if flavor == Flavor::Patched {
            inputs.push(("CRIB_PATCH_KEY", "kernel-patches/"));
            inputs.push(("CRIB_KFUNCS_SRC_KEY", "kfuncs/"));
        }
        let changed: Vec<&str> = inputs
            .iter()
            .filter(|(k, _)| built.get(*k) != self.keys.get(*k))
            .map(|(_, what)| *what)
            .collect();
        match (changed.is_empty(), built.contains_key("CRIB_CFG_KEY")) {
            (_, false) => "an input (that export records no input keys)".into(),
            (true, true) => "an input".into(),
            (false, true) => changed.join(" and "),
        }
    }
}

impl Kernel {
    /// The kernel of `flavor`: the one in `CRIB_KERNEL_DIR` (a kernel build directory, see
    /// `kernel_dir`) when that is set, else the current variant's in the cache, built from this
    /// checkout's configs, patches and kfuncs.
    pub fn locate(flavor: Flavor) -> Result<Kernel, KernelError> {
        // In a guest, the host already chose (and checked) the kernel it booted: take it from
        // the environment instead of redoing the lookup over 9p under TCG (which took 77 s on
        // a loaded host).
        if let Some(k) = Kernel::from_guest_env(flavor) {
            return Ok(k);
        }
        if let Some(dir) = &crate::settings::get().kernel_dir {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            return Ok(crate::kernel_dir::locate(dir, &root, &cache_dir(), flavor)?);
        }
        Self::locate_in(&cache_dir(), &variant(), flavor)
    }

    /// What the guest needs to know of the kernel it runs on: passed by `Vm` into the guest's
    /// environment, read back by [`Kernel::locate`] there.
    pub fn guest_env(&self) -> Vec<(String, String)> {
        let p = |p: &Path| p.display().to_string();
        vec![
            ("CRIB_GUEST_KERNEL_DIR".into(), p(&self.dir)),
            ("CRIB_GUEST_KERNEL_BZIMAGE".into(), p(&self.bzimage)),
            ("CRIB_GUEST_KERNEL_VMLINUX".into(), p(&self.vmlinux)),
            ("CRIB_GUEST_KERNEL_VMLINUX_H".into(), p(&self.vmlinux_h)),
            ("CRIB_GUEST_KERNEL_RELEASE".into(), self.release.clone()),
            ("CRIB_GUEST_KERNEL_BASE".into(), self.base.clone()),
            (
                "CRIB_GUEST_KERNEL_MODULE".into(),
                self.module.as_deref().map(p).unwrap_or_default(),
            ),
        ]
    }

    /// The kernel the host booted this guest with, if this is a guest of `flavor`.
    fn from_guest_env(flavor: Flavor) -> Option<Kernel> {
        // Internal variables (`settings::INTERNAL`), written by `guest_env` above for the guest:
        // the two halves of one protocol stay together here rather than in `settings`.
        let get = |k: &str| std::env::var(k).ok();
        if get("CRIB_IN_GUEST").as_deref() != Some("1")
            || get("CRIB_FLAVOR").as_deref() != Some(flavor.as_str())
        {
            return None;
        }
        let dir = PathBuf::from(get("CRIB_GUEST_KERNEL_DIR")?);
        let release = get("CRIB_GUEST_KERNEL_RELEASE")?;
        let mut manifest = std::fs::read_to_string(dir.join("manifest.env"))
            .map(|t| parse_manifest(&t))
            .unwrap_or_default();
        manifest
            .entry("CRIB_KERNEL_RELEASE".into())
            .or_insert_with(|| release.clone());
        Some(Kernel {
            flavor,
            variant: variant(),
            bzimage: get("CRIB_GUEST_KERNEL_BZIMAGE")?.into(),
            vmlinux: get("CRIB_GUEST_KERNEL_VMLINUX")?.into(),
            vmlinux_h: get("CRIB_GUEST_KERNEL_VMLINUX_H")?.into(),
            base: get("CRIB_GUEST_KERNEL_BASE").unwrap_or_default(),
            module: get("CRIB_GUEST_KERNEL_MODULE")
                .filter(|m| !m.is_empty())
                .map(PathBuf::from),
            release,
            manifest,
            dir,
        })
    }

    /// The kernel of `flavor` built from this checkout (asking `scripts/build` once per nextest
    /// run, [`Exports::of_tree_once_per_run`]).
    pub fn locate_in(cache: &Path, variant: &str, flavor: Flavor) -> Result<Kernel, KernelError> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        Self::locate_with(&root, cache, variant, flavor, Exports::of_tree_once_per_run)
    }

    /// The kernel of `flavor` built from the checkout at `root`. The cache's
    /// `kernels/<variant>/<flavor>` link names the last build and its base; the export of this
    /// tree's inputs for that base must exist, else the kernel (or module) is stale and this
    /// says which input changed.
    pub fn locate_for_tree(
        root: &Path,
        cache: &Path,
        variant: &str,
        flavor: Flavor,
    ) -> Result<Kernel, KernelError> {
        Self::locate_with(root, cache, variant, flavor, Exports::of_tree)
    }

    fn locate_with(
        root: &Path,
        cache: &Path,
        variant: &str,
        flavor: Flavor,
        exports_of: fn(&Path, &Path, &str, &str) -> Result<Exports, KernelError>,
    ) -> Result<Kernel, KernelError> {
        let link = cache.join("kernels").join(variant).join(flavor.as_str());
        let not_built = || KernelError::NotBuilt {
            flavor,
            variant: variant.to_string(),
            dir: link.clone(),
        };
        let last = link.canonicalize().map_err(|_| not_built())?;
        let last_manifest = std::fs::read_to_string(last.join("manifest.env"))
            .map(|t| parse_manifest(&t))
            .map_err(|_| not_built())?;
        let base = last_manifest.get("CRIB_BASE").ok_or_else(not_built)?;
        let exports = exports_of(root, cache, variant, base)?;
        let want = match flavor {
            Flavor::Stock => &exports.stock,
            Flavor::Patched => &exports.patched,
        };
        let stale = |want: &Path| KernelError::Stale {
            flavor,
            built: last.clone(),
            want: want.to_path_buf(),
            changed: exports.changed(flavor, &last_manifest),
        };
        let dir = want.canonicalize().map_err(|_| stale(want))?;
        let manifest_path = dir.join("manifest.env");
        let text = std::fs::read_to_string(&manifest_path).map_err(|_| stale(want))?;
        let manifest = parse_manifest(&text);
        let need = |p: PathBuf| -> Result<PathBuf, KernelError> {
            if p.exists() {
                Ok(p)
            } else {
                Err(KernelError::Incomplete {
                    path: p,
                    what: "missing".into(),
                })
            }
        };
        let release = manifest
            .get("CRIB_KERNEL_RELEASE")
            .cloned()
            .ok_or_else(|| KernelError::Incomplete {
                path: manifest_path.clone(),
                what: "no CRIB_KERNEL_RELEASE".into(),
            })?;
        let module = match flavor {
            Flavor::Stock => {
                let ko = exports.module.join("crib_kfuncs.ko");
                if !ko.exists() {
                    return Err(KernelError::Stale {
                        flavor,
                        built: last.join("module"),
                        want: exports.module.clone(),
                        changed: "kfuncs/ (the module)".into(),
                    });
                }
                Some(ko)
            }
            Flavor::Patched => None,
        };
        Ok(Kernel {
            flavor,
            variant: variant.to_string(),
            bzimage: need(dir.join("bzImage"))?,
            vmlinux: need(dir.join("vmlinux"))?,
            vmlinux_h: need(dir.join("vmlinux.h"))?,
            base: manifest.get("CRIB_BASE").cloned().unwrap_or_default(),
            release,
            module,
            manifest,
            dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_key_values_and_skips_comments() {
        let m = parse_manifest("# x\nCRIB_KERNEL_RELEASE=7.3.0-rc7\n\nCRIB_BASE = a=b\n");
        assert_eq!(
            m.get("CRIB_KERNEL_RELEASE").map(String::as_str),
            Some("7.3.0-rc7")
        );
        assert_eq!(m.get("CRIB_BASE").map(String::as_str), Some("a=b"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn missing_kernel_says_what_to_run() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Kernel::locate_in(tmp.path(), "debug", Flavor::Stock).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("scripts/build"), "{msg}");
        assert!(msg.contains("stock"), "{msg}");
    }

    /// A cache whose `kernels/release/<flavor>` link points at an export with `manifest`.
    fn cache_with_last_build(flavor: Flavor, manifest: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out/last-build");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("manifest.env"), manifest).unwrap();
        let kernels = tmp.path().join("kernels/release");
        std::fs::create_dir_all(&kernels).unwrap();
        std::os::unix::fs::symlink(&out, kernels.join(flavor.as_str())).unwrap();
        tmp
    }

    fn this_tree() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Fill `dir` with what an export holds.
    fn fake_export(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for f in ["bzImage", "vmlinux", "vmlinux.h"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        std::fs::write(
            dir.join("manifest.env"),
            "CRIB_BASE=fake-7.3\nCRIB_KERNEL_RELEASE=7.3.0-test\n",
        )
        .unwrap();
    }

    #[test]
    fn kernel_built_from_other_configs_is_stale_and_names_configs() {
        let cache = cache_with_last_build(
            Flavor::Stock,
            "CRIB_BASE=fake-7.3\nCRIB_KERNEL_RELEASE=x\nCRIB_CFG_KEY=old-release\n",
        );
        let err = Kernel::locate_in(cache.path(), "release", Flavor::Stock).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, KernelError::Stale { .. }), "{msg}");
        assert!(msg.contains("configs/ changed"), "{msg}");
        assert!(msg.contains("scripts/build"), "{msg}");
    }

    #[test]
    fn patched_kernel_built_from_other_kfuncs_is_stale_and_names_kfuncs() {
        let exports =
            Exports::of_tree(&this_tree(), Path::new("/nonexistent"), "release", "b").unwrap();
        let manifest = format!(
            "CRIB_BASE=fake-7.3\nCRIB_CFG_KEY={}\nCRIB_PATCH_KEY={}\nCRIB_KFUNCS_SRC_KEY=old\n",
            exports.keys["CRIB_CFG_KEY"], exports.keys["CRIB_PATCH_KEY"]
        );
        let cache = cache_with_last_build(Flavor::Patched, &manifest);
        let msg = Kernel::locate_in(cache.path(), "release", Flavor::Patched)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(": kfuncs/ changed"), "{msg}");
    }

    #[test]
    fn export_of_this_tree_is_found_and_its_module_is_this_trees() {
        let cache = cache_with_last_build(Flavor::Stock, "CRIB_BASE=fake-7.3\n");
        let exports = Exports::of_tree(&this_tree(), cache.path(), "release", "fake-7.3").unwrap();
        assert!(exports.stock.starts_with(cache.path()), "{exports:?}");
        fake_export(&exports.stock);

        // The stock kernel is there but not this tree's module: stale, and it says so.
        let msg = Kernel::locate_in(cache.path(), "release", Flavor::Stock)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("kfuncs/ (the module)"), "{msg}");

        std::fs::create_dir_all(&exports.module).unwrap();
        std::fs::write(exports.module.join("crib_kfuncs.ko"), "").unwrap();
        let k = Kernel::locate_in(cache.path(), "release", Flavor::Stock).unwrap();
        assert_eq!(k.release, "7.3.0-test");
        assert_eq!(k.module, Some(exports.module.join("crib_kfuncs.ko")));
        assert_eq!(k.dir, exports.stock.canonicalize().unwrap());
    }

    #[test]
    fn guest_env_round_trips_the_kernel() {
        let tmp = tempfile::tempdir().unwrap();
        fake_export(tmp.path());
        let k = Kernel {
            flavor: Flavor::Stock,
            variant: "release".into(),
            dir: tmp.path().to_path_buf(),
            bzimage: tmp.path().join("bzImage"),
            vmlinux: tmp.path().join("vmlinux"),
            vmlinux_h: tmp.path().join("vmlinux.h"),
            release: "7.3.0-test".into(),
            base: "fake-7.3".into(),
            module: Some("/m/crib_kfuncs.ko".into()),
            manifest: BTreeMap::new(),
        };
        let env: BTreeMap<String, String> = k.guest_env().into_iter().collect();
        assert_eq!(env["CRIB_GUEST_KERNEL_MODULE"], "/m/crib_kfuncs.ko");
        assert_eq!(env["CRIB_GUEST_KERNEL_RELEASE"], "7.3.0-test");
        assert_eq!(
            PathBuf::from(&env["CRIB_GUEST_KERNEL_BZIMAGE"]),
            tmp.path().join("bzImage")
        );
    }

    #[test]
    fn flavor_round_trips_and_rejects_junk() {
        assert_eq!("stock".parse::<Flavor>().unwrap(), Flavor::Stock);
        assert_eq!("patched".parse::<Flavor>().unwrap(), Flavor::Patched);
        assert!("vanilla"
            .parse::<Flavor>()
            .unwrap_err()
            .to_string()
            .contains("stock"));
    }
}

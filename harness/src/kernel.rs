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
    if let Some(d) = std::env::var_os("CRIB_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/crib")
}

/// `$CRIB_VARIANT`, default `release` (see harness/README.md: why tests do not boot the debug kernel by default).
pub fn variant() -> String {
    std::env::var("CRIB_VARIANT").unwrap_or_else(|_| "release".to_string())
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

impl Kernel {
    /// The kernel of `flavor` for the current variant in the current cache.
    pub fn locate(flavor: Flavor) -> Result<Kernel, KernelError> {
        Self::locate_in(&cache_dir(), &variant(), flavor)
    }

    pub fn locate_in(cache: &Path, variant: &str, flavor: Flavor) -> Result<Kernel, KernelError> {
        let link = cache.join("kernels").join(variant).join(flavor.as_str());
        let not_built = || KernelError::NotBuilt {
            flavor,
            variant: variant.to_string(),
            dir: link.clone(),
        };
        let dir = link.canonicalize().map_err(|_| not_built())?;
        let manifest_path = dir.join("manifest.env");
        let text = std::fs::read_to_string(&manifest_path).map_err(|_| not_built())?;
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
            Flavor::Stock => Some(need(dir.join("module/crib_kfuncs.ko"))?),
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

// Where `scripts/build` exports kernels: `CRIB_CACHE` and `CRIB_VARIANT`, the two settings
// build.rs needs too (it finds the stock kernel's vmlinux.h there). build.rs cannot use the
// library crate, so it `include!`s this file and both read the variables the same way;
// `settings.rs` has the table and the tests. Plain items only: no inner doc comments, no `use`.

/// `CRIB_VARIANT` when unset or empty.
pub const DEFAULT_VARIANT: &str = "release";

/// `CRIB_CACHE` if set and not empty, else `$HOME/.cache/crib` (`/root/.cache/crib` without
/// `HOME`), looked up through `get`.
pub fn cache_from(get: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> std::path::PathBuf {
    if let Some(d) = get("CRIB_CACHE").filter(|d| !d.is_empty()) {
        return std::path::PathBuf::from(d);
    }
    let home = get("HOME")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/root".into());
    std::path::PathBuf::from(home).join(".cache/crib")
}

/// `CRIB_VARIANT` if set and not empty (and UTF-8), else [`DEFAULT_VARIANT`].
pub fn variant_from(get: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> String {
    get("CRIB_VARIANT")
        .and_then(|v| v.into_string().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_VARIANT.to_string())
}

/// Whether a variant's kernels carry the debugging options of `configs/debug.config` (KASAN,
/// lockdep): by the matrix's naming rule, its name is `debug` or ends in `-debug`. Such a guest
/// runs several times slower under TCG, so the run's time limits default higher.
pub fn is_debug_variant(variant: &str) -> bool {
    variant == "debug" || variant.ends_with("-debug")
}

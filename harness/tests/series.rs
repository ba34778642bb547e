//! Host-side checks of the kernel series: it applies to the base with `git am`, the in-tree
//! sources it adds are byte-identical to the module's `kfuncs/`, the in-tree selftests it carries
//! are byte-identical to their sources under `selftests/` (`SELFTEST_COPIES` in the script), and
//! every patch is checkpatch-clean with the flags bpf reviewers use. `scripts/series check` does the work; this
//! test makes it part of `cargo nextest run`, and prints its whole output on failure.

use std::path::Path;
use std::process::Command;

#[test]
fn series_applies_matches_module_source_and_is_checkpatch_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("scripts/series");
    let out = match Command::new(&script)
        .arg("check")
        .current_dir(&root)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run {}: {e}", script.display()),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/series check failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
}

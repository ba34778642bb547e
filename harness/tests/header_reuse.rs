//! `scripts/header-reuse` decides which headers the patched kernel build may leave at their
//! base mtime, so that the stock objects including them are kept instead of recompiled. A wrong
//! "yes" builds a patched kernel from objects that do not match its source; these cases try to
//! get one: changed declarations, removed lines, a new name the base already uses, a define that
//! shifts a `WARN_ON()` in a later inline function. Each runs the script on a two-commit git
//! repository in a temporary directory.

use std::fs;
use std::path::Path;
use std::process::Command;

use rstest::rstest;

const BASE: &str = "\
#ifndef _T_H
#define _T_H
#define KF_ONE (1 << 0)

struct t {
	int a;
};
#endif
";

#[track_caller]
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Commit `base` as t.h (beside a user.c that mentions `KF_USED`), then `head`; run the script.
/// Returns (stdout, stderr).
fn run(base: &str, head: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let d = dir.path();
    git(d, &["init", "-q"]);
    fs::write(d.join("t.h"), base).unwrap_or_else(|e| panic!("write: {e}"));
    fs::write(d.join("user.c"), "int x = KF_USED;\n").unwrap_or_else(|e| panic!("write: {e}"));
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "base"]);
    git(d, &["tag", "base"]);
    fs::write(d.join("t.h"), head).unwrap_or_else(|e| panic!("write: {e}"));
    git(d, &["commit", "-q", "-am", "head"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/header-reuse");
    let out = Command::new(&script)
        .arg(d)
        .args(["base", "HEAD"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{} failed ({}): {stderr}",
        script.display(),
        out.status
    );
    (stdout, stderr)
}

fn insert_after_kf_one(text: &str) -> String {
    BASE.replace(
        "#define KF_ONE (1 << 0)\n",
        &format!("#define KF_ONE (1 << 0)\n{text}"),
    )
}

#[rstest]
#[case::new_flag_with_comment("/*\n * A new flag.\n */\n#define KF_TWO (1 << 1)\n")]
#[case::one_line_comment_and_define("/* new */\n#define KF_TWO (1 << 1) // two\n")]
#[case::continued_define("#define KF_TWO \\\n\t(1 << 1)\n\n")]
fn a_header_gaining_only_new_defines_is_reused(#[case] added: &str) {
    let (stdout, stderr) = run(BASE, &insert_after_kf_one(added));
    assert_eq!(stdout, "t.h\n", "stderr: {stderr}");
}

#[rstest]
#[case::new_struct_field(
    BASE.replace("\tint a;\n", "\tint a;\n\tint b;\n"),
    "adds more than comments and #defines (\tint b;)"
)]
#[case::changed_define(
    BASE.replace("(1 << 0)", "(1 << 2)"),
    "removes or changes lines"
)]
#[case::removed_line(BASE.replace("\tint a;\n", ""), "removes or changes lines")]
#[case::define_of_a_name_the_base_uses(
    insert_after_kf_one("#define KF_USED 1\n"),
    "defines KF_USED, which the base tree already mentions"
)]
#[case::comment_only(insert_after_kf_one("/* just words */\n"), "adds no #define")]
#[case::code_after_a_comment_on_one_line(
    insert_after_kf_one("/* x */ int y;\n#define KF_TWO 2\n"),
    "adds more than comments and #defines"
)]
fn a_header_whose_change_can_change_code_is_rebuilt(#[case] head: String, #[case] why: &str) {
    let (stdout, stderr) = run(BASE, &head);
    assert_eq!(stdout, "", "the script reused t.h; stderr: {stderr}");
    assert!(
        stderr.contains(&format!("t.h: not reused: {why}")),
        "expected the reason '{why}', got: {stderr}"
    );
}

#[test]
fn a_define_that_shifts_a_later_warn_on_is_rebuilt() {
    let base = format!("{BASE}static inline void f(int x)\n{{\n\tWARN_ON(x);\n}}\n");
    let head = base.replace(
        "#define KF_ONE (1 << 0)\n",
        "#define KF_ONE (1 << 0)\n#define KF_TWO 2\n",
    );
    let (stdout, stderr) = run(&base, &head);
    assert_eq!(stdout, "", "the script reused t.h; stderr: {stderr}");
    let why =
        "t.h: not reused: text after line 4 uses a macro that records __LINE__/__FILE__ (WARN_ON)";
    assert!(stderr.contains(why), "expected '{why}', got: {stderr}");
}

#[test]
fn a_define_after_the_last_line_user_is_reused() {
    let base = format!("{BASE}static inline void f(int x)\n{{\n\tWARN_ON(x);\n}}\n");
    let head = format!("{base}#define KF_TWO 2\n");
    let (stdout, stderr) = run(&base, &head);
    assert_eq!(stdout, "t.h\n", "stderr: {stderr}");
}

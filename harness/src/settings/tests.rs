//! The settings' defaults and parse errors, and the README tables checked against [`VARS`],
//! [`INTERNAL`] and [`SCRIPT_VARS`].

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use super::*;

fn with(pairs: &[(&str, &str)]) -> Settings {
    let env: HashMap<String, OsString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    Settings::from_lookup(|k| env.get(k).cloned())
}

#[test]
fn defaults_when_nothing_is_set() {
    let s = with(&[]);
    assert_eq!(s.errors, vec![]);
    assert_eq!(s.cache, PathBuf::from("/root/.cache/crib"));
    assert_eq!(s.variant, "release");
    assert_eq!(s.kernel_dir, None);
    assert_eq!(s.accel, None);
    assert_eq!(s.vm_backend, None);
    assert_eq!(s.vm_timeout, None);
    assert_eq!(s.vm_timeout_or_default(), Duration::from_secs(300));
    assert_eq!(s.vm_kargs, Vec::<String>::new());
    assert_eq!(s.vm_mem, "2G");
    assert_eq!(s.vm_cpus, 2);
    assert_eq!(s.vm_log, None);
    assert_eq!(s.qemu, PathBuf::from("qemu-system-x86_64"));
    assert!(s.qemu_tcg.ends_with("scripts/qemu-tcg"), "{s:?}");
    assert!(s.qemu_tcg.is_file(), "{s:?}");
    assert_eq!(s.extra_objs, Vec::<PathBuf>::new());
    assert!(!s.verifier_vm_per_case);
    assert_eq!(s.race_time_limit, Duration::from_secs(240));
    assert_eq!(s.perm_race_secs, Duration::from_secs(20));
    assert!(!s.in_guest);
    assert_eq!(s.flavor, None);
    assert_eq!(s.verifier_batch, None);
    assert!(s.check().is_ok());
    assert_eq!(
        with(&[("HOME", "/h")]).cache,
        PathBuf::from("/h/.cache/crib")
    );
}

#[test]
fn empty_is_unset() {
    let all: Vec<(&str, &str)> = VARS.iter().map(|v| (v.name, "")).collect();
    assert_eq!(with(&all), with(&[]));
}

#[test]
fn values_parse_to_their_types() {
    let s = with(&[
        ("CRIB_CACHE", "/c"),
        ("CRIB_VARIANT", "debug"),
        ("CRIB_KERNEL_DIR", "/k"),
        ("CRIB_ACCEL", "kvm"),
        ("CRIB_VM_BACKEND", "direct"),
        ("CRIB_VM_TIMEOUT", " 1800 "),
        ("CRIB_VM_KARGS", " quiet  initcall_debug "),
        ("CRIB_VM_MEM", "4G"),
        ("CRIB_VM_CPUS", "1"),
        ("CRIB_VM_LOG", "/tmp/t.log"),
        ("CRIB_QEMU", "/q/qemu"),
        ("CRIB_QEMU_TCG", "/q/tcg"),
        ("CRIB_EXTRA_OBJS", "/a.o::/b.o"),
        ("CRIB_VERIFIER_VM_PER_CASE", "1"),
        ("CRIB_RACE_TIME_LIMIT", "900"),
        ("CRIB_PERM_RACE_SECS", "5"),
        ("CRIB_IN_GUEST", "1"),
        ("CRIB_FLAVOR", "stock"),
        ("CRIB_VERIFIER_BATCH", "patched"),
    ]);
    assert_eq!(s.errors, vec![]);
    assert_eq!(s.cache, PathBuf::from("/c"));
    assert_eq!(s.variant, "debug");
    assert_eq!(s.kernel_dir, Some(PathBuf::from("/k")));
    assert_eq!(s.accel, Some(Accel::Kvm));
    assert_eq!(s.vm_backend, Some(Backend::Direct));
    assert_eq!(s.vm_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(s.vm_kargs, vec!["quiet", "initcall_debug"]);
    assert_eq!(s.vm_mem, "4G");
    assert_eq!(s.vm_cpus, 1);
    assert_eq!(s.vm_log, Some(PathBuf::from("/tmp/t.log")));
    assert_eq!(s.qemu, PathBuf::from("/q/qemu"));
    assert_eq!(s.qemu_tcg, PathBuf::from("/q/tcg"));
    assert_eq!(
        s.extra_objs,
        vec![PathBuf::from("/a.o"), PathBuf::from("/b.o")]
    );
    assert!(s.verifier_vm_per_case);
    assert_eq!(s.race_time_limit, Duration::from_secs(900));
    assert_eq!(s.perm_race_secs, Duration::from_secs(5));
    assert!(s.in_guest);
    assert_eq!(s.flavor.as_deref(), Some("stock"));
    assert_eq!(s.verifier_batch.as_deref(), Some("patched"));
    assert_eq!(with(&[("CRIB_ACCEL", "tcg")]).accel, Some(Accel::Tcg));
    assert_eq!(
        with(&[("CRIB_VM_BACKEND", "vmtest")]).vm_backend,
        Some(Backend::Vmtest)
    );
    assert!(!with(&[("CRIB_IN_GUEST", "0")]).in_guest);
}

#[test]
fn a_bad_value_names_the_variable_and_what_it_accepts() {
    let cases: &[(&str, &str, &str)] = &[
        ("CRIB_ACCEL", "KVM", "'tcg' or 'kvm'"),
        ("CRIB_VM_BACKEND", "qemu", "'vmtest' or 'direct'"),
        ("CRIB_VM_TIMEOUT", "0", SECS),
        ("CRIB_VM_TIMEOUT", "5m", SECS),
        ("CRIB_VM_CPUS", "two", "a whole number > 0"),
        ("CRIB_VM_CPUS", "0", "a whole number > 0"),
        ("CRIB_VERIFIER_VM_PER_CASE", "yes", "'0' or '1'"),
        ("CRIB_RACE_TIME_LIMIT", "-1", SECS),
        ("CRIB_PERM_RACE_SECS", "1.5", SECS),
    ];
    for &(var, value, expected) in cases {
        let s = with(&[(var, value)]);
        let want = SettingError {
            var,
            value: value.into(),
            expected,
        };
        assert_eq!(s.errors, vec![want.clone()], "{var}={value}");
        assert_eq!(s.check().unwrap_err(), want);
        let msg = want.to_string();
        assert_eq!(msg, format!("{var}={value:?} is not valid: {expected}"));
        // The field keeps its default.
        let mut d = s.clone();
        d.errors.clear();
        assert_eq!(d, with(&[]), "{var}={value}");
    }
    // Every bad variable is reported; check() names the first.
    let s = with(&[("CRIB_ACCEL", "x"), ("CRIB_VM_CPUS", "y")]);
    let vars: Vec<_> = s.errors.iter().map(|e| e.var).collect();
    assert_eq!(vars, ["CRIB_ACCEL", "CRIB_VM_CPUS"]);
    assert_eq!(s.check().unwrap_err().var, "CRIB_ACCEL");
}

#[test]
fn a_bad_value_fails_a_vm_run_with_the_variable_named() {
    let e = crate::vm::VmError::from(with(&[("CRIB_ACCEL", "x")]).check().unwrap_err());
    assert_eq!(
        e.to_string(),
        "CRIB_ACCEL=\"x\" is not valid: 'tcg' or 'kvm'"
    );
}

/// Every `CRIB_*` variable `Settings` looks up is in [`VARS`] or [`INTERNAL`], and every
/// variable in [`VARS`] is looked up.
#[test]
fn settings_read_exactly_the_table() {
    let asked = RefCell::new(BTreeSet::new());
    Settings::from_lookup(|k| {
        asked.borrow_mut().insert(k.to_string());
        None
    });
    let asked: BTreeSet<String> = asked
        .into_inner()
        .into_iter()
        .filter(|k| k.starts_with("CRIB_"))
        .collect();
    let table: BTreeSet<String> = VARS.iter().map(|v| v.name.to_string()).collect();
    let internal: BTreeSet<String> = INTERNAL.iter().map(|v| v.name.to_string()).collect();
    let unlisted: Vec<_> = asked
        .iter()
        .filter(|k| !table.contains(*k) && !internal.contains(*k))
        .collect();
    assert!(unlisted.is_empty(), "read but in no table: {unlisted:?}");
    let unread: Vec<_> = table.difference(&asked).collect();
    assert!(unread.is_empty(), "in VARS but never read: {unread:?}");
}

/// The markdown table of `vars`, as the README holds it.
fn markdown(vars: &[Var]) -> String {
    let mut s = String::from("| variable | default | what it does |\n|---|---|---|\n");
    for v in vars {
        s.push_str(&format!("| `{}` | {} | {} |\n", v.name, v.default, v.doc));
    }
    s
}

/// The table after `<!-- settings:<which> -->` in harness/README.md.
fn readme_table(which: &str) -> String {
    const README: &str = include_str!("../../README.md");
    let tag = format!("<!-- settings:{which} -->\n");
    let at = README
        .find(&tag)
        .unwrap_or_else(|| panic!("harness/README.md has no {tag:?}"));
    README[at + tag.len()..]
        .lines()
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn readme_tables_are_the_modules() {
    for (which, vars) in [
        ("harness", VARS),
        ("internal", INTERNAL),
        ("scripts", SCRIPT_VARS),
    ] {
        let want = markdown(vars);
        assert_eq!(
            readme_table(which),
            want,
            "harness/README.md's {which} table differs from harness/src/settings.rs; it should \
             read:\n{want}"
        );
    }
}

/// Every `$CRIB_X` / `${CRIB_X` the scripts expand is in one of the tables.
#[test]
fn every_variable_the_scripts_read_is_listed() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let re = regex::Regex::new(r"\$\{?(CRIB_[A-Z0-9_]+)").unwrap();
    let known: BTreeSet<&str> = VARS
        .iter()
        .chain(INTERNAL)
        .chain(SCRIPT_VARS)
        .map(|v| v.name)
        .collect();
    let mut missing = BTreeSet::new();
    for dir in ["scripts", ".ci"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = e.unwrap().path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for c in re.captures_iter(&text) {
                let name = &c[1];
                if !known.contains(name) {
                    missing.insert(format!("{name} ({})", path.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "read by a script, in no table of harness/src/settings.rs: {missing:?}"
    );
}

#[test]
fn debug_variants_get_longer_default_time_limits() {
    for v in ["debug", "clang-debug"] {
        let s = with(&[("CRIB_VARIANT", v)]);
        assert_eq!(s.vm_timeout_or_default(), DEBUG_VM_TIMEOUT, "{v}");
        assert_eq!(s.race_time_limit, Duration::from_secs(1200), "{v}");
    }
    for v in ["release", "clang", "debugfs-free"] {
        let s = with(&[("CRIB_VARIANT", v)]);
        assert_eq!(s.vm_timeout_or_default(), Duration::from_secs(300), "{v}");
        assert_eq!(s.race_time_limit, Duration::from_secs(240), "{v}");
    }
    // An explicit value wins on a debug variant too.
    let s = with(&[("CRIB_VARIANT", "debug"), ("CRIB_VM_TIMEOUT", "60")]);
    assert_eq!(s.vm_timeout_or_default(), Duration::from_secs(60));
}

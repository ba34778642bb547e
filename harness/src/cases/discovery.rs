//! Finding cases: the decl tags of every FUNC in an object's BTF, the programs of the
//! object, and the runnable cases (program x mode) they make. Runs on the host or in the
//! guest and never touches the kernel.
//!
//! Every program of an object that carries at least one test tag is a case (as in
//! `RUN_TESTS`): privileged unless only `*_unpriv` tags say otherwise, expected to load
//! unless `__failure`. Objects without test tags (e.g. the dump programs) have no cases.
//!
//! Both tag formats are read: the old `comment:<tag>` and the newer `comment:<N>:<tag>`, where
//! `N` (`__COUNTER__`) gives the declaration order (clang does not keep it in BTF).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libbpf_rs::btf::types::{DataSec, DeclTag, Func, Var};
use libbpf_rs::btf::{BtfType, ReferencesType};
use libbpf_rs::{Btf, ObjectBuilder};

use crate::kernel::Flavor;

use super::spec::{parse_spec, CaseSpec, Expect, LoadMode, Mode};
use super::CaseError;

/// Split a raw decl tag into (counter, body). `None` if it is not a `comment:` tag.
pub fn split_tag(raw: &str) -> Option<(Option<u64>, &str)> {
    let rest = raw.strip_prefix("comment:")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && rest.as_bytes().get(digits) == Some(&b':') {
        let n = rest[..digits].parse().ok();
        if n.is_some() {
            return Some((n, &rest[digits + 1..]));
        }
    }
    Some((None, rest))
}

/// The `comment:` tag bodies of one function in declaration order: sorted by their counter
/// when all carry one (the newer format), else in BTF order (the old format).
pub fn order_tags(raw: &[String]) -> Vec<String> {
    let mut split: Vec<(Option<u64>, usize, &str)> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, t)| split_tag(t).map(|(n, body)| (n, i, body)))
        .collect();
    if split.iter().all(|(n, _, _)| n.is_some()) {
        split.sort_by_key(|(n, i, _)| (*n, *i));
    }
    split.into_iter().map(|(_, _, b)| b.to_string()).collect()
}

/// Raw decl tags (component -1, i.e. on the function itself) of every FUNC, in BTF order.
pub fn func_tags(path: &Path) -> Result<BTreeMap<String, Vec<String>>, CaseError> {
    let btf = Btf::from_path(path).map_err(|source| CaseError::Btf {
        path: path.into(),
        source,
    })?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for tag in btf.type_by_kind::<DeclTag<'_>>() {
        if tag.component_index().is_some() {
            continue;
        }
        let Some(func) = btf.type_by_id::<BtfType<'_>>(tag.referenced_type_id()) else {
            continue;
        };
        if Func::try_from(func).is_err() {
            continue;
        }
        let (Some(fname), Some(text)) = (func.name(), tag.name()) else {
            continue;
        };
        out.entry(fname.to_string_lossy().into_owned())
            .or_default()
            .push(text.to_string_lossy().into_owned());
    }
    Ok(out)
}

/// A `__ksym` extern of an object: a kfunc or a typed kernel variable, which libbpf resolves
/// in vmlinux's BTF or, failing that, in the BTF of a loaded module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ksym {
    pub name: String,
    /// A kfunc (BTF FUNC); else a variable (BTF VAR).
    pub func: bool,
}

/// The `__ksym` externs of an object: the members of its BTF's `.ksyms` section.
pub fn ksym_externs(path: &Path) -> Result<Vec<Ksym>, CaseError> {
    let btf = Btf::from_path(path).map_err(|source| CaseError::Btf {
        path: path.into(),
        source,
    })?;
    let mut out = Vec::new();
    for sec in btf.type_by_kind::<DataSec<'_>>() {
        if sec.name().is_none_or(|n| n != ".ksyms") {
            continue;
        }
        for member in sec.iter() {
            let Some(t) = btf.type_by_id::<BtfType<'_>>(member.ty) else {
                continue;
            };
            let Some(name) = t.name() else {
                continue;
            };
            let func = Func::try_from(t).is_ok();
            if func || Var::try_from(t).is_ok() {
                out.push(Ksym {
                    name: name.to_string_lossy().into_owned(),
                    func,
                });
            }
        }
    }
    Ok(out)
}

/// The cases of one object.
#[derive(Clone, Debug)]
pub struct ObjectCases {
    pub path: PathBuf,
    pub stem: String,
    /// Every program of the object, in object order, with its spec (auxiliary ones too).
    pub specs: Vec<CaseSpec>,
}

/// Why a guest could not read `path`: the guest sees the host's `/` but mounts a fresh
/// tmpfs on `/tmp` (see vm.rs), so objects under `/tmp` are invisible there, except inside
/// the directories the runner carries through (`vm::tmp_keep_dirs`: the checkout, its target
/// dir, the cache).
pub fn guest_invisible(path: &Path) -> Option<String> {
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let kept = crate::vm::tmp_keep_dirs()
        .iter()
        .any(|d| abs.starts_with(d));
    (abs.starts_with("/tmp") && !kept).then(|| {
        format!(
            "{}: the guest mounts its own tmpfs on /tmp and cannot see this file; put the \
             object somewhere else",
            abs.display()
        )
    })
}

/// `foo.bpf.o` -> `foo`.
pub fn object_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".o").unwrap_or(&name);
    name.strip_suffix(".bpf").unwrap_or(name).to_string()
}

/// Read the cases of an object (host or guest; does not touch the kernel).
pub fn discover(path: &Path) -> Result<ObjectCases, CaseError> {
    let open = ObjectBuilder::default()
        .open_file(path)
        .map_err(|source| CaseError::Open {
            path: path.into(),
            source,
        })?;
    let progs: Vec<String> = open
        .progs()
        .map(|p| p.name().to_string_lossy().into_owned())
        .collect();
    drop(open);
    let tags = func_tags(path)?;
    let mut specs = Vec::new();
    for prog in &progs {
        let ordered = tags.get(prog).map(|t| order_tags(t)).unwrap_or_default();
        specs.push(parse_spec(prog, &ordered)?);
    }
    if !specs.iter().any(|s| s.tagged) {
        specs.clear();
    }
    Ok(ObjectCases {
        path: path.to_path_buf(),
        stem: object_stem(path),
        specs,
    })
}

/// One runnable case: a program of an object in one mode.
#[derive(Clone, Debug)]
pub struct Case {
    pub object: PathBuf,
    pub stem: String,
    pub spec: CaseSpec,
    pub mode: Mode,
    /// Auxiliary programs loaded with it.
    pub aux: Vec<String>,
}

impl ObjectCases {
    pub fn cases(&self) -> Vec<Case> {
        let mut out = Vec::new();
        for spec in &self.specs {
            if spec.auxiliary || spec.auxiliary_unpriv {
                continue;
            }
            for mode in spec.modes() {
                let aux = self
                    .specs
                    .iter()
                    .filter(|a| match mode {
                        Mode::Priv => a.auxiliary && a.priv_mode,
                        Mode::Unpriv => a.auxiliary_unpriv && a.unpriv_mode,
                    })
                    .map(|a| a.prog.clone())
                    .collect();
                out.push(Case {
                    object: self.path.clone(),
                    stem: self.stem.clone(),
                    spec: spec.clone(),
                    mode,
                    aux,
                });
            }
        }
        out
    }
}

/// Architecture name as the selftests spell it.
pub fn current_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "X86_64"
    } else if cfg!(target_arch = "aarch64") {
        "ARM64"
    } else if cfg!(target_arch = "riscv64") {
        "RISCV64"
    } else if cfg!(target_arch = "s390x") {
        "s390x"
    } else if cfg!(target_arch = "loongarch64") {
        "LOONGARCH"
    } else {
        "unknown"
    }
}

impl Case {
    /// `<object-stem>::<program>`, with `@unpriv` for the unprivileged variant.
    pub fn name(&self) -> String {
        match self.mode {
            Mode::Priv => format!("{}::{}", self.stem, self.spec.prog),
            Mode::Unpriv => format!("{}::{}@unpriv", self.stem, self.spec.prog),
        }
    }

    pub fn runs_on(&self, flavor: Flavor) -> bool {
        self.spec.flavor.is_none_or(|f| f == flavor)
    }

    /// Known before loading: why this case is not run here (wrong architecture, or it
    /// needs the interpreter while our kernels are built with CONFIG_BPF_JIT_ALWAYS_ON).
    pub fn static_skip(&self) -> Option<String> {
        if self.spec.load_mode == Some(LoadMode::NoJited) {
            return Some(
                "__load_if_no_JITed(): the kernels here are built with \
                 CONFIG_BPF_JIT_ALWAYS_ON; not run"
                    .into(),
            );
        }
        let arch = current_arch();
        if !self.spec.arches.is_empty() && !self.spec.arches.iter().any(|a| a == arch) {
            return Some(format!(
                "only for {} (this is {arch}); not run",
                self.spec.arches.join(", ")
            ));
        }
        None
    }

    pub fn expect(&self) -> &Expect {
        self.spec.expect(self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn split_both_formats() {
        assert_eq!(
            split_tag("comment:12:test_expect_failure"),
            Some((Some(12), "test_expect_failure"))
        );
        assert_eq!(
            split_tag("comment:test_expect_msg=a:b"),
            Some((None, "test_expect_msg=a:b"))
        );
        assert_eq!(
            split_tag("comment:3:test_expect_msg=1: r0 = 0"),
            Some((Some(3), "test_expect_msg=1: r0 = 0"))
        );
        assert_eq!(
            split_tag("comment:test_expect_msg=1: r0"),
            Some((None, "test_expect_msg=1: r0"))
        );
        assert_eq!(split_tag("kfunc"), None);
    }

    #[test]
    fn counter_orders_numerically_not_lexically() {
        let raw = v(&[
            "comment:10:test_expect_msg=second",
            "comment:9:test_expect_msg=first",
            "comment:11:test_expect_msg=third",
            "other-tag",
        ]);
        assert_eq!(
            order_tags(&raw),
            v(&[
                "test_expect_msg=first",
                "test_expect_msg=second",
                "test_expect_msg=third"
            ])
        );
    }

    #[test]
    fn old_format_keeps_btf_order() {
        let raw = v(&["comment:test_expect_msg=b", "comment:test_expect_msg=a"]);
        assert_eq!(
            order_tags(&raw),
            v(&["test_expect_msg=b", "test_expect_msg=a"])
        );
    }

    /// An object build.rs compiled; fails saying why if there is none.
    #[track_caller]
    fn built_object(name: &str) -> PathBuf {
        let dir = Path::new(crate::BPF_DIR);
        let obj = dir.join(name);
        if !obj.exists() {
            let why = std::fs::read_to_string(dir.join("MISSING"))
                .map(|k| format!("no kernel build at {k} when the harness was built"))
                .unwrap_or_else(|_| "the object was not built".into());
            panic!(
                "{}: {why}: build the kernels (scripts/build), then cargo builds the programs on \
                 its next run",
                obj.display()
            );
        }
        obj
    }

    /// crib_test.h's macros as clang puts them into BTF, read back by the parser.
    #[test]
    fn load_errno_in_a_built_object() {
        let obj = built_object("task_file_harness.bpf.o");
        let oc = discover(&obj).unwrap_or_else(|e| panic!("{e}"));
        let spec = oc
            .specs
            .iter()
            .find(|s| s.prog == "tf_unpriv_no_caps")
            .unwrap_or_else(|| panic!("no tf_unpriv_no_caps in {}", obj.display()));
        assert_eq!(spec.modes(), vec![Mode::Unpriv]);
        assert!(spec.unprivileged.failure);
        assert_eq!(spec.unprivileged.load_errno, Some(libc::EPERM));
    }

    /// The kfuncs a built object calls: a CRIB kfunc and a vmlinux one its source calls, and
    /// no variables (it declares none).
    #[test]
    fn ksyms_of_a_built_object() {
        let obj = built_object("task_file_progtype.bpf.o");
        let ksyms = ksym_externs(&obj).unwrap_or_else(|e| panic!("{e}"));
        for want in ["bpf_iter_task_file_new", "bpf_task_from_pid"] {
            assert!(
                ksyms.iter().any(|k| k.func && k.name == want),
                "{want} not among {ksyms:?}"
            );
        }
        assert!(ksyms.iter().all(|k| k.func), "{ksyms:?}");
        assert!(ksym_externs(&built_object("hello.bpf.o"))
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .any(|k| k.name == "bpf_fget_task"));
    }

    #[test]
    fn stems() {
        assert_eq!(
            object_stem(Path::new("/a/runner_basic.bpf.o")),
            "runner_basic"
        );
        assert_eq!(object_stem(Path::new("verifier_and.o")), "verifier_and");
    }
}

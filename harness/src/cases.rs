//! Verifier-acceptance cases: BPF programs annotated with the selftests/bpf convention
//! (`__success`, `__failure`, `__msg`, `__retval`, ... from `bpf_misc.h` or our
//! `selftests/include/crib_test.h`), discovered from the BTF decl tags of any object, loaded
//! one at a time and checked the way `tools/testing/selftests/bpf/test_loader.c` does.
//!
//! Both tag formats are read: the old `comment:<tag>` and the newer `comment:<N>:<tag>`, where
//! `N` (`__COUNTER__`) gives the declaration order (clang does not keep it in BTF).
//!
//! Every program of an object that carries at least one test tag is a case (as in
//! `RUN_TESTS`): privileged unless only `*_unpriv` tags say otherwise, expected to load
//! unless `__failure`. Objects without test tags (e.g. the dump programs) have no cases.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libbpf_rs::btf::types::{DeclTag, Func};
use libbpf_rs::btf::{BtfType, ReferencesType};
use libbpf_rs::{Btf, ObjectBuilder, ProgramType};
use regex::Regex;
use thiserror::Error;

use crate::kernel::Flavor;
use crate::loader::{self, LoadOpts};

/// `POINTER_VALUE` of bpf_misc.h: `__retval(POINTER_VALUE)` accepts any return value.
pub const POINTER_VALUE: i64 = 0xbadcafe;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Flags test_loader.c sets on every program (`testing_prog_flags()`), unless a case clears
/// them with `__flag(!BPF_F_...)`: random upper halves after 32-bit ops and register
/// invariant checks, both supported since 6.7.
pub const DEFAULT_PROG_FLAGS: u32 =
    libbpf_sys::BPF_F_TEST_RND_HI32 | libbpf_sys::BPF_F_TEST_REG_INVARIANTS;

#[derive(Debug, Error)]
pub enum CaseError {
    #[error("{path}: cannot read BTF: {source}")]
    Btf {
        path: PathBuf,
        source: libbpf_rs::Error,
    },
    #[error("{path}: object has no BTF (compile with -g)")]
    NoBtf { path: PathBuf },
    #[error("cannot open BPF object {path}: {source}")]
    Open {
        path: PathBuf,
        source: libbpf_rs::Error,
    },
    #[error("program '{prog}': bad tag '{tag}': {reason}")]
    BadTag {
        prog: String,
        tag: String,
        reason: String,
    },
    #[error("bad message pattern '{pattern}': {reason}")]
    Pattern { pattern: String, reason: String },
}

/// Privileged (root) or unprivileged (root minus CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_PERFMON,
/// CAP_BPF, plus whatever `__caps_unpriv` grants back) load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Priv,
    Unpriv,
}

/// One expected (or, if `negative`, forbidden) verifier-log message: verbatim text with
/// optional `{{regex}}` parts.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub text: String,
    pub negative: bool,
    regex: Option<Regex>,
}

impl Pattern {
    pub fn new(text: &str, negative: bool) -> Result<Pattern, CaseError> {
        let regex = if text.contains("{{") {
            Some(compile_pattern(text)?)
        } else {
            None
        };
        Ok(Pattern {
            text: text.to_string(),
            negative,
            regex,
        })
    }

    pub fn is_regex(&self) -> bool {
        self.regex.is_some()
    }

    /// First match in `hay`: byte range.
    fn find(&self, hay: &str) -> Option<(usize, usize)> {
        match &self.regex {
            Some(re) => re.find(hay).map(|m| (m.start(), m.end())),
            None => hay.find(&self.text).map(|s| (s, s + self.text.len())),
        }
    }
}

/// `foo{{[0-9]+}}bar` -> regex: verbatim parts escaped, `{{...}}` parts as they are. Like
/// test_loader's POSIX REG_NEWLINE: `.` does not match a newline, `^`/`$` match at lines.
pub fn compile_pattern(text: &str) -> Result<Regex, CaseError> {
    let bad = |reason: &str| CaseError::Pattern {
        pattern: text.to_string(),
        reason: reason.into(),
    };
    let mut re = String::from("(?m)");
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        re.push_str(&regex::escape(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| bad("'{{' without closing '}}'"))?;
        re.push_str("(?:");
        re.push_str(&after[..close]);
        re.push(')');
        rest = &after[close + 2..];
    }
    re.push_str(&regex::escape(rest));
    Regex::new(&re).map_err(|e| bad(&e.to_string()))
}

/// Expected return value of a test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retval {
    Value(i32),
    /// `POINTER_VALUE`: the run must succeed, any value is fine.
    Any,
}

impl fmt::Display for Retval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retval::Value(v) => write!(f, "{v}"),
            Retval::Any => f.write_str("POINTER_VALUE (any)"),
        }
    }
}

/// What one mode of a case expects.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    pub failure: bool,
    pub msgs: Vec<Pattern>,
    pub retval: Option<Retval>,
    /// Capabilities (bit numbers) added back for the unprivileged load.
    pub caps: u64,
    /// `__crib_load_errno(n)` (ours): the load must fail with exactly this errno. Only on a
    /// mode that expects a failure; for rejections that leave no verifier log to match
    /// (e.g. EPERM before the verifier runs).
    pub load_errno: Option<i32>,
}

/// `__load_if_JITed()` / `__load_if_no_JITed()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    Jited,
    NoJited,
}

/// Everything the tags of one program say.
#[derive(Clone, Debug, Default)]
pub struct CaseSpec {
    pub prog: String,
    pub description: Option<String>,
    pub priv_mode: bool,
    pub unpriv_mode: bool,
    pub privileged: Expect,
    pub unprivileged: Expect,
    pub log_level: u32,
    pub set_flags: u32,
    pub clear_flags: u32,
    /// `__arch_*`: empty = any architecture.
    pub arches: Vec<String>,
    pub load_mode: Option<LoadMode>,
    pub auxiliary: bool,
    pub auxiliary_unpriv: bool,
    /// `__crib_flavor(...)`: only on that kernel.
    pub flavor: Option<Flavor>,
    /// Annotations this runner cannot check; such a case fails, saying so.
    pub unsupported: Vec<String>,
    /// Whether any test tag was present at all.
    pub tagged: bool,
}

impl CaseSpec {
    pub fn expect(&self, mode: Mode) -> &Expect {
        match mode {
            Mode::Priv => &self.privileged,
            Mode::Unpriv => &self.unprivileged,
        }
    }

    pub fn modes(&self) -> Vec<Mode> {
        let mut v = Vec::new();
        if self.priv_mode {
            v.push(Mode::Priv);
        }
        if self.unpriv_mode {
            v.push(Mode::Unpriv);
        }
        v
    }

    /// Program flags to load with: test_loader's defaults, then `__flag`s.
    pub fn flags(&self) -> (u32, u32) {
        (
            (DEFAULT_PROG_FLAGS | self.set_flags) & !self.clear_flags,
            self.clear_flags,
        )
    }
}

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

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let v = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(hex, 16).ok()?
    } else {
        digits.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// `__retval` values: decimal, 0x hex (truncated to 32 bits like the C loader's `int`),
/// `_INT_MIN`/`INT_MIN` and its usual expansions `(-2147483647 - 1)`, and `POINTER_VALUE`.
pub fn parse_retval(s: &str) -> Option<Retval> {
    let t = s.trim();
    if t == "_INT_MIN" || t == "INT_MIN" {
        return Some(Retval::Value(i32::MIN));
    }
    if t == "POINTER_VALUE" {
        return Some(Retval::Any);
    }
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(inner) = compact.strip_prefix('(').and_then(|c| c.strip_suffix(')')) {
        if let Some(a) = inner.strip_suffix("-1") {
            let v = parse_int(a)?;
            return Some(Retval::Value((v - 1) as i32));
        }
        return parse_retval(inner);
    }
    let v = parse_int(t)?;
    if v == POINTER_VALUE {
        return Some(Retval::Any);
    }
    Some(Retval::Value(v as i32))
}

fn parse_flag(name: &str) -> Option<u32> {
    Some(match name {
        "BPF_F_STRICT_ALIGNMENT" => libbpf_sys::BPF_F_STRICT_ALIGNMENT,
        "BPF_F_ANY_ALIGNMENT" => libbpf_sys::BPF_F_ANY_ALIGNMENT,
        "BPF_F_TEST_RND_HI32" => libbpf_sys::BPF_F_TEST_RND_HI32,
        "BPF_F_TEST_STATE_FREQ" => libbpf_sys::BPF_F_TEST_STATE_FREQ,
        "BPF_F_SLEEPABLE" => libbpf_sys::BPF_F_SLEEPABLE,
        "BPF_F_XDP_HAS_FRAGS" => libbpf_sys::BPF_F_XDP_HAS_FRAGS,
        "BPF_F_TEST_REG_INVARIANTS" => libbpf_sys::BPF_F_TEST_REG_INVARIANTS,
        other => u32::try_from(parse_int(other)?).ok()?,
    })
}

/// The number of `__crib_load_errno(n)`: a positive errno. `crib_test.h` defines the usual
/// names as numbers (vmlinux.h has no errno macros), so a name reaching the tag means it was
/// not defined, and a negative number means `-EPERM` was written for `EPERM`.
pub fn parse_errno(v: &str) -> Result<i32, &'static str> {
    let t = v.trim();
    if t.trim_start_matches(['-', '(', ' '])
        .starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Err(
            "errno names must be numbers (crib_test.h defines EPERM, EACCES, EINVAL, \
             ...; define others as numbers)",
        );
    }
    let n = parse_int(t).ok_or("not an errno number")?;
    if n < 0 {
        return Err(
            "give the positive errno (EPERM, not -EPERM): it is compared with the \
             errno of the failed load",
        );
    }
    i32::try_from(n)
        .ok()
        .filter(|n| (1..=4095).contains(n))
        .ok_or("not an errno number (1 to 4095)")
}

/// Turn the ordered tag bodies of program `prog` into a spec (test_loader.c's
/// `parse_test_spec`, plus `crib_flavor=` and `crib_load_errno[_unpriv]=`).
pub fn parse_spec(prog: &str, tags: &[String]) -> Result<CaseSpec, CaseError> {
    let bad = |tag: &str, reason: &str| CaseError::BadTag {
        prog: prog.to_string(),
        tag: tag.to_string(),
        reason: reason.to_string(),
    };
    let mut s = CaseSpec {
        prog: prog.to_string(),
        ..Default::default()
    };
    let (mut has_unpriv_result, mut has_unpriv_retval) = (false, false);
    for tag in tags {
        let t = tag.as_str();
        let mut test_tag = true;
        if let Some(v) = t.strip_prefix("test_description=") {
            s.description = Some(v.to_string());
        } else if t == "test_expect_failure" {
            s.privileged.failure = true;
            s.priv_mode = true;
        } else if t == "test_expect_success" {
            s.privileged.failure = false;
            s.priv_mode = true;
        } else if t == "test_expect_failure_unpriv" {
            s.unprivileged.failure = true;
            s.unpriv_mode = true;
            has_unpriv_result = true;
        } else if t == "test_expect_success_unpriv" {
            s.unprivileged.failure = false;
            s.unpriv_mode = true;
            has_unpriv_result = true;
        } else if t == "test_auxiliary" {
            s.auxiliary = true;
            s.priv_mode = true;
        } else if t == "test_auxiliary_unpriv" {
            s.auxiliary_unpriv = true;
            s.unpriv_mode = true;
        } else if let Some(m) = t.strip_prefix("test_expect_msg=") {
            s.privileged.msgs.push(Pattern::new(m, false)?);
            s.priv_mode = true;
        } else if let Some(m) = t.strip_prefix("test_expect_not_msg=") {
            s.privileged.msgs.push(Pattern::new(m, true)?);
            s.priv_mode = true;
        } else if let Some(m) = t.strip_prefix("test_expect_msg_unpriv=") {
            s.unprivileged.msgs.push(Pattern::new(m, false)?);
            s.unpriv_mode = true;
        } else if let Some(m) = t.strip_prefix("test_expect_not_msg_unpriv=") {
            s.unprivileged.msgs.push(Pattern::new(m, true)?);
            s.unpriv_mode = true;
        } else if let Some(v) = t.strip_prefix("test_retval=") {
            s.privileged.retval = Some(parse_retval(v).ok_or_else(|| bad(t, "not a number"))?);
            s.priv_mode = true;
        } else if let Some(v) = t.strip_prefix("test_retval_unpriv=") {
            s.unprivileged.retval = Some(parse_retval(v).ok_or_else(|| bad(t, "not a number"))?);
            s.unpriv_mode = true;
            has_unpriv_retval = true;
        } else if let Some(v) = t.strip_prefix("test_log_level=") {
            let lvl = parse_int(v).and_then(|l| u32::try_from(l).ok());
            s.log_level = lvl.ok_or_else(|| bad(t, "not a log level"))?;
        } else if let Some(v) = t.strip_prefix("test_prog_flags=") {
            let (clear, name) = match v.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, v),
            };
            let f = parse_flag(name).ok_or_else(|| bad(t, "unknown program flag"))?;
            if clear {
                s.set_flags &= !f;
                s.clear_flags |= f;
            } else {
                s.set_flags |= f;
                s.clear_flags &= !f;
            }
        } else if let Some(v) = t.strip_prefix("test_arch=") {
            match v {
                "X86_64" | "ARM64" | "RISCV64" | "s390x" | "LOONGARCH" => s.arches.push(v.into()),
                _ => return Err(bad(t, "unknown architecture")),
            }
        } else if let Some(v) = t.strip_prefix("test_caps_unpriv=") {
            for c in v.split('|').map(str::trim) {
                if c.starts_with("CAP_") {
                    return Err(bad(t, "capability names must be numbers (define them)"));
                }
                let n = parse_int(c).filter(|n| (1..64).contains(n));
                let n = n.ok_or_else(|| bad(t, "not a capability number"))?;
                s.unprivileged.caps |= 1u64 << n;
            }
            s.unpriv_mode = true;
        } else if let Some(v) = t.strip_prefix("load_mode=") {
            s.load_mode = Some(match v {
                "jited" => LoadMode::Jited,
                "no_jited" => LoadMode::NoJited,
                _ => return Err(bad(t, "unknown load mode")),
            });
        } else if let Some(v) = t.strip_prefix("crib_load_errno=") {
            if s.privileged.load_errno.is_some() {
                return Err(bad(t, "a second load errno for the privileged run"));
            }
            s.privileged.load_errno = Some(parse_errno(v).map_err(|r| bad(t, r))?);
            s.priv_mode = true;
        } else if let Some(v) = t.strip_prefix("crib_load_errno_unpriv=") {
            if s.unprivileged.load_errno.is_some() {
                return Err(bad(t, "a second load errno for the unprivileged run"));
            }
            s.unprivileged.load_errno = Some(parse_errno(v).map_err(|r| bad(t, r))?);
            s.unpriv_mode = true;
        } else if let Some(v) = t.strip_prefix("crib_flavor=") {
            s.flavor = Some(
                v.parse()
                    .map_err(|_| bad(t, "flavor must be stock or patched"))?,
            );
        } else if let Some((key, _)) = t.split_once('=').or(Some((t, ""))).filter(|(k, _)| {
            k.starts_with("test_") || k.starts_with("load_") || k.starts_with("crib_")
        }) {
            // __xlated, __jited, __stderr, __stdout, __btf_path, __linear_size, ... and
            // whatever newer bpf_misc.h versions add: never pass a case silently.
            if !s.unsupported.iter().any(|u| u == key) {
                s.unsupported.push(key.to_string());
            }
        } else {
            test_tag = false;
        }
        s.tagged |= test_tag;
    }
    if !s.priv_mode && !s.unpriv_mode {
        s.priv_mode = true;
    }
    if !has_unpriv_result {
        s.unprivileged.failure = s.privileged.failure;
    }
    if !has_unpriv_retval {
        s.unprivileged.retval = s.privileged.retval;
    }
    if s.unprivileged.msgs.is_empty() {
        s.unprivileged.msgs = s.privileged.msgs.clone();
    }
    // An errno is the errno of a failed load: never on a mode that expects the load to
    // succeed, where it could only be ignored. The privileged errno carries over to the
    // unprivileged run as `__msg` does, but only if that run expects a failure too.
    if let Some(e) = s.privileged.load_errno {
        if !s.privileged.failure {
            return Err(bad(
                &format!("crib_load_errno={e}"),
                "the privileged load is expected to succeed (__success, or no __failure); \
                 __crib_load_errno needs __failure (for the unprivileged run only: \
                 __crib_load_errno_unpriv with __failure_unpriv)",
            ));
        }
    }
    if let Some(e) = s.unprivileged.load_errno {
        if !s.unprivileged.failure {
            return Err(bad(
                &format!("crib_load_errno_unpriv={e}"),
                "the unprivileged load is expected to succeed (__success_unpriv, or the \
                 privileged expectation); __crib_load_errno_unpriv needs __failure_unpriv",
            ));
        }
    }
    if s.unprivileged.load_errno.is_none() && s.unprivileged.failure {
        s.unprivileged.load_errno = s.privileged.load_errno;
    }
    Ok(s)
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

/// Outcome of one case.
#[derive(Debug)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// Not run, with the reason. Never counts as a pass.
    Skip(String),
}

#[derive(Debug)]
pub struct CaseReport {
    pub verdict: Verdict,
    /// Short lines on what was checked (shown for passes too).
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

/// Where each expected message matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// A failed message check, printed with the log excerpt it concerns.
#[derive(Debug)]
pub struct MatchFailure {
    pub report: String,
}

impl fmt::Display for MatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report)
    }
}

fn line_of(log: &str, off: usize) -> usize {
    log[..off.min(log.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Up to `n` lines of `log` starting at line `from` (1-based), numbered.
fn excerpt(log: &str, from: usize, n: usize) -> String {
    let mut out = String::new();
    for (i, l) in log.lines().enumerate().skip(from.saturating_sub(1)).take(n) {
        let _ = writeln!(out, "  {:>5} | {l}", i + 1);
    }
    out
}

/// The last `n` lines of the log, numbered. When the kernel appended its diagnosis section
/// (7.3's "Verification failed: ..." report, which can be longer than `n` lines), the `n`
/// lines before it, where the verifier's own error message is, come first.
pub fn tail(log: &str, n: usize) -> String {
    let total = log.lines().count();
    let mut out = String::new();
    if let Some(i) = log
        .lines()
        .position(|l| l.starts_with("Verification failed"))
    {
        if total - i > n / 2 {
            let _ = writeln!(
                out,
                "(verifier messages before its diagnosis at line {}:)",
                i + 1
            );
            out.push_str(&excerpt(log, i.saturating_sub(n) + 1, n.min(i)));
            let _ = writeln!(out, "(end of the log:)");
        }
    }
    out.push_str(&excerpt(log, total.saturating_sub(n) + 1, n));
    out
}

/// Check `msgs` against `log` like test_loader's `validate_msgs`: positive messages must
/// appear in order, each searched from the end of the previous match; a negative message
/// must not appear between the positive messages around it.
pub fn match_msgs(log: &str, msgs: &[Pattern]) -> Result<usize, MatchFailure> {
    let mut spans: Vec<Option<Span>> = vec![None; msgs.len()];
    let mut pos = 0;
    for (i, m) in msgs.iter().enumerate() {
        if m.negative {
            continue;
        }
        if let Some((s, e)) = m.find(&log[pos..]) {
            spans[i] = Some(Span {
                start: pos + s,
                end: pos + e,
            });
            pos += e;
        }
    }
    // Negative messages: within (end of previous positive match, start of next positive).
    let mut start = 0;
    let mut neg_hits: Vec<Option<Span>> = vec![None; msgs.len()];
    for (i, m) in msgs.iter().enumerate() {
        if !m.negative {
            if let Some(sp) = spans[i] {
                start = sp.end;
            }
            continue;
        }
        let end = msgs[i + 1..]
            .iter()
            .zip(&spans[i + 1..])
            .find(|(p, _)| !p.negative)
            .map(|(_, sp)| sp.map_or(log.len(), |s| s.start))
            .unwrap_or(log.len());
        if start <= end {
            if let Some((s, e)) = m.find(&log[start..end]) {
                neg_hits[i] = Some(Span {
                    start: start + s,
                    end: start + e,
                });
            }
        }
    }
    let mut prev_end: Option<usize> = None;
    for (i, m) in msgs.iter().enumerate() {
        let missing = !m.negative && spans[i].is_none();
        let unexpected = m.negative && neg_hits[i].is_some();
        if !(missing || unexpected) {
            if let Some(sp) = spans[i] {
                prev_end = Some(sp.end);
            }
            continue;
        }
        let mut r = String::from("verifier log does not match the expected messages:\n");
        for (j, p) in msgs.iter().enumerate().take(i + 1) {
            let kind = if p.is_regex() { "REGEX " } else { "SUBSTR" };
            let status = if j < i {
                match spans[j] {
                    Some(sp) => format!("MATCHED (line {})", line_of(log, sp.start)),
                    None => "absent, as required".to_string(),
                }
            } else if missing {
                "EXPECTED, NOT FOUND".to_string()
            } else {
                format!(
                    "UNEXPECTED (line {})",
                    neg_hits[j].map_or(0, |s| line_of(log, s.start))
                )
            };
            let neg = if p.negative { "not " } else { "" };
            let _ = writeln!(r, "  {status:<22} {neg}{kind} '{}'", p.text);
        }
        let total = log.lines().count();
        match prev_end {
            Some(e) => {
                let l = line_of(log, e);
                let _ = writeln!(
                    r,
                    "the previous message matched up to line {l}; the search went on from there.\n\
                     log from line {l} (30 lines of {total}):"
                );
                r.push_str(&excerpt(log, l, 30));
            }
            None => {
                let _ = writeln!(r, "searched from the start of the log ({total} lines).");
            }
        }
        if let Some(sp) = neg_hits[i] {
            let l = line_of(log, sp.start);
            let _ = writeln!(r, "the unexpected message is at line {l}:");
            r.push_str(&excerpt(log, l.saturating_sub(3).max(1), 7));
        }
        let _ = writeln!(r, "last 30 lines of the verifier log:");
        r.push_str(&tail(log, 30));
        return Err(MatchFailure { report: r });
    }
    Ok(msgs.iter().filter(|m| !m.negative).count())
}

/// Is the BPF JIT on (`/proc/sys/net/core/bpf_jit_enable` != 0)?
fn jit_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
        .map(|s| s.trim() != "0")
        .unwrap_or(true)
}

const UNPRIV_SYSCTL: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";

/// Make unprivileged BPF possible if the kernel allows turning it on (value 2 can be reset
/// to 0 by root; 1 is permanent until reboot).
fn enable_unpriv_bpf(notes: &mut Vec<String>) -> Result<(), String> {
    let cur = std::fs::read_to_string(UNPRIV_SYSCTL)
        .map_err(|e| format!("cannot read {UNPRIV_SYSCTL}: {e}"))?;
    match cur.trim() {
        "0" => Ok(()),
        "2" => {
            std::fs::write(UNPRIV_SYSCTL, "0")
                .map_err(|e| format!("cannot write 0 to {UNPRIV_SYSCTL}: {e}"))?;
            notes.push(format!(
                "set {UNPRIV_SYSCTL} from 2 to 0 for the unprivileged load"
            ));
            Ok(())
        }
        v => Err(format!(
            "{UNPRIV_SYSCTL} is {v}: unprivileged BPF is disabled until reboot, cannot run the \
             unprivileged variant"
        )),
    }
}

/// The calling thread's capability sets (Linux keeps them per thread).
mod caps {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;

    #[derive(Clone, Copy)]
    pub struct Sets {
        pub effective: u64,
        pub permitted: u64,
        pub inheritable: u64,
    }

    pub fn get() -> std::io::Result<Sets> {
        let mut h = Header {
            version: VERSION_3,
            pid: 0,
        };
        let mut d = [Data::default(); 2];
        // SAFETY: capget with a v3 header and two data elements.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
        Ok(Sets {
            effective: join(d[0].effective, d[1].effective),
            permitted: join(d[0].permitted, d[1].permitted),
            inheritable: join(d[0].inheritable, d[1].inheritable),
        })
    }

    /// Set this thread's sets (other threads keep theirs).
    pub fn set(s: Sets) -> std::io::Result<()> {
        let mut h = Header {
            version: VERSION_3,
            pid: 0,
        };
        let d = [
            Data {
                effective: s.effective as u32,
                permitted: s.permitted as u32,
                inheritable: s.inheritable as u32,
            },
            Data {
                effective: (s.effective >> 32) as u32,
                permitted: (s.permitted >> 32) as u32,
                inheritable: (s.inheritable >> 32) as u32,
            },
        ];
        // SAFETY: capset with a v3 header and two data elements.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// What the runner keeps open while cases run. Cases that take file references walk the
/// runner's own fd table, and the CRIB kfuncs hand out references only for regular files open
/// for reading (a guest's stdio is pipes and `/dev/null`): hold one, our own executable.
pub struct Fixtures {
    _regular_file: std::fs::File,
}

/// Open the [`Fixtures`]; keep the result alive while the cases run.
pub fn fixtures() -> std::io::Result<Fixtures> {
    let exe = std::env::current_exe()?;
    Ok(Fixtures {
        _regular_file: std::fs::File::open(exe)?,
    })
}

/// Load and check one case. Call in the guest (it loads into the running kernel).
pub fn run_case(case: &Case) -> CaseReport {
    let t0 = Instant::now();
    let mut notes = Vec::new();
    let verdict = run_case_inner(case, &mut notes);
    CaseReport {
        verdict,
        notes,
        elapsed: t0.elapsed(),
    }
}

fn run_case_inner(case: &Case, notes: &mut Vec<String>) -> Verdict {
    if !case.spec.unsupported.is_empty() {
        return Verdict::Fail(format!(
            "unsupported annotation(s) {}: this runner cannot check them, so the case is not \
             counted as passed",
            case.spec.unsupported.join(", ")
        ));
    }
    if let Some(why) = case.static_skip() {
        return Verdict::Skip(why);
    }
    if let Some(mode) = case.spec.load_mode {
        let jit = jit_enabled();
        if (mode == LoadMode::Jited) != jit {
            let want = if mode == LoadMode::Jited {
                "a JIT"
            } else {
                "no JIT"
            };
            return Verdict::Skip(format!("needs {want}; bpf_jit_enable says otherwise"));
        }
    }
    let (set, clear) = case.spec.flags();
    let opts = LoadOpts {
        log_level: case.spec.log_level,
        prog_flags: set,
        clear_flags: clear,
        also_load: case.aux.clone(),
        unpriv_maps_only: case.mode == Mode::Unpriv,
        ..LoadOpts::default()
    };
    match case.mode {
        Mode::Priv => load_and_check(case, &opts, None, notes),
        Mode::Unpriv => {
            if let Err(e) = enable_unpriv_bpf(notes) {
                return Verdict::Fail(format!("unprivileged variant not run: {e}"));
            }
            // Capabilities are per thread: drop them in a thread of our own.
            let case2 = case.clone();
            let caps = case.expect().caps;
            let handle = std::thread::spawn(move || {
                let mut notes = Vec::new();
                let v = load_and_check(&case2, &opts, Some(caps), &mut notes);
                (v, notes)
            });
            match handle.join() {
                Ok((v, n)) => {
                    notes.extend(n);
                    v
                }
                Err(_) => Verdict::Fail("the unprivileged load thread panicked".into()),
            }
        }
    }
}

/// The symbolic name of an errno a BPF load can return, if it is one of those.
fn errno_symbol(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::ETIME => "ETIME",
        libc::EPROTO => "EPROTO",
        libc::EBADMSG => "EBADMSG",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ECANCELED => "ECANCELED",
        libc::EOWNERDEAD => "EOWNERDEAD",
        // Kernel-internal (include/linux/errno.h), which BPF returns to user space at times.
        524 => "ENOTSUPP",
        _ => return None,
    })
}

/// `EPERM (1: Operation not permitted)`; `errno 600 (Unknown error 600)` for a number
/// without a name here.
fn errno_name(e: i32) -> String {
    let text = std::io::Error::from_raw_os_error(e).to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    match errno_symbol(e) {
        Some(sym) => format!("{sym} ({e}: {text})"),
        None => format!("errno {e} ({text})"),
    }
}

/// libbpf's messages and the end of the verifier log, for a report about a failed load.
fn load_failure_context(libbpf: &str, log: &str) -> String {
    let libbpf = libbpf.trim_end();
    let mut out = if libbpf.is_empty() {
        "libbpf: (no messages)\n".to_string()
    } else {
        format!("libbpf:\n{libbpf}\n")
    };
    if log.trim().is_empty() {
        out.push_str(
            "verifier log: empty (nothing from the verifier: the kernel refused the program \
             before the verifier ran, or libbpf failed before the program reached the kernel)",
        );
    } else {
        let _ = write!(out, "last 30 lines of the verifier log:\n{}", tail(log, 30));
    }
    out
}

/// The errno check of a load that failed as expected: with a `__crib_load_errno`, the errno
/// must be exactly that one. `Ok(note)` says what was checked; `Err(report)` names the
/// expected and the actual errno (name and number), libbpf's messages and the log's end.
fn check_load_errno(
    prog: &str,
    want: Option<i32>,
    got: i32,
    libbpf: &str,
    log: &str,
) -> Result<String, String> {
    match want {
        None => Ok(format!("rejected as expected: {}", errno_name(got))),
        Some(w) if w == got => Ok(format!(
            "rejected as expected, with the expected errno {}",
            errno_name(got)
        )),
        Some(w) => Err(format!(
            "expected the load of '{prog}' to fail with {}, but it failed with {}\n{}",
            errno_name(w),
            errno_name(got),
            load_failure_context(libbpf, log)
        )),
    }
}

/// The unprivileged load: prepare the object (`bpf_object__prepare()`: kfunc and ksym
/// externs, BTF, maps) with the thread's full capabilities, then drop CAP_SYS_ADMIN,
/// CAP_NET_ADMIN, CAP_PERFMON and CAP_BPF (giving back `extra`) for the program load only,
/// and restore them for the test run, as test_loader does. Resolving externs needs
/// CAP_SYS_ADMIN for a module's kfuncs (libbpf lists module BTF with `BPF_BTF_GET_NEXT_ID`),
/// so without the privileged prepare no case calling a module kfunc could load unprivileged.
/// Call in a thread of its own: capabilities are per thread.
fn load_unprivileged(
    case: &Case,
    opts: &LoadOpts,
    extra: u64,
    notes: &mut Vec<String>,
) -> Result<loader::Loaded, String> {
    let pending = loader::open_one(&case.object, &case.spec.prog, opts)
        .map_err(|e| format!("cannot load: {e}"))?;
    let pending = pending.prepare().map_err(|e| {
        format!(
            "{e}\n(the unprivileged variant runs bpf_object__prepare() with full capabilities \
             before dropping them: this failure is not caused by the dropped capabilities, and \
             the unprivileged program load was not attempted)"
        )
    })?;
    let cur = caps::get().map_err(|e| format!("capget: {e}"))?;
    let drop_mask = (1u64 << CAP_SYS_ADMIN)
        | (1u64 << CAP_NET_ADMIN)
        | (1u64 << CAP_PERFMON)
        | (1u64 << CAP_BPF);
    let mut reduced = cur;
    reduced.effective = (cur.effective & !drop_mask) | (extra & cur.permitted);
    caps::set(reduced).map_err(|e| format!("capset (dropping capabilities): {e}"))?;
    let loaded = pending.load();
    caps::set(cur).map_err(|e| format!("capset (restoring capabilities): {e}"))?;
    notes.push(
        "prepared with full capabilities (bpf_object__prepare: kfunc/ksym externs, module BTF, \
         object BTF, maps)"
            .into(),
    );
    notes.push(format!(
        "unprivileged program load: effective capabilities {:#x} (dropped SYS_ADMIN, NET_ADMIN, \
         PERFMON, BPF{})",
        reduced.effective,
        if extra != 0 {
            format!("; granted {extra:#x}")
        } else {
            String::new()
        }
    ));
    Ok(loaded)
}

fn load_and_check(
    case: &Case,
    opts: &LoadOpts,
    unpriv_caps: Option<u64>,
    notes: &mut Vec<String>,
) -> Verdict {
    let prog = &case.spec.prog;
    let expect = case.expect();
    let loaded = match unpriv_caps {
        None => match loader::load_one(&case.object, prog, opts) {
            Ok(l) => l,
            Err(e) => return Verdict::Fail(format!("cannot load: {e}")),
        },
        Some(extra) => match load_unprivileged(case, opts, extra, notes) {
            Ok(l) => l,
            Err(e) => return Verdict::Fail(e),
        },
    };
    let log = &loaded.log;
    match (&loaded.error, expect.failure) {
        (None, true) => {
            let what = match expect.load_errno {
                Some(e) => format!("the load of '{prog}' to fail with {}", errno_name(e)),
                None => format!("the verifier to reject '{prog}'"),
            };
            return Verdict::Fail(format!(
                "expected {what}, but it loaded.\nlast 30 lines of the verifier log (log level \
                 {}):\n{}",
                opts.log_level,
                tail(log, 30)
            ));
        }
        (Some((errno, msgs)), false) => {
            return Verdict::Fail(format!(
                "expected '{prog}' to load, but it was rejected: {}\nlibbpf:\n{}\nlast 30 lines \
                 of the verifier log:\n{}",
                errno_name(*errno),
                msgs.trim_end(),
                tail(log, 30)
            ))
        }
        (Some((errno, msgs)), true) => {
            match check_load_errno(prog, expect.load_errno, *errno, msgs, log) {
                Ok(note) => notes.push(note),
                Err(report) => return Verdict::Fail(report),
            }
        }
        (None, false) => notes.push("loaded as expected".into()),
    }
    match match_msgs(log, &expect.msgs) {
        Ok(0) => {}
        Ok(n) => notes.push(format!("{n} message(s) matched in order")),
        Err(f) => return Verdict::Fail(f.report),
    }
    let Some(want) = expect.retval.filter(|_| !expect.failure) else {
        return Verdict::Pass;
    };
    let Some(p) = loaded.prog(prog) else {
        return Verdict::Fail(format!("'{prog}' loaded but is not in the loaded object"));
    };
    let got = if p.prog_type() == ProgramType::Syscall {
        let mut empty = ();
        loader::run_syscall(&p, &mut empty)
    } else {
        loader::run_packet(&p)
    };
    match (got, want) {
        (Err(e), _) => Verdict::Fail(format!("test run failed: {e}")),
        (Ok(v), Retval::Any) => {
            notes.push(format!("retval {v} (any accepted)"));
            Verdict::Pass
        }
        (Ok(v), Retval::Value(w)) if v == w => {
            notes.push(format!("retval {v} as expected"));
            Verdict::Pass
        }
        (Ok(v), Retval::Value(w)) => Verdict::Fail(format!(
            "unexpected return value: got {v} ({v:#x}), expected {w} ({w:#x})"
        )),
    }
}

impl CaseReport {
    /// Human-readable result block.
    pub fn render(&self, name: &str) -> String {
        let (word, detail) = match &self.verdict {
            Verdict::Pass => ("PASS", None),
            Verdict::Fail(d) => ("FAIL", Some(d.as_str())),
            Verdict::Skip(d) => ("SKIP", Some(d.as_str())),
        };
        let mut s = format!("{word} {name} ({:.2}s)", self.elapsed.as_secs_f64());
        for n in &self.notes {
            let _ = write!(s, "\n    {n}");
        }
        if let Some(d) = detail {
            for l in d.lines() {
                let _ = write!(s, "\n    {l}");
            }
        }
        s
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

    #[test]
    fn spec_success_retval_and_flavor() {
        let s = parse_spec(
            "p",
            &v(&[
                "test_description=d",
                "test_expect_success",
                "test_retval=65536",
                "crib_flavor=stock",
            ]),
        )
        .unwrap();
        assert!(s.priv_mode && !s.unpriv_mode && !s.privileged.failure);
        assert_eq!(s.privileged.retval, Some(Retval::Value(65536)));
        assert_eq!(s.flavor, Some(Flavor::Stock));
        assert_eq!(s.description.as_deref(), Some("d"));
        assert!(s.tagged);
        assert!(parse_spec("p", &v(&["crib_flavor=other"])).is_err());
    }

    #[test]
    fn retval_forms() {
        assert_eq!(parse_retval("_INT_MIN"), Some(Retval::Value(i32::MIN)));
        assert_eq!(
            parse_retval("(-2147483647 - 1)"),
            Some(Retval::Value(i32::MIN))
        );
        assert_eq!(
            parse_retval("(-0x7fffffff-1)"),
            Some(Retval::Value(i32::MIN))
        );
        assert_eq!(parse_retval("0xbadcafe"), Some(Retval::Any));
        assert_eq!(parse_retval("0xffffffff"), Some(Retval::Value(-1)));
        assert_eq!(parse_retval("-22"), Some(Retval::Value(-22)));
        assert_eq!(parse_retval("(-22)"), Some(Retval::Value(-22)));
        assert_eq!(parse_retval("64"), Some(Retval::Value(64)));
        assert_eq!(parse_retval("ENOENT"), None);
    }

    #[test]
    fn unpriv_inherits_and_flags() {
        let s = parse_spec(
            "p",
            &v(&[
                "test_expect_failure",
                "test_expect_msg=boom",
                "test_caps_unpriv=39|38",
                "test_log_level=2",
                "test_prog_flags=BPF_F_SLEEPABLE",
                "test_prog_flags=!BPF_F_TEST_RND_HI32",
                "test_arch=ARM64",
            ]),
        )
        .unwrap();
        assert!(s.priv_mode && s.unpriv_mode);
        assert!(s.unprivileged.failure);
        assert_eq!(s.unprivileged.msgs.len(), 1);
        assert_eq!(s.unprivileged.caps, (1 << 39) | (1 << 38));
        assert_eq!(s.log_level, 2);
        let (set, clear) = s.flags();
        assert_eq!(
            set & libbpf_sys::BPF_F_SLEEPABLE,
            libbpf_sys::BPF_F_SLEEPABLE
        );
        assert_eq!(set & libbpf_sys::BPF_F_TEST_RND_HI32, 0);
        assert_eq!(clear, libbpf_sys::BPF_F_TEST_RND_HI32);
        assert!(parse_spec("p", &v(&["test_caps_unpriv=CAP_BPF"])).is_err());
        let case = Case {
            object: "x".into(),
            stem: "x".into(),
            spec: s,
            mode: Mode::Unpriv,
            aux: vec![],
        };
        assert_eq!(case.name(), "x::p@unpriv");
        assert!(case.static_skip().is_some() == (current_arch() != "ARM64"));
    }

    #[test]
    fn unsupported_tags_are_kept() {
        let s = parse_spec(
            "p",
            &v(&[
                "test_expect_success",
                "test_expect_xlated=r0 = 1",
                "test_new_thing",
            ]),
        )
        .unwrap();
        assert_eq!(s.unsupported, v(&["test_expect_xlated", "test_new_thing"]));
        let s = parse_spec("p", &v(&["some_other_comment"])).unwrap();
        assert!(!s.tagged && s.unsupported.is_empty());
    }

    #[test]
    fn regex_patterns() {
        let re = compile_pattern("R{{[0-9]}} invalid mem access 'scalar'").unwrap();
        assert!(re.is_match("3: R1 invalid mem access 'scalar'"));
        assert!(!re.is_match("R11 invalid mem access 'scalar'"));
        // Verbatim parts are not regex: '(' and '*' are literal.
        let re = compile_pattern("r0 = *(u64 *)(r1 +{{-?[0-9]+}})").unwrap();
        assert!(re.is_match("2: (79) r0 = *(u64 *)(r1 +0)"));
        // '.' in a regex part does not cross lines.
        let re = compile_pattern("a{{.*}}b").unwrap();
        assert!(!re.is_match("a\nb"));
        assert!(compile_pattern("x{{[0-9]").is_err());
    }

    fn pats(p: &[(&str, bool)]) -> Vec<Pattern> {
        p.iter()
            .map(|(t, n)| Pattern::new(t, *n).unwrap())
            .collect()
    }

    const LOG: &str = "0: (b7) r0 = 0\n1: (b7) r1 = 42\n2: (79) r0 = *(u64 *)(r1 +0)\n\
                       R1 invalid mem access 'scalar'\nprocessed 3 insns\n";

    #[test]
    fn messages_in_order() {
        let ok = pats(&[
            ("r1 = 42", false),
            ("R{{[0-9]+}} invalid mem access", false),
            ("processed", false),
        ]);
        assert_eq!(match_msgs(LOG, &ok).unwrap(), 3);
        // Each message is searched after the end of the previous match.
        let reversed = pats(&[("invalid mem access", false), ("r1 = 42", false)]);
        let f = match_msgs(LOG, &reversed).unwrap_err().report;
        assert!(f.contains("EXPECTED, NOT FOUND"), "{f}");
        assert!(f.contains("'r1 = 42'"), "{f}");
        assert!(f.contains("matched up to line 4"), "{f}");
        assert!(f.contains("last 30 lines"), "{f}");
    }

    #[test]
    fn tail_shows_the_error_before_a_long_diagnosis() {
        let mut log = String::from("0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\n");
        log.push_str("Verification failed: Register Type Safety\n");
        for i in 0..40 {
            log.push_str(&format!("diag line {i}\n"));
        }
        let t = tail(&log, 30);
        assert!(t.contains("R1 invalid mem access"), "{t}");
        assert!(t.contains("diag line 39"), "{t}");
        assert!(!tail(LOG, 30).contains("diagnosis"));
    }

    #[test]
    fn negative_messages_between_positives() {
        // "r1 = 42" sits before the first positive match: not in the span, fine.
        let ok = pats(&[
            ("R1 invalid", false),
            ("r1 = 42", true),
            ("processed", false),
        ]);
        assert!(match_msgs(LOG, &ok).is_ok());
        let bad = pats(&[
            ("r1 = 42", false),
            ("invalid mem access", true),
            ("processed", false),
        ]);
        let f = match_msgs(LOG, &bad).unwrap_err().report;
        assert!(f.contains("UNEXPECTED (line 4)"), "{f}");
        // Trailing negative: checked to the end of the log.
        let bad = pats(&[("r0 = 0", false), ("{{processed [0-9]+}}", true)]);
        assert!(match_msgs(LOG, &bad).is_err());
    }

    #[test]
    fn load_errno_parsing() {
        // Privileged, inherited by the unprivileged run when that fails too (like __msg).
        let s = parse_spec(
            "p",
            &v(&[
                "test_expect_failure",
                "crib_load_errno=13",
                "test_caps_unpriv=39",
            ]),
        )
        .unwrap();
        assert!(s.tagged && s.unsupported.is_empty());
        assert_eq!(s.expect(Mode::Priv).load_errno, Some(libc::EACCES));
        assert_eq!(s.expect(Mode::Unpriv).load_errno, Some(libc::EACCES));
        // The unprivileged run only, as tf_unpriv_no_caps writes it.
        let s = parse_spec(
            "p",
            &v(&["test_expect_failure_unpriv", "crib_load_errno_unpriv=1"]),
        )
        .unwrap();
        assert_eq!(s.modes(), vec![Mode::Unpriv]);
        assert_eq!(s.expect(Mode::Unpriv).load_errno, Some(libc::EPERM));
        assert_eq!(s.expect(Mode::Priv).load_errno, None);
        // Tag order does not matter: the verdict may come after the errno.
        let s = parse_spec(
            "p",
            &v(&["crib_load_errno_unpriv=1", "test_expect_failure_unpriv"]),
        )
        .unwrap();
        assert_eq!(s.expect(Mode::Unpriv).load_errno, Some(libc::EPERM));
        // An explicit unprivileged errno wins over the privileged one.
        let s = parse_spec(
            "p",
            &v(&[
                "test_expect_failure",
                "crib_load_errno=22",
                "test_expect_failure_unpriv",
                "crib_load_errno_unpriv=1",
            ]),
        )
        .unwrap();
        assert_eq!(s.expect(Mode::Priv).load_errno, Some(libc::EINVAL));
        assert_eq!(s.expect(Mode::Unpriv).load_errno, Some(libc::EPERM));
        // Not inherited by an unprivileged run that expects the load to succeed.
        let s = parse_spec(
            "p",
            &v(&[
                "test_expect_failure",
                "crib_load_errno=22",
                "test_expect_success_unpriv",
            ]),
        )
        .unwrap();
        assert_eq!(s.expect(Mode::Unpriv).load_errno, None);
        assert_eq!(parse_errno(" 4095 "), Ok(4095));
    }

    #[test]
    fn load_errno_errors() {
        let err = |tags: &[&str]| match parse_spec("p", &v(tags)) {
            Err(e) => e.to_string(),
            Ok(s) => panic!("{tags:?} parsed: {s:?}"),
        };
        // On a case whose load must succeed, explicit or by default.
        for tags in [
            &["test_expect_success", "crib_load_errno=1"][..],
            &["crib_load_errno=1"],
            &["test_expect_msg=x", "crib_load_errno=1"],
            &["crib_load_errno=1", "test_expect_failure_unpriv"],
        ] {
            let e = err(tags);
            assert!(e.contains("crib_load_errno=1"), "{e}");
            assert!(e.contains("privileged load is expected to succeed"), "{e}");
        }
        for tags in [
            &["test_expect_success_unpriv", "crib_load_errno_unpriv=1"][..],
            &["crib_load_errno_unpriv=1"],
            &[
                "test_expect_failure",
                "test_expect_success_unpriv",
                "crib_load_errno_unpriv=1",
            ],
        ] {
            let e = err(tags);
            assert!(e.contains("crib_load_errno_unpriv=1"), "{e}");
            assert!(
                e.contains("unprivileged load is expected to succeed"),
                "{e}"
            );
        }
        // Values: numbers only (an undefined name arrives as the name), positive, in range.
        for (val, why) in [
            ("EPERM", "must be numbers"),
            ("-EPERM", "must be numbers"),
            ("-1", "positive errno"),
            ("0", "1 to 4095"),
            ("4096", "1 to 4095"),
            ("0x100000000", "1 to 4095"),
            ("1x", "not an errno number"),
            ("", "not an errno number"),
        ] {
            let e = err(&["test_expect_failure", &format!("crib_load_errno={val}")]);
            assert!(e.contains(why), "{val}: {e}");
        }
        let e = err(&[
            "test_expect_failure",
            "crib_load_errno=1",
            "crib_load_errno=13",
        ]);
        assert!(e.contains("a second load errno"), "{e}");
    }

    #[test]
    fn load_errno_check() {
        const LIBBPF: &str = "libbpf: prog 'p': BPF program load failed: Invalid argument\n";
        // No errno asked for: any rejection is fine, as before.
        let note = check_load_errno("p", None, libc::EINVAL, LIBBPF, "").unwrap();
        assert_eq!(note, "rejected as expected: EINVAL (22: Invalid argument)");
        let note = check_load_errno("p", Some(libc::EPERM), libc::EPERM, "", "").unwrap();
        assert!(
            note.contains("expected errno EPERM (1: Operation not permitted)"),
            "{note}"
        );
        // The wrong errno fails, naming both, with libbpf's messages; no log here.
        let r = check_load_errno("p", Some(libc::EPERM), libc::EINVAL, LIBBPF, "").unwrap_err();
        assert!(
            r.starts_with(
                "expected the load of 'p' to fail with EPERM (1: Operation not permitted), but \
                 it failed with EINVAL (22: Invalid argument)\n"
            ),
            "{r}"
        );
        assert!(r.contains(LIBBPF.trim_end()), "{r}");
        assert!(r.contains("verifier log: empty"), "{r}");
        // With a log, its end is shown.
        let r = check_load_errno("p", Some(libc::EPERM), libc::EACCES, "", LOG).unwrap_err();
        assert!(r.contains("EACCES (13: Permission denied)"), "{r}");
        assert!(r.contains("libbpf: (no messages)"), "{r}");
        assert!(r.contains("last 30 lines of the verifier log"), "{r}");
        assert!(r.contains("R1 invalid mem access"), "{r}");
        assert_eq!(errno_name(524), "ENOTSUPP (524: Unknown error 524)");
        assert_eq!(errno_name(4000), "errno 4000 (Unknown error 4000)");
    }

    /// crib_test.h's macros as clang puts them into BTF, read back by the parser.
    #[test]
    fn load_errno_in_a_built_object() {
        let dir = Path::new(crate::BPF_DIR);
        let obj = dir.join("task_file_progtype.bpf.o");
        if !obj.exists() {
            let why = std::fs::read_to_string(dir.join("MISSING"))
                .map(|k| format!("no kernel build at {k} when the harness was built"))
                .unwrap_or_else(|_| "the object was not built".into());
            panic!("{}: {why}: run scripts/build", obj.display());
        }
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

    #[test]
    fn stems() {
        assert_eq!(object_stem(Path::new("/a/abi_basic.bpf.o")), "abi_basic");
        assert_eq!(object_stem(Path::new("verifier_and.o")), "verifier_and");
    }
}

//! The annotation model: what the selftests/bpf tags (`__success`, `__failure`, `__msg`,
//! `__retval`, `__caps_unpriv`, ... and our `__crib_*`) of one program say, parsed from the
//! bodies of its BTF decl tags (test_loader.c's `parse_test_spec`).

use std::fmt;

use crate::kernel::Flavor;

use super::{CaseError, Pattern};

/// `POINTER_VALUE` of bpf_misc.h: `__retval(POINTER_VALUE)` accepts any return value.
pub const POINTER_VALUE: i64 = 0xbadcafe;

/// Flags test_loader.c sets on every program (`testing_prog_flags()`), unless a case clears
/// them with `__flag(!BPF_F_...)`: random upper halves after 32-bit ops and register
/// invariant checks, both supported since 6.7.
pub const DEFAULT_PROG_FLAGS: u32 =
    libbpf_sys::BPF_F_TEST_RND_HI32 | libbpf_sys::BPF_F_TEST_REG_INVARIANTS;

/// Privileged (root) or unprivileged (root minus CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_PERFMON,
/// CAP_BPF, plus whatever `__caps_unpriv` grants back) load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Priv,
    Unpriv,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::{current_arch, Case};

    fn v(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|s| s.to_string()).collect()
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
}

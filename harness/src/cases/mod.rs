//! Verifier-acceptance cases: BPF programs annotated with the selftests/bpf convention
//! (`__success`, `__failure`, `__msg`, `__retval`, ... from `bpf_misc.h` or our
//! `selftests/include/crib_test.h`), discovered from the BTF decl tags of any object, loaded
//! one at a time and checked the way `tools/testing/selftests/bpf/test_loader.c` does.
//!
//! One concern a file, as test_loader.c keeps them apart:
//!
//! - [`spec`]: the annotation model, parsed from the decl tags of one program;
//! - [`discovery`]: the tags and programs of an object, and the cases they make;
//! - [`matching`]: `__msg` / `__not_msg` against the verifier log, `{{regex}}` parts;
//! - [`caps`]: capability sets and the unprivileged-BPF sysctl for `@unpriv` cases;
//! - [`run`]: loading a case, checking verdict, errno and messages, the `__retval` run;
//! - [`report`]: verdicts, the rendered result block, errno names;
//! - [`batch`]: a batch guest's result lines and each test's outcome from them.

use std::path::PathBuf;

use thiserror::Error;

pub mod batch;
pub mod caps;
pub mod discovery;
pub mod matching;
pub mod report;
pub mod run;
pub mod spec;

pub use discovery::{
    current_arch, discover, func_tags, guest_invisible, object_stem, order_tags, split_tag, Case,
    ObjectCases,
};
pub use matching::{compile_pattern, match_msgs, tail, MatchFailure, Pattern};
pub use report::{CaseReport, Verdict};
pub use run::{fixtures, run_case, Fixtures, SocketFixtures};
pub use spec::{
    parse_errno, parse_retval, parse_spec, CaseSpec, Expect, LoadMode, Mode, Retval,
    DEFAULT_PROG_FLAGS, POINTER_VALUE,
};

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

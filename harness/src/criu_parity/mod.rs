//! CRIU parity (issue 10, items 8-9): the same process dumped by CRIU 4.2.1 and by
//! `crib dump --format json`, both turned into one per-fd vocabulary of fields and compared.
//!
//! - [`tools`]: where `scripts/setup-criu` keeps `criu` and `crit`, running a dump and decoding
//!   its images with `crit decode`.
//! - [`criu`]: CRIU's images (crit's JSON) as a [`View`].
//! - [`crib`]: `crib dump --format json` as a [`View`].
//! - [`compare`](mod@compare): which fields agree, which only one side has, and the first disagreement.
//!
//! Field names are shared by both views: `kind`, `cloexec`, `flags` (f_flags without
//! O_CLOEXEC, octal), `pos`, `path`, `ino`, `dev`, `i_mode`, `mnt_id`, `sock.*`, `queue.*`.
//! A field a side does not describe for an fd is absent from that fd's map; fields only CRIU
//! has keep the image's own name under `criu.<entry>.<key>`.

pub mod compare;
pub mod crib;
pub mod criu;
pub mod tools;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use compare::{compare, Comparison, Known, Mismatch};

/// One side's dump: per fd, field name to value (as text, normalized so both sides spell a
/// value the same way).
pub type View = BTreeMap<u32, BTreeMap<String, String>>;

/// Errors of reading either side's dump.
#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    #[error(
        "CRIU {version} is not built: {path} is missing. Run scripts/setup (or scripts/setup-criu \
         alone), which builds it from Debian's source package into $CRIB_CACHE/tools"
    )]
    CriuMissing { version: &'static str, path: String },
    #[error("{what}: {why}")]
    Image { what: String, why: String },
    #[error("crib dump's JSON: {0}")]
    CribJson(String),
    #[error("{cmd} failed ({status}):\n{tail}")]
    Command {
        cmd: String,
        status: String,
        tail: String,
    },
}

/// O_CLOEXEC: both sides report close-on-exec as its own field (`cloexec`), so `flags` is
/// compared without it.
pub(crate) const O_CLOEXEC: u64 = 0o2000000;

/// A number in octal as fdinfo shows flags.
pub(crate) fn octal(v: u64) -> String {
    format!("0{v:o}")
}

//! Compare two [`View`]s field by field: the fields both describe must agree; the fields only
//! one side has are counted, per field name, for the table in the README.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use super::View;

/// One field both sides describe for an fd, with different values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub fd: u32,
    pub field: String,
    pub criu: String,
    pub crib: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fd {}: {}: CRIU says {:?}, crib dump says {:?}",
            self.fd, self.field, self.criu, self.crib
        )
    }
}

/// A disagreement that was found, explained, and is expected: a mismatch of `field` on an
/// fd whose `kind` (as both sides name it) is `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub field: &'static str,
    pub kind: &'static str,
    /// Which side is wrong and why.
    pub why: &'static str,
}

/// Per field name: on how many fds it agreed, was only in CRIU's images, only in crib dump's
/// JSON, or differed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub agree: usize,
    pub only_criu: usize,
    pub only_crib: usize,
    pub differ: usize,
}

/// The outcome of comparing CRIU's view with crib dump's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Fds one side lists and the other does not.
    pub fds_only_criu: Vec<u32>,
    pub fds_only_crib: Vec<u32>,
    /// Every differing field, in fd order then field order.
    pub mismatches: Vec<Mismatch>,
    pub fields: BTreeMap<String, Counts>,
    /// The kind of each fd both list (CRIB's name), to match [`Known`] entries.
    pub kinds: BTreeMap<u32, String>,
}

/// Compare CRIU's view of a process with crib dump's.
pub fn compare(criu: &View, crib: &View) -> Comparison {
    let mut c = Comparison::default();
    let fds: BTreeSet<u32> = criu.keys().chain(crib.keys()).copied().collect();
    for fd in fds {
        let (a, b) = match (criu.get(&fd), crib.get(&fd)) {
            (Some(a), Some(b)) => (a, b),
            (Some(_), None) => {
                c.fds_only_criu.push(fd);
                continue;
            }
            (None, _) => {
                c.fds_only_crib.push(fd);
                continue;
            }
        };
        if let Some(k) = b.get("kind") {
            c.kinds.insert(fd, k.clone());
        }
        let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for name in names {
            let counts = c.fields.entry(name.clone()).or_default();
            match (a.get(name), b.get(name)) {
                (Some(x), Some(y)) if x == y => counts.agree += 1,
                (Some(x), Some(y)) => {
                    counts.differ += 1;
                    c.mismatches.push(Mismatch {
                        fd,
                        field: name.clone(),
                        criu: x.clone(),
                        crib: y.clone(),
                    });
                }
                (Some(_), None) => counts.only_criu += 1,
                (None, _) => counts.only_crib += 1,
            }
        }
    }
    c
}

impl Comparison {
    /// Ok when both list the same fds and every field both describe agrees, apart from the
    /// `known` disagreements, each of which must still occur (an explanation of a
    /// disagreement that went away is stale). Err names the first differing fd and field.
    pub fn check(&self, known: &[Known]) -> Result<(), String> {
        if !self.fds_only_criu.is_empty() || !self.fds_only_crib.is_empty() {
            return Err(format!(
                "the fd sets differ: only CRIU lists {:?}, only crib dump lists {:?}",
                self.fds_only_criu, self.fds_only_crib
            ));
        }
        let is_known = |m: &Mismatch| {
            known.iter().find(|k| {
                k.field == m.field && self.kinds.get(&m.fd).map(String::as_str) == Some(k.kind)
            })
        };
        if let Some(m) = self.mismatches.iter().find(|m| is_known(m).is_none()) {
            let n = self
                .mismatches
                .iter()
                .filter(|m| is_known(m).is_none())
                .count();
            return Err(format!("{m} (first of {n} unexplained differences)"));
        }
        for k in known {
            if !self.mismatches.iter().any(|m| is_known(m) == Some(k)) {
                return Err(format!(
                    "the known disagreement on {} of {} fds no longer occurs; remove it from \
                     the list ({})",
                    k.field, k.kind, k.why
                ));
            }
        }
        Ok(())
    }

    /// Fields by name: on how many fds both had them and agreed, only CRIU, only crib dump,
    /// differed.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<34} {:>5} {:>9} {:>9} {:>6}\n",
            "FIELD", "AGREE", "ONLY-CRIU", "ONLY-CRIB", "DIFFER"
        );
        for (name, c) in &self.fields {
            let _ = writeln!(
                out,
                "{name:<34} {:>5} {:>9} {:>9} {:>6}",
                c.agree, c.only_criu, c.only_crib, c.differ
            );
        }
        out
    }
}

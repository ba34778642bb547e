//! What every method of the benchmark must say about one fd, and the field-by-field comparison
//! of two methods' tables.
//!
//! A method that cannot know a field leaves it `None` (lsof has no mount id; it names pipes and
//! unix sockets its own way, so it has no path for them); a field is compared wherever both
//! methods have it, and [`compare`] counts how many values it compared per field, so a method
//! that silently left a field out shows as zero comparisons there.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::dump::FileKind;

/// The benchmark's methods, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// One BPF_PROG_RUN of dump_files.bpf.c (with paths) + ring buffer drain + decode.
    Crib,
    /// SEC("iter/task_file") restricted to the pid, read through the iterator fd.
    IterTaskFile,
    /// readdir /proc/PID/fd, readlink + stat + fdinfo per fd.
    Procfs,
    /// `lsof -p PID -F ...`, parsed.
    Lsof,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Crib,
        Method::IterTaskFile,
        Method::Procfs,
        Method::Lsof,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crib => "CRIB",
            Method::IterTaskFile => "iter/task_file",
            Method::Procfs => "procfs walk",
            Method::Lsof => "lsof",
        }
    }

    /// The fields this method has (for every fd where it has them: [`FdRow::get`] says None
    /// where not, e.g. lsof's path of a pipe).
    pub fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            Method::Crib | Method::IterTaskFile | Method::Procfs => {
                &[Kind, Flags, Pos, MntId, Ino, Path]
            }
            Method::Lsof => &[Kind, Flags, Pos, Ino, Path],
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compared field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Kind,
    Flags,
    Pos,
    MntId,
    Ino,
    Path,
}

impl Field {
    pub const ALL: [Field; 6] = [
        Field::Kind,
        Field::Flags,
        Field::Pos,
        Field::MntId,
        Field::Ino,
        Field::Path,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Kind => "kind",
            Field::Flags => "flags",
            Field::Pos => "pos",
            Field::MntId => "mnt_id",
            Field::Ino => "inode",
            Field::Path => "path",
        }
    }
}

/// One fd as a method reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdRow {
    pub fd: u32,
    pub kind: Option<FileKind>,
    /// `file->f_flags`, plus O_CLOEXEC when the fd is close-on-exec (fdinfo's `flags:`)
    pub flags: Option<u32>,
    pub pos: Option<u64>,
    pub mnt_id: Option<u64>,
    pub ino: Option<u64>,
    /// As `readlink /proc/PID/fd/N` prints it
    pub path: Option<String>,
}

impl FdRow {
    /// A row with only its fd.
    pub fn new(fd: u32) -> Self {
        FdRow {
            fd,
            kind: None,
            flags: None,
            pos: None,
            mnt_id: None,
            ino: None,
            path: None,
        }
    }

    /// The value of `field`, as text, if the method had it.
    pub fn get(&self, field: Field) -> Option<String> {
        match field {
            Field::Kind => self.kind.map(|k| k.to_string()),
            Field::Flags => self.flags.map(|f| format!("0{f:o}")),
            Field::Pos => self.pos.map(|v| v.to_string()),
            Field::MntId => self.mnt_id.map(|v| v.to_string()),
            Field::Ino => self.ino.map(|v| v.to_string()),
            Field::Path => self.path.clone(),
        }
    }
}

/// Two methods' tables differ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("{method} lists {count} fds with two rows for fd {fd}")]
    Duplicate {
        method: Method,
        count: usize,
        fd: u32,
    },
    #[error("fd {fd} is in {has}'s table but not in {lacks}'s ({has}: {n_has} fds, {lacks}: {n_lacks} fds)")]
    MissingFd {
        fd: u32,
        has: Method,
        lacks: Method,
        n_has: usize,
        n_lacks: usize,
    },
    #[error("fd {fd}: {field}: {a} says {va:?}, {b} says {vb:?}")]
    Field {
        fd: u32,
        field: &'static str,
        a: Method,
        va: String,
        b: Method,
        vb: String,
    },
    #[error("fd {fd}: {method} has no {field}, which it reports for every fd")]
    Absent {
        fd: u32,
        field: &'static str,
        method: Method,
    },
    #[error("{method} gave the same rows in another order")]
    Order { method: Method },
    #[error("{a} and {b} have no {field} value in common to compare ({a} reports it for {na} fds, {b} for {nb})")]
    NothingCompared {
        field: &'static str,
        a: Method,
        b: Method,
        na: usize,
        nb: usize,
    },
}

/// Values compared per field, for the report.
pub type Compared = BTreeMap<Field, usize>;

fn by_fd(method: Method, rows: &[FdRow]) -> Result<BTreeMap<u32, &FdRow>, Mismatch> {
    let mut out = BTreeMap::new();
    for r in rows {
        if out.insert(r.fd, r).is_some() {
            return Err(Mismatch::Duplicate {
                method,
                count: rows.len(),
                fd: r.fd,
            });
        }
    }
    Ok(out)
}

/// Whether `method` must have `field` for this row (lsof names pipes and sockets its own way).
fn required(method: Method, field: Field, row: &FdRow) -> bool {
    if !method.fields().contains(&field) {
        return false;
    }
    match (method, field) {
        (Method::Lsof, Field::Path) => !matches!(
            row.kind,
            Some(FileKind::Fifo) | Some(FileKind::Socket) | Some(FileKind::Other) | None
        ),
        _ => true,
    }
}

/// Compare `b`'s table with `a`'s, fd by fd and field by field; the first difference in fd
/// order (fields in [`Field::ALL`] order) is the error. Returns the number of values compared
/// per field.
pub fn compare(a: Method, ra: &[FdRow], b: Method, rb: &[FdRow]) -> Result<Compared, Mismatch> {
    let ma = by_fd(a, ra)?;
    let mb = by_fd(b, rb)?;
    let missing = |fd, has, lacks, n_has, n_lacks| Mismatch::MissingFd {
        fd,
        has,
        lacks,
        n_has,
        n_lacks,
    };
    if let Some(fd) = ma.keys().find(|fd| !mb.contains_key(fd)) {
        return Err(missing(*fd, a, b, ma.len(), mb.len()));
    }
    if let Some(fd) = mb.keys().find(|fd| !ma.contains_key(fd)) {
        return Err(missing(*fd, b, a, mb.len(), ma.len()));
    }
    let mut compared: Compared = Field::ALL.iter().map(|f| (*f, 0)).collect();
    let mut have: BTreeMap<(Method, Field), usize> = BTreeMap::new();
    for (fd, x) in &ma {
        let y = mb[fd];
        for field in Field::ALL {
            let (vx, vy) = (x.get(field), y.get(field));
            for (m, row, v) in [(a, *x, &vx), (b, y, &vy)] {
                if v.is_some() {
                    *have.entry((m, field)).or_default() += 1;
                } else if required(m, field, row) {
                    return Err(Mismatch::Absent {
                        fd: *fd,
                        field: field.as_str(),
                        method: m,
                    });
                }
            }
            if let (Some(vx), Some(vy)) = (vx, vy) {
                if vx != vy {
                    return Err(Mismatch::Field {
                        fd: *fd,
                        field: field.as_str(),
                        a,
                        va: vx,
                        b,
                        vb: vy,
                    });
                }
                *compared.entry(field).or_default() += 1;
            }
        }
    }
    for field in Field::ALL {
        let both = a.fields().contains(&field) && b.fields().contains(&field);
        if both && !ma.is_empty() && compared[&field] == 0 {
            return Err(Mismatch::NothingCompared {
                field: field.as_str(),
                a,
                b,
                na: have.get(&(a, field)).copied().unwrap_or(0),
                nb: have.get(&(b, field)).copied().unwrap_or(0),
            });
        }
    }
    Ok(compared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fd: u32, kind: FileKind, path: &str) -> FdRow {
        FdRow {
            fd,
            kind: Some(kind),
            flags: Some(0o2),
            pos: Some(7),
            mnt_id: Some(30),
            ino: Some(1000 + u64::from(fd)),
            path: Some(path.into()),
        }
    }

    fn table() -> Vec<FdRow> {
        vec![
            row(0, FileKind::CharDev, "/dev/null"),
            row(3, FileKind::Regular, "/tmp/x/f0"),
            row(4, FileKind::Fifo, "pipe:[1004]"),
            row(5, FileKind::Socket, "socket:[1005]"),
            row(6, FileKind::Anon, "anon_inode:[eventfd]"),
        ]
    }

    #[test]
    fn equal_tables_compare_every_field() {
        let c = compare(Method::Crib, &table(), Method::Procfs, &table()).unwrap();
        assert_eq!(c[&Field::Pos], 5);
        assert_eq!(c[&Field::Path], 5);
    }

    #[test]
    fn one_differing_field_names_the_fd_the_field_and_both_values() {
        let mut other = table();
        other[2].pos = Some(8);
        let err = compare(Method::Crib, &table(), Method::IterTaskFile, &other).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fd 4: pos: CRIB says \"7\", iter/task_file says \"8\""
        );
        // the first differing fd, not the last
        other[4].ino = Some(1);
        let err = compare(Method::Crib, &table(), Method::IterTaskFile, &other).unwrap_err();
        assert!(err.to_string().starts_with("fd 4: pos"), "{err}");
        let mut other = table();
        other[1].path = Some("/tmp/x/f1".into());
        let err = compare(Method::Crib, &table(), Method::Procfs, &other).unwrap_err();
        assert!(err.to_string().starts_with("fd 3: path"), "{err}");
    }

    #[test]
    fn a_missing_or_extra_fd_is_named() {
        let mut other = table();
        other.remove(3);
        let err = compare(Method::Crib, &table(), Method::Procfs, &other).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("fd 5 is in CRIB's table but not in procfs walk's"),
            "{err}"
        );
        let mut other = table();
        other.push(row(9, FileKind::Regular, "/x"));
        let err = compare(Method::Crib, &table(), Method::Procfs, &other).unwrap_err();
        assert!(
            err.to_string().starts_with("fd 9 is in procfs walk's"),
            "{err}"
        );
        let mut dup = table();
        dup.push(row(3, FileKind::Regular, "/x"));
        assert!(matches!(
            compare(Method::Crib, &dup, Method::Procfs, &table()),
            Err(Mismatch::Duplicate { fd: 3, .. })
        ));
    }

    #[test]
    fn lsof_may_lack_mount_ids_and_pipe_names_but_nothing_else() {
        let mut lsof = table();
        for r in &mut lsof {
            r.mnt_id = None;
            if matches!(r.kind, Some(FileKind::Fifo | FileKind::Socket)) {
                r.path = None;
            }
        }
        let c = compare(Method::Crib, &table(), Method::Lsof, &lsof).unwrap();
        assert_eq!((c[&Field::MntId], c[&Field::Path]), (0, 3));
        lsof[1].path = None;
        let err = compare(Method::Crib, &table(), Method::Lsof, &lsof).unwrap_err();
        assert_eq!(
            err.to_string(),
            "fd 3: lsof has no path, which it reports for every fd"
        );
        // a method that lost a field everywhere fails even where the other lacks it too
        let mut a = table();
        let mut b = table();
        for r in a.iter_mut().chain(b.iter_mut()) {
            r.pos = None;
        }
        let err = compare(Method::Crib, &a, Method::Procfs, &b).unwrap_err();
        assert!(
            err.to_string().starts_with("fd 0: CRIB has no pos"),
            "{err}"
        );
    }
}

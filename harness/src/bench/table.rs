//! Ground truth: the target's fd table as procfs shows it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;

use super::{io_err, BenchError};

/// One fd of the target as procfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFd {
    pub fd: u32,
    /// readlink of `/proc/<pid>/fd/<fd>`
    pub link: String,
    /// procfs gives the link S_IRUSR iff the file has FMODE_READ
    pub readable: bool,
    /// a regular file (stat through the link)
    pub regular: bool,
}

impl TableFd {
    /// A regular file open for reading: what every mode must be able to use (the module's
    /// `get_file()` and `bpf_dynptr_from_file()` may refuse anything else).
    pub fn usable(&self) -> bool {
        self.readable && self.regular
    }

    pub(super) fn describe(&self) -> String {
        let what = match (self.regular, self.readable) {
            (true, true) => "regular, open for reading",
            (true, false) => "regular, not open for reading",
            (false, true) => "not a regular file, open for reading",
            (false, false) => "not a regular file, not open for reading",
        };
        format!("fd {} {} ({what})", self.fd, self.link)
    }
}

/// The target's fd table from `/proc/<pid>/fd`, in fd order.
pub fn read_table(pid: i32) -> Result<Vec<TableFd>, BenchError> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))? {
        let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
        let name = e.file_name();
        let Some(fd) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let p = e.path();
        let meta = fs::symlink_metadata(&p).map_err(io_err(format!("lstat {}", p.display())))?;
        let link = fs::read_link(&p)
            .map(|l| l.to_string_lossy().into_owned())
            .map_err(io_err(format!("readlink {}", p.display())))?;
        let target = fs::metadata(&p).map_err(io_err(format!("stat {}", p.display())))?;
        out.push(TableFd {
            fd,
            link,
            readable: meta.mode() & Mode::S_IRUSR.bits() != 0,
            regular: target.file_type().is_file(),
        });
    }
    out.sort_by_key(|t| t.fd);
    Ok(out)
}

/// Whether a table entry is one of the benchmark's own files (`.../crib-bench-*/f<N>`).
pub(super) fn is_bench_file(t: &TableFd) -> bool {
    let p = Path::new(&t.link);
    let in_bench_dir = p
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("crib-bench-"));
    let named = p
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix('f'))
        .is_some_and(|n| n.parse::<u32>().is_ok());
    in_bench_dir && named
}

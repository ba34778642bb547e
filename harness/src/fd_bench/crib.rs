//! Method 1, CRIB: what `crib dump --pid` does, one `BPF_PROG_RUN` of
//! `selftests/progs/dump_files.bpf.c` with paths, the ring buffer drained and decoded
//! ([`crate::dump::Dumper::dump_with_paths`]). Loading the program is timed apart.

use std::time::{Duration, Instant};

use super::row::FdRow;
use super::MethodError;
use crate::dump::{DumpError, Dumper, FileRecord, O_CLOEXEC};

/// The loaded dump program.
pub struct Crib {
    dumper: Dumper,
    /// How long loading it took (open, verify, maps, ring buffer reader).
    pub load: Duration,
}

impl Crib {
    pub fn load() -> Result<Crib, DumpError> {
        let t = Instant::now();
        let dumper = Dumper::load()?;
        Ok(Crib {
            dumper,
            load: t.elapsed(),
        })
    }

    /// The loaded program (for timing its steps: `super::parts`).
    pub fn dumper(&self) -> &Dumper {
        &self.dumper
    }

    /// Dump `pid` once.
    pub fn dump(&self, pid: i32) -> Result<Vec<FdRow>, MethodError> {
        let files = self
            .dumper
            .dump_with_paths(pid)
            .map_err(|e| MethodError::Crib(Box::new(e)))?;
        rows("CRIB", &files)
    }
}

/// Benchmark rows from dump records (CRIB's and the iterator's, which share the record
/// format). A path the kernel could not give is an error: every other method has it.
pub fn rows(method: &'static str, files: &[FileRecord]) -> Result<Vec<FdRow>, MethodError> {
    files
        .iter()
        .map(|f| {
            let path = match (&f.path, f.path_errno) {
                (Some(p), 0) => p.to_string_lossy().into_owned(),
                (_, errno) => {
                    return Err(MethodError::Record {
                        method,
                        fd: f.fd,
                        why: format!("no path ({})", std::io::Error::from_raw_os_error(errno)),
                    })
                }
            };
            Ok(FdRow {
                fd: f.fd,
                kind: Some(f.kind),
                flags: Some(f.f_flags | if f.cloexec { O_CLOEXEC } else { 0 }),
                pos: Some(f.f_pos),
                mnt_id: Some(u64::from(f.mnt_id)),
                ino: Some(f.ino),
                path: Some(path),
            })
        })
        .collect()
}

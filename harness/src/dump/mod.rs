//! File-table dumps: run `selftests/progs/dump_files.bpf.c` against a pid, decode its ring
//! buffer records into typed values, and translate failures into errors that say what went
//! wrong.
//!
//! The record layouts come from bindgen (`crate::records`), never from structs mirrored here.
//! A dump is only returned when it is complete: the program returned 0, the end record came
//! last, reported no error and no dropped records, and its count matches the records read.
//! Everything else is a [`DumpError`].
//!
//! Modules: `files` (the file-table records and when a dump of them is complete), `stream`
//! (what every dump program's record stream shares, and decoding records in place), `error`
//! (what went wrong, for a human), `program` (loading and running a ring-buffer program, and
//! why a load failed), `ringview` (reading a run's records where they lie and holding their
//! room until the reader is done, for dumps that keep pointing into them), `kfuncs` (whether
//! the kernel has the CRIB kfuncs), `report` (what `crib dump` prints: the table and the
//! versioned JSON document).

mod error;
mod files;
pub mod kfuncs;
mod program;
pub mod report;
pub mod ringview;
pub mod stream;

use std::path::Path;

pub use error::{proc_state, stopped_message, target_message, DumpError};
pub use files::{
    decode_record, decode_stream, finish, kdev_from_user, kdev_split, FileDecoder, FileKind,
    FileRecord, PathRecord, RawDump, Record, SockInfo,
};
pub use program::{RingbufProgram, RunTimes};
pub(crate) use stream::read_pod;
pub use stream::{EndRecord, RecordCount, RecordSink, StreamCheck};

use crate::records::{crib_dump_ctx, CRIB_DUMP_F_PATHS};

/// Name of the program (and its object file stem) that dumps a file table.
pub const PROG_NAME: &str = "crib_dump_files";
/// Object file holding [`PROG_NAME`], relative to [`crate::BPF_DIR`].
pub const OBJ_FILE: &str = "dump_files.bpf.o";
/// Ring buffer map of the dump program.
pub const MAP_NAME: &str = "records";

/// O_CLOEXEC as `/proc/<pid>/fdinfo` prints it (x86-64 and most architectures).
pub const O_CLOEXEC: u32 = 0o2000000;
/// FMODE_READ / FMODE_WRITE bits of `file->f_mode` (include/linux/fs.h).
pub const FMODE_READ: u32 = 1 << 0;
pub const FMODE_WRITE: u32 = 1 << 1;
/// The loaded dump program.
pub struct Dumper {
    prog: RingbufProgram,
}

impl Dumper {
    /// Load the dump program from the harness's BPF object directory.
    pub fn load() -> Result<Self, DumpError> {
        Self::load_from(&Path::new(crate::BPF_DIR).join(OBJ_FILE))
    }

    /// Load the dump program from `obj`.
    pub fn load_from(obj: &Path) -> Result<Self, DumpError> {
        Ok(Self {
            prog: RingbufProgram::load(obj, PROG_NAME, MAP_NAME)?,
        })
    }

    /// Load the dump program with a ring buffer of `ring_bytes` (a power of 2, a multiple of
    /// the page size) instead of its 16 MiB: for tests of a dump that does not fit.
    pub fn load_with_ring(ring_bytes: u32) -> Result<Self, DumpError> {
        let obj = Path::new(crate::BPF_DIR).join(OBJ_FILE);
        Ok(Self {
            prog: RingbufProgram::load_sized(&obj, PROG_NAME, MAP_NAME, Some(ring_bytes))?,
        })
    }

    /// Run the program once for `pid` (in this process's pid namespace).
    pub fn dump(&self, pid: i32) -> Result<Vec<FileRecord>, DumpError> {
        self.dump_flags(pid, 0)
    }

    /// [`Dumper::dump`], with every file's path (`bpf_iter_task_file_get_path()`): a kernel
    /// without that kfunc fails with [`DumpError::Target`] and `EOPNOTSUPP`.
    pub fn dump_with_paths(&self, pid: i32) -> Result<Vec<FileRecord>, DumpError> {
        let files = self.dump_flags(pid, CRIB_DUMP_F_PATHS)?;
        if let Some(f) = files.iter().find(|f| f.path.is_none() && f.path_errno == 0) {
            return Err(DumpError::Incomplete {
                pid,
                reason: format!("fd {} has no path record", f.fd),
            });
        }
        Ok(files)
    }

    fn dump_flags(&self, pid: i32, flags: u32) -> Result<Vec<FileRecord>, DumpError> {
        let (retval, decoder) = self
            .prog
            .run_into(&mut crib_dump_ctx { pid, flags }, FileDecoder::default())?;
        let raw = decoder.into_raw()?;
        if flags & CRIB_DUMP_F_PATHS == 0 && raw.nr_paths > 0 {
            return Err(DumpError::Incomplete {
                pid,
                reason: "path records in a dump that did not ask for them".into(),
            });
        }
        finish(pid, retval, raw)
    }

    /// Run the program once; return its return value and the raw ring-buffer records.
    pub fn run_raw(&self, pid: i32) -> Result<(i32, Vec<Vec<u8>>), DumpError> {
        self.prog.run(&mut crib_dump_ctx { pid, flags: 0 })
    }

    /// The loaded program (for timing its parts).
    pub fn program(&self) -> &RingbufProgram {
        &self.prog
    }
}

/// Load the program and dump `pid` once.
pub fn dump_pid(pid: i32) -> Result<Vec<FileRecord>, DumpError> {
    Dumper::load()?.dump(pid)
}

/// One line per fd, for people.
pub fn format_line(r: &FileRecord) -> String {
    let (maj, min) = kdev_split(r.dev);
    let mut s = format!(
        "{:>7} {:<5} flags=0{:o} mode=0x{:x} pos={} ino={} dev={maj}:{min} mnt_id={} \
         i_mode=0{:o}{}",
        r.fd,
        r.kind,
        r.f_flags,
        r.f_mode,
        r.f_pos,
        r.ino,
        r.mnt_id,
        r.i_mode,
        if r.cloexec { " cloexec" } else { "" }
    );
    if r.rdev != 0 {
        let (rmaj, rmin) = kdev_split(r.rdev);
        s.push_str(&format!(" rdev={rmaj}:{rmin}"));
    }
    if let Some(k) = &r.sock {
        s.push_str(&format!(
            " family={} type={} protocol={}",
            k.family, k.sock_type, k.protocol
        ));
    }
    if let Some(n) = &r.anon_name {
        s.push_str(&format!(" name={n}"));
    }
    if let Some(p) = &r.path {
        s.push_str(&format!(" path={}", p.display()));
    }
    s
}

#[cfg(test)]
mod tests;

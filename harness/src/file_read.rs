//! Which of a task's files a trusted `struct file *` can be read through:
//! `selftests/progs/file_read.bpf.c` reads the first bytes of every file of a task with
//! `bpf_dynptr_from_file()`, either through a reference from `bpf_iter_task_file_get_file()`
//! (the module's path, any kernel) or through the current element's `item->file` (the
//! in-tree path: needs `KF_ITER_NEXT_SCOPED`, so it loads on the patched kernel only).

use std::collections::BTreeMap;
use std::mem::size_of;
use std::path::Path;

use crate::dump::{read_pod, DumpError, RingbufProgram};
use crate::records::{
    crib_dump_ctx, crib_rec_read, CRIB_READ_DYNPTR, CRIB_READ_NO_REF, CRIB_READ_OK, CRIB_READ_READ,
    CRIB_REC_READ,
};

/// Object file, relative to [`crate::BPF_DIR`].
pub const OBJ_FILE: &str = "file_read.bpf.o";
/// Ring buffer the programs write [`crib_rec_read`] records to.
pub const MAP_NAME: &str = "reads";

/// How the program gets a trusted file pointer for the current element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `bpf_iter_task_file_get_file()` + `bpf_crib_put_file()` (module path).
    GetFile,
    /// `item->file` directly, trusted for the step (patched kernel only).
    ItemFile,
}

impl Via {
    pub fn prog_name(self) -> &'static str {
        match self {
            Via::GetFile => "read_via_get_file",
            Via::ItemFile => "read_via_item_file",
        }
    }
}

/// What reading the start of one file gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The first bytes of the file.
    Read(Vec<u8>),
    /// The acquiring getter returned NULL (O_PATH files).
    NoReference,
    /// `bpf_dynptr_from_file()` failed with this errno.
    DynptrRefused(i32),
    /// `bpf_dynptr_read()` failed with this errno.
    ReadFailed(i32),
}

/// Decode one `crib_rec_read` record; `index` is its expected sequence number.
pub fn decode(index: usize, bytes: &[u8]) -> Result<(u32, Outcome), DumpError> {
    let bad = |reason: String| DumpError::BadRecord { index, reason };
    if bytes.len() != size_of::<crib_rec_read>() {
        return Err(bad(format!(
            "{} bytes, expected a {}-byte read record",
            bytes.len(),
            size_of::<crib_rec_read>()
        )));
    }
    let r: crib_rec_read = read_pod(bytes).ok_or_else(|| bad("short record".into()))?;
    if u32::from(r.hdr.type_) != CRIB_REC_READ || usize::from(r.hdr.size) != bytes.len() {
        return Err(bad(format!(
            "header type {} size {}, expected a read record",
            r.hdr.type_, r.hdr.size
        )));
    }
    if r.hdr.seq as usize != index {
        return Err(bad(format!(
            "sequence number {}, expected {index}",
            r.hdr.seq
        )));
    }
    let outcome = match r.stage {
        CRIB_READ_OK => {
            let len = (r.len as usize).min(r.head.len());
            Outcome::Read(r.head[..len].to_vec())
        }
        CRIB_READ_NO_REF => Outcome::NoReference,
        CRIB_READ_DYNPTR => Outcome::DynptrRefused(-r.err),
        CRIB_READ_READ => Outcome::ReadFailed(-r.err),
        s => return Err(bad(format!("unknown stage {s}"))),
    };
    Ok((r.fd, outcome))
}

/// One loaded read program.
pub struct FileReader {
    prog: RingbufProgram,
}

impl FileReader {
    /// Load the program for `via` from the harness's BPF object directory.
    pub fn load(via: Via) -> Result<Self, DumpError> {
        Self::load_from(&Path::new(crate::BPF_DIR).join(OBJ_FILE), via)
    }

    pub fn load_from(obj: &Path, via: Via) -> Result<Self, DumpError> {
        Ok(Self {
            prog: RingbufProgram::load(obj, via.prog_name(), MAP_NAME)?,
        })
    }

    /// Read the start of every file of `pid` (fds below 1024); fd -> outcome.
    pub fn read_all(&self, pid: i32) -> Result<BTreeMap<u32, Outcome>, DumpError> {
        let (retval, records) = self.prog.run(&mut crib_dump_ctx { pid, flags: 0 })?;
        if retval < 0 {
            return Err(DumpError::Target {
                pid,
                errno: -retval,
                zombie: crate::dump::proc_state(pid) == Some('Z'),
            });
        }
        let mut out = BTreeMap::new();
        for (i, bytes) in records.iter().enumerate() {
            let (fd, outcome) = decode(i, bytes)?;
            if out.insert(fd, outcome).is_some() {
                return Err(DumpError::BadRecord {
                    index: i,
                    reason: format!("fd {fd} reported twice"),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::crib_rec_hdr;

    fn rec(seq: u32, fd: u32, stage: u32, err: i32, head: &[u8]) -> Vec<u8> {
        let mut r = crib_rec_read {
            hdr: crib_rec_hdr {
                type_: CRIB_REC_READ as u16,
                size: size_of::<crib_rec_read>() as u16,
                seq,
            },
            fd,
            stage,
            err,
            len: head.len() as u32,
            ..Default::default()
        };
        r.head[..head.len()].copy_from_slice(head);
        // SAFETY: crib_rec_read is plain integers, no padding holes left uninitialised
        // (bindgen layout tests check the size).
        unsafe {
            std::slice::from_raw_parts(
                (&r as *const crib_rec_read).cast::<u8>(),
                size_of::<crib_rec_read>(),
            )
            .to_vec()
        }
    }

    #[test]
    fn decodes_each_stage() {
        let ok = rec(0, 3, CRIB_READ_OK, 0, b"0123456789abcdef");
        assert_eq!(
            decode(0, &ok).unwrap(),
            (3, Outcome::Read(b"0123456789abcdef".to_vec()))
        );
        let none = rec(1, 4, CRIB_READ_NO_REF, 0, b"");
        assert_eq!(decode(1, &none).unwrap(), (4, Outcome::NoReference));
        let badf = rec(2, 5, CRIB_READ_DYNPTR, -libc::EBADF, b"");
        assert_eq!(
            decode(2, &badf).unwrap(),
            (5, Outcome::DynptrRefused(libc::EBADF))
        );
    }

    #[test]
    fn rejects_wrong_sequence_and_size() {
        let r = rec(7, 3, CRIB_READ_OK, 0, b"x");
        let e = decode(0, &r).unwrap_err().to_string();
        assert!(e.contains("sequence number 7, expected 0"), "{e}");
        let e = decode(0, &r[..10]).unwrap_err().to_string();
        assert!(e.contains("expected a"), "{e}");
        let e = decode(0, &rec(0, 3, 99, 0, b"")).unwrap_err().to_string();
        assert!(e.contains("unknown stage 99"), "{e}");
    }
}

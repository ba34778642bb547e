//! Method 2, the upstream baseline with no new kfunc: `SEC("iter/task_file")` of
//! `selftests/progs/iter_task_file.bpf.c`, linked to one pid (`bpf_iter_link_info.task.pid`),
//! read through an iterator fd (`bpf_iter_create`) per dump. It writes the records of
//! `dump_files.bpf.c` (file + path per fd, then the end record) with `bpf_seq_write()`, so the
//! same decoder and completeness checks as CRIB's apply, in place in the bytes read as CRIB's
//! run in place in its ring buffer ([`crate::dump::FileDecoder`], [`crate::dump::finish`]).
//!
//! The object also holds the system call counter (`super::syscalls`). Loading it and creating
//! the link are timed apart from the dumps.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use libbpf_rs::{AsRawLibbpf, Iter, Link, Object};

use super::row::FdRow;
use super::MethodError;
use crate::dump::{self, DumpError, FileDecoder, FileRecord, RecordSink};
use crate::loader::{self, LoadOpts};

/// Object file, relative to [`crate::BPF_DIR`].
pub const OBJ_FILE: &str = "iter_task_file.bpf.o";
/// The iterator program.
pub const PROG_NAME: &str = "crib_iter_task_file";
/// The system call counter in the same object.
pub const COUNTER_PROG: &str = "crib_count_syscalls";

/// The loaded object (iterator program and system call counter).
pub struct IterProgs {
    object: Object,
    obj: PathBuf,
    /// How long loading took.
    pub load: Duration,
}

impl IterProgs {
    pub fn load() -> Result<IterProgs, MethodError> {
        Self::load_from(&Path::new(crate::BPF_DIR).join(OBJ_FILE))
    }

    pub fn load_from(obj: &Path) -> Result<IterProgs, MethodError> {
        let t = Instant::now();
        if !obj.exists() {
            return Err(MethodError::Load {
                what: obj.display().to_string(),
                why: "no such file: run scripts/build, then rebuild the harness so build.rs \
                      compiles selftests/progs"
                    .into(),
            });
        }
        let opts = LoadOpts {
            log_level: 0,
            also_load: vec![COUNTER_PROG.into()],
            ..LoadOpts::default()
        };
        let loaded = loader::load_one(obj, PROG_NAME, &opts).map_err(|e| MethodError::Load {
            what: obj.display().to_string(),
            why: e.to_string(),
        })?;
        let object = match (loaded.object, loaded.error) {
            (Some(o), None) => o,
            (_, err) => {
                let lines: Vec<&str> = loaded.log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                let (errno, msg) = err.unwrap_or((0, String::new()));
                return Err(MethodError::Load {
                    what: format!("{PROG_NAME} from {}", obj.display()),
                    why: format!(
                        "{} ({errno}); the end of the verifier log:\n{tail}\nlibbpf said:\n{}",
                        std::io::Error::from_raw_os_error(errno),
                        msg.trim_end()
                    ),
                });
            }
        };
        Ok(IterProgs {
            object,
            obj: obj.to_path_buf(),
            load: t.elapsed(),
        })
    }

    pub fn object(&self) -> &Object {
        &self.object
    }

    /// Link the iterator to the files of process `pid` only.
    pub fn link(&self, pid: i32) -> Result<IterLink, MethodError> {
        let t = Instant::now();
        let prog = loader::find_prog(&self.object, PROG_NAME).ok_or_else(|| MethodError::Load {
            what: self.obj.display().to_string(),
            why: format!("no program {PROG_NAME}"),
        })?;
        let mut info = libbpf_sys::bpf_iter_link_info::default();
        info.task.pid = pid as u32;
        let opts = libbpf_sys::bpf_iter_attach_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_iter_attach_opts>() as libbpf_sys::size_t,
            link_info: &mut info,
            link_info_len: std::mem::size_of::<libbpf_sys::bpf_iter_link_info>() as u32,
            ..Default::default()
        };
        // SAFETY: the program belongs to the loaded object, which outlives this call; `opts`
        // and `info` live across it. libbpf returns NULL (errno set) or a link it owns until
        // bpf_link__destroy, which `Link`'s Drop calls.
        let raw = unsafe {
            libbpf_sys::bpf_program__attach_iter(prog.as_libbpf_object().as_ptr(), &opts)
        };
        let Some(ptr) = NonNull::new(raw) else {
            return Err(MethodError::Load {
                what: format!("an iter/task_file link for pid {pid}"),
                why: std::io::Error::last_os_error().to_string(),
            });
        };
        // SAFETY: a valid link just created by libbpf, owned by nothing else.
        let link = unsafe { Link::from_ptr(ptr) };
        Ok(IterLink {
            link,
            pid,
            setup: t.elapsed(),
        })
    }
}

/// The iterator linked to one pid.
pub struct IterLink {
    link: Link,
    pid: i32,
    /// How long creating the link took.
    pub setup: Duration,
}

impl IterLink {
    /// One dump: a new iterator fd, read to the end, decoded in place.
    pub fn dump(&self) -> Result<Vec<FdRow>, MethodError> {
        let mut bytes = self.read_all()?;
        let files = decode(self.pid, &mut bytes)?;
        super::crib::rows("iter/task_file", &files)
    }

    /// Create an iterator fd and read it to the end.
    pub fn read_all(&self) -> Result<Vec<u8>, MethodError> {
        let io = |e: std::io::Error| MethodError::Io {
            what: format!("reading the iter/task_file iterator of pid {}", self.pid),
            source: e,
        };
        let mut it = Iter::new(&self.link).map_err(|e| io(std::io::Error::other(e)))?;
        let mut bytes = Vec::new();
        it.read_to_end(&mut bytes).map_err(io)?;
        Ok(bytes)
    }
}

/// Decode the iterator's byte stream where it lies, as CRIB's records are decoded in the ring
/// buffer: cut it into records by their headers' sizes, number each ([`number`]) and hand it to
/// the same decoder and completeness checks as CRIB's.
pub fn decode(pid: i32, bytes: &mut [u8]) -> Result<Vec<FileRecord>, MethodError> {
    let wrap = |e: DumpError| MethodError::Iter(Box::new(e));
    let mut decoder = FileDecoder::default();
    let mut at = 0usize;
    let mut index = 0u32;
    while at < bytes.len() {
        let size = record_size(bytes, at)?;
        let rec = &mut bytes[at..at + size];
        number(rec, index);
        decoder.record(rec);
        at += size;
        index += 1;
    }
    dump::finish(pid, 0, decoder.into_raw().map_err(wrap)?).map_err(wrap)
}

/// Give record `rec`, the `index`th of the stream, its sequence number and, if it is the end
/// record, the count of records before it.
///
/// The program cannot number them: `ctx->meta->seq_num` also advances for an element that did
/// not fit in the seq_file buffer and is shown again by the next read() (seen: record 2,010 of a
/// 1,000-fd table numbered 2,008), so it writes 0s. Nothing is lost in between by construction
/// (seq_file keeps an element whole or shows it again), and the benchmark compares the fds
/// listed with the other methods'.
pub fn number(rec: &mut [u8], index: u32) {
    let seq = index.to_ne_bytes();
    if let Some(field) = rec.get_mut(4..8) {
        field.copy_from_slice(&seq);
    }
    let ty = u32::from(u16::from_ne_bytes([rec[0], rec[1]]));
    if ty == crate::records::CRIB_REC_END {
        // struct crib_rec_end: hdr (8 bytes), error, nr_records
        if let Some(field) = rec.get_mut(12..16) {
            field.copy_from_slice(&seq);
        }
    }
}

/// The size of the record at `at` of the stream, from its header, checked to fit.
fn record_size(bytes: &[u8], at: usize) -> Result<usize, MethodError> {
    let bad = |why: String| MethodError::Stream { offset: at, why };
    let hdr = bytes.get(at..at + 4).ok_or_else(|| {
        bad(format!(
            "{} bytes left, less than a header",
            bytes.len() - at
        ))
    })?;
    let size = usize::from(u16::from_ne_bytes([hdr[2], hdr[3]]));
    if size < 8 {
        return Err(bad(format!("record size {size}")));
    }
    if bytes.len() - at < size {
        return Err(bad(format!(
            "record of {size} bytes, only {} left",
            bytes.len() - at
        )));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_by_header_size_and_a_cut_record_is_rejected() {
        let mut s = Vec::new();
        for (ty, size) in [(2u16, 12u16), (3, 8)] {
            s.extend_from_slice(&ty.to_ne_bytes());
            s.extend_from_slice(&size.to_ne_bytes());
            s.extend(std::iter::repeat_n(0u8, usize::from(size) - 4));
        }
        assert_eq!(record_size(&s, 0).unwrap(), 12);
        assert_eq!(record_size(&s, 12).unwrap(), 8);
        s.truncate(s.len() - 1);
        let err = record_size(&s, 12).unwrap_err().to_string();
        assert!(err.contains("only 7 left"), "{err}");
    }
}

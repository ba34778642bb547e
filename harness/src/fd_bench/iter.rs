//! Method 2, the upstream baseline with no new kfunc: `SEC("iter/task_file")` of
//! `selftests/progs/iter_task_file.bpf.c`, linked to one pid (`bpf_iter_link_info.task.pid`),
//! read through an iterator fd (`bpf_iter_create`) per dump. It writes the records of
//! `dump_files.bpf.c` (file + path per fd, then the end record) with `bpf_seq_write()`, so the
//! same decoder and completeness checks as CRIB's apply ([`crate::dump::decode_stream`],
//! [`crate::dump::finish`]).
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
use crate::dump::{self, DumpError};
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
    /// One dump: a new iterator fd, read to the end, decoded.
    pub fn dump(&self) -> Result<Vec<FdRow>, MethodError> {
        let bytes = self.read_all()?;
        let mut records = split(&bytes)?;
        number(&mut records);
        let wrap = |e: DumpError| MethodError::Iter(Box::new(e));
        let raw = dump::decode_stream(&records).map_err(wrap)?;
        let files = dump::finish(self.pid, 0, raw).map_err(wrap)?;
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

/// Number the records in stream order and make the end record count the records before it.
///
/// The program cannot number them: `ctx->meta->seq_num` also advances for an element that did
/// not fit in the seq_file buffer and is shown again by the next read() (seen: record 2,010 of a
/// 1,000-fd table numbered 2,008), so it writes 0s. Nothing is lost in between by construction
/// (seq_file keeps an element whole or shows it again), and the benchmark compares the fds
/// listed with the other methods'.
pub fn number(records: &mut [Vec<u8>]) {
    for (i, r) in records.iter_mut().enumerate() {
        let seq = (i as u32).to_ne_bytes();
        if let Some(field) = r.get_mut(4..8) {
            field.copy_from_slice(&seq);
        }
        let ty = u32::from(u16::from_ne_bytes([r[0], r[1]]));
        if ty == crate::records::CRIB_REC_END {
            // struct crib_rec_end: hdr (8 bytes), error, nr_records
            if let Some(field) = r.get_mut(12..16) {
                field.copy_from_slice(&seq);
            }
        }
    }
}

/// Cut the iterator's byte stream into records by their headers' sizes.
pub fn split(bytes: &[u8]) -> Result<Vec<Vec<u8>>, MethodError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
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
        let rec = bytes.get(at..at + size).ok_or_else(|| {
            bad(format!(
                "record of {size} bytes, only {} left",
                bytes.len() - at
            ))
        })?;
        out.push(rec.to_vec());
        at += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_splits_by_header_size_and_rejects_a_cut_record() {
        let mut s = Vec::new();
        for (ty, size) in [(2u16, 12u16), (3, 8)] {
            s.extend_from_slice(&ty.to_ne_bytes());
            s.extend_from_slice(&size.to_ne_bytes());
            s.extend(std::iter::repeat_n(0u8, usize::from(size) - 4));
        }
        let recs = split(&s).unwrap();
        assert_eq!(recs.iter().map(Vec::len).collect::<Vec<_>>(), [12, 8]);
        s.truncate(s.len() - 1);
        let err = split(&s).unwrap_err().to_string();
        assert!(err.contains("only 7 left"), "{err}");
    }
}

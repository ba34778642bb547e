//! File-table records (`dump_files.bpf.c`): a file record per open fd, optionally followed by
//! its path record, decoded into typed values and judged complete or not.

use std::ffi::OsString;
use std::fmt;
use std::mem::size_of;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::error::target_error;
use super::stream::{bad_record, fixed_record, record_header, RecordSink, StreamCheck};
use super::{DumpError, EndRecord};
use crate::records::{
    crib_rec_end, crib_rec_file, crib_rec_hdr, crib_rec_path, CRIB_FILE_ANON, CRIB_FILE_BLK,
    CRIB_FILE_CHR, CRIB_FILE_DIR, CRIB_FILE_FIFO, CRIB_FILE_LNK, CRIB_FILE_OTHER, CRIB_FILE_REG,
    CRIB_FILE_SOCK, CRIB_REC_END, CRIB_REC_FILE, CRIB_REC_PATH,
};

/// What the kernel says a file is, from the inode type and, for anonymous inodes, the file
/// system it lives on (`enum crib_file_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    Other,
    Regular,
    Directory,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
    Symlink,
    /// anon_inode (eventfd, epoll, signalfd, timerfd, ...) or pidfs
    Anon,
}

impl FileKind {
    /// Decode `enum crib_file_kind`.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            x if x == CRIB_FILE_OTHER => Self::Other,
            x if x == CRIB_FILE_REG => Self::Regular,
            x if x == CRIB_FILE_DIR => Self::Directory,
            x if x == CRIB_FILE_FIFO => Self::Fifo,
            x if x == CRIB_FILE_SOCK => Self::Socket,
            x if x == CRIB_FILE_CHR => Self::CharDev,
            x if x == CRIB_FILE_BLK => Self::BlockDev,
            x if x == CRIB_FILE_LNK => Self::Symlink,
            x if x == CRIB_FILE_ANON => Self::Anon,
            _ => return None,
        })
    }

    /// The kind an `S_IFMT` type implies (no anonymous inodes: they have no type bits).
    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Self::Regular,
            libc::S_IFDIR => Self::Directory,
            libc::S_IFIFO => Self::Fifo,
            libc::S_IFSOCK => Self::Socket,
            libc::S_IFCHR => Self::CharDev,
            libc::S_IFBLK => Self::BlockDev,
            libc::S_IFLNK => Self::Symlink,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Other => "other",
            Self::Regular => "reg",
            Self::Directory => "dir",
            Self::Fifo => "fifo",
            Self::Socket => "sock",
            Self::CharDev => "chr",
            Self::BlockDev => "blk",
            Self::Symlink => "lnk",
            Self::Anon => "anon",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Socket identity, for files on sockfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SockInfo {
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
}

/// One open fd as the dump program saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub fd: u32,
    /// `file->f_flags` (fdinfo prints this plus O_CLOEXEC when the fd is close-on-exec)
    pub f_flags: u32,
    /// `file->f_mode` (FMODE_* bits)
    pub f_mode: u32,
    pub i_mode: u32,
    pub f_pos: u64,
    pub ino: u64,
    /// `inode->i_sb->s_dev`, kernel encoding (MAJOR << 20 | MINOR)
    pub dev: u32,
    /// `inode->i_rdev`, kernel encoding
    pub rdev: u32,
    pub kind: FileKind,
    pub cloexec: bool,
    pub sock: Option<SockInfo>,
    /// anon_inode name (`"[eventfd]"`, `"[pidfd]"`, ...), for [`FileKind::Anon`]
    pub anon_name: Option<String>,
    /// `real_mount(file->f_path.mnt)->mnt_id`, as fdinfo's `mnt_id:`
    pub mnt_id: u32,
    /// The path as `readlink /proc/<pid>/fd/<fd>` shows it to the dumper; `None` unless the
    /// dump asked for paths ([`Dumper::dump_with_paths`](super::Dumper::dump_with_paths)) or when the kfunc failed
    /// (`path_errno` then says why).
    pub path: Option<PathBuf>,
    /// The positive errno `bpf_iter_task_file_get_path()` failed with, else 0.
    pub path_errno: i32,
}

/// The path record that follows a file record when a dump asks for paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRecord {
    pub fd: u32,
    /// Positive errno of `bpf_iter_task_file_get_path()`, or 0 and `path` is the path.
    pub errno: i32,
    pub path: Option<PathBuf>,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    File(FileRecord),
    Path(PathRecord),
    End(EndRecord),
}

/// Split a kernel `dev_t` (MAJOR << 20 | MINOR) into (major, minor).
pub fn kdev_split(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xfffff)
}

/// Kernel `dev_t` encoding of a userspace `st_dev`/`st_rdev` (glibc's encoding differs).
pub fn kdev_from_user(dev: u64) -> u32 {
    let major = libc::major(dev);
    let minor = libc::minor(dev);
    (major << 20) | (minor & 0xfffff)
}

/// Decode one ring-buffer record. `index` only labels errors.
pub fn decode_record(index: usize, bytes: &[u8]) -> Result<(crib_rec_hdr, Record), DumpError> {
    let hdr = record_header(index, bytes)?;
    Ok((hdr, decode_body(index, &hdr, bytes)?))
}

/// Decode record `index` whose header `hdr` was checked.
fn decode_body(index: usize, hdr: &crib_rec_hdr, bytes: &[u8]) -> Result<Record, DumpError> {
    let bad = |reason: String| bad_record(index, reason);
    let ty = u32::from(hdr.type_);
    match ty {
        CRIB_REC_PATH => return Ok(Record::Path(decode_path(index, bytes)?)),
        CRIB_REC_END => {
            let e = EndRecord::parse(bytes);
            return e.map(Record::End).ok_or_else(|| {
                bad(format!(
                    "type {ty} record of {} bytes, expected {} (truncated or from another ABI)",
                    bytes.len(),
                    size_of::<crib_rec_end>()
                ))
            });
        }
        CRIB_REC_FILE => {}
        _ => return Err(bad(format!("unknown record type {ty}"))),
    }
    let f: crib_rec_file = fixed_record(index, ty, bytes)?;
    let kind = FileKind::from_raw(f.kind)
        .ok_or_else(|| bad(format!("fd {}: unknown file kind {}", f.fd, f.kind)))?;
    // Most files have no anon_inode name: allocate only for those that do.
    let name_len = f
        .anon_name
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(f.anon_name.len());
    let anon_name = (name_len > 0).then(|| {
        let name: Vec<u8> = f.anon_name[..name_len].iter().map(|&c| c as u8).collect();
        String::from_utf8_lossy(&name).into_owned()
    });
    let sock = (kind == FileKind::Socket && f.sk_family != 0).then_some(SockInfo {
        family: f.sk_family,
        sock_type: f.sk_type,
        protocol: f.sk_protocol,
    });
    Ok(Record::File(FileRecord {
        fd: f.fd,
        f_flags: f.f_flags,
        f_mode: f.f_mode,
        i_mode: f.i_mode,
        f_pos: f.f_pos,
        ino: f.ino,
        dev: f.dev,
        rdev: f.rdev,
        kind,
        cloexec: f.cloexec != 0,
        sock,
        anon_name,
        mnt_id: f.mnt_id,
        path: None,
        path_errno: 0,
    }))
}

/// Decode a path record: its fixed part, then `len` bytes of path whose last is the NUL.
fn decode_path(index: usize, bytes: &[u8]) -> Result<PathRecord, DumpError> {
    let bad = |reason: String| DumpError::BadRecord { index, reason };
    let fixed = std::mem::offset_of!(crib_rec_path, path);
    if bytes.len() < fixed || bytes.len() > size_of::<crib_rec_path>() {
        return Err(bad(format!(
            "path record of {} bytes, expected {fixed}..={}",
            bytes.len(),
            size_of::<crib_rec_path>()
        )));
    }
    let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
    let fd = u32::from_ne_bytes(word(8));
    let error = i32::from_ne_bytes(word(12));
    let text = &bytes[fixed..];
    match (error, text) {
        (0, [name @ .., 0]) if !name.is_empty() && !name.contains(&0) => Ok(PathRecord {
            fd,
            errno: 0,
            path: Some(PathBuf::from(OsString::from_vec(name.to_vec()))),
        }),
        (e, []) if e < 0 => Ok(PathRecord {
            fd,
            errno: -e,
            path: None,
        }),
        _ => Err(bad(format!(
            "fd {fd}: path record with error {error} and {} bytes of path that are not one \
             NUL-terminated name",
            text.len()
        ))),
    }
}

/// The outcome of one program run, before it is judged complete or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDump {
    pub files: Vec<FileRecord>,
    /// Path records, each already attached to the file record before it.
    pub nr_paths: usize,
    pub end: Option<EndRecord>,
}

/// Decodes the records of one run as they arrive, in the ring buffer's memory (the
/// [`RecordSink`] of `Dumper`'s runs): checks sequence numbers and that the end record, if any,
/// comes last, and attaches each path record to the file record before it. The first problem
/// stops the decoding and is kept.
#[derive(Debug, Default)]
pub struct FileDecoder {
    check: StreamCheck,
    files: Vec<FileRecord>,
    nr_paths: usize,
    error: Option<DumpError>,
}

impl FileDecoder {
    fn push(&mut self, bytes: &[u8]) -> Result<(), DumpError> {
        let (index, hdr) = self.check.next(bytes)?;
        match decode_body(index, &hdr, bytes)? {
            Record::File(f) => self.files.push(f),
            Record::Path(p) => {
                let file = self
                    .files
                    .last_mut()
                    .filter(|f| f.fd == p.fd && f.path.is_none() && f.path_errno == 0);
                let Some(file) = file else {
                    return Err(bad_record(
                        index,
                        format!(
                            "path record of fd {} does not follow that fd's file record",
                            p.fd
                        ),
                    ));
                };
                file.path = p.path;
                file.path_errno = p.errno;
                self.nr_paths += 1;
            }
            Record::End(_) => {}
        }
        Ok(())
    }

    /// What the run's records decoded to, or the first problem found in them.
    pub fn into_raw(self) -> Result<RawDump, DumpError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(RawDump {
            files: self.files,
            nr_paths: self.nr_paths,
            end: self.check.end(),
        })
    }
}

impl RecordSink for FileDecoder {
    fn record(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.push(bytes) {
                self.error = Some(e);
            }
        }
    }
}

/// Decode every record of one run, copied out of the ring buffer ([`FileDecoder`] decodes
/// them in place).
pub fn decode_stream(records: &[Vec<u8>]) -> Result<RawDump, DumpError> {
    let mut d = FileDecoder::default();
    for r in records {
        d.record(r);
    }
    d.into_raw()
}

/// Judge one run: the program's return value and its records. Only a complete dump is Ok.
pub fn finish(pid: i32, retval: i32, raw: RawDump) -> Result<Vec<FileRecord>, DumpError> {
    let incomplete = |reason: String| DumpError::Incomplete { pid, reason };
    match raw.end {
        None => {
            if retval < 0 {
                return Err(target_error(pid, -retval));
            }
            Err(incomplete(format!(
                "no end record after {} file records (program returned {retval})",
                raw.files.len()
            )))
        }
        Some(end) => {
            if end.error != retval {
                return Err(incomplete(format!(
                    "program returned {retval} but its end record says {}",
                    end.error
                )));
            }
            if end.nr_dropped > 0 {
                return Err(incomplete(format!(
                    "{} of {} records did not fit in the ring buffer",
                    end.nr_dropped,
                    u64::from(end.nr_dropped) + u64::from(end.nr_records)
                )));
            }
            if retval < 0 {
                if !raw.files.is_empty() {
                    if [libc::EACCES, libc::EBUSY, libc::ESRCH].contains(&-retval)
                        && end.nr_records as usize == raw.files.len() + raw.nr_paths
                    {
                        return Err(DumpError::Stopped {
                            pid,
                            errno: -retval,
                            files: raw.files,
                        });
                    }
                    return Err(incomplete(format!(
                        "failed with errno {} after {} file records",
                        -retval,
                        raw.files.len()
                    )));
                }
                return Err(target_error(pid, -retval));
            }
            if retval > 0 {
                return Err(incomplete(format!("program returned {retval}")));
            }
            if end.nr_records as usize != raw.files.len() + raw.nr_paths {
                return Err(incomplete(format!(
                    "end record counts {} records, {} arrived",
                    end.nr_records,
                    raw.files.len() + raw.nr_paths
                )));
            }
            Ok(raw.files)
        }
    }
}

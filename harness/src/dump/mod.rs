//! File-table dumps: run `selftests/progs/dump_files.bpf.c` against a pid, decode its ring
//! buffer records into typed values, and translate failures into errors that say what went
//! wrong.
//!
//! The record layouts come from bindgen (`crate::records`), never from structs mirrored here.
//! A dump is only returned when it is complete: the program returned 0, the end record came
//! last, reported no error and no dropped records, and its count matches the records read.
//! Everything else is a [`DumpError`].
//!
//! Modules: `program` (loading and running a ring-buffer program, and why a load failed),
//! `kfuncs` (whether the kernel has the CRIB kfuncs), `report` (what `crib dump` prints: the
//! table and the versioned JSON document).

pub mod kfuncs;
mod program;
pub mod report;

use std::ffi::OsString;
use std::fmt;
use std::mem::size_of;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

pub use program::RingbufProgram;

use crate::loader::LoaderError;
use crate::records::{
    crib_dump_ctx, crib_rec_end, crib_rec_file, crib_rec_hdr, crib_rec_path, CRIB_DUMP_F_PATHS,
    CRIB_FILE_ANON, CRIB_FILE_BLK, CRIB_FILE_CHR, CRIB_FILE_DIR, CRIB_FILE_FIFO, CRIB_FILE_LNK,
    CRIB_FILE_OTHER, CRIB_FILE_REG, CRIB_FILE_SOCK, CRIB_REC_END, CRIB_REC_FILE, CRIB_REC_PATH,
};

/// Name of the program (and its object file stem) that dumps a file table.
pub const PROG_NAME: &str = "crib_dump_files";
/// Object file holding [`PROG_NAME`], relative to [`crate::BPF_DIR`].
pub const OBJ_FILE: &str = "dump_files.bpf.o";
/// Ring buffer map of the dump program.
pub const MAP_NAME: &str = "records";

/// O_CLOEXEC as /proc/<pid>/fdinfo prints it (x86-64 and most architectures).
pub const O_CLOEXEC: u32 = 0o2000000;
/// FMODE_READ / FMODE_WRITE bits of `file->f_mode` (include/linux/fs.h).
pub const FMODE_READ: u32 = 1 << 0;
pub const FMODE_WRITE: u32 = 1 << 1;

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
    /// anon_inode name ("[eventfd]", "[pidfd]", ...), for [`FileKind::Anon`]
    pub anon_name: Option<String>,
    /// `real_mount(file->f_path.mnt)->mnt_id`, as fdinfo's `mnt_id:`
    pub mnt_id: u32,
    /// The path as `readlink /proc/<pid>/fd/<fd>` shows it to the dumper; `None` unless the
    /// dump asked for paths ([`Dumper::dump_with_paths`]) or when the kfunc failed
    /// (`path_errno` then says why).
    pub path: Option<PathBuf>,
    /// The positive errno `bpf_iter_task_file_get_path()` failed with, else 0.
    pub path_errno: i32,
}

/// The end record of one program run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRecord {
    pub error: i32,
    pub nr_records: u32,
    pub nr_dropped: u32,
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

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("BPF object {path} not found: {hint}")]
    NoObject { path: PathBuf, hint: String },
    #[error("loading {prog} from {path}: {source}")]
    Load {
        prog: String,
        path: PathBuf,
        source: LoaderError,
    },
    #[error("{why}")]
    NoKfuncs { why: String },
    #[error(
        "permission denied: the kernel refused to load {prog} ({}): loading the dump program \
         needs CAP_BPF and CAP_PERFMON (run it as root); libbpf said:\n{msg}",
        errno_name(*.errno)
    )]
    LoadPermission {
        prog: String,
        errno: i32,
        msg: String,
    },
    #[error(
        "the program {prog} failed to load ({}); the end of the verifier log:\n{log_tail}\n\
         libbpf said:\n{}",
        errno_name(*.errno),
        .msg.trim_end()
    )]
    Rejected {
        prog: String,
        errno: i32,
        msg: String,
        log_tail: String,
    },
    #[error("{0} has no program {1} or no map {2}")]
    Missing(PathBuf, String, String),
    #[error("running {prog}: {source}")]
    Run { prog: String, source: LoaderError },
    #[error("draining the ring buffer: {0}")]
    Drain(LoaderError),
    #[error("{}", target_message(*.pid, *.errno, *.zombie))]
    Target {
        pid: i32,
        errno: i32,
        /// procfs shows `pid` as a zombie (the kfuncs report -ESRCH for a task whose file
        /// table is gone, as for a task that does not exist)
        zombie: bool,
    },
    #[error("incomplete dump of pid {pid}: {reason}")]
    Incomplete { pid: i32, reason: String },
    /// The kfuncs stopped the walk before the end of the table and said why
    /// (`bpf_iter_task_file_get_fd()` after the last `next()`): access lost mid-walk
    /// (`EACCES`), the target in the middle of an exec (`EBUSY`), reaped (`ESRCH`).
    #[error("{}", stopped_message(*.pid, *.errno, .files.len()))]
    Stopped {
        pid: i32,
        errno: i32,
        /// the records that came before the stop
        files: Vec<FileRecord>,
    },
    #[error("bad record #{index}: {reason}")]
    BadRecord { index: usize, reason: String },
}

impl DumpError {
    /// The errno the dump program or the kernel reported, if this is a target error.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Target { errno, .. } | Self::Stopped { errno, .. } => Some(*errno),
            Self::Incomplete { .. } => Some(libc::ENOSPC),
            _ => None,
        }
    }
}

/// What a negative return of the dump program means, for a human.
pub fn target_message(pid: i32, errno: i32, zombie: bool) -> String {
    let name = errno_name(errno);
    match errno {
        libc::ESRCH if zombie => {
            format!("pid {pid} is a zombie: it has exited and has no file table any more ({name})")
        }
        libc::ESRCH => format!("no process with pid {pid} in this pid namespace ({name})"),
        libc::EACCES | libc::EPERM => format!(
            "permission denied: reading the fd table of pid {pid} needs ptrace attach access \
             to it (CAP_SYS_PTRACE with the out-of-tree module; PTRACE_MODE_ATTACH_REALCREDS \
             in-tree, as pidfd_getfd()) ({name})"
        ),
        libc::EBUSY => format!("pid {pid} was in the middle of an exec; try again ({name})"),
        libc::EINVAL => {
            format!("pid {pid} is a kernel thread: it has no file table to dump ({name})")
        }
        libc::ENOSPC => {
            format!("the ring buffer had no room for the fd table of pid {pid} ({name})")
        }
        libc::EOPNOTSUPP => format!(
            "the CRIB kfuncs of this kernel cannot give file paths: they lack \
             bpf_iter_task_file_get_path() (a crib_kfuncs.ko or a patched kernel built before \
             it was added). Load the module built from this checkout (`scripts/build --only \
             stock`, then `scripts/vm --kernel stock`) or rebuild the patched kernel \
             (`scripts/build`) ({name})"
        ),
        _ => format!("dumping the fd table of pid {pid} failed: {name} ({errno})"),
    }
}

/// What a walk stopped by the kfuncs means, for a human.
pub fn stopped_message(pid: i32, errno: i32, after: usize) -> String {
    let name = errno_name(errno);
    let why = match errno {
        libc::EACCES => {
            "access to it was lost mid-walk (it became non-dumpable, changed \
                         credentials or executed a setuid program)"
        }
        libc::EBUSY => "it started executing a new program",
        libc::ESRCH => "it was reaped",
        _ => "the kfuncs said so",
    };
    format!("the walk of pid {pid} was stopped after {after} fds: {why} ({name})")
}

/// A [`DumpError::Target`], telling a zombie from a missing process through procfs (state
/// `Z` in /proc/<pid>/stat; only a hint: procfs may belong to another pid namespace).
fn target_error(pid: i32, errno: i32) -> DumpError {
    let zombie = errno == libc::ESRCH && pid > 0 && proc_state(pid) == Some('Z');
    DumpError::Target { pid, errno, zombie }
}

/// The state letter of /proc/<pid>/stat.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may contain spaces and parentheses
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

fn errno_name(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub(crate) fn read_pod<T: Copy + Default>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is one of the bindgen record structs: plain integers and arrays, valid for
    // every bit pattern; the length was checked and read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The header of ring-buffer record `index`, checked against the record's length.
pub(crate) fn record_header(index: usize, bytes: &[u8]) -> Result<crib_rec_hdr, DumpError> {
    let bad = |reason: String| DumpError::BadRecord { index, reason };
    let hdr: crib_rec_hdr = read_pod(bytes).ok_or_else(|| {
        bad(format!(
            "{} bytes, shorter than a record header",
            bytes.len()
        ))
    })?;
    if usize::from(hdr.size) != bytes.len() {
        return Err(bad(format!(
            "header says {} bytes, ring buffer record has {}",
            hdr.size,
            bytes.len()
        )));
    }
    Ok(hdr)
}

/// Decode one ring-buffer record. `index` only labels errors.
pub fn decode_record(index: usize, bytes: &[u8]) -> Result<(crib_rec_hdr, Record), DumpError> {
    let bad = |reason: String| DumpError::BadRecord { index, reason };
    let hdr = record_header(index, bytes)?;
    let ty = u32::from(hdr.type_);
    if ty == CRIB_REC_PATH {
        return Ok((hdr, Record::Path(decode_path(index, bytes)?)));
    }
    let expect = if ty == CRIB_REC_FILE {
        size_of::<crib_rec_file>()
    } else if ty == CRIB_REC_END {
        size_of::<crib_rec_end>()
    } else {
        return Err(bad(format!("unknown record type {}", hdr.type_)));
    };
    if bytes.len() != expect {
        return Err(bad(format!(
            "type {} record of {} bytes, expected {expect} (truncated or from another ABI)",
            hdr.type_,
            bytes.len()
        )));
    }
    if ty == CRIB_REC_END {
        let e: crib_rec_end = read_pod(bytes).ok_or_else(|| bad("short end record".into()))?;
        return Ok((
            hdr,
            Record::End(EndRecord {
                error: e.error,
                nr_records: e.nr_records,
                nr_dropped: e.nr_dropped,
            }),
        ));
    }
    let f: crib_rec_file = read_pod(bytes).ok_or_else(|| bad("short file record".into()))?;
    let kind = FileKind::from_raw(f.kind)
        .ok_or_else(|| bad(format!("fd {}: unknown file kind {}", f.fd, f.kind)))?;
    let name_bytes: Vec<u8> = f.anon_name.iter().map(|&c| c as u8).collect();
    let name_len = name_bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(name_bytes.len());
    let anon_name =
        (name_len > 0).then(|| String::from_utf8_lossy(&name_bytes[..name_len]).into_owned());
    let sock = (kind == FileKind::Socket && f.sk_family != 0).then_some(SockInfo {
        family: f.sk_family,
        sock_type: f.sk_type,
        protocol: f.sk_protocol,
    });
    Ok((
        hdr,
        Record::File(FileRecord {
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
        }),
    ))
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

/// Decode every record of one run, checking sequence numbers and that the end record, if
/// any, comes last.
pub fn decode_stream(records: &[Vec<u8>]) -> Result<RawDump, DumpError> {
    let mut files: Vec<FileRecord> = Vec::with_capacity(records.len());
    let mut nr_paths = 0;
    let mut end = None;
    for (index, bytes) in records.iter().enumerate() {
        let (hdr, rec) = decode_record(index, bytes)?;
        if end.is_some() {
            return Err(DumpError::BadRecord {
                index,
                reason: "record after the end record".into(),
            });
        }
        if hdr.seq as usize != index {
            return Err(DumpError::BadRecord {
                index,
                reason: format!("sequence number {} (records lost or reordered)", hdr.seq),
            });
        }
        match rec {
            Record::File(f) => files.push(f),
            Record::Path(p) => {
                let file = files
                    .last_mut()
                    .filter(|f| f.fd == p.fd && f.path.is_none() && f.path_errno == 0);
                let Some(file) = file else {
                    return Err(DumpError::BadRecord {
                        index,
                        reason: format!(
                            "path record of fd {} does not follow that fd's file record",
                            p.fd
                        ),
                    });
                };
                file.path = p.path;
                file.path_errno = p.errno;
                nr_paths += 1;
            }
            Record::End(e) => end = Some(e),
        }
    }
    Ok(RawDump {
        files,
        nr_paths,
        end,
    })
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
                    "{} of {} fds did not fit in the ring buffer",
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
        let (retval, records) = self.prog.run(&mut crib_dump_ctx { pid, flags })?;
        let raw = decode_stream(&records)?;
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
mod tests {
    use super::*;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: bindgen record structs are plain data with explicit padding fields.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn file_rec(seq: u32, fd: u32) -> Vec<u8> {
        let mut f = crib_rec_file::default();
        f.hdr.type_ = CRIB_REC_FILE as u16;
        f.hdr.size = size_of::<crib_rec_file>() as u16;
        f.hdr.seq = seq;
        f.fd = fd;
        f.kind = CRIB_FILE_SOCK;
        f.sk_family = libc::AF_UNIX as u16;
        f.sk_type = libc::SOCK_STREAM as u16;
        for (d, s) in f.anon_name.iter_mut().zip(b"[x]\0") {
            *d = *s as _;
        }
        bytes_of(&f)
    }

    fn end_rec(seq: u32, error: i32, nr: u32, dropped: u32) -> Vec<u8> {
        let mut e = crib_rec_end::default();
        e.hdr.type_ = CRIB_REC_END as u16;
        e.hdr.size = size_of::<crib_rec_end>() as u16;
        e.hdr.seq = seq;
        e.error = error;
        e.nr_records = nr;
        e.nr_dropped = dropped;
        bytes_of(&e)
    }

    #[test]
    fn complete_dump_decodes() {
        let recs = vec![file_rec(0, 3), file_rec(1, 100_000), end_rec(2, 0, 2, 0)];
        let files = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].fd, 100_000);
        assert_eq!(files[0].kind, FileKind::Socket);
        assert_eq!(files[0].sock.unwrap().family, libc::AF_UNIX as u16);
        assert_eq!(files[0].anon_name.as_deref(), Some("[x]"));
    }

    #[test]
    fn truncated_and_unknown_records_are_rejected() {
        let mut short = file_rec(0, 3);
        short.truncate(40);
        assert!(matches!(
            decode_stream(&[short]),
            Err(DumpError::BadRecord { index: 0, .. })
        ));
        let mut unknown = end_rec(0, 0, 0, 0);
        unknown[0] = 0x7f;
        let err = decode_stream(&[unknown]).unwrap_err().to_string();
        assert!(err.contains("unknown record type 127"), "{err}");
        // header size disagrees with the ring buffer record length
        let mut padded = end_rec(0, 0, 0, 0);
        padded.extend_from_slice(&[0; 8]);
        assert!(decode_stream(&[padded]).is_err());
        // a lost record shows as a sequence gap
        assert!(decode_stream(&[file_rec(0, 1), file_rec(2, 2)]).is_err());
        // nothing may follow the end record
        assert!(decode_stream(&[end_rec(0, 0, 0, 0), file_rec(1, 1)]).is_err());
    }

    #[test]
    fn partial_dumps_are_never_complete() {
        // dropped records
        let raw = decode_stream(&[file_rec(0, 3), end_rec(1, -28, 1, 5)]).unwrap();
        let err = finish(7, -28, raw).unwrap_err();
        assert!(err.to_string().contains("5 of 6 fds"), "{err}");
        // no end record
        let raw = decode_stream(&[file_rec(0, 3)]).unwrap();
        assert!(matches!(
            finish(7, 0, raw),
            Err(DumpError::Incomplete { .. })
        ));
        // count mismatch
        let raw = decode_stream(&[file_rec(0, 3), end_rec(1, 0, 2, 0)]).unwrap();
        assert!(matches!(
            finish(7, 0, raw),
            Err(DumpError::Incomplete { .. })
        ));
        // return value and end record disagree
        let raw = decode_stream(&[end_rec(0, -13, 0, 0)]).unwrap();
        assert!(matches!(
            finish(7, 0, raw),
            Err(DumpError::Incomplete { .. })
        ));
        // a walk the kfuncs stopped after some records: never complete, and it says why
        let raw = decode_stream(&[file_rec(0, 3), end_rec(1, -13, 1, 0)]).unwrap();
        let err = finish(7, -13, raw).unwrap_err();
        assert!(
            matches!(&err, DumpError::Stopped { errno: 13, files, .. } if files.len() == 1),
            "{err:?}"
        );
        assert!(err.to_string().contains("stopped after 1 fds"), "{err}");
        // any other error after some records
        let raw = decode_stream(&[file_rec(0, 3), end_rec(1, -5, 1, 0)]).unwrap();
        assert!(matches!(
            finish(7, -5, raw),
            Err(DumpError::Incomplete { .. })
        ));
    }

    #[test]
    fn target_errors_are_translated() {
        let raw = decode_stream(&[end_rec(0, -libc::ESRCH, 0, 0)]).unwrap();
        let err = finish(4242, -libc::ESRCH, raw).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ESRCH));
        assert!(err
            .to_string()
            .contains("no process with pid 4242 in this pid namespace"));
        let raw = decode_stream(&[end_rec(0, -libc::EACCES, 0, 0)]).unwrap();
        let err = finish(1, -libc::EACCES, raw).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EACCES));
        assert!(err.to_string().starts_with("permission denied"), "{err}");
    }

    #[test]
    fn a_kernel_without_the_path_kfunc_says_so() {
        let raw = decode_stream(&[end_rec(0, -libc::EOPNOTSUPP, 0, 0)]).unwrap();
        let err = finish(7, -libc::EOPNOTSUPP, raw).unwrap_err().to_string();
        assert!(
            err.contains("lack bpf_iter_task_file_get_path()") && err.contains("scripts/build"),
            "{err}"
        );
    }

    #[test]
    fn path_records_attach_to_their_file() {
        fn path_rec(seq: u32, fd: u32, error: i32, path: &[u8]) -> Vec<u8> {
            let fixed = std::mem::offset_of!(crib_rec_path, path);
            let mut v = vec![0u8; fixed];
            v[0..2].copy_from_slice(&(CRIB_REC_PATH as u16).to_ne_bytes());
            v[2..4].copy_from_slice(&((fixed + path.len()) as u16).to_ne_bytes());
            v[4..8].copy_from_slice(&seq.to_ne_bytes());
            v[8..12].copy_from_slice(&fd.to_ne_bytes());
            v[12..16].copy_from_slice(&error.to_ne_bytes());
            v.extend_from_slice(path);
            v
        }
        let recs = vec![
            file_rec(0, 3),
            path_rec(1, 3, 0, b"/tmp/a (deleted)\0"),
            file_rec(2, 4),
            path_rec(3, 4, -libc::ENAMETOOLONG, b""),
            end_rec(4, 0, 4, 0),
        ];
        let files = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
        assert_eq!(
            files[0].path.as_deref(),
            Some(Path::new("/tmp/a (deleted)"))
        );
        assert_eq!(
            (files[1].path.as_deref(), files[1].path_errno),
            (None, libc::ENAMETOOLONG)
        );
        // a path for another fd, a path without its NUL, two paths for one file
        for bad in [
            vec![file_rec(0, 3), path_rec(1, 4, 0, b"/x\0")],
            vec![file_rec(0, 3), path_rec(1, 3, 0, b"/x")],
            vec![
                file_rec(0, 3),
                path_rec(1, 3, 0, b"/x\0"),
                path_rec(2, 3, 0, b"/y\0"),
            ],
        ] {
            assert!(decode_stream(&bad).is_err());
        }
    }

    #[test]
    fn dev_encodings() {
        // glibc: makedev(8, 0x12345) -> kernel MAJOR << 20 | MINOR
        let user = libc::makedev(8, 0x12345);
        assert_eq!(kdev_from_user(user), (8 << 20) | 0x12345);
        assert_eq!(kdev_split((8 << 20) | 0x12345), (8, 0x12345));
    }
}

//! File-table dumps: run `selftests/progs/dump_files.bpf.c` against a pid, decode its ring
//! buffer records into typed values, and translate failures into errors that say what went
//! wrong.
//!
//! The record layouts come from bindgen (`crate::records`), never from structs mirrored here.
//! A dump is only returned when it is complete: the program returned 0, the end record came
//! last, reported no error and no dropped records, and its count matches the records read.
//! Everything else is a [`DumpError`].

use std::fmt;
use std::mem::size_of;
use std::path::{Path, PathBuf};

use libbpf_rs::MapCore;

use crate::loader::{self, LoadOpts, Loaded, LoaderError};
use crate::records::{
    crib_dump_ctx, crib_rec_end, crib_rec_file, crib_rec_hdr, CRIB_FILE_ANON, CRIB_FILE_BLK,
    CRIB_FILE_CHR, CRIB_FILE_DIR, CRIB_FILE_FIFO, CRIB_FILE_LNK, CRIB_FILE_OTHER, CRIB_FILE_REG,
    CRIB_FILE_SOCK, CRIB_REC_END, CRIB_REC_FILE,
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
}

/// The end record of one program run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRecord {
    pub error: i32,
    pub nr_records: u32,
    pub nr_dropped: u32,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    File(FileRecord),
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
    #[error("the kernel rejected {prog} (errno {errno}: {msg}); verifier log tail:\n{log_tail}")]
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
        }),
    ))
}

/// The outcome of one program run, before it is judged complete or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDump {
    pub files: Vec<FileRecord>,
    pub end: Option<EndRecord>,
}

/// Decode every record of one run, checking sequence numbers and that the end record, if
/// any, comes last.
pub fn decode_stream(records: &[Vec<u8>]) -> Result<RawDump, DumpError> {
    let mut files = Vec::with_capacity(records.len());
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
            Record::End(e) => end = Some(e),
        }
    }
    Ok(RawDump { files, end })
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
                        && end.nr_records as usize == raw.files.len()
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
            if end.nr_records as usize != raw.files.len() {
                return Err(incomplete(format!(
                    "end record counts {} file records, {} arrived",
                    end.nr_records,
                    raw.files.len()
                )));
            }
            Ok(raw.files)
        }
    }
}

/// The dump program, loaded once and run any number of times.
/// A SYSCALL program that writes records to a ring buffer, loaded and ready to run through
/// BPF_PROG_RUN with a context. The dump program and `file_read`'s programs are run this way.
pub struct RingbufProgram {
    reader: loader::RingbufReader,
    loaded: Loaded,
    obj: PathBuf,
    prog: &'static str,
    map: &'static str,
}

impl RingbufProgram {
    /// Load `prog` (and the maps of `obj`, `map` among them); a rejection carries the tail of
    /// the verifier log.
    pub fn load(obj: &Path, prog: &'static str, map: &'static str) -> Result<Self, DumpError> {
        if !obj.exists() {
            return Err(DumpError::NoObject {
                path: obj.to_path_buf(),
                hint: "run scripts/build, then rebuild the harness so build.rs compiles \
                       selftests/progs"
                    .into(),
            });
        }
        let opts = LoadOpts {
            log_level: 0,
            ..LoadOpts::default()
        };
        let loaded = loader::load_one(obj, prog, &opts).map_err(|source| DumpError::Load {
            prog: prog.into(),
            path: obj.to_path_buf(),
            source,
        })?;
        if let Some((errno, msg)) = &loaded.error {
            let lines: Vec<&str> = loaded.log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            return Err(DumpError::Rejected {
                prog: prog.into(),
                errno: *errno,
                msg: msg.clone(),
                log_tail: tail,
            });
        }
        let missing = || DumpError::Missing(obj.to_path_buf(), prog.into(), map.into());
        let object = loaded.object.as_ref().ok_or_else(missing)?;
        let ringbuf = object
            .maps()
            .find(|m| m.name() == map)
            .ok_or_else(missing)?;
        let reader = loader::RingbufReader::open(&ringbuf).map_err(DumpError::Drain)?;
        Ok(Self {
            reader,
            loaded,
            obj: obj.to_path_buf(),
            prog,
            map,
        })
    }

    /// The fd of map `name` of the loaded object, for another thread or process to read or
    /// update while the program runs (the fd stays owned by the object).
    pub fn map_fd(&self, name: &str) -> Option<std::os::fd::RawFd> {
        use std::os::fd::{AsFd, AsRawFd};
        let obj = self.loaded.object.as_ref()?;
        let map = obj.maps().find(|m| m.name() == name)?;
        Some(map.as_fd().as_raw_fd())
    }

    /// Open and close a reader of this program's ring buffer once, as a run did twice before
    /// readers were kept (`crib demo` prints it as part of a small dump's fixed cost).
    pub fn reader_open_close_cost(&self) -> Result<std::time::Duration, DumpError> {
        let missing = || DumpError::Missing(self.obj.clone(), self.prog.into(), self.map.into());
        let obj = self.loaded.object.as_ref().ok_or_else(missing)?;
        let map = obj
            .maps()
            .find(|m| m.name() == self.map)
            .ok_or_else(missing)?;
        let t = std::time::Instant::now();
        drop(loader::RingbufReader::open(&map).map_err(DumpError::Drain)?);
        Ok(t.elapsed())
    }

    /// Run the program once with `ctx`; return its return value and the records it wrote.
    pub fn run<T: Copy>(&self, ctx: &mut T) -> Result<(i32, Vec<Vec<u8>>), DumpError> {
        let missing = || DumpError::Missing(self.obj.clone(), self.prog.into(), self.map.into());
        let obj = self.loaded.object.as_ref().ok_or_else(missing)?;
        let prog = obj
            .progs()
            .find(|p| p.name() == self.prog)
            .ok_or_else(missing)?;
        // Whatever an earlier, aborted run left behind is not part of this run.
        self.reader.drain().map_err(DumpError::Drain)?;
        let retval = loader::run_syscall(&prog, ctx).map_err(|source| DumpError::Run {
            prog: self.prog.into(),
            source,
        })?;
        let records = self.reader.drain().map_err(DumpError::Drain)?;
        Ok((retval, records))
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
        let (retval, records) = self.run_raw(pid)?;
        let raw = decode_stream(&records)?;
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
        "{:>7} {:<5} flags=0{:o} mode=0x{:x} pos={} ino={} dev={maj}:{min} i_mode=0{:o}{}",
        r.fd,
        r.kind,
        r.f_flags,
        r.f_mode,
        r.f_pos,
        r.ino,
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
    s
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One JSON object per fd.
pub fn format_json(r: &FileRecord) -> String {
    let (maj, min) = kdev_split(r.dev);
    let (rmaj, rmin) = kdev_split(r.rdev);
    let mut s = format!(
        "{{\"fd\":{},\"kind\":\"{}\",\"f_flags\":{},\"f_mode\":{},\"f_pos\":{},\"ino\":{},\
         \"dev\":\"{maj}:{min}\",\"rdev\":\"{rmaj}:{rmin}\",\"i_mode\":{},\"cloexec\":{}",
        r.fd, r.kind, r.f_flags, r.f_mode, r.f_pos, r.ino, r.i_mode, r.cloexec
    );
    if let Some(k) = &r.sock {
        s.push_str(&format!(
            ",\"sk_family\":{},\"sk_type\":{},\"sk_protocol\":{}",
            k.family, k.sock_type, k.protocol
        ));
    }
    if let Some(n) = &r.anon_name {
        s.push_str(&format!(",\"anon_name\":{}", json_str(n)));
    }
    s.push('}');
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
    fn dev_encodings() {
        // glibc: makedev(8, 0x12345) -> kernel MAJOR << 20 | MINOR
        let user = libc::makedev(8, 0x12345);
        assert_eq!(kdev_from_user(user), (8 << 20) | 0x12345);
        assert_eq!(kdev_split((8 << 20) | 0x12345), (8, 0x12345));
    }
}

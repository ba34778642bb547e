//! Ground truth for a process's fd table, from procfs only: `/proc/<pid>/fd/<fd>` (readlink;
//! lstat of the link, whose permission bits procfs derives from the file's FMODE_READ /
//! FMODE_WRITE; stat through the link), `/proc/<pid>/fdinfo/<fd>` (pos, flags, mnt_id, ino),
//! and, for sockets, the socket's own SO_DOMAIN/SO_TYPE/SO_PROTOCOL through a copy of the fd
//! taken with pidfd_getfd(2).
//!
//! [`compare`] checks every field of a dump record against it; a mismatch names the fd, the
//! field and both values.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag};
use rustix::net::sockopt;
use rustix::process::{self, Pid, PidfdFlags, PidfdGetfdFlags};

use crate::dump::{
    kdev_from_user, FileKind, FileRecord, SockInfo, FMODE_READ, FMODE_WRITE, O_CLOEXEC,
};

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: cannot parse {what}: {text:?}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        text: String,
    },
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> TruthError {
    let path = path.into();
    move |source| TruthError::Io { path, source }
}

/// What procfs says about one fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdTruth {
    pub fd: u32,
    /// readlink `/proc/<pid>/fd/<fd>`
    pub link: String,
    /// fdinfo pos:
    pub pos: u64,
    /// fdinfo flags: (file->f_flags, plus O_CLOEXEC if the fd is close-on-exec)
    pub flags: u32,
    /// fdinfo mnt_id:
    pub mnt_id: u64,
    /// fdinfo ino:
    pub fdinfo_ino: u64,
    /// lstat of the link: S_IRUSR iff FMODE_READ, S_IWUSR iff FMODE_WRITE
    pub link_mode: u32,
    /// stat through the link
    pub st_dev: u64,
    pub st_ino: u64,
    pub st_mode: u32,
    pub st_rdev: u64,
    /// SO_DOMAIN/SO_TYPE/SO_PROTOCOL, for sockets (None when the fd is not a socket)
    pub sock: Option<SockInfo>,
}

impl FdTruth {
    /// The kind procfs implies: "anon_inode:" links are anonymous inodes (their stat has no
    /// type bits), everything else by the S_IFMT of the inode.
    pub fn kind(&self) -> FileKind {
        if self.link.starts_with("anon_inode:") {
            FileKind::Anon
        } else {
            FileKind::from_mode(self.st_mode)
        }
    }

    /// `"[eventfd]"` for `"anon_inode:[eventfd]"`.
    pub fn anon_name(&self) -> Option<&str> {
        self.link.strip_prefix("anon_inode:")
    }

    pub fn cloexec(&self) -> bool {
        self.flags & O_CLOEXEC != 0
    }
}

/// Read the ground truth of every fd of `pid`, keyed by fd.
pub fn read_fd_table(pid: i32) -> Result<BTreeMap<u32, FdTruth>, TruthError> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut out = BTreeMap::new();
    let pidfd = pidfd_open(pid).map_err(io_err(format!("pidfd_open({pid})")))?;
    for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name();
        let fd: u32 = name
            .to_string_lossy()
            .parse()
            .map_err(|_| TruthError::Parse {
                path: dir.clone(),
                what: "fd number",
                text: name.to_string_lossy().into_owned(),
            })?;
        out.insert(fd, read_fd_with(pid, fd, Some(&pidfd))?);
    }
    Ok(out)
}

/// Read the ground truth of one fd.
pub fn read_fd(pid: i32, fd: u32) -> Result<FdTruth, TruthError> {
    let pidfd = pidfd_open(pid).map_err(io_err(format!("pidfd_open({pid})")))?;
    read_fd_with(pid, fd, Some(&pidfd))
}

fn read_fd_with(pid: i32, fd: u32, pidfd: Option<&OwnedFd>) -> Result<FdTruth, TruthError> {
    let link_path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    let link = fs::read_link(&link_path).map_err(io_err(&link_path))?;
    let link = String::from_utf8_lossy(link.as_os_str().as_bytes()).into_owned();
    let lst = fs::symlink_metadata(&link_path).map_err(io_err(&link_path))?;
    let st = stat(&link_path).map_err(io_err(&link_path))?;

    let info_path = PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}"));
    let info = fs::read_to_string(&info_path).map_err(io_err(&info_path))?;
    let field = |key: &'static str| -> Result<&str, TruthError> {
        info.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
            .ok_or_else(|| TruthError::Parse {
                path: info_path.clone(),
                what: key,
                text: info.clone(),
            })
    };
    let parse_err = |what: &'static str, text: &str| TruthError::Parse {
        path: info_path.clone(),
        what,
        text: text.to_string(),
    };
    let pos_s = field("pos:")?;
    let pos: i64 = pos_s.parse().map_err(|_| parse_err("pos", pos_s))?;
    let flags_s = field("flags:")?;
    let flags = u32::from_str_radix(flags_s, 8).map_err(|_| parse_err("flags", flags_s))?;
    let mnt_s = field("mnt_id:")?;
    let mnt_id: u64 = mnt_s.parse().map_err(|_| parse_err("mnt_id", mnt_s))?;
    let ino_s = field("ino:")?;
    let fdinfo_ino: u64 = ino_s.parse().map_err(|_| parse_err("ino", ino_s))?;

    // pidfd_getfd() refuses O_PATH fds (EBADF), and they are never sockets
    let o_path = flags & OFlag::O_PATH.bits() as u32 != 0;
    let sock = if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits() && !o_path {
        match pidfd {
            Some(p) => sock_info(p, fd).map_err(io_err(format!("pidfd_getfd({pid}, {fd})")))?,
            None => None,
        }
    } else {
        None
    };

    use std::os::unix::fs::MetadataExt;
    Ok(FdTruth {
        fd,
        link,
        pos: pos as u64,
        flags,
        mnt_id,
        fdinfo_ino,
        link_mode: lst.mode(),
        st_dev: st.st_dev,
        st_ino: st.st_ino,
        st_mode: st.st_mode,
        st_rdev: st.st_rdev,
        sock,
    })
}

fn stat(path: &std::path::Path) -> io::Result<FileStat> {
    nix::sys::stat::stat(path).map_err(io::Error::from)
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(Errno::EINVAL))?;
    Ok(process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// SO_DOMAIN/SO_TYPE/SO_PROTOCOL of fd `fd` of the process behind `pidfd`; None when the fd
/// is not a socket (an O_PATH fd of a socket inode, for example).
fn sock_info(pidfd: &OwnedFd, fd: u32) -> io::Result<Option<SockInfo>> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(Errno::EBADF))?;
    let copy = process::pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty())?;
    let not_sock = |e: rustix::io::Errno| e == rustix::io::Errno::NOTSOCK;
    let family = match sockopt::socket_domain(&copy) {
        Ok(d) => d.as_raw(),
        Err(e) if not_sock(e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let sock_type = sockopt::socket_type(&copy)?.as_raw() as u16;
    let protocol = sockopt::socket_protocol(&copy)?.map_or(0, |p| p.as_raw().get() as u16);
    Ok(Some(SockInfo {
        family,
        sock_type,
        protocol,
    }))
}

/// One field that differs between a dump record and procfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub fd: u32,
    pub field: &'static str,
    pub dumped: String,
    pub truth: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fd {}: {}: dump says {}, procfs says {}",
            self.fd, self.field, self.dumped, self.truth
        )
    }
}

/// Compare every field of `rec` with `truth`; all mismatches, in field order.
pub fn compare(rec: &FileRecord, truth: &FdTruth) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let fd = rec.fd;
    let mut check = |field: &'static str, dumped: String, truth: String| {
        if dumped != truth {
            out.push(Mismatch {
                fd,
                field,
                dumped,
                truth,
            });
        }
    };
    let oct = |v: u32| format!("0{v:o}");
    let dev = |v: u32| format!("{}:{} (0x{v:x})", v >> 20, v & 0xfffff);

    check("fd", rec.fd.to_string(), truth.fd.to_string());
    check("kind", rec.kind.to_string(), truth.kind().to_string());
    // fdinfo prints file->f_flags | (O_CLOEXEC if the fdtable bit is set)
    let with_cloexec = rec.f_flags | if rec.cloexec { O_CLOEXEC } else { 0 };
    check(
        "f_flags|cloexec (fdinfo flags)",
        oct(with_cloexec),
        oct(truth.flags),
    );
    check("f_pos", rec.f_pos.to_string(), truth.pos.to_string());
    check(
        "ino (fdinfo)",
        rec.ino.to_string(),
        truth.fdinfo_ino.to_string(),
    );
    check("ino (stat)", rec.ino.to_string(), truth.st_ino.to_string());
    check("dev", dev(rec.dev), dev(kdev_from_user(truth.st_dev)));
    check("rdev", dev(rec.rdev), dev(kdev_from_user(truth.st_rdev)));
    // anon_inode_getattr() clears the type bits procfs would show
    let i_mode = if truth.kind() == FileKind::Anon {
        rec.i_mode & !SFlag::S_IFMT.bits()
    } else {
        rec.i_mode
    };
    check("i_mode", oct(i_mode), oct(truth.st_mode));
    // proc_fd_link's inode mode: S_IRUSR iff FMODE_READ, S_IWUSR iff FMODE_WRITE
    let f_rw = |read: bool, write: bool| format!("read={read} write={write}");
    check(
        "f_mode (FMODE_READ/FMODE_WRITE)",
        f_rw(rec.f_mode & FMODE_READ != 0, rec.f_mode & FMODE_WRITE != 0),
        f_rw(
            truth.link_mode & Mode::S_IRUSR.bits() != 0,
            truth.link_mode & Mode::S_IWUSR.bits() != 0,
        ),
    );
    let sock = |s: Option<SockInfo>| match s {
        Some(s) => format!(
            "family={} type={} protocol={}",
            s.family, s.sock_type, s.protocol
        ),
        None => "none".into(),
    };
    check("socket", sock(rec.sock), sock(truth.sock));
    let name = if truth.kind() == FileKind::Anon {
        truth.anon_name()
    } else {
        None
    };
    // the record holds at most 15 bytes of the name
    let name = name.map(|n| n.chars().take(15).collect::<String>());
    check(
        "anon_name",
        rec.anon_name.clone().unwrap_or_else(|| "none".into()),
        name.unwrap_or_else(|| "none".into()),
    );
    out
}

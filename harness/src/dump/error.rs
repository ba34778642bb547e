//! What can go wrong with a dump, and what it means for a human: loading the program, running
//! it, and a target the kfuncs refused or lost mid-walk.

use std::path::PathBuf;

use super::FileRecord;
use crate::loader::LoaderError;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("BPF object {path} not found: {hint}")]
    NoObject { path: PathBuf, hint: String },
    /// The object exists but this user cannot reach it: typically a target directory under a
    /// mode-700 home, seen by a dump run as another user.
    #[error(
        "BPF object {path} cannot be read by uid {uid}: {source} (every directory on its path \
         must be searchable by that user: build into a target directory it can reach, e.g. not \
         under a mode-700 home)"
    )]
    ObjectUnreadable {
        path: PathBuf,
        uid: u32,
        source: std::io::Error,
    },
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
    #[error("reading the ring buffer in place: {0}")]
    InPlace(#[from] super::ringview::RingViewError),
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
pub(super) fn target_error(pid: i32, errno: i32) -> DumpError {
    let zombie = errno == libc::ESRCH && pid > 0 && proc_state(pid) == Some('Z');
    DumpError::Target { pid, errno, zombie }
}

/// The state letter of `/proc/<pid>/stat`.
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

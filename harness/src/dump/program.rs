//! A SYSCALL program that writes records to a ring buffer: loaded once, run any number of
//! times through `BPF_PROG_RUN`. A load that fails says why in terms a user can act on: the
//! CRIB kfuncs are missing (load the module or boot the patched kernel), the caller may not
//! load BPF programs, or the verifier rejected the program (with the end of its log).

use std::path::{Path, PathBuf};

use libbpf_rs::MapCore;

use super::{kfuncs, DumpError};
use crate::loader::{self, LoadOpts, Loaded};

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
            return Err(load_failure(prog, *errno, msg, &loaded.log));
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

/// Why loading `prog` failed, in terms a user can act on: the kfuncs are missing (whatever the
/// verifier then said about the unresolved calls), the caller may not load BPF programs (the
/// kernel refused before the verifier ran: no log), or the verifier's own verdict.
pub(crate) fn load_failure(prog: &str, errno: i32, libbpf: &str, log: &str) -> DumpError {
    if let Some(why) = kfuncs::unavailable() {
        return DumpError::NoKfuncs { why };
    }
    if (errno == libc::EPERM || errno == libc::EACCES) && log.trim().is_empty() {
        return DumpError::LoadPermission {
            prog: prog.into(),
            errno,
            msg: libbpf.trim_end().into(),
        };
    }
    let lines: Vec<&str> = log.lines().collect();
    DumpError::Rejected {
        prog: prog.into(),
        errno,
        msg: libbpf.into(),
        log_tail: lines[lines.len().saturating_sub(30)..].join("\n"),
    }
}

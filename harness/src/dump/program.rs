//! A SYSCALL program that writes records to a ring buffer: loaded once, run any number of
//! times through `BPF_PROG_RUN`. A load that fails says why in terms a user can act on: the
//! CRIB kfuncs are missing (load the module or boot the patched kernel), the caller may not
//! load BPF programs, or the verifier rejected the program (with the end of its log).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libbpf_rs::{Map, MapCore, RingBuffer, RingBufferBuilder};

use super::ringview::{RingMap, RingSpan, RingViewError};
use super::stream::RecordSink;
use super::{kfuncs, DumpError};
use crate::loader::{self, LoadOpts, Loaded, LoaderError};

/// A SYSCALL program that writes records to a ring buffer, loaded and ready to run through
/// BPF_PROG_RUN with a context. The dump program and `file_read`'s programs are run this way.
pub struct RingbufProgram {
    reader: SinkReader,
    /// The same ring buffer mapped for reading records in place ([`Self::run_in_place`])
    ring: RingMap,
    loaded: Loaded,
    obj: PathBuf,
    prog: &'static str,
    map: &'static str,
}

impl RingbufProgram {
    /// Load `prog` (and the maps of `obj`, `map` among them); a rejection carries the tail of
    /// the verifier log.
    pub fn load(obj: &Path, prog: &'static str, map: &'static str) -> Result<Self, DumpError> {
        Self::load_sized(obj, prog, map, None)
    }

    /// [`RingbufProgram::load`] with a ring buffer of `ring_bytes` (a power of 2, a multiple
    /// of the page size) instead of the size the object declares.
    pub fn load_sized(
        obj: &Path,
        prog: &'static str,
        map: &'static str,
        ring_bytes: Option<u32>,
    ) -> Result<Self, DumpError> {
        match std::fs::metadata(obj) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DumpError::NoObject {
                    path: obj.to_path_buf(),
                    hint: "run scripts/build, then rebuild the harness so build.rs compiles \
                           selftests/progs"
                        .into(),
                });
            }
            Err(source) => {
                return Err(DumpError::ObjectUnreadable {
                    path: obj.to_path_buf(),
                    uid: nix::unistd::geteuid().as_raw(),
                    source,
                })
            }
        }
        let opts = LoadOpts {
            log_level: 0,
            max_entries: ring_bytes
                .map(|n| (map.to_string(), n))
                .into_iter()
                .collect(),
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
        let reader = SinkReader::open(&ringbuf).map_err(DumpError::Drain)?;
        let ring = RingMap::open(ringbuf.as_fd(), ringbuf.max_entries())?;
        Ok(Self {
            reader,
            ring,
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
        drop(SinkReader::open(&map).map_err(DumpError::Drain)?);
        Ok(t.elapsed())
    }

    /// Run the program once with `ctx`; return its return value and the records it wrote,
    /// each copied out of the ring buffer.
    pub fn run<T: Copy>(&self, ctx: &mut T) -> Result<(i32, Vec<Vec<u8>>), DumpError> {
        self.run_into(ctx, Vec::new())
    }

    /// Run the program once with `ctx`, then hand its records to `sink` in place, in the ring
    /// buffer's memory; return the program's return value and the sink.
    pub fn run_into<T: Copy, S: RecordSink>(
        &self,
        ctx: &mut T,
        sink: S,
    ) -> Result<(i32, S), DumpError> {
        self.run_timed(ctx, sink)
            .map(|(retval, sink, _)| (retval, sink))
    }

    /// [`RingbufProgram::run_into`], also saying how long the `BPF_PROG_RUN` system call took
    /// and how long handing its records to `sink` took (benchmarks: where a dump's time goes).
    pub fn run_timed<T: Copy, S: RecordSink>(
        &self,
        ctx: &mut T,
        sink: S,
    ) -> Result<(i32, S, RunTimes), DumpError> {
        let (retval, run) = self.run_only(ctx)?;
        let t1 = Instant::now();
        let sink = self.reader.consume(sink).map_err(DumpError::Drain)?;
        let times = RunTimes {
            run,
            consume: t1.elapsed(),
        };
        Ok((retval, sink, times))
    }

    /// Run the program once with `ctx` and leave its records where it wrote them: the span
    /// reads them in place, and their room goes back to the kernel when it is dropped. A
    /// zero-copy reader can keep pointing into the records (through [`RingSpan::slice`]) for
    /// as long as it holds the span; no other run of this program starts meanwhile.
    pub fn run_in_place<T: Copy>(
        &self,
        ctx: &mut T,
    ) -> Result<(i32, RingSpan<'_>, Duration), DumpError> {
        let (retval, run) = self.run_only(ctx)?;
        Ok((retval, self.ring.span()?, run))
    }

    /// The `BPF_PROG_RUN` system call alone, after dropping what an earlier, aborted run left
    /// behind; its return value and duration.
    fn run_only<T: Copy>(&self, ctx: &mut T) -> Result<(i32, Duration), DumpError> {
        let missing = || DumpError::Missing(self.obj.clone(), self.prog.into(), self.map.into());
        let obj = self.loaded.object.as_ref().ok_or_else(missing)?;
        let prog = obj
            .progs()
            .find(|p| p.name() == self.prog)
            .ok_or_else(missing)?;
        // A span still reading records in place would see its room handed back below.
        if self.ring.is_held() {
            return Err(RingViewError::Held.into());
        }
        // Whatever an earlier, aborted run left behind is not part of this run.
        self.reader.consume(()).map_err(DumpError::Drain)?;
        let t0 = Instant::now();
        let retval = loader::run_syscall(&prog, ctx).map_err(|source| DumpError::Run {
            prog: self.prog.into(),
            source,
        })?;
        Ok((retval, t0.elapsed()))
    }
}

/// The two halves of one [`RingbufProgram::run_timed`].
#[derive(Debug, Clone, Copy)]
pub struct RunTimes {
    /// The `BPF_PROG_RUN` system call: the program, with its records written.
    pub run: Duration,
    /// Reading the ring buffer: every record handed to the sink.
    pub consume: Duration,
}

/// The sink of the current [`SinkReader::consume`], if one runs.
type Slot = Arc<Mutex<Option<Box<dyn RecordSink>>>>;

/// A ring buffer map opened for reading once (an epoll instance and two mmaps of the data
/// area, which cost a small dump most of its time when every run opened its own), whose
/// records go to the sink of each [`SinkReader::consume`] as slices of the mapped area.
struct SinkReader {
    // Dropped before the slot its callback shares; the mmaps hold their own reference to the
    // map, so the reader stays sound even if the object goes first.
    rb: RingBuffer<'static>,
    slot: Slot,
    name: String,
}

impl SinkReader {
    fn open(map: &Map) -> Result<Self, LoaderError> {
        let name = map.name().to_string_lossy().into_owned();
        let slot: Slot = Arc::new(Mutex::new(None));
        let cb_slot = Arc::clone(&slot);
        let ringbuf_err = |source| LoaderError::Ringbuf {
            map: name.clone(),
            source,
        };
        let mut builder = RingBufferBuilder::new();
        builder
            .add(map, move |data: &[u8]| {
                if let Some(sink) = lock(&cb_slot).as_mut() {
                    sink.record(data);
                }
                0
            })
            .map_err(ringbuf_err)?;
        let rb = builder.build().map_err(ringbuf_err)?;
        Ok(Self { rb, slot, name })
    }

    /// Hand every record now in the ring buffer to `sink`, in order, and give it back.
    fn consume<S: RecordSink>(&self, sink: S) -> Result<S, LoaderError> {
        *lock(&self.slot) = Some(Box::new(sink));
        let consumed = self.rb.consume();
        let back = lock(&self.slot).take();
        let err = |source| LoaderError::Ringbuf {
            map: self.name.clone(),
            source,
        };
        consumed.map_err(err)?;
        let lost = |what: &str| err(std::io::Error::other(what.to_string()).into());
        let back: Box<dyn std::any::Any> = back.ok_or_else(|| lost("the sink went missing"))?;
        back.downcast::<S>()
            .map(|s| *s)
            .map_err(|_| lost("the sink changed type"))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

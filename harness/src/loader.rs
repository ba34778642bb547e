//! Load BPF objects with libbpf-rs, capture the verifier log, run SYSCALL programs with
//! BPF_PROG_RUN and drain ring buffers.
//!
//! API CONTRACT (keep these signatures):
//!
//! - `load_one(obj: &Path, prog: &str, opts: &LoadOpts) -> Result<Loaded, LoaderError>`:
//!   open the object, autoload only `prog`, load. `Loaded { object: Option<Object>, log: String,
//!   error: Option<(i32 /*errno*/, String)> }`: a rejected program is Ok with `error` set and
//!   the full verifier log, so callers can match messages.
//! - `open_one(obj, prog, opts) -> Result<PendingLoad, LoaderError>`, then optionally
//!   `PendingLoad::prepare(self) -> Result<PendingLoad, LoaderError>` (`bpf_object__prepare`:
//!   externs, BTF, maps), then `PendingLoad::load(self) -> Loaded` (the program loads):
//!   `load_one` in steps, so that the steps can run with different capabilities.
//! - `LoadOpts { log_level: u32, log_size: usize }` with Default (16 MiB log buffer; see
//!   [`LoadOpts`] for the level and the optional fields the verifier runner uses).
//! - `run_syscall<T: Copy>(prog: &Program, ctx: &mut T) -> Result<i32, LoaderError>`:
//!   BPF_PROG_RUN with the context `ctx`, returns the program's return value. The kernel
//!   rejects ctx_out (and data, repeat, flags, duration) for SYSCALL programs and writes the
//!   context back into ctx_in, so only `context_in` is passed and `ctx` is updated from it.
//! - `drain_ringbuf(map: &Map) -> Result<Vec<Vec<u8>>, LoaderError>`: all records, in order.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::raw::c_char;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use libbpf_rs::{
    AsRawLibbpf, Map, MapCore, MapType, Object, ObjectBuilder, OpenObject, PrintCallback,
    PrintLevel, Program, RingBuffer, RingBufferBuilder,
};
use thiserror::Error;

/// `TEST_DATA_LEN` of the selftests: packet size for test runs of non-SYSCALL programs.
pub const TEST_DATA_LEN: usize = 64;

#[derive(Debug, Error)]
pub enum LoaderError {
    /// build.rs found no kernel build to compile against (its `MISSING` marker): the first
    /// `cargo nextest run` of a new `CRIB_VARIANT` compiles the harness before the setup script
    /// builds the kernels.
    #[error(
        "BPF object {path} was not built: when cargo compiled the harness there was no kernel \
         build at {kdir} (build.rs compiles the programs against its vmlinux.h). Build the \
         kernels (scripts/build; nextest's setup script does it), then run cargo build or \
         cargo nextest run again: cargo then compiles the programs"
    )]
    NotBuilt { path: PathBuf, kdir: String },
    #[error("cannot open BPF object {path}: {source}")]
    Open {
        path: PathBuf,
        source: libbpf_rs::Error,
    },
    #[error("{path} has no program named '{prog}' (it has: {available})")]
    NoSuchProgram {
        path: PathBuf,
        prog: String,
        available: String,
    },
    #[error("{path}: cannot set up program '{prog}' before loading: {source}")]
    Setup {
        path: PathBuf,
        prog: String,
        source: libbpf_rs::Error,
    },
    #[error(
        "{path}: libbpf could not prepare the object (bpf_object__prepare: {}); no \
         program reached the verifier.\nlibbpf:\n{}",
        std::io::Error::from_raw_os_error(*.errno),
        .libbpf.trim_end()
    )]
    Prepare {
        path: PathBuf,
        errno: i32,
        libbpf: String,
    },
    #[error("BPF_PROG_RUN of '{prog}' failed: {source}")]
    Run {
        prog: String,
        source: libbpf_rs::Error,
    },
    #[error("BPF_PROG_RUN of '{prog}': context of {size} bytes is larger than the kernel's limit")]
    CtxTooLarge { prog: String, size: usize },
    #[error("ring buffer '{map}': {source}")]
    Ringbuf {
        map: String,
        source: libbpf_rs::Error,
    },
}

/// How to load a program.
#[derive(Clone, Debug)]
pub struct LoadOpts {
    /// Verifier log level for the program under test (1 = instructions of the failing path
    /// and stats, 2 = every state, 4 = stats only; bits combine). With 0 the kernel logs
    /// nothing, but libbpf reloads a rejected program with level 1 to get the log, so a
    /// rejection always comes with a log. Default 1: level 2 on big programs produces
    /// megabytes and, once the buffer is full, a load that would succeed fails with ENOSPC.
    pub log_level: u32,
    /// Size of the verifier log buffer (default 16 MiB).
    pub log_size: usize,
    /// `BPF_F_*` program flags ORed into the program's own flags (default none).
    pub prog_flags: u32,
    /// `BPF_F_*` flags cleared from the program's flags after `prog_flags` was applied.
    pub clear_flags: u32,
    /// Other programs of the object to load along with `prog` (the selftests'
    /// `__auxiliary` programs). Their verifier logs are not captured.
    pub also_load: Vec<String>,
    /// Do not create maps an unprivileged user could not create (the selftests' unprivileged
    /// mode does the same), so that an unprivileged load fails in the verifier, not in map
    /// creation.
    pub unpriv_maps_only: bool,
    /// Maps whose `max_entries` is set before the object is loaded, by name (e.g. a smaller
    /// ring buffer, for a test that makes it overflow).
    pub max_entries: Vec<(String, u32)>,
}

impl Default for LoadOpts {
    fn default() -> Self {
        LoadOpts {
            log_level: 1,
            log_size: 16 << 20,
            prog_flags: 0,
            clear_flags: 0,
            also_load: Vec::new(),
            unpriv_maps_only: false,
            max_entries: Vec::new(),
        }
    }
}

/// The result of a load attempt.
#[derive(Debug)]
pub struct Loaded {
    /// The loaded object, if the load succeeded.
    pub object: Option<Object>,
    /// The verifier log of the program under test (may be empty for a successful load with
    /// log level 0).
    pub log: String,
    /// `(errno, libbpf's messages)` if the load failed.
    pub error: Option<(i32, String)>,
}

impl Loaded {
    /// The loaded program under test (`None` if the load failed).
    pub fn prog(&self, name: &str) -> Option<Program<'_>> {
        self.object.as_ref().and_then(|o| find_prog(o, name))
    }
}

/// A program of a loaded object by name.
pub fn find_prog<'a>(obj: &'a Object, name: &str) -> Option<Program<'a>> {
    obj.progs().find(|p| p.name() == name)
}

/// Whether an unprivileged user may create maps of this type (mirrors the selftests'
/// `is_unpriv_capable_map`).
pub fn unpriv_capable_map(ty: MapType, flags: u32) -> bool {
    match ty {
        MapType::Hash | MapType::PercpuHash | MapType::HashOfMaps => {
            flags & libbpf_sys::BPF_F_ZERO_SEED == 0
        }
        MapType::PercpuCgroupStorage
        | MapType::Array
        | MapType::RingBuf
        | MapType::ProgArray
        | MapType::CgroupArray
        | MapType::PercpuArray
        | MapType::UserRingBuf
        | MapType::ArrayOfMaps
        | MapType::CgroupStorage
        | MapType::PerfEventArray => true,
        _ => false,
    }
}

/// libbpf's own messages (warnings: missing kfuncs, relocation or map-creation failures),
/// collected while a load runs (from [`PendingLoad::prepare`] or the start of
/// [`PendingLoad::load`] to its end). Loads are serialised by [`LOAD_LOCK`].
static LIBBPF_MSGS: Mutex<String> = Mutex::new(String::new());
static LOAD_LOCK: Mutex<()> = Mutex::new(());

fn collect_libbpf_msg(_level: PrintLevel, msg: String) {
    if let Ok(mut m) = LIBBPF_MSGS.lock() {
        if m.len() < (1 << 20) {
            m.push_str(&msg);
        }
    }
}

/// libbpf's print callback pointed at [`LIBBPF_MSGS`] while this lives; holds [`LOAD_LOCK`]
/// (the callback is process-wide) and restores the previous callback when dropped.
struct Capture {
    _guard: MutexGuard<'static, ()>,
    previous: Option<(PrintLevel, PrintCallback)>,
}

impl Capture {
    fn start() -> Capture {
        // A poisoned lock only means another load panicked; the state it guards is reset here.
        let guard = LOAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut m) = LIBBPF_MSGS.lock() {
            m.clear();
        }
        let previous = libbpf_rs::set_print(Some((PrintLevel::Info, collect_libbpf_msg)));
        Capture {
            _guard: guard,
            previous,
        }
    }

    fn messages(&self) -> String {
        LIBBPF_MSGS.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        libbpf_rs::set_print(self.previous.take());
    }
}

fn prog_names(open: &OpenObject) -> Vec<String> {
    open.progs()
        .map(|p| p.name().to_string_lossy().into_owned())
        .collect()
}

/// Open `obj`, load `prog` (and `opts.also_load`) only, and return the verifier log.
/// A program the verifier rejects is `Ok` with `error` set; `Err` means the object could not
/// even be opened or the program does not exist.
pub fn load_one(obj: &Path, prog: &str, opts: &LoadOpts) -> Result<Loaded, LoaderError> {
    Ok(open_one(obj, prog, opts)?.load())
}

/// [`LoaderError::NotBuilt`] if `obj` is missing from a directory where build.rs left its
/// marker of having had no kernel build to compile against.
pub fn not_built(obj: &Path) -> Result<(), LoaderError> {
    if obj.exists() {
        return Ok(());
    }
    let marker = obj.parent().map(|d| d.join("MISSING"));
    match marker.and_then(|m| std::fs::read_to_string(m).ok()) {
        Some(kdir) => Err(LoaderError::NotBuilt {
            path: obj.to_path_buf(),
            kdir: kdir.trim().to_string(),
        }),
        None => Ok(()),
    }
}

/// An object opened and set up to load one program: the first half of [`load_one`].
/// [`load`](PendingLoad::load) finishes it; [`prepare`](PendingLoad::prepare) before that
/// splits off everything but the program loads, so that the two can run with different
/// capabilities (the verifier runner's unprivileged mode).
pub struct PendingLoad {
    open: OpenObject,
    /// The verifier log of the program under test. libbpf keeps only the pointer: the heap
    /// buffer stays where it is when the struct moves, and lives as long as the object.
    log_buf: Vec<u8>,
    path: PathBuf,
    /// Set by `prepare()`, so that `load()` reports libbpf's messages of both steps.
    capture: Option<Capture>,
}

/// Open `obj` and set up `prog` (log buffer, log level, flags), the `opts.also_load`
/// programs and the maps as [`load_one`] does, without touching the kernel.
pub fn open_one(obj: &Path, prog: &str, opts: &LoadOpts) -> Result<PendingLoad, LoaderError> {
    not_built(obj)?;
    let mut open = ObjectBuilder::default()
        .open_file(obj)
        .map_err(|source| LoaderError::Open {
            path: obj.to_path_buf(),
            source,
        })?;
    let names = prog_names(&open);
    if !names.iter().any(|n| n == prog) {
        return Err(LoaderError::NoSuchProgram {
            path: obj.to_path_buf(),
            prog: prog.to_string(),
            available: names.join(", "),
        });
    }
    for extra in &opts.also_load {
        if !names.iter().any(|n| n == extra) {
            return Err(LoaderError::NoSuchProgram {
                path: obj.to_path_buf(),
                prog: extra.clone(),
                available: names.join(", "),
            });
        }
    }

    let log_size = opts.log_size.max(4096);
    let mut log_buf = vec![0u8; log_size];
    for mut p in open.progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        let wanted = name == prog;
        p.set_autoload(wanted || opts.also_load.contains(&name));
        if !wanted {
            continue;
        }
        let raw = p.as_libbpf_object().as_ptr();
        // SAFETY: `raw` is a valid program of `open`; `log_buf` moves into the returned
        // `PendingLoad` together with `open` (its heap buffer does not move) and is not
        // touched by Rust until the load is over.
        let rc = unsafe {
            libbpf_sys::bpf_program__set_log_buf(
                raw,
                log_buf.as_mut_ptr().cast::<c_char>(),
                log_size as libbpf_sys::size_t,
            )
        };
        if rc != 0 {
            return Err(LoaderError::Setup {
                path: obj.to_path_buf(),
                prog: name,
                source: libbpf_rs::Error::from_raw_os_error(-rc),
            });
        }
        p.set_log_level(opts.log_level);
        // SAFETY: valid program pointer, see above.
        let flags = unsafe { libbpf_sys::bpf_program__flags(raw) };
        p.set_flags((flags | opts.prog_flags) & !opts.clear_flags);
    }
    for (name, entries) in &opts.max_entries {
        let setup = |source| LoaderError::Setup {
            path: obj.to_path_buf(),
            prog: prog.to_string(),
            source,
        };
        let mut map = open
            .maps_mut()
            .find(|m| m.name() == name.as_str())
            .ok_or_else(|| setup(libbpf_rs::Error::from_raw_os_error(libc::ENOENT)))?;
        map.set_max_entries(*entries).map_err(setup)?;
    }
    if opts.unpriv_maps_only {
        for mut m in open.maps_mut() {
            let capable = unpriv_capable_map(m.map_type(), m.map_flags());
            m.set_autocreate(capable)
                .map_err(|source| LoaderError::Setup {
                    path: obj.to_path_buf(),
                    prog: prog.to_string(),
                    source,
                })?;
        }
    }
    Ok(PendingLoad {
        open,
        log_buf,
        path: obj.to_path_buf(),
        capture: None,
    })
}

impl PendingLoad {
    /// `bpf_object__prepare()`: everything of `bpf_object__load()` but the program loads:
    /// kernel feature probes, vmlinux and module BTF, resolving kfunc and ksym externs
    /// (module BTF is found with `BPF_BTF_GET_NEXT_ID`/`BPF_BTF_GET_FD_BY_ID`, which need
    /// CAP_SYS_ADMIN), relocations, loading the object's BTF and creating its maps. Run with
    /// the capabilities these need; [`load`](Self::load) then only loads the programs. An
    /// `Err` means the programs never reached the verifier.
    pub fn prepare(mut self) -> Result<PendingLoad, LoaderError> {
        let capture = Capture::start();
        let raw_obj = self.open.as_libbpf_object().as_ptr();
        // SAFETY: `raw_obj` is the open object owned by `self.open`, not loaded yet.
        let rc = unsafe { libbpf_sys::bpf_object__prepare(raw_obj) };
        if rc != 0 {
            return Err(LoaderError::Prepare {
                path: self.path,
                errno: -rc,
                libbpf: capture.messages(),
            });
        }
        self.capture = Some(capture);
        Ok(self)
    }

    /// Load the programs (`bpf_object__load()`; after [`prepare`](Self::prepare) that
    /// loads the programs only) and return the verifier log of the program under test.
    pub fn load(mut self) -> Loaded {
        let capture = self.capture.take().unwrap_or_else(Capture::start);
        let raw_obj = self.open.as_libbpf_object().as_ptr();
        // SAFETY: `raw_obj` is the open object owned by `self.open`.
        let rc = unsafe { libbpf_sys::bpf_object__load(raw_obj) };
        let libbpf_msgs = capture.messages();
        drop(capture);

        let log_buf = &self.log_buf;
        let log = CStr::from_bytes_until_nul(log_buf)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(log_buf).into_owned());
        if rc == 0 {
            // SAFETY: the object was loaded successfully; ownership moves to `Object`.
            let object = unsafe { Object::from_ptr(self.open.take_ptr()) };
            Loaded {
                object: Some(object),
                log,
                error: None,
            }
        } else {
            Loaded {
                object: None,
                log,
                error: Some((-rc, libbpf_msgs)),
            }
        }
    }
}

/// `bpf_prog_test_run_opts` on a loaded program. libbpf-rs' `test_run` needs a `ProgramMut`;
/// this takes the `Program` every caller has and sets exactly the fields given.
fn test_run(prog: &Program, mut opts: libbpf_sys::bpf_test_run_opts) -> Result<i32, LoaderError> {
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t;
    // SAFETY: the fd belongs to a loaded program; every pointer in `opts` was set by the
    // callers below to live buffers of the stated sizes.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_fd().as_raw_fd(), &mut opts) };
    if rc != 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(-rc);
        return Err(LoaderError::Run {
            prog: prog.name().to_string_lossy().into_owned(),
            source: libbpf_rs::Error::from_raw_os_error(errno),
        });
    }
    Ok(opts.retval as i32)
}

/// Run a SYSCALL program once with `ctx` as its context; `ctx` receives what the program
/// wrote into it. Returns the program's return value. Only ctx_in is set: the kernel rejects
/// ctx_out, data, repeat, flags and duration for SYSCALL programs and writes the context
/// back into ctx_in.
pub fn run_syscall<T: Copy>(prog: &Program, ctx: &mut T) -> Result<i32, LoaderError> {
    let size = std::mem::size_of::<T>();
    if size > u16::MAX as usize {
        let name = prog.name().to_string_lossy().into_owned();
        return Err(LoaderError::CtxTooLarge { prog: name, size });
    }
    // All zero (bindgen's Default), as libbpf's LIBBPF_OPTS.
    let mut opts = libbpf_sys::bpf_test_run_opts::default();
    if size > 0 {
        opts.ctx_in = (ctx as *mut T).cast::<std::ffi::c_void>();
        opts.ctx_size_in = size as u32;
    }
    test_run(prog, opts)
}

/// Run a non-SYSCALL program once the way the selftests' test_loader does for `__retval`:
/// `TEST_DATA_LEN` zero bytes in, room for four times that out, repeat 1.
pub fn run_packet(prog: &Program) -> Result<i32, LoaderError> {
    let data_in = [0u8; TEST_DATA_LEN];
    let mut data_out = [0u8; TEST_DATA_LEN * 4];
    // The rest all zero (bindgen's Default), as libbpf's LIBBPF_OPTS.
    let opts = libbpf_sys::bpf_test_run_opts {
        data_in: data_in.as_ptr().cast(),
        data_size_in: TEST_DATA_LEN as u32,
        data_out: data_out.as_mut_ptr().cast(),
        data_size_out: data_out.len() as u32,
        repeat: 1,
        ..Default::default()
    };
    test_run(prog, opts)
}

/// A ring buffer map opened for reading once, drained any number of times.
///
/// Opening one costs an epoll instance and two mmaps of the map's data area (libbpf maps it
/// twice so records that wrap read contiguously), and closing it the munmaps: for a 16 MiB
/// ring buffer under TCG that was most of a small dump's fixed cost when every run opened and
/// closed its own reader. Programs run many times keep one.
pub struct RingbufReader {
    // Declared (and so dropped) before nothing it borrows: the mmaps hold their own reference
    // to the map, so the reader stays sound even if the object goes first.
    rb: RingBuffer<'static>,
    sink: Arc<Mutex<Vec<Vec<u8>>>>,
    name: String,
}

impl RingbufReader {
    /// Open `map` (a `BPF_MAP_TYPE_RINGBUF`) for reading.
    pub fn open(map: &Map) -> Result<Self, LoaderError> {
        let name = map.name().to_string_lossy().into_owned();
        let sink = Arc::new(Mutex::new(Vec::new()));
        let cb_sink = Arc::clone(&sink);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(map, move |data: &[u8]| {
                lock_ignoring_poison(&cb_sink).push(data.to_vec());
                0
            })
            .map_err(|source| LoaderError::Ringbuf {
                map: name.clone(),
                source,
            })?;
        let rb = builder.build().map_err(|source| LoaderError::Ringbuf {
            map: name.clone(),
            source,
        })?;
        Ok(Self { rb, sink, name })
    }

    /// Everything currently in the ring buffer, in order.
    pub fn drain(&self) -> Result<Vec<Vec<u8>>, LoaderError> {
        self.rb.consume().map_err(|source| LoaderError::Ringbuf {
            map: self.name.clone(),
            source,
        })?;
        Ok(std::mem::take(&mut *lock_ignoring_poison(&self.sink)))
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything currently in a ring buffer map, in order (opens and closes a reader: for a
/// program run more than once, keep a [`RingbufReader`]).
pub fn drain_ringbuf(map: &Map) -> Result<Vec<Vec<u8>>, LoaderError> {
    RingbufReader::open(map)?.drain()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpriv_map_types() {
        assert!(unpriv_capable_map(MapType::Array, 0));
        assert!(unpriv_capable_map(MapType::Hash, 0));
        assert!(!unpriv_capable_map(
            MapType::Hash,
            libbpf_sys::BPF_F_ZERO_SEED
        ));
        assert!(!unpriv_capable_map(MapType::LruHash, 0));
    }

    #[test]
    fn missing_object_is_an_error() {
        let r = load_one(Path::new("/nonexistent/x.bpf.o"), "p", &LoadOpts::default());
        assert!(matches!(r, Err(LoaderError::Open { .. })));
    }

    /// An object build.rs could not compile (no kernel build yet) says so and what to run.
    #[test]
    fn object_build_rs_skipped_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("MISSING"),
            "/cache/kernels/clang-debug/stock",
        )
        .expect("marker");
        let r = load_one(&dir.path().join("x.bpf.o"), "p", &LoadOpts::default());
        let Err(e @ LoaderError::NotBuilt { .. }) = r else {
            panic!("expected NotBuilt, got {r:?}");
        };
        let msg = e.to_string();
        assert!(
            msg.contains("no kernel build at /cache/kernels/clang-debug/stock"),
            "{msg}"
        );
        assert!(msg.contains("cargo nextest run again"), "{msg}");
    }
}

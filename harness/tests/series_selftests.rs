//! The series' own selftests (issue 8, item 7): what `kernel-patches/` adds under
//! `tools/testing/selftests/bpf` for in-tree testing, run on the patched kernel.
//!
//! `scripts/build` (`build_series_selftests`) builds them from the patched tree into the patched
//! export's `selftests/`, keyed like the kernel:
//!
//! - `bpf_testmod.ko` from `test_kmods/` (the series adds a `KF_ITER_NEXT_SCOPED` iterator to
//!   it), `make M=` against the patched kernel's object directory;
//! - one `<name>.bpf.o` per `progs/<name>.c` the series adds, compiled with the flags of the
//!   selftests' Makefile against the patched kernel's `vmlinux.h` (`progs.txt` lists the
//!   sources; `prog_tests/` holds the `prog_tests/*.c` the series adds or changes).
//!
//! Every annotated program (`__success`, `__failure`, `__msg`, ...) of those objects is one test,
//! `patched::<object>::<program>[@unpriv]`, checked by `crib_harness::cases` as `RUN_TESTS()` of
//! `test_progs` would, in a patched guest with `bpf_testmod.ko` loaded. As in
//! `tests/verifier.rs`, the first test to run boots one guest that runs all cases and prints
//! one result line per case; the others take their result from it (under nextest, through a
//! file keyed by `NEXTEST_RUN_ID`). A failure shows the verifier log excerpt.
//!
//! An object with no annotated program is driven by user-space code in `prog_tests/*.c`
//! (attach, set-up of sockets or files, checks of `.bss`/`.data` after the run). For the two
//! the series has, [`DRIVERS`] (`series_selftests/drivers.rs`) ports that code to Rust, and
//! each port is one more test of the same guest batch:
//!
//! - `patched::crib_sock_queue::dynptr_reads_queued_bytes_and_leaves_queue_intact`
//!   (`prog_tests/crib_sock_queue.c`, `test_crib_sq_dynptr()`): a unix stream socketpair with
//!   "CRIBDATA" and "12345678" queued and 2 bytes read, `target_fd` set, one `BPF_PROG_RUN` of
//!   `crib_sq_dynptr`; then retval 0, the program's globals (2 queue elements, skip 2, len 6,
//!   "IBDA" read and sliced, `bpf_dynptr_write()` -EINVAL) and the queue unchanged
//!   ("IBDATA12345678" left to `recv()`).
//! - `patched::file_reader_mode::only_preadable_files` (`prog_tests/file_reader.c`,
//!   `test_file_mode()`): `tid` set to this thread, the LSM program attached, then one open
//!   each: a regular file `O_RDONLY` (0, read back "bpf!"), `O_RDWR` (0), `O_WRONLY`
//!   (-EBADF), a FIFO `O_RDWR|O_NONBLOCK` (-EINVAL) and `/sys/kernel/tracing/trace_pipe`
//!   `O_RDONLY|O_NONBLOCK` (-ESPIPE; tracefs is mounted there first if it is not, and if the
//!   file still cannot be read the test fails saying so: upstream skips that case, here a
//!   case not run is never a pass).
//!
//! The globals are found by name in the object's BTF (`crib_harness::globals`) and read from
//! their section's map after the run. A port checks everything the C test asserts and prints
//! each check; a failure names the value that differed, expected and got. An object with no
//! annotated program and no port is listed as `patched::<object>::not_run`, ignored, naming
//! its `prog_tests/*.c`; run anyway, it fails (a skip is never a pass).

use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use crib_harness::cases::batch::{self, Batch};
use crib_harness::cases::{self, Case, ObjectCases};
use crib_harness::kernel::{Flavor, Kernel};
use crib_harness::settings;
use crib_harness::vm::{self, Vm};
use libtest_mimic::{Arguments, Failed, Trial};

// A crate root looks for its modules beside it; this one's live in its own directory.
#[path = "series_selftests/drivers.rs"]
mod drivers;
use drivers::{Driver, DRIVERS};

/// Directory of the patched export that holds the series' selftests.
const DIR: &str = "selftests";
const TESTMOD: &str = "bpf_testmod.ko";
/// The argument that makes this binary, in the guest, run every case.
const BATCH_ARG: &str = "--crib-series-batch";
const RESULT_TAG: &str = "CRIB-SERIES-RESULT";
/// Guest time per case on top of the default timeout (see tests/verifier.rs).
const SECS_PER_CASE: std::time::Duration = std::time::Duration::from_secs(20);

/// One BPF object built from a `progs/*.c` of the series.
struct Object {
    path: PathBuf,
    cases: Result<ObjectCases, String>,
}

impl Object {
    fn stem(&self) -> String {
        cases::object_stem(&self.path)
    }

    /// The `prog_tests/*.c` of the series that includes this object's skeleton.
    fn driven_by(&self) -> String {
        let skel = format!("\"{}.skel.h\"", self.stem());
        let dir = self.path.with_file_name("prog_tests");
        let mut hits: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| {
                std::fs::read_to_string(e.path())
                    .map(|t| t.contains(&skel))
                    .unwrap_or(false)
            })
            .map(|e| format!("prog_tests/{}", e.file_name().to_string_lossy()))
            .collect();
        hits.sort();
        if hits.is_empty() {
            "a prog_tests/*.c test".into()
        } else {
            hits.join(", ")
        }
    }
}

/// The series' selftests of the patched export: `bpf_testmod.ko` and the objects.
fn locate(kernel: &Kernel) -> Result<(PathBuf, Vec<Object>), String> {
    let dir = kernel.dir.join(DIR);
    let testmod = dir.join(TESTMOD);
    let list = dir.join("progs.txt");
    if !testmod.exists() || !list.exists() {
        return Err(format!(
            "{} is missing: the patched export {} was made before scripts/build built the \
             series' selftests; run scripts/build",
            testmod.display(),
            kernel.dir.display()
        ));
    }
    let text = std::fs::read_to_string(&list).map_err(|e| format!("{}: {e}", list.display()))?;
    let mut objects = Vec::new();
    for source in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let name = Path::new(source)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = dir.join(format!("{name}.bpf.o"));
        if !path.exists() {
            return Err(format!(
                "{}: not built, but {} lists {source}",
                path.display(),
                list.display()
            ));
        }
        let cases = cases::discover(&path).map_err(|e| e.to_string());
        objects.push(Object { path, cases });
    }
    Ok((testmod, objects))
}

/// Load `bpf_testmod.ko` into the running kernel (in the guest); already loaded is fine.
fn load_testmod(path: &Path) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let params = CString::default();
    // SAFETY: finit_module reads the module through the fd and a NUL-terminated parameter
    // string, both valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        return Ok(());
    }
    Err(format!(
        "finit_module({}): {err} (the guest's dmesg says why)",
        path.display()
    ))
}

/// What the listing produces.
enum Entry {
    Case(Box<Case>),
    /// A port of a `prog_tests/*.c` driver, run in the batch like a case.
    Driven {
        name: String,
        path: PathBuf,
        driver: &'static Driver,
    },
    /// Listed, not run: why.
    NotRun {
        name: String,
        why: String,
    },
    /// A test that can only fail: why.
    Broken {
        name: String,
        msg: String,
    },
}

fn entries(kernel: &Result<Kernel, String>) -> Vec<Entry> {
    let kernel = match kernel {
        Ok(k) => k,
        Err(e) => {
            return vec![Entry::Broken {
                name: "patched::setup::kernel".into(),
                msg: e.clone(),
            }]
        }
    };
    let objects = match locate(kernel) {
        Ok((_, o)) => o,
        Err(msg) => {
            return vec![Entry::Broken {
                name: "patched::setup::series_selftests_built".into(),
                msg,
            }]
        }
    };
    let mut out = Vec::new();
    for obj in &objects {
        let stem = obj.stem();
        match &obj.cases {
            Err(e) => out.push(Entry::Broken {
                name: format!("patched::{stem}::discover"),
                msg: e.clone(),
            }),
            Ok(oc) if oc.specs.is_empty() => match DRIVERS.iter().find(|d| d.stem == stem) {
                Some(driver) => out.push(Entry::Driven {
                    name: format!("patched::{stem}::{}", driver.test),
                    path: obj.path.clone(),
                    driver,
                }),
                None => out.push(Entry::NotRun {
                    name: format!("patched::{stem}::not_run"),
                    why: format!(
                        "{} has no annotated program: {} drives it from user space (attach, \
                     set-up, checks of its globals after the run), which this runner does not \
                     do",
                        obj.path.display(),
                        obj.driven_by()
                    ),
                }),
            },
            Ok(oc) => out.extend(
                oc.cases()
                    .into_iter()
                    .filter(|c| c.runs_on(Flavor::Patched))
                    .map(|c| Entry::Case(Box::new(c))),
            ),
        }
    }
    out
}

fn test_name(case: &Case) -> String {
    format!("patched::{}", case.name())
}

/// In the guest: load the module, run every case, one result line each.
fn run_batch() -> ExitCode {
    let fail = |msg: String| {
        print!("{}", batch::error_line(&msg));
        ExitCode::FAILURE
    };
    let kernel = match Kernel::locate(Flavor::Patched) {
        Ok(k) => k,
        Err(e) => return fail(e.to_string()),
    };
    let testmod = match locate(&kernel) {
        Ok((t, _)) => t,
        Err(e) => return fail(e),
    };
    if let Err(e) = load_testmod(&testmod) {
        return fail(e);
    }
    let _fixtures = match cases::fixtures() {
        Ok(f) => f,
        Err(e) => return fail(format!("the cases' fixtures: {e}")),
    };
    let mut n = 0;
    for e in entries(&Ok(kernel)) {
        let (name, r) = match e {
            Entry::Case(case) => {
                let name = test_name(&case);
                let r = cases::run_case(&case);
                (name, r)
            }
            Entry::Driven { name, path, driver } => {
                let r = driver.run(&path);
                (name, r)
            }
            Entry::NotRun { .. } | Entry::Broken { .. } => continue,
        };
        println!("{}", r.render(&name));
        println!("{}", batch::result_line(RESULT_TAG, &name, &r));
        n += 1;
    }
    println!("batch: {n} case(s) run with {TESTMOD} loaded");
    ExitCode::SUCCESS
}

/// Boot the patched guest that runs the batch; its result lines (or a `BATCH-ERROR` line).
fn boot_batch(n_cases: usize) -> String {
    let fail = |msg: String| batch::error_line(&msg);
    let kernel = match Kernel::locate(Flavor::Patched) {
        Ok(k) => k,
        Err(e) => return fail(e.to_string()),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find the test binary: {e}")),
    };
    let argv: Vec<OsString> = vec![exe.into_os_string(), BATCH_ARG.into()];
    let mut guest = Vm::new(&kernel);
    if settings::get().vm_timeout.is_none() {
        guest = guest.timeout(vm::DEFAULT_TIMEOUT + SECS_PER_CASE * n_cases as u32);
    }
    let run = match guest.run(&argv) {
        Ok(r) => r,
        Err(e) => return fail(format!("the patched guest failed: {e}")),
    };
    let splats = run.splats();
    if !splats.is_empty() {
        let ex: Vec<&str> = splats.iter().map(|s| s.excerpt.as_str()).collect();
        return fail(format!(
            "the kernel splatted while the guest ran the series' selftests (any case, or \
             loading {TESTMOD}, may be the cause):\n{}",
            ex.join("\n---\n")
        ));
    }
    let mut text: String = run
        .output
        .lines()
        .filter(|l| l.starts_with(RESULT_TAG) || l.starts_with(batch::BATCH_ERROR))
        .map(|l| format!("{l}\n"))
        .collect();
    if run.exit_code != 0 && !text.contains(batch::BATCH_ERROR) {
        let lines: Vec<&str> = run.output.lines().collect();
        text = fail(format!(
            "the batch in the patched guest exited {}:\n{}",
            run.exit_code,
            lines[lines.len().saturating_sub(60)..].join("\n")
        ));
    }
    text
}

/// The batch's results: once per process, and once per nextest run
/// (`batch::once_per_run`).
fn results(n_cases: usize) -> Batch {
    static CACHE: OnceLock<Batch> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            batch::once_per_run("series-selftests", || boot_batch(n_cases))
                .and_then(|t| batch::parse_results(RESULT_TAG, &t))
        })
        .clone()
}

fn main() -> ExitCode {
    if vm::in_guest() && std::env::args().nth(1).as_deref() == Some(BATCH_ARG) {
        return run_batch();
    }
    let args = Arguments::from_args();
    let kernel = Kernel::locate(Flavor::Patched).map_err(|e| e.to_string());
    let entries = entries(&kernel);
    let n_cases = entries
        .iter()
        .filter(|e| matches!(e, Entry::Case(_) | Entry::Driven { .. }))
        .count();
    let trials = entries
        .into_iter()
        .map(|e| match e {
            Entry::Case(case) => {
                let name = test_name(&case);
                let skip = case.static_skip();
                let ignored = skip.is_some();
                Trial::test(name.clone(), move || {
                    if let Some(why) = skip {
                        return Err(format!("not run: {why}").into());
                    }
                    batch::outcome(&results(n_cases), &name, "the patched guest")
                        .map_err(Failed::from)
                })
                .with_ignored_flag(ignored)
            }
            Entry::Driven { name, .. } => Trial::test(name.clone(), move || {
                batch::outcome(&results(n_cases), &name, "the patched guest").map_err(Failed::from)
            }),
            Entry::NotRun { name, why } => {
                Trial::test(name, move || Err(format!("not run: {why}").into()))
                    .with_ignored_flag(true)
            }
            Entry::Broken { name, msg } => Trial::test(name, move || Err(Failed::from(msg))),
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

//! Verifier-acceptance suite: every annotated program (`__success`, `__failure`, `__msg`, ...)
//! in the objects built from `selftests/progs/` and in the objects named by `CRIB_EXTRA_OBJS`
//! (colon-separated paths, e.g. upstream selftest objects) is one test,
//! `<flavor>::<object-stem>::<program>[@unpriv]`, for the stock and the patched kernel.
//!
//! Listing happens on the host and is cheap (BTF only). Running cases needs a guest:
//!
//! - Default (batch): the first case of a flavor that runs boots one guest of that flavor,
//!   which runs every case of the flavor and reports one result line per case; each test then
//!   reports its own case's result. Under nextest (one process per test) the results are
//!   shared through a file keyed by `NEXTEST_RUN_ID`, so one `cargo nextest run` boots one
//!   guest per flavor, never reusing results of an earlier run. A kernel splat during the
//!   batch fails every case of it (the splat cannot be pinned on one case).
//! - `CRIB_VERIFIER_VM_PER_CASE=1`: each test boots its own guest and re-runs this binary
//!   there with `--exact <name>` (slow: one boot per case, but a splat names its case).
//!
//! Cases for another architecture are listed as ignored and fail (without booting) if run
//! anyway: a skip is never a pass.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};

use crib_harness::cases::batch::{self, Batch};
use crib_harness::cases::{self, Case, Verdict};
use crib_harness::kernel::{Flavor, Kernel};
use crib_harness::settings;
use crib_harness::vm::{self, Vm};
use libtest_mimic::{Arguments, Failed, Trial};

const FLAVORS: [Flavor; 2] = [Flavor::Stock, Flavor::Patched];
/// In the guest: run every case of this flavor and print result lines.
const BATCH_ENV: &str = "CRIB_VERIFIER_BATCH";
const PER_CASE_ENV: &str = "CRIB_VERIFIER_VM_PER_CASE";
const RESULT_TAG: &str = "CRIB-VERIFIER-RESULT";
/// Guest time allowed per case on top of the default timeout (a case takes 0-4 s under TCG
/// with the debug kernel; big objects with many BTF types take longer to open).
const BATCH_SECS_PER_CASE: std::time::Duration = std::time::Duration::from_secs(20);

/// What the listing produces: a case to run, or a test that can only fail.
enum Entry {
    Case {
        flavor: Flavor,
        name: String,
        case: Box<Case>,
    },
    Broken {
        name: String,
        msg: String,
    },
}

fn objects() -> Result<Vec<PathBuf>, String> {
    let dir = Path::new(crib_harness::BPF_DIR);
    let mut objs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
        .collect();
    objs.sort();
    objs.extend(settings::get().extra_objs.iter().cloned());
    Ok(objs)
}

fn entries() -> Vec<Entry> {
    let dir = Path::new(crib_harness::BPF_DIR);
    let mut out = Vec::new();
    if dir.join("MISSING").exists() {
        let kdir = std::fs::read_to_string(dir.join("MISSING")).unwrap_or_default();
        for flavor in FLAVORS {
            out.push(Entry::Broken {
                name: format!("{flavor}::setup::bpf_objects_built"),
                msg: format!(
                    "the BPF objects were not compiled: no kernel build at {kdir}. Run \
                     scripts/build, then run the tests again (cargo rebuilds the objects)"
                ),
            });
        }
    }
    let objs = match objects() {
        Ok(o) => o,
        Err(msg) => {
            out.push(Entry::Broken {
                name: "setup::objects".into(),
                msg,
            });
            return out;
        }
    };
    let mut seen_stems: Vec<String> = Vec::new();
    let mut discovered = Vec::new();
    for obj in objs {
        let mut stem = cases::object_stem(&obj);
        let n = seen_stems.iter().filter(|s| **s == stem).count();
        seen_stems.push(stem.clone());
        if n > 0 {
            stem = format!("{stem}~{}", n + 1);
        }
        let found = match cases::guest_invisible(&obj) {
            Some(why) => Err(why),
            None => cases::discover(&obj).map_err(|e| e.to_string()),
        };
        discovered.push((stem, found));
    }
    for flavor in FLAVORS {
        for (stem, found) in &discovered {
            match found {
                Err(e) => out.push(Entry::Broken {
                    name: format!("{flavor}::{stem}::discover"),
                    msg: e.clone(),
                }),
                Ok(oc) => {
                    let mut oc = oc.clone();
                    oc.stem = stem.clone();
                    for case in oc.cases().into_iter().filter(|c| c.runs_on(flavor)) {
                        let name = format!("{flavor}::{}", case.name());
                        out.push(Entry::Case {
                            flavor,
                            name,
                            case: Box::new(case),
                        });
                    }
                }
            }
        }
    }
    out
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Boot one guest of `flavor` that runs every case of the flavor; returns the raw result
/// lines (or a `BATCH-ERROR` line).
fn boot_batch(flavor: Flavor) -> String {
    let fail = |msg: String| batch::error_line(&msg);
    let kernel = match Kernel::locate(flavor) {
        Ok(k) => k,
        Err(e) => return fail(e.to_string()),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find the test binary: {e}")),
    };
    let argv: Vec<OsString> = vec![exe.into_os_string()];
    let mut guest = Vm::new(&kernel).env(BATCH_ENV, flavor.as_str());
    if settings::get().vm_timeout.is_none() {
        // The whole batch runs in one guest: the default per-run timeout is for one test.
        let n = entries()
            .iter()
            .filter(|e| matches!(e, Entry::Case { flavor: f, .. } if *f == flavor))
            .count() as u32;
        guest = guest.timeout(vm::DEFAULT_TIMEOUT + BATCH_SECS_PER_CASE * n);
    }
    let run = match guest.run(&argv) {
        Ok(r) => r,
        Err(e) => return fail(format!("the {flavor} guest failed: {e}")),
    };
    let splats = run.splats();
    if !splats.is_empty() {
        let ex: Vec<&str> = splats.iter().map(|s| s.excerpt.as_str()).collect();
        return fail(format!(
            "the kernel splatted while the {flavor} guest ran all cases (any of them may be \
             the cause; rerun with {PER_CASE_ENV}=1 to pin it down):\n{}",
            ex.join("\n---\n")
        ));
    }
    if run.exit_code != 0 {
        return fail(format!(
            "the batch run in the {flavor} guest exited {}:\n{}",
            run.exit_code,
            tail_lines(&run.output, 60)
        ));
    }
    let mut text: String = run
        .output
        .lines()
        .filter(|l| l.starts_with(RESULT_TAG))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!(
        "{RESULT_TAG}-INFO\tguest boot {:.1}s, total {:.1}s for the whole {flavor} batch\n",
        run.boot.as_secs_f64(),
        run.total.as_secs_f64()
    ));
    text
}

/// Results of `flavor`'s batch: computed once per process, and once per nextest run
/// (`batch::once_per_run`).
fn batch(flavor: Flavor) -> Batch {
    static CACHE: OnceLock<Mutex<HashMap<Flavor, Batch>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = guard.get(&flavor) {
        return b.clone();
    }
    let b = batch::once_per_run(&format!("verifier-{flavor}"), || boot_batch(flavor))
        .and_then(|t| batch::parse_results(RESULT_TAG, &t));
    guard.insert(flavor, b.clone());
    b
}

fn report_of(case: &Case, name: &str) -> cases::CaseReport {
    let r = cases::run_case(case);
    println!("{}", r.render(name));
    r
}

/// In the guest: run every case of `flavor`, one result line each.
fn run_batch(flavor: &str) -> ExitCode {
    let _fixtures = match cases::fixtures() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot open the cases' regular-file fixture (this executable): {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut n = 0;
    for e in entries() {
        let Entry::Case {
            flavor: f,
            name,
            case,
        } = e
        else {
            continue;
        };
        if f.as_str() != flavor {
            continue;
        }
        let r = report_of(&case, &name);
        println!("{}", batch::result_line(RESULT_TAG, &name, &r));
        n += 1;
    }
    println!("batch: {n} case(s) run");
    ExitCode::SUCCESS
}

fn case_trial(flavor: Flavor, name: String, case: Case) -> Trial {
    let skip = case.static_skip();
    let ignored = skip.is_some();
    let test_name = name.clone();
    Trial::test(name, move || {
        if let Some(why) = skip {
            return Err(format!("not run: {why}").into());
        }
        if vm::in_guest() {
            let r = report_of(&case, &test_name);
            return match r.verdict {
                Verdict::Pass => Ok(()),
                Verdict::Fail(_) => Err("case failed (details above)".into()),
                Verdict::Skip(why) => Err(format!("not run: {why}").into()),
            };
        }
        if settings::get().verifier_vm_per_case {
            let run = vm::run_test_in_guest(flavor, &test_name).map_err(|e| format!("{e:#}"))?;
            println!(
                "(own guest: boot {:.1}s, total {:.1}s)",
                run.boot.as_secs_f64(),
                run.total.as_secs_f64()
            );
            return Ok(());
        }
        batch::outcome(&batch(flavor), &test_name, &format!("the {flavor} guest"))
            .map_err(Failed::from)
    })
    .with_ignored_flag(ignored)
}

fn main() -> ExitCode {
    if vm::in_guest() {
        if let Some(flavor) = &settings::get().verifier_batch {
            return run_batch(flavor);
        }
    }
    let args = Arguments::from_args();
    let trials = entries()
        .into_iter()
        .map(|e| match e {
            Entry::Case { flavor, name, case } => case_trial(flavor, name, *case),
            Entry::Broken { name, msg } => Trial::test(name, move || Err(Failed::from(msg))),
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

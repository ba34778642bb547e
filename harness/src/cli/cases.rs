//! `crib cases`: list the verifier-acceptance cases of any BPF objects, then run them all in
//! one guest (or, inside a guest, run them here).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{report_run, KernelArg};
use crate::cases::{self, Verdict};
use crate::kernel::{Flavor, Kernel};
use crate::vm::{self, Vm, EXIT_VM_FAILED};

/// Run the verifier-acceptance cases of BPF objects in one guest
///
/// Lists the cases (`__success`/`__failure`/`__msg`/... annotations, as in selftests/bpf) of
/// any BPF objects, then boots one guest and runs them all there.
///
/// Prints one PASS/FAIL/SKIP block per case and `N passed, N failed`. Exit 0 only if none
/// failed; 69 if the VM failed. Environment as for `crib vm`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CasesArgs {
    /// Which kernel to run the cases on
    #[arg(long, value_enum, default_value_t = KernelArg::Stock)]
    pub kernel: KernelArg,
    /// Only list the cases (no VM)
    #[arg(long)]
    pub list: bool,
    /// BPF objects (not under /tmp: the guest mounts its own tmpfs there)
    #[arg(value_name = "OBJ", required = true)]
    pub objs: Vec<PathBuf>,
}

/// Run `crib cases`.
pub fn run(a: &CasesArgs) -> Result<i32> {
    let flavor = Flavor::from(a.kernel);
    let mut objs = Vec::with_capacity(a.objs.len());
    for p in &a.objs {
        objs.push(p.canonicalize().with_context(|| p.display().to_string())?);
    }
    let mut all = Vec::new();
    for obj in &objs {
        if let Some(why) = cases::guest_invisible(obj) {
            bail!("{why}");
        }
        let oc = cases::discover(obj)?;
        let found = oc.cases();
        if found.is_empty() {
            log::warn!("{}: no annotated programs", obj.display());
        }
        for c in found {
            if c.runs_on(flavor) {
                all.push(c);
            } else {
                println!("  not on {flavor}: {}", c.name());
            }
        }
    }
    let in_guest = vm::in_guest();
    if !in_guest || a.list {
        for c in &all {
            let e = c.expect();
            let verdict = if e.failure { "failure" } else { "success" };
            let desc = c.spec.description.as_deref().unwrap_or("");
            let skip = c
                .static_skip()
                .map(|s| format!(" [SKIP: {s}]"))
                .unwrap_or_default();
            println!("  {:<50} {verdict:<8} {desc}{skip}", c.name());
        }
        println!("{} case(s) for the {flavor} kernel", all.len());
    }
    if all.is_empty() {
        log::error!("nothing to run");
        return Ok(1);
    }
    if a.list {
        return Ok(0);
    }
    if in_guest {
        let _fixtures = cases::fixtures()
            .context("opening this executable read-only (the cases' regular-file fixture)")?;
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        for c in &all {
            let r = cases::run_case(c);
            println!("{}", r.render(&c.name()));
            match r.verdict {
                Verdict::Pass => passed += 1,
                Verdict::Fail(_) => failed += 1,
                Verdict::Skip(_) => skipped += 1,
            }
        }
        let extra = if skipped > 0 {
            format!(" ({skipped} skipped, not run)")
        } else {
            String::new()
        };
        println!("{passed} passed, {failed} failed{extra}");
        return Ok(if failed > 0 { 1 } else { 0 });
    }
    let kernel = match Kernel::locate(flavor) {
        Ok(k) => k,
        Err(e) => {
            log::error!("{e}");
            return Ok(EXIT_VM_FAILED);
        }
    };
    let exe = std::env::current_exe().context("cannot find the crib binary")?;
    let mut argv: Vec<OsString> = vec![
        exe.into(),
        "cases".into(),
        "--kernel".into(),
        flavor.as_str().into(),
    ];
    argv.extend(objs.into_iter().map(OsString::from));
    let run = match Vm::new(&kernel).echo(true).run(&argv) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return Ok(EXIT_VM_FAILED);
        }
    };
    Ok(report_run(module_path!(), &kernel, &run))
}

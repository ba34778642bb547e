//! The bodies of the `crib` subcommands (`src/bin/crib.rs` only parses and dispatches).
//!
//! Each subcommand is a module with a `clap::Args` struct, whose doc comments are the
//! subcommand's help, and a `run` function returning the process exit code. Progress and
//! diagnostics go through `log` (set up by [`init_logging`]); results go to stdout.

pub mod bench;
pub mod bench_fds;
pub mod bench_run;
pub mod bench_socks;
pub mod cases;
pub mod demo;
pub mod dump;
pub mod vm;

use std::io::Write as _;

use crate::kernel::{Flavor, Kernel};
use crate::vm::{GuestRun, EXIT_SPLAT};

/// Which kernel a subcommand boots (`--kernel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelArg {
    /// The stock kernel with `crib_kfuncs.ko` loaded
    #[default]
    Stock,
    /// The kernel with the series applied (kfuncs built in)
    Patched,
}

impl From<KernelArg> for Flavor {
    fn from(k: KernelArg) -> Flavor {
        match k {
            KernelArg::Stock => Flavor::Stock,
            KernelArg::Patched => Flavor::Patched,
        }
    }
}

/// Log to stderr as `crib <subcommand>: message` (`warning:`/`error:` before the message for
/// those levels). `RUST_LOG` overrides the default level, info.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            let who = log_prefix(record.target());
            let level = match record.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                log::Level::Info => "",
                log::Level::Debug => "debug: ",
                log::Level::Trace => "trace: ",
            };
            writeln!(buf, "{who}: {level}{}", record.args())
        })
        .init();
}

/// `crib vm` for a record of `crib_harness::cli::vm`, `crib` for the binary itself, else the
/// module path (library modules that log on their own).
fn log_prefix(target: &str) -> String {
    match target.strip_prefix("crib_harness::cli::") {
        Some(sub) => format!("crib {}", sub.split("::").next().unwrap_or(sub)),
        None if target == "crib" => "crib".into(),
        None => target
            .trim_start_matches("crib_harness::")
            .replace("::", " "),
    }
}

/// Report how a guest run went and turn it into `crib`'s exit code: the command's own, or
/// [`EXIT_SPLAT`] (with every excerpt printed) when the guest's dmesg holds a kernel splat.
/// `target` is the log target of the subcommand that booted the guest (its `module_path!()`).
pub fn report_run(target: &str, kernel: &Kernel, run: &GuestRun) -> i32 {
    log::info!(
        target: target,
        "{} kernel {}: command exited {} (boot to command {:.1}s, total {:.1}s)",
        kernel.flavor,
        kernel.release,
        run.exit_code,
        run.boot.as_secs_f64(),
        run.total.as_secs_f64()
    );
    let splats = run.splats();
    if splats.is_empty() {
        return run.exit_code;
    }
    let excerpts: Vec<&str> = splats.iter().map(|s| s.excerpt.as_str()).collect();
    log::error!(
        target: target,
        "{} kernel splat(s) in the guest's dmesg:\n---\n{}",
        splats.len(),
        excerpts.join("\n---\n")
    );
    EXIT_SPLAT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prefixes_name_the_subcommand() {
        assert_eq!(log_prefix("crib_harness::cli::vm"), "crib vm");
        assert_eq!(log_prefix("crib_harness::cli::dump::table"), "crib dump");
        assert_eq!(log_prefix("crib"), "crib");
        assert_eq!(log_prefix("crib_harness::vm::accel"), "vm accel");
    }
}

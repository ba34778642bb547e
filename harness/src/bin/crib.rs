//! `crib`: the command line of the CRIB harness.
//!
//! Parsing only: every subcommand is a `crib_harness::cli` module with a `clap::Args` struct
//! (its doc comments are the help) and a `run` function returning the exit code. Add a
//! subcommand as such a module and one variant here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crib_harness::cli;

/// Build, boot and test CRIB kernels; dump a process's files with the CRIB kfuncs.
///
/// Usage errors exit 2. `RUST_LOG=debug` shows more of what a subcommand does.
#[derive(Debug, Parser)]
#[command(name = "crib", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
/// Each variant's help is the doc comment of its `Args` struct in `crib_harness::cli`.
enum Command {
    Vm(cli::vm::VmArgs),
    Cases(cli::cases::CasesArgs),
    Demo(cli::demo::DemoArgs),
    Bench(cli::bench::BenchArgs),
    Dump(cli::dump::DumpArgs),
    BenchSocks(cli::bench_socks::BenchSocksArgs),
    BenchFds(cli::bench_fds::BenchFdsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging();
    let result = match &cli.command {
        Command::Vm(a) => cli::vm::run(a),
        Command::Cases(a) => cli::cases::run(a),
        Command::Demo(a) => cli::demo::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Dump(a) => cli::dump::run(a),
        Command::BenchSocks(a) => cli::bench_socks::run(a),
        Command::BenchFds(a) => cli::bench_fds::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            log::error!(target: "crib", "{e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::ffi::OsString;
    use std::time::Duration;

    fn parse(v: &[&str]) -> Result<Command, clap::Error> {
        let argv = std::iter::once("crib").chain(v.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.command)
    }

    fn vm(v: &[&str]) -> cli::vm::VmArgs {
        match parse(&[&["vm"], v].concat()) {
            Ok(Command::Vm(a)) => a,
            other => panic!("{v:?}: {other:?}"),
        }
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_socks_takes_a_list_of_sizes() {
        match parse(&["bench-socks", "--sockets", "20,300", "--rounds", "2"]) {
            Ok(Command::BenchSocks(a)) => {
                assert_eq!((a.sockets, a.rounds), (vec![20, 300], 2));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["bench-socks", "--sockets", "0"]).is_err());
    }

    #[test]
    fn vm_args_take_flags_then_the_command_verbatim() {
        let a = vm(&[
            "--kernel",
            "patched",
            "--rw",
            "--timeout=30",
            "--backend",
            "direct",
            "--",
            "ls",
            "--rw",
        ]);
        assert_eq!(a.kernel, cli::KernelArg::Patched);
        assert!(a.rw);
        assert_eq!(a.timeout, Some(Duration::from_secs(30)));
        assert_eq!(a.backend, Some(cli::vm::BackendArg::Direct));
        assert_eq!(a.command, os(&["ls", "--rw"]));
    }

    #[test]
    fn vm_args_default_to_stock_ro_and_env_timeout() {
        let a = vm(&["--", "true"]);
        assert_eq!(
            a,
            cli::vm::VmArgs {
                kernel: cli::KernelArg::Stock,
                rw: false,
                timeout: None,
                backend: None,
                repeat: None,
                stats: false,
                command: os(&["true"]),
            }
        );
        assert!(vm(&["--stats"]).stats);
    }

    #[test]
    fn vm_args_reject_junk_with_a_reason() {
        let e = |v: &[&str]| {
            let err = parse(&[&["vm"], v].concat()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{v:?}: {err}");
            err.to_string()
        };
        assert!(e(&["--kernel", "vanilla", "--", "x"]).contains("stock"));
        assert!(e(&["--timeout", "0", "--", "x"]).contains("--timeout"));
        assert!(e(&["--timeout"]).contains("a value is required"));
        assert!(e(&["--backend=qemu", "--", "x"]).contains("vmtest"));
        assert!(e(&["--repeat", "0", "--", "x"]).contains("--repeat"));
        assert!(e(&["--repeat=many", "--", "x"]).contains("--repeat"));
        assert!(e(&["ls"]).contains("unexpected argument"));
        assert!(e(&["--"]).contains("CMD"));
        assert!(e(&["--stats", "--", "true"]).contains("cannot be used"));
    }

    #[test]
    fn vm_args_take_repeat() {
        let a = vm(&["--repeat", "200", "--kernel", "patched", "--", "true"]);
        assert_eq!(a.repeat, Some(200));
        assert_eq!(a.kernel, cli::KernelArg::Patched);
    }

    #[test]
    fn other_subcommands_parse() {
        match parse(&["dump", "--pid", "1", "--format", "json"]) {
            Ok(Command::Dump(a)) => {
                assert_eq!(a.pid, 1);
                assert_eq!(a.format, cli::dump::Format::Json);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["dump"]).is_err());
        assert!(parse(&["dump", "--pid", "x"]).is_err());
        match parse(&["bench", "--fds=10"]) {
            Ok(Command::Bench(a)) => assert_eq!((a.fds, a.rounds, a.warmup), (10, 100, 5)),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["bench", "--fds", "0"]).is_err());
        match parse(&["cases", "--kernel", "patched", "--list", "a.o", "b.o"]) {
            Ok(Command::Cases(a)) => {
                assert!(a.list);
                assert_eq!(a.objs.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["cases"]).is_err());
        assert!(matches!(parse(&["demo"]), Ok(Command::Demo(_))));
        assert!(parse(&["demo", "x"]).is_err());
        assert_eq!(parse(&[]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["--help"]).unwrap_err().exit_code(), 0);
    }
}

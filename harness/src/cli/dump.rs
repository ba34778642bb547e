//! `crib dump`: one process's fd table through the CRIB dump programs, as a table or JSON.

use anyhow::Result;

use crate::dump::kfuncs::{self, Provider};
use crate::dump::report::Report;
use crate::dump::{DumpError, Dumper, FileKind};
use crate::sock_dump::SockDumper;

/// (In a guest, as root) dump the fd table of a process
///
/// Walks the fd table of process PID with the CRIB kfuncs (one BPF_PROG_RUN of the file dump
/// program, one of the socket dump program if it has sockets) and prints, per fd, what lsof
/// and /proc/PID/fdinfo show: kind, open flags, access mode, position, mount id, inode, the
/// path exactly as `readlink /proc/PID/fd/N` prints it, and for sockets the endpoints, state
/// and queue sizes. The JSON schema is described in harness/README.md ("crib dump").
///
/// Exit 1 with what went wrong when the dump fails: no such process, zombie, kernel thread,
/// permission denied, the CRIB kfuncs unavailable (and how to get them), the program rejected
/// by the verifier (the end of its log), an incomplete dump.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(after_help = "Example: scripts/vm -- target/debug/crib dump --pid 1 --format json")]
pub struct DumpArgs {
    /// The process, in this pid namespace
    #[arg(long)]
    pub pid: i32,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Same as --format json
    #[arg(long, conflicts_with = "format", hide = true)]
    pub json: bool,
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per fd, lsof-like, with a header line
    Table,
    /// One JSON document (schema "crib-dump", version 1)
    Json,
}

/// Run `crib dump`.
pub fn run(a: &DumpArgs) -> Result<i32> {
    match collect(a.pid) {
        Ok(report) => {
            if a.json || a.format == Format::Json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
                log::info!("pid {}: {} fds", a.pid, report.files.len());
            }
            Ok(0)
        }
        Err(e) => {
            log::error!("{e}");
            Ok(1)
        }
    }
}

/// Dump `pid`: its files with their paths, then, if it has sockets, their summaries.
pub fn collect(pid: i32) -> Result<Report, DumpError> {
    let provider = kfuncs::provider().map_err(|why| DumpError::NoKfuncs { why })?;
    log::debug!(
        "CRIB kfuncs {}",
        match provider {
            Provider::BuiltIn => "built in",
            Provider::Module => "from crib_kfuncs.ko",
        }
    );
    let files = Dumper::load()?.dump_with_paths(pid)?;
    let socks = if files.iter().any(|f| f.kind == FileKind::Socket) {
        SockDumper::load()?.summaries(pid)?
    } else {
        Vec::new()
    };
    Ok(Report::new(pid, &files, &socks))
}

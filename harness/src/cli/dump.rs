//! `crib dump`: one process's fd table through the CRIB dump program.

use anyhow::Result;

use crate::dump;

/// (In a guest, as root) dump the fd table of a process
///
/// Walks the fd table of process PID with the CRIB dump program.
///
/// Exit 1 with what went wrong when the dump fails (no such process, zombie, kernel thread,
/// permission denied, kfuncs unavailable, program rejected, incomplete dump).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
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
    /// One line per fd, for people
    Table,
    /// One JSON document
    Json,
}

/// Run `crib dump`.
pub fn run(a: &DumpArgs) -> Result<i32> {
    let pid = a.pid;
    let files = match dump::Dumper::load().and_then(|d| d.dump(pid)) {
        Ok(f) => f,
        Err(e) => {
            log::error!("{e}");
            return Ok(1);
        }
    };
    if a.json || a.format == Format::Json {
        println!("[");
        for (i, f) in files.iter().enumerate() {
            let sep = if i + 1 < files.len() { "," } else { "" };
            println!("  {}{sep}", dump::format_json(f));
        }
        println!("]");
    } else {
        for f in &files {
            println!("{}", dump::format_line(f));
        }
        log::info!("pid {pid}: {} fds", files.len());
    }
    Ok(0)
}

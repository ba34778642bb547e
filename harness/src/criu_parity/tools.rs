//! CRIU and crit as `scripts/setup-criu` leaves them in `$CRIB_CACHE/tools/criu-4.2.1/bin`,
//! and running them: a dump of one process, and `crit decode` of the images that describe
//! its fds.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::criu::Images;
use super::ParityError;

/// The CRIU release `scripts/setup-criu` builds.
pub const CRIU_VERSION: &str = "4.2.1";

/// `criu dump`'s options besides `-t` and `-D`: keep the process running, dump its established
/// TCP connections (repair mode, as a checkpoint would), accept a session leader outside the
/// dump (the test process), and lock no network: our kernels have no nf_tables, and with
/// --leave-running nothing is restored.
pub const DUMP_OPTS: &[&str] = &[
    "--leave-running",
    "--tcp-established",
    "--shell-job",
    "--network-lock",
    "skip",
    "-v4",
    "-o",
    "dump.log",
];

/// The images [`decode`] reads: the fd table, the files, and what CRIU keeps apart about them.
const IMAGES: &[&str] = &[
    "fdinfo-",
    "files.img",
    "remap-fpath.img",
    "ghost-file-",
    "tcp-stream-",
    "sk-queues.img",
    "pipes-data.img",
];

#[derive(Debug, Clone)]
pub struct Tools {
    pub criu: PathBuf,
    pub crit: PathBuf,
}

/// Where `scripts/setup-criu` puts CRIU, under `cache` (`$CRIB_CACHE`).
pub fn dir_in(cache: &Path) -> PathBuf {
    cache.join("tools").join(format!("criu-{CRIU_VERSION}"))
}

/// `criu` and `crit` from `$CRIB_CACHE`; [`ParityError::CriuMissing`] (saying to run
/// scripts/setup) when either is not there.
pub fn locate() -> Result<Tools, ParityError> {
    locate_in(&crate::kernel::cache_dir())
}

pub fn locate_in(cache: &Path) -> Result<Tools, ParityError> {
    let bin = dir_in(cache).join("bin");
    let t = Tools {
        criu: bin.join("criu"),
        crit: bin.join("crit"),
    };
    for p in [&t.criu, &t.crit] {
        if !p.is_file() {
            return Err(ParityError::CriuMissing {
                version: CRIU_VERSION,
                path: p.display().to_string(),
            });
        }
    }
    Ok(t)
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, ParityError> {
    let out = cmd.output().map_err(|e| ParityError::Command {
        cmd: what.to_string(),
        status: "could not start".into(),
        tail: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(ParityError::Command {
        cmd: what.to_string(),
        status: out.status.to_string(),
        tail: tail(&String::from_utf8_lossy(&out.stderr), 30),
    })
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Tools {
    /// `criu dump -t pid -D dir` with [`DUMP_OPTS`]; on failure the end of its log.
    pub fn dump(&self, pid: i32, dir: &Path) -> Result<(), ParityError> {
        let mut cmd = Command::new(&self.criu);
        cmd.arg("dump")
            .arg("-t")
            .arg(pid.to_string())
            .arg("-D")
            .arg(dir)
            .args(DUMP_OPTS);
        let what = format!(
            "criu dump -t {pid} -D {} {}",
            dir.display(),
            DUMP_OPTS.join(" ")
        );
        run(&mut cmd, &what).map(drop).map_err(|e| match e {
            ParityError::Command {
                cmd,
                status,
                tail: t,
            } => ParityError::Command {
                cmd,
                status,
                tail: format!(
                    "{t}\n--- end of {}/dump.log ---\n{}",
                    dir.display(),
                    tail(
                        &std::fs::read_to_string(dir.join("dump.log")).unwrap_or_default(),
                        40
                    )
                ),
            },
            other => other,
        })
    }

    /// `crit decode -i <img>` (numbers as numbers, not `--pretty`) of every image in `dir`
    /// that describes an fd.
    pub fn decode(&self, dir: &Path) -> Result<Images, ParityError> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| ParityError::Image {
                what: dir.display().to_string(),
                why: e.to_string(),
            })?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".img") && IMAGES.iter().any(|p| n.starts_with(p)))
            .collect();
        names.sort();
        let mut images = Images::default();
        for name in names {
            let path = dir.join(&name);
            let out = run(
                Command::new(&self.crit).arg("decode").arg("-i").arg(&path),
                &format!("crit decode -i {}", path.display()),
            )?;
            images.insert(&name, &String::from_utf8_lossy(&out))?;
        }
        Ok(images)
    }
}

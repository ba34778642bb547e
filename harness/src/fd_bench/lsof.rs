//! Method 4, `lsof -p PID` (Debian's lsof), its `-F` field output parsed into rows.
//!
//! Fields asked for: f (fd), t (type), o (offset, with `-o`), i (inode), n (name), G (file
//! flags: fdinfo's `flags:` in hex). lsof has no mount id, and names pipes ("pipe") and unix
//! sockets ("type=STREAM") its own way, so those rows have no path; an anon inode's name
//! (`"[eventfd:5]"`: lsof adds the eventfd's id) becomes readlink's `"anon_inode:[eventfd]"`.

use std::path::Path;
use std::process::Command;

use super::row::FdRow;
use super::MethodError;
use crate::dump::FileKind;

/// Debian's lsof.
pub const LSOF: &str = "/usr/bin/lsof";

/// lsof 4.95 (Debian 12) lists at most this many numbered fds of a process (measured: a process
/// with 10,500 fds gets fds 0-9,999, exit 0, no warning), so larger tables skip it.
pub const MAX_FDS: usize = 10_000;
pub const MAX_FDS_WHY: &str = "lsof 4.95 lists only the first 10,000 numbered fds of a \
    process (fds from 10,000 on are missing from its output, exit 0, no warning)";

/// The arguments for `pid`: no host or port name lookups, no warnings, offsets always.
pub fn args(pid: i32) -> Vec<String> {
    [
        "-w",
        "-n",
        "-P",
        "-o",
        "-p",
        &pid.to_string(),
        "-F",
        "ftoinG",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `lsof -v`'s revision line, for the report.
pub fn version() -> Option<String> {
    let out = Command::new(LSOF).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("revision:")
            .map(|v| v.trim().to_string())
    })
}

/// Run lsof on `pid` and parse its output.
pub fn run(pid: i32) -> Result<Vec<FdRow>, MethodError> {
    if !Path::new(LSOF).exists() {
        return Err(MethodError::Load {
            what: LSOF.into(),
            why: "not installed (apt-get install lsof)".into(),
        });
    }
    let out = Command::new(LSOF)
        .args(args(pid))
        .output()
        .map_err(|source| MethodError::Io {
            what: format!("running {LSOF}"),
            source,
        })?;
    if !out.status.success() {
        return Err(MethodError::Lsof {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// lsof's TYPE as a kind.
fn kind(ty: &str) -> FileKind {
    match ty {
        "REG" => FileKind::Regular,
        "DIR" => FileKind::Directory,
        "FIFO" => FileKind::Fifo,
        "CHR" => FileKind::CharDev,
        "BLK" => FileKind::BlockDev,
        "LINK" => FileKind::Symlink,
        "a_inode" => FileKind::Anon,
        "unix" | "IPv4" | "IPv6" | "sock" | "netlink" | "ax25" | "inet" | "raw" | "raw6"
        | "pack" | "icmp" | "ipx" => FileKind::Socket,
        _ => FileKind::Other,
    }
}

/// "0t123" (decimal) or "0x7b" (hex, for large offsets).
fn offset(s: &str) -> Option<u64> {
    if let Some(d) = s.strip_prefix("0t") {
        d.parse().ok()
    } else if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else {
        None
    }
}

/// "[eventfd:5]" -> "anon_inode:[eventfd]".
fn anon_path(name: &str) -> String {
    let inner = name.trim_start_matches('[').trim_end_matches(']');
    let base = inner.split(':').next().unwrap_or(inner);
    format!("anon_inode:[{base}]")
}

/// Parse `-F ftoinG` output; only numeric fds (not cwd, rtd, txt, mem).
pub fn parse(text: &str) -> Result<Vec<FdRow>, MethodError> {
    let mut rows = Vec::new();
    let mut cur: Option<(FdRow, Option<String>, Option<String>)> = None;
    let finish = |c: Option<(FdRow, Option<String>, Option<String>)>,
                  rows: &mut Vec<FdRow>|
     -> Result<(), MethodError> {
        let Some((mut row, ty, name)) = c else {
            return Ok(());
        };
        let ty = ty.ok_or_else(|| MethodError::Record {
            method: "lsof",
            fd: row.fd,
            why: "no type (t) field".into(),
        })?;
        let k = kind(&ty);
        row.kind = Some(k);
        row.path = match (k, name) {
            (FileKind::Anon, Some(n)) => Some(anon_path(&n)),
            (
                FileKind::Regular
                | FileKind::Directory
                | FileKind::CharDev
                | FileKind::BlockDev
                | FileKind::Symlink,
                Some(n),
            ) => Some(n),
            _ => None,
        };
        rows.push(row);
        Ok(())
    };
    for line in text.lines() {
        let Some(tag) = line.chars().next() else {
            continue;
        };
        let value = &line[tag.len_utf8()..];
        let bad = |fd: u32, what: &str| MethodError::Record {
            method: "lsof",
            fd,
            why: format!("cannot parse {what} {value:?}"),
        };
        match tag {
            'p' => finish(cur.take(), &mut rows)?,
            'f' => {
                finish(cur.take(), &mut rows)?;
                if let Ok(fd) = value.parse::<u32>() {
                    cur = Some((FdRow::new(fd), None, None));
                }
            }
            _ => {
                let Some((row, ty, name)) = cur.as_mut() else {
                    continue;
                };
                match tag {
                    't' => *ty = Some(value.to_string()),
                    'n' => *name = Some(value.to_string()),
                    'o' => row.pos = Some(offset(value).ok_or_else(|| bad(row.fd, "offset"))?),
                    'i' => row.ino = Some(value.parse().map_err(|_| bad(row.fd, "inode"))?),
                    'G' => {
                        let hex = value.split(';').next().unwrap_or(value);
                        let hex = hex.strip_prefix("0x").ok_or_else(|| bad(row.fd, "flags"))?;
                        row.flags =
                            Some(u32::from_str_radix(hex, 16).map_err(|_| bad(row.fd, "flags"))?);
                    }
                    _ => {}
                }
            }
        }
    }
    finish(cur.take(), &mut rows)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_output_of_debians_lsof_parses() {
        // lsof 4.95 on Debian 12, trimmed.
        let out = "p32067\nfcwd\ntDIR\nn/tmp\nf0\ntFIFO\nG0x0;0x0\no0t0\ni186923\nnpipe\n\
                   f3\ntREG\nG0x88001;0x0\no0t12\ni10011823\nn/tmp/lsoftest\n\
                   f6\ntunix\nG0x80002;0x0\no0t0\ni186935\nntype=STREAM\n\
                   f8\nta_inode\nG0x80002;0x0\no0x10\ni1039\nn[eventfd:5]\n";
        let rows = parse(out).unwrap();
        assert_eq!(rows.iter().map(|r| r.fd).collect::<Vec<_>>(), [0, 3, 6, 8]);
        assert_eq!(rows[0].kind, Some(FileKind::Fifo));
        assert_eq!(rows[0].path, None);
        assert_eq!(rows[1].flags, Some(0o2100001));
        assert_eq!(rows[1].pos, Some(12));
        assert_eq!(rows[1].path.as_deref(), Some("/tmp/lsoftest"));
        assert_eq!(rows[2].kind, Some(FileKind::Socket));
        assert_eq!(rows[3].path.as_deref(), Some("anon_inode:[eventfd]"));
        assert_eq!((rows[3].pos, rows[3].ino), (Some(16), Some(1039)));
        assert!(parse("p1\nf3\ntREG\no12\n").is_err());
        assert!(parse("p1\nf3\nnx\n").is_err(), "no type");
    }
}

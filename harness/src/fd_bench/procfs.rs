//! Method 3, the procfs walk as a tool without BPF does it: readdir `/proc/PID/fd`, then per
//! fd `readlinkat` (the path), `fstatat` through the link (inode, type) and one read of
//! `/proc/PID/fdinfo/N` (pos, flags, mnt_id), all relative to directory fds opened once.

use std::os::fd::OwnedFd;

use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::read;

use super::row::FdRow;
use super::MethodError;
use crate::dump::FileKind;

fn sys(what: String) -> impl FnOnce(nix::errno::Errno) -> MethodError {
    move |e| MethodError::Io {
        what,
        source: e.into(),
    }
}

fn open_dir(path: &str) -> Result<OwnedFd, MethodError> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(path.to_string()))
}

/// Walk the fd table of `pid`.
pub fn walk(pid: i32) -> Result<Vec<FdRow>, MethodError> {
    let fd_path = format!("/proc/{pid}/fd");
    let info_path = format!("/proc/{pid}/fdinfo");
    let fd_dir = open_dir(&fd_path)?;
    let info_dir = open_dir(&info_path)?;
    let dir = std::fs::read_dir(&fd_path).map_err(|source| MethodError::Io {
        what: fd_path.clone(),
        source,
    })?;
    let mut rows = Vec::new();
    let mut buf = [0u8; 4096];
    for entry in dir {
        let entry = entry.map_err(|source| MethodError::Io {
            what: fd_path.clone(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.as_os_str();
        let fd: u32 =
            name.to_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| MethodError::Record {
                    method: "procfs walk",
                    fd: 0,
                    why: format!("{fd_path} has an entry {name:?} that is no fd number"),
                })?;
        let at = |what: &str| format!("{what} {fd_path}/{fd}");
        let link = readlinkat(&fd_dir, name).map_err(sys(at("readlink")))?;
        let st = fstatat(&fd_dir, name, AtFlags::empty()).map_err(sys(at("stat")))?;
        let info = openat(
            &info_dir,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys(format!("open {info_path}/{fd}")))?;
        // seq_file hands a small file over whole in one read.
        let len = read(&info, &mut buf).map_err(sys(format!("read {info_path}/{fd}")))?;
        if len == buf.len() {
            return Err(MethodError::Record {
                method: "procfs walk",
                fd,
                why: format!("{info_path}/{fd} is larger than {} bytes", buf.len()),
            });
        }
        drop(info);
        let text = std::str::from_utf8(&buf[..len]).map_err(|_| MethodError::Record {
            method: "procfs walk",
            fd,
            why: format!("{info_path}/{fd} is not text"),
        })?;
        let mut row = FdRow::new(fd);
        parse_fdinfo(text, &mut row).map_err(|why| MethodError::Record {
            method: "procfs walk",
            fd,
            why: format!("{info_path}/{fd}: {why}"),
        })?;
        let link = link.to_string_lossy().into_owned();
        row.kind = Some(if link.starts_with("anon_inode:") {
            FileKind::Anon
        } else {
            FileKind::from_mode(st.st_mode)
        });
        row.ino = Some(st.st_ino);
        row.path = Some(link);
        rows.push(row);
    }
    Ok(rows)
}

/// pos, flags (octal) and mnt_id of an fdinfo text.
pub fn parse_fdinfo(text: &str, row: &mut FdRow) -> Result<(), String> {
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let bad = |what: &str| format!("cannot parse {what} {value:?}");
        match key {
            "pos" => row.pos = Some(value.parse().map_err(|_| bad("pos"))?),
            "flags" => row.flags = Some(u32::from_str_radix(value, 8).map_err(|_| bad("flags"))?),
            "mnt_id" => row.mnt_id = Some(value.parse().map_err(|_| bad("mnt_id"))?),
            _ => {}
        }
    }
    for (have, what) in [
        (row.pos.is_some(), "pos"),
        (row.flags.is_some(), "flags"),
        (row.mnt_id.is_some(), "mnt_id"),
    ] {
        if !have {
            return Err(format!("no {what}: line in {text:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields() {
        let mut r = FdRow::new(3);
        parse_fdinfo(
            "pos:\t4096\nflags:\t02100002\nmnt_id:\t27\nino:\t12\neventfd-count:    5\n",
            &mut r,
        )
        .unwrap();
        assert_eq!(
            (r.pos, r.flags, r.mnt_id),
            (Some(4096), Some(0o2100002), Some(27))
        );
        let err = parse_fdinfo("pos:\t1\nflags:\t0\n", &mut FdRow::new(3)).unwrap_err();
        assert!(err.starts_with("no mnt_id"), "{err}");
        assert!(parse_fdinfo("pos:\tx\n", &mut FdRow::new(3)).is_err());
    }
}

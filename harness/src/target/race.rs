//! The racing thread of a target built with [`super::TargetSpec::race`].

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::stat::fstat;
use nix::unistd::{dup2, pipe2};

use super::child::{fail, open_at, CResult};
use super::expected::RaceLog;
use super::{RACE_FDS, RACE_FDS_HIGH};

/// Until `stop`, open files, make pipes/eventfds/sockets, dup2() them onto [`RACE_FDS`] and
/// [`RACE_FDS_HIGH`], and close them again. Only touches fds it created.
pub(super) fn race(dir: &Path, stop: &AtomicBool) -> CResult<RaceLog> {
    let mut log = RaceLog::default();
    let mut owned: BTreeMap<RawFd, OwnedFd> = BTreeMap::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let files: Vec<PathBuf> = (0..4).map(|i| dir.join(format!("race{i}"))).collect();
    for f in &files {
        open_at(f, OFlag::O_WRONLY | OFlag::O_CREAT)?;
    }
    let install = |fd: OwnedFd, log: &mut RaceLog, owned: &mut BTreeMap<RawFd, OwnedFd>| {
        let ino = fstat(&fd).map_or(0, |st| st.st_ino);
        log.installed.insert((fd.as_raw_fd() as u32, ino));
        owned.insert(fd.as_raw_fd(), fd);
    };
    let nth = |owned: &BTreeMap<RawFd, OwnedFd>, r: u64| {
        owned
            .keys()
            .nth((r >> 8) as usize % owned.len().max(1))
            .copied()
    };
    while !stop.load(Ordering::Relaxed) {
        log.ops += 1;
        let r = next();
        match r % 8 {
            0..=2 => {
                let f = &files[(r >> 8) as usize % files.len()];
                let flags = if r & 0x800 != 0 {
                    OFlag::O_RDWR | OFlag::O_CLOEXEC
                } else {
                    OFlag::O_RDONLY
                };
                install(open_at(f, flags)?, &mut log, &mut owned);
            }
            3 => {
                let (a, b) = pipe2(OFlag::empty()).map_err(fail("pipe2"))?;
                install(a, &mut log, &mut owned);
                install(b, &mut log, &mut owned);
            }
            4 => {
                let fd =
                    EventFd::from_value_and_flags(0, EfdFlags::empty()).map_err(fail("eventfd"))?;
                install(fd.into(), &mut log, &mut owned);
            }
            5 | 6 => {
                // dup2 one of ours onto a race fd (replacing whatever was there, if ours).
                let Some(src) = nth(&owned, r) else {
                    continue;
                };
                let window = if r & 0x10000 != 0 {
                    &RACE_FDS_HIGH
                } else {
                    &RACE_FDS
                };
                let dst = (window.start + ((r >> 20) as u32 % (window.end - window.start))) as i32;
                if dst == src {
                    continue;
                }
                let fd = match owned.remove(&dst) {
                    // dup2 replaces our own fd atomically.
                    Some(mut old) => {
                        dup2(&owned[&src], &mut old).map_err(fail("dup2 race"))?;
                        old
                    }
                    // A free slot: the lowest free fd from dst up is dst itself, unless
                    // another part of the table holds it (then skip this round).
                    None => {
                        let new = rustix::io::fcntl_dupfd_cloexec(&owned[&src], dst)
                            .map_err(|e| format!("F_DUPFD race: {e}"))?;
                        if new.as_raw_fd() != dst {
                            continue;
                        }
                        // dup2 clears close-on-exec
                        fcntl(&new, FcntlArg::F_SETFD(FdFlag::empty()))
                            .map_err(fail("F_SETFD race"))?;
                        new
                    }
                };
                install(fd, &mut log, &mut owned);
            }
            _ => {
                // close one, or several when many are open
                let n = if owned.len() > 48 { 8 } else { 1 };
                for _ in 0..n {
                    let Some(fd) = nth(&owned, next()) else {
                        break;
                    };
                    owned.remove(&fd);
                }
            }
        }
    }
    Ok(log)
}

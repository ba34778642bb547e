//! Waiting until the benchmark's sockets are quiet, before the reference dump.
//!
//! Two dumps that agree a few milliseconds apart do not prove that nothing is still coming:
//! once both ends' windows close, each end with bytes to send arms its zero-window probe
//! timer (`max(RTO, 200 ms)`), and the other end's answer to the first probe is a pure ACK
//! at its `snd_nxt`, which moves the prober's `snd_wl1` from the start of the last data
//! segment it received to `rcv_nxt` (`tcp_ack_update_window()`). A reference dump taken
//! before that answer differs from every dump after it (a flake seen on a loaded host:
//! `snd_wl1` 2048 bytes, one segment, apart). Likewise a delayed ACK or a retransmission
//! still pending changes `snd_una`, `rcv_wup` and the windows later.
//!
//! So before the reference dump, every socket of the connections (the target's and the
//! peers held here) must be quiet by `TCP_INFO`, whose fields the kernel reads under the
//! socket lock:
//!
//! - `tcpi_unacked == 0`: nothing in flight, so no retransmission or loss-probe timer, and
//!   the other end owes no ACK for data of ours (a pending delayed ACK over there);
//! - `tcpi_probes == 0`: no zero-window probe waiting for its answer;
//! - with bytes not yet sent (`tcpi_notsent_bytes > 0`): `tcpi_backoff >= 1` (the probe timer
//!   has fired since the window last closed, and by the point above its answer is in: the
//!   window fields it updates are final; `tcp_ack_update_rtt()` resets the backoff whenever
//!   new data is acked) and `tcpi_snd_wnd == 0` (a later probe would send data into any
//!   open window, `tcp_write_wakeup()`).
//!
//! Later probes are answered by the same pure ACK, which changes nothing a dump compares. The
//! wait is bounded; sockets that never settle fail the run naming one and its `TCP_INFO`.

use std::fmt;
use std::mem::{offset_of, size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::stat::{fstat, SFlag};

use super::{SockBenchError, SockTarget};
use crate::criu_dump::pidfd_getfd;

/// How long the sockets may take to settle. The first zero-window probe goes out about
/// 200 ms after a window closes; a probe that finds a small window open sends data and
/// restarts the cycle, so a few cycles can pass. Generous for a loaded TCG host.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Time between two polls of every socket's `TCP_INFO`.
const POLL: Duration = Duration::from_millis(20);

/// What of `struct tcp_info` says whether a socket can still change by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Activity {
    unacked: u32,
    probes: u8,
    backoff: u8,
    notsent: u32,
    snd_wnd: u32,
}

impl Activity {
    fn quiet(&self) -> bool {
        self.unacked == 0
            && self.probes == 0
            && (self.notsent == 0 || (self.backoff >= 1 && self.snd_wnd == 0))
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tcpi_unacked {}, tcpi_probes {}, tcpi_backoff {}, tcpi_notsent_bytes {}, \
             tcpi_snd_wnd {}",
            self.unacked, self.probes, self.backoff, self.notsent, self.snd_wnd
        )
    }
}

/// `TCP_INFO` of `fd`, the fields of [`Activity`].
fn activity(fd: &impl AsFd) -> nix::Result<Activity> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are valid for writes of their sizes; the kernel writes at most len
    // bytes. nix has no TCP_INFO option, and its sockopt_impl! would panic on a kernel whose
    // struct tcp_info is shorter than libc's.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    Errno::result(rc)?;
    // tcpi_snd_wnd is the newest field read (Linux 6.2); an older kernel's answer lacks it
    if (len as usize) < offset_of!(libc::tcp_info, tcpi_snd_wnd) + size_of::<u32>() {
        return Err(Errno::ENOPROTOOPT);
    }
    // SAFETY: zeroed, then partly written by the kernel: every byte is initialised.
    let info = unsafe { info.assume_init() };
    Ok(Activity {
        unacked: info.tcpi_unacked,
        probes: info.tcpi_probes,
        backoff: info.tcpi_backoff,
        notsent: info.tcpi_notsent_bytes,
        snd_wnd: info.tcpi_snd_wnd,
    })
}

fn errno_err(what: String) -> impl FnOnce(Errno) -> SockBenchError {
    move |e| SockBenchError::Io {
        what,
        source: e.into(),
    }
}

/// Copies of the target's socket fds (`pidfd_getfd()`), with their numbers there.
fn target_sockets(pid: i32) -> Result<Vec<(u32, OwnedFd)>, SockBenchError> {
    let io = |what: String| move |source| SockBenchError::Io { what, source };
    let pidfd = crate::truth::pidfd_open(pid).map_err(io(format!("pidfd_open({pid})")))?;
    let dir = format!("/proc/{pid}/fd");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(io(format!("readdir {dir}")))? {
        let e = e.map_err(io(format!("readdir {dir}")))?;
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let copy = pidfd_getfd(&pidfd, fd).map_err(io(format!("pidfd_getfd({pid}, {fd})")))?;
        let st = fstat(&copy).map_err(errno_err(format!("fstat of the target's fd {fd}")))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK {
            out.push((fd, copy));
        }
    }
    out.sort_by_key(|(fd, _)| *fd);
    Ok(out)
}

/// Wait until every socket of `target`'s connections is quiet (module doc); how long it took.
pub(super) fn wait_quiet(target: &SockTarget, limit: Duration) -> Result<Duration, SockBenchError> {
    let socks = target_sockets(target.pid())?;
    let named: Vec<(String, &OwnedFd)> = socks
        .iter()
        .map(|(fd, s)| (format!("the target's fd {fd}"), s))
        .chain(
            target
                .peers()
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("peer {} of {}", i + 1, target.peers().len()), s)),
        )
        .collect();
    let start = Instant::now();
    loop {
        let mut busy = 0;
        let mut example = None;
        for (name, s) in &named {
            let a = activity(s).map_err(errno_err(format!("TCP_INFO of {name}")))?;
            if !a.quiet() {
                busy += 1;
                example.get_or_insert_with(|| format!("{name}: {a}"));
            }
        }
        let waited = start.elapsed();
        let Some(example) = example else {
            return Ok(waited);
        };
        if waited >= limit {
            return Err(SockBenchError::Check(format!(
                "the sockets never settled in {limit:?}: {busy} of {} still have data in \
                 flight, a window probe unanswered, or bytes to send into an open window or \
                 before their first zero-window probe; e.g. {example}",
                named.len()
            )));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_needs_an_answered_probe_into_a_closed_window() {
        let q = Activity {
            unacked: 0,
            probes: 0,
            backoff: 1,
            notsent: 100,
            snd_wnd: 0,
        };
        assert!(q.quiet());
        assert!(Activity {
            notsent: 0,
            backoff: 0,
            ..q
        }
        .quiet());
        assert!(!Activity { unacked: 1, ..q }.quiet());
        assert!(!Activity { probes: 1, ..q }.quiet());
        assert!(!Activity { backoff: 0, ..q }.quiet());
        assert!(!Activity { snd_wnd: 512, ..q }.quiet());
    }
}

//! `crib bench-socks`: dumping N TCP sockets with data queued both ways, CRIB against CRIU's
//! method (issue 7, item 11).
//!
//! A target child holds N client ends of loopback TCP connections; this process holds the N
//! peers. Both ends have a small receive buffer (`--rcvbuf`) and each writes `--bytes` of a
//! known pattern to the other without anyone reading: every target socket then has unread
//! bytes in its receive queue and bytes its peer's closed window holds back in its send queue.
//!
//! - **CRIB**: one `BPF_PROG_RUN` of `selftests/progs/dump_socks.bpf.c` for the target pid
//!   (`sock_dump::SockDumper::dump_in_place`: run, decode and check the records where they
//!   lie in the ring buffer, every queue resolved to its chunks there; the bytes are not
//!   copied, as a checkpoint writer would `writev()` them from there). For the comparisons
//!   (not timed) the bytes are then copied into [`TcpSock`]s. Loading the program is timed
//!   apart, once; the copying dump (`SockDumper::dump`) is measured in the parts line.
//! - **CRIU's method** (`criu_dump.rs`, no BPF): sock_diag, `pidfd_getfd()` per fd, repair
//!   mode, `TCP_QUEUE_SEQ` and a peek per queue, as CRIU's libsoccr.
//!
//! Before anything is timed, the sockets must be quiet (`settle`: nothing in flight, every
//! zero-window probe answered), and then both dumps must give the same [`TcpSock`]s (fd, family, state,
//! addresses, the five sequence numbers, the repair window, MSS, window scales, and the bytes
//! of both queues), and every target socket must have bytes queued both ways. Then the rounds
//! run both methods back to back, alternating which goes first; every timed run's result is
//! compared (outside the timed part) with the checked one, so the numbers are those of dumps
//! of the same state. Reported per size: min and median of each, the ratio of the medians and
//! the median of the per-round ratios, and one more run of each split into its parts.

//!
//! Modules: `target` (the child holding the sockets), `settle` (waiting until they are
//! quiet), `dumps` (both dumps as [`TcpSock`]s), `report` (statistics and the printed
//! report); here the options, the checks and the run.

mod dumps;
mod report;
mod settle;
mod target;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use dumps::tcp_socks;
pub use dumps::{crib_dump, crib_dump_in_place, criu_method_dump, tcp_sock_of, tcp_socks_in_place};
use report::us;
pub use report::{CribParts, Report, ResultLine, SizeReport, RESULT_PREFIX};
pub use target::SockTarget;

use crate::criu_dump::{self, CriuError, Phases, TcpSock};
use crate::dump::{DumpError, RecordCount};
use crate::sock_dump::{self, Queue, SockDecoder, SockDumper};

pub const DEFAULT_SOCKETS: &[u32] = &[100, 1000];
pub const DEFAULT_ROUNDS: u32 = 5;
/// Bytes each end writes to the other.
pub const DEFAULT_BYTES: u32 = 16384;
/// SO_RCVBUF of both ends (the kernel doubles it).
pub const DEFAULT_RCVBUF: u32 = 4096;
/// Upper bound for one size: the target's fds, and the dump's records in the 64 MiB ring
/// buffer at the default sizes.
pub const MAX_SOCKETS: u32 = 10_000;
/// How often the pre-timing equality check is tried (the sockets are quiet by then, so
/// more than one attempt means something `settle` does not know of moved them).
const EQUAL_ATTEMPTS: u32 = 20;
/// How often one size may take a new checked state after a timed round found the sockets moved.
/// With 1,000 sockets behind closed windows a persist-timer probe now and then moves one: its
/// answer moves `snd_wl1`, or opens the peer's window, the target sends its whole write queue,
/// the peer drops it, and the socket retransmits with an exponential backoff (seen in 5 of 18
/// runs on 2026-12-03, with either module; `tcpi_backoff` 11 afterwards, so waiting for it to
/// be quiet again takes minutes). Such a socket's dumped state holds still between
/// retransmissions (the same sequence numbers, the bytes moved from the write to the
/// retransmit queue), so the round is redone against a new state both methods agree on.
const REDO_ROUNDS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SockBenchError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("target: {0}")]
    Target(String),
    #[error("CRIB dump: {0}")]
    Crib(#[from] DumpError),
    #[error("CRIU-method dump: {0}")]
    Criu(#[from] CriuError),
    #[error("{0}")]
    Check(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SockBenchError {
    let what = what.into();
    move |source| SockBenchError::Io { what, source }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub sockets: Vec<u32>,
    pub rounds: u32,
    pub bytes: u32,
    pub rcvbuf: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sockets: DEFAULT_SOCKETS.to_vec(),
            rounds: DEFAULT_ROUNDS,
            bytes: DEFAULT_BYTES,
            rcvbuf: DEFAULT_RCVBUF,
        }
    }
}

impl Options {
    pub fn check(&self) -> Result<(), SockBenchError> {
        let bad = |m: String| Err(SockBenchError::Usage(m));
        if self.sockets.is_empty() || self.sockets.iter().any(|&n| n == 0 || n > MAX_SOCKETS) {
            return bad(format!(
                "--sockets: each size must be 1..={MAX_SOCKETS}, got {:?}",
                self.sockets
            ));
        }
        if self.rounds == 0 {
            return bad("--rounds must be at least 1".into());
        }
        if self.bytes == 0 || self.bytes > 1 << 20 {
            return bad(format!("--bytes must be 1..=1048576, got {}", self.bytes));
        }
        if self.rcvbuf == 0 {
            return bad("--rcvbuf must be positive".into());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// The program's total run time so far from the kernel's BPF stats (`bpf_prog_info.run_time_ns`,
/// counted while `BPF_ENABLE_STATS` is on), found by name.
fn prog_run_time_ns(name: &str) -> Option<u64> {
    let mut id = 0u32;
    let mut best: Option<(u32, u64)> = None;
    loop {
        let mut next = 0u32;
        // SAFETY: next is valid for writes.
        if unsafe { libbpf_sys::bpf_prog_get_next_id(id, &mut next) } != 0 {
            break;
        }
        id = next;
        // SAFETY: plain call with an id.
        let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
        if fd < 0 {
            continue;
        }
        // SAFETY: the kernel returned a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut info = libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        // SAFETY: info and len are valid for writes of their sizes.
        let rc =
            unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
        if rc != 0 {
            continue;
        }
        let n: Vec<u8> = info
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        if n == name.as_bytes() && best.is_none_or(|(b, _)| id > b) {
            best = Some((id, info.run_time_ns));
        }
    }
    best.map(|(_, ns)| ns)
}

/// One CRIB run in parts (and the program's own time, if BPF stats can be switched on).
fn crib_parts(d: &SockDumper, pid: i32) -> Result<CribParts, SockBenchError> {
    // SAFETY: plain call; the stats stay on while the returned fd is open.
    let stats = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    // SAFETY: a new fd we own, when non-negative.
    let stats = (stats >= 0).then(|| unsafe { OwnedFd::from_raw_fd(stats) });
    let before = stats.as_ref().and(prog_run_time_ns(sock_dump::PROG_NAME));
    let t = Instant::now();
    let (retval, count) = d.run_into(pid, None, RecordCount::default())?;
    let run_drain = t.elapsed();
    let after = stats.as_ref().and(prog_run_time_ns(sock_dump::PROG_NAME));
    drop(stats);
    if retval != 0 {
        return Err(SockBenchError::Check(format!(
            "the counting run failed: {}",
            sock_dump::errno_str(-retval)
        )));
    }
    let t = Instant::now();
    let (retval, dec) = d.run_into(pid, None, SockDecoder::new(false))?;
    let socks = dec.judge(pid, retval)?;
    let run_decode = t.elapsed();
    let t = Instant::now();
    let v = tcp_socks(socks)?;
    let convert = t.elapsed();
    drop(v);
    let t = Instant::now();
    let dump = crib_dump_in_place(d, pid)?;
    let in_place = t.elapsed();
    drop(dump);
    Ok(CribParts {
        in_place,
        run_drain,
        prog: match (before, after) {
            (Some(b), Some(a)) if a > b => Some(Duration::from_nanos(a - b)),
            _ => None,
        },
        run_decode,
        convert,
        records: count.records,
        record_bytes: count.bytes,
    })
}

/// Dump with both methods until they agree: the checked dump, and how many attempts it took.
fn equal_dumps(d: &SockDumper, pid: i32) -> Result<(Vec<TcpSock>, u32), SockBenchError> {
    let mut last = Vec::new();
    for attempt in 1..=EQUAL_ATTEMPTS {
        // The timed CRIB dump (bytes left in place) and the copying one must agree too.
        let a = tcp_socks_in_place(&crib_dump_in_place(d, pid)?)?;
        let c = criu_method_dump(pid)?;
        let b = crib_dump(d, pid)?;
        let moved = criu_dump::compare(&a, &b, 5);
        let diff = criu_dump::compare(&a, &c, 10);
        if moved.is_empty() && diff.is_empty() {
            return Ok((a, attempt));
        }
        last = if moved.is_empty() {
            diff.iter()
                .map(|l| format!("CRIB vs CRIU's method: {l}"))
                .collect()
        } else {
            moved
                .iter()
                .map(|l| format!("the sockets moved between two CRIB dumps: {l}"))
                .collect()
        };
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(SockBenchError::Check(format!(
        "the two dumps never agreed in {EQUAL_ATTEMPTS} attempts; the last differences:\n  {}",
        last.join("\n  ")
    )))
}

fn one_size(
    d: &SockDumper,
    opts: &Options,
    n: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<SizeReport, SockBenchError> {
    progress(&format!("{n} sockets: spawning the target and its peers"));
    let target = SockTarget::spawn(n, opts.bytes, opts.rcvbuf)?;
    let pid = target.pid();
    progress(&format!(
        "{n} sockets: target pid {pid}; waiting until the sockets are quiet"
    ));
    let quiet_after = settle::wait_quiet(&target, settle::SETTLE_LIMIT)?;
    progress(&format!(
        "{n} sockets: quiet after {} ms; checking that both methods give the same dump",
        quiet_after.as_millis()
    ));
    let (reference, attempts) = equal_dumps(d, pid)?;
    if reference.len() != n as usize {
        return Err(SockBenchError::Check(format!(
            "the target holds {} TCP sockets, expected {n}",
            reference.len()
        )));
    }
    let both = reference
        .iter()
        .filter(|s| !s.recv.is_empty() && !s.send.is_empty())
        .count() as u32;
    if both != n {
        let s = reference
            .iter()
            .find(|s| s.recv.is_empty() || s.send.is_empty());
        return Err(SockBenchError::Check(format!(
            "only {both} of {n} sockets have bytes queued both ways (e.g. fd {:?}: {} bytes to \
             read, {} to send); try a smaller --rcvbuf or more --bytes",
            s.map(|s| s.fd),
            s.map_or(0, |s| s.recv.len()),
            s.map_or(0, |s| s.send.len())
        )));
    }
    let full = d.dump(pid, None)?;
    let mut packets = [0u64; 3];
    for s in &full {
        packets[0] += u64::from(s.sock.nr_of(Queue::TcpRecv));
        packets[1] += u64::from(s.sock.nr_of(Queue::TcpRtx));
        packets[2] += u64::from(s.sock.nr_of(Queue::TcpWrite));
    }
    drop(full);
    let mut rep = SizeReport {
        sockets: n,
        queued_both_ways: both,
        recv_bytes: reference.iter().map(|s| s.recv.len() as u64).sum(),
        send_bytes: reference.iter().map(|s| s.send.len() as u64).sum(),
        packets,
        quiet_after,
        attempts,
        ..Default::default()
    };
    progress(&format!(
        "{n} sockets: equal after {attempts} attempt(s); {} rounds",
        opts.rounds
    ));
    let mut reference = reference;
    let mut round = 0;
    while round < opts.rounds {
        match timed_round(d, pid, &reference, round)? {
            Ok((crib, criu)) => {
                rep.crib_us.push(crib);
                rep.criu_us.push(criu);
                round += 1;
            }
            Err(moved) if rep.redone_rounds < REDO_ROUNDS => {
                rep.redone_rounds += 1;
                progress(&format!(
                    "{n} sockets: {moved}; checking a new state and redoing the round ({} of at \
                     most {REDO_ROUNDS})",
                    rep.redone_rounds
                ));
                reference = equal_dumps(d, pid)?.0;
            }
            Err(moved) => {
                return Err(SockBenchError::Check(format!(
                    "{moved}, and they moved again after {REDO_ROUNDS} new checked states"
                )))
            }
        }
    }
    rep.crib_parts = crib_parts(d, pid)?;
    let mut phases = Phases::default();
    criu_dump::dump_tcp(pid, Some(&mut phases))?;
    rep.criu_phases = phases;
    drop(target);
    Ok(rep)
}

/// One timed round, both methods, the one going first alternating by round: their times in us,
/// or (inner `Err`) what differs from `reference`: the sockets moved since it was checked. A
/// failed dump is the outer error, which ends the benchmark.
fn timed_round(
    d: &SockDumper,
    pid: i32,
    reference: &[TcpSock],
    round: u32,
) -> Result<Result<(f64, f64), String>, SockBenchError> {
    let crib_first = round % 2 == 0;
    let (mut crib, mut criu) = (0.0, 0.0);
    for which in [crib_first, !crib_first] {
        let t = Instant::now();
        let (e, got) = if which {
            let dump = crib_dump_in_place(d, pid)?;
            let e = us(t.elapsed());
            (e, tcp_socks_in_place(&dump)?)
        } else {
            let got = criu_method_dump(pid)?;
            (us(t.elapsed()), got)
        };
        let diff = criu_dump::compare(reference, &got, 5);
        if !diff.is_empty() {
            return Ok(Err(format!(
                "round {round}: the {} dump differs from the checked one (the sockets moved): {}",
                if which { "CRIB" } else { "CRIU-method" },
                diff.join("; ")
            )));
        }
        if which {
            crib = e;
        } else {
            criu = e;
        }
    }
    Ok(Ok((crib, criu)))
}

/// Run the benchmark (in a guest, as root).
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, SockBenchError> {
    opts.check()?;
    let t = Instant::now();
    let d = SockDumper::load()?;
    let load = t.elapsed();
    let mut rep = Report {
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        flavor: crate::settings::get().flavor.clone(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        rounds: opts.rounds,
        bytes: opts.bytes,
        rcvbuf: opts.rcvbuf,
        load,
        sizes: Vec::new(),
    };
    for &n in &opts.sockets {
        rep.sizes.push(one_size(&d, opts, n, progress)?);
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_check() {
        assert!(Options::default().check().is_ok());
        for bad in [
            Options {
                sockets: vec![],
                ..Options::default()
            },
            Options {
                sockets: vec![0],
                ..Options::default()
            },
            Options {
                rounds: 0,
                ..Options::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn result_line_round_trips() {
        let s = SizeReport {
            sockets: 20,
            crib_us: vec![100.0, 300.0],
            criu_us: vec![1000.0, 1500.0],
            ..Default::default()
        };
        let r = Report {
            sizes: vec![s],
            ..Default::default()
        };
        let text = r.render();
        let line = text
            .lines()
            .find_map(|l| ResultLine::parse(l.trim()))
            .unwrap_or_else(|| panic!("no result line in:\n{text}"));
        assert_eq!(line.sockets, 20);
        assert!(line.equal);
        assert_eq!(line.rounds, 2);
        assert_eq!(line.crib_min_us, 100.0);
        assert_eq!(line.crib_median_us, 200.0);
        assert_eq!(line.criu_median_us, 1250.0);
        assert!((line.ratio_median - 6.25).abs() < 0.01);
        // per round: 10x and 5x
        assert!((line.ratio_paired - 7.5).abs() < 0.01);
    }
}

//! Statistics over the rounds and the report `crib bench-socks` prints (with the one
//! machine-readable line per size the test parses).

use std::fmt::Write as _;
use std::time::Duration;

use crate::bench::median;
use crate::criu_dump::Phases;

pub(super) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Two extra, untimed-for-the-table runs of CRIB split into their parts.
#[derive(Debug, Clone, Default)]
pub struct CribParts {
    /// `BPF_PROG_RUN` + draining the ring buffer, the records only counted
    pub run_drain: Duration,
    /// the program's own run time in that run, from the kernel's BPF stats, if they could be
    /// read
    pub prog: Option<Duration>,
    /// `BPF_PROG_RUN` + draining the ring buffer into the decoder, which checks the records
    /// in place (`SockDumper::dump` without the conversion)
    pub run_decode: Duration,
    /// turning the dumps into [`TcpSock`](crate::criu_dump::TcpSock)s
    pub convert: Duration,
    /// what the rounds time for CRIB: `BPF_PROG_RUN` + decoding in place without copying the
    /// bytes (`SockDumper::dump_in_place`) + every queue resolved to its chunks
    pub in_place: Duration,
    pub records: usize,
    pub record_bytes: usize,
}

/// What was dumped and measured for one number of sockets.
#[derive(Debug, Clone, Default)]
pub struct SizeReport {
    pub sockets: u32,
    /// sockets whose receive and send queues both hold bytes (must be all)
    pub queued_both_ways: u32,
    pub recv_bytes: u64,
    pub send_bytes: u64,
    /// packets per queue in the CRIB dump: receive, retransmit, write
    pub packets: [u64; 3],
    /// how long the sockets took to become quiet after the setup (`settle`)
    pub quiet_after: Duration,
    /// attempts until both dumps agreed, once quiet
    pub attempts: u32,
    /// timed rounds that found the sockets moved and were redone after settling again
    pub redone_rounds: u32,
    pub crib_us: Vec<f64>,
    pub criu_us: Vec<f64>,
    pub crib_parts: CribParts,
    pub criu_phases: Phases,
}

impl SizeReport {
    pub fn crib_median(&self) -> f64 {
        median(&self.crib_us)
    }
    pub fn criu_median(&self) -> f64 {
        median(&self.criu_us)
    }
    /// CRIU-method time / CRIB time, median over rounds of each round's pair.
    pub fn paired_ratio(&self) -> f64 {
        let r: Vec<f64> = self
            .criu_us
            .iter()
            .zip(&self.crib_us)
            .map(|(c, b)| c / b)
            .collect();
        median(&r)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub kernel: String,
    pub flavor: Option<String>,
    pub cpus: usize,
    pub rounds: u32,
    pub bytes: u32,
    pub rcvbuf: u32,
    pub load: Duration,
    pub sizes: Vec<SizeReport>,
}

/// The machine-readable line [`Report::render`] prints per size (and the test parses).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine {
    pub sockets: u32,
    pub equal: bool,
    pub rounds: u32,
    pub crib_min_us: f64,
    pub crib_median_us: f64,
    pub criu_min_us: f64,
    pub criu_median_us: f64,
    pub ratio_median: f64,
    pub ratio_paired: f64,
}

pub const RESULT_PREFIX: &str = "bench-socks result:";

impl ResultLine {
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(RESULT_PREFIX)?;
        let kv: std::collections::HashMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let f = |k: &str| kv.get(k)?.parse::<f64>().ok();
        Some(Self {
            sockets: kv.get("sockets")?.parse().ok()?,
            equal: *kv.get("equal")? == "yes",
            rounds: kv.get("rounds")?.parse().ok()?,
            crib_min_us: f("crib_min_us")?,
            crib_median_us: f("crib_median_us")?,
            criu_min_us: f("criu_min_us")?,
            criu_median_us: f("criu_median_us")?,
            ratio_median: f("ratio_median")?,
            ratio_paired: f("ratio_paired")?,
        })
    }
}

impl Report {
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "bench-socks: {} kernel {}, {} CPUs, harness {}; {} bytes written each way per \
             connection, SO_RCVBUF {} on both ends; {} rounds",
            self.flavor.as_deref().unwrap_or("?"),
            self.kernel,
            self.cpus,
            crate::fd_bench::guest::HARNESS_BUILD,
            self.bytes,
            self.rcvbuf,
            self.rounds
        );
        let _ = writeln!(
            o,
            "  loading dump_socks.bpf.o (once, not in the times below): {:.1} ms",
            self.load.as_secs_f64() * 1e3
        );
        for s in &self.sizes {
            let ms = |v: f64| v / 1e3;
            let _ = writeln!(
                o,
                "\n  {} sockets: {} with bytes queued both ways; {} receive-queue bytes in {} \
                 packets, {} send-queue bytes in {} retransmit + {} write packets; quiet after \
                 {} ms; both dumps equal (attempt {}); rounds redone after the sockets moved: {}",
                s.sockets,
                s.queued_both_ways,
                s.recv_bytes,
                s.packets[0],
                s.send_bytes,
                s.packets[1],
                s.packets[2],
                s.quiet_after.as_millis(),
                s.attempts,
                s.redone_rounds
            );
            let _ = writeln!(
                o,
                "    {:<44} {:>10} {:>10}",
                "per dump of all sockets, ms", "min", "median"
            );
            let _ = writeln!(
                o,
                "    {:<44} {:>10.2} {:>10.2}",
                "CRIB (BPF_PROG_RUN + decode in place)",
                ms(min(&s.crib_us)),
                ms(s.crib_median())
            );
            let _ = writeln!(
                o,
                "    {:<44} {:>10.2} {:>10.2}",
                "CRIU's method (diag + getfd + repair + peek)",
                ms(min(&s.criu_us)),
                ms(s.criu_median())
            );
            let _ = writeln!(
                o,
                "    CRIU's method / CRIB: {:.1}x (medians), {:.1}x (minimums), {:.1}x (median \
                 of the per-round ratios)",
                s.criu_median() / s.crib_median(),
                min(&s.criu_us) / min(&s.crib_us),
                s.paired_ratio()
            );
            let p = &s.crib_parts;
            let _ = writeln!(
                o,
                "    three more CRIB runs in parts: BPF_PROG_RUN + drain (records counted) {:.2} \
                 ms (program alone: {}); BPF_PROG_RUN + drain + decode copying the bytes out \
                 {:.2} ms, to TcpSock {:.2} ms; as timed (decode in place, no copy) {:.2} ms; \
                 {} records, {:.1} MiB",
                ms(us(p.run_drain)),
                p.prog
                    .map(|d| format!("{:.2} ms", ms(us(d))))
                    .unwrap_or_else(|| "n/a".into()),
                ms(us(p.run_decode)),
                ms(us(p.convert)),
                ms(us(p.in_place)),
                p.records,
                p.record_bytes as f64 / f64::from(1 << 20)
            );
            let _ = writeln!(
                o,
                "    one more CRIU-method run in parts: {}",
                s.criu_phases
            );
            let _ = writeln!(
                o,
                "  {RESULT_PREFIX} sockets={} equal=yes rounds={} crib_min_us={:.0} \
                 crib_median_us={:.0} criu_min_us={:.0} criu_median_us={:.0} \
                 ratio_median={:.2} ratio_paired={:.2}",
                s.sockets,
                s.crib_us.len(),
                min(&s.crib_us),
                s.crib_median(),
                min(&s.criu_us),
                s.criu_median(),
                s.criu_median() / s.crib_median(),
                s.paired_ratio()
            );
        }
        o
    }
}

//! The benchmark's results: per size and method the run times (min, median), the ratio to
//! CRIB measured in the same rounds, system calls, how time grows with the table, whether the
//! aims of issue 10 were met; as JSON (serde) and as a text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::guest::Machine;
use super::row::{Compared, Method};
use super::syscalls::SyscallCount;
use super::table::Mix;

/// Version of the JSON document; bump on an incompatible change.
pub const SCHEMA: &str = "crib-bench-fds/1";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// When the run ended, UTC, ISO 8601
    pub date_utc: String,
    pub machine: Machine,
    pub rounds: u32,
    pub lsof_version: Option<String>,
    /// Loading dump_files.bpf.c (CRIB), once per run, not in any dump's time
    pub crib_load_ms: f64,
    /// Loading iter_task_file.bpf.c, once per run
    pub iter_load_ms: f64,
    pub sizes: Vec<SizeResult>,
    /// Per method, the median time of each size over that of the first size
    pub growth: Vec<Growth>,
    pub aims: Vec<Aim>,
    /// Whether the PNG has text (a font was found) or only lines (labels are here)
    pub plot: Option<PlotInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlotInfo {
    pub path: String,
    pub labels: bool,
    /// What the plot shows, for a plot drawn without text
    pub legend: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    /// fds the target opened (the mix)
    pub fds: u32,
    pub mix: Mix,
    /// fds in its table in all (the mix, stdio, the harness pipes)
    pub table_fds: usize,
    /// Creating the iter/task_file link for this pid, not in any dump's time
    pub iter_link_ms: f64,
    /// Methods not run at this size, and why
    pub skipped: Vec<Skipped>,
    /// Where CRIB's and the iterator's time goes, step by step (`parts.rs`)
    pub parts: super::parts::Parts,
    /// Values compared per method against CRIB before timing, by field
    pub compared: BTreeMap<Method, Compared>,
    pub methods: Vec<MethodResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub method: Method,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub method: Method,
    /// Every timed run, in round order
    pub runs_ms: Vec<f64>,
    pub min_ms: f64,
    pub median_ms: f64,
    /// median_ms per fd of the table
    pub median_us_per_fd: f64,
    /// Median over rounds of (this method's time / CRIB's time in the same round)
    pub ratio_to_crib: f64,
    /// median_ms / CRIB's median_ms
    pub ratio_of_medians: f64,
    /// min_ms / CRIB's min_ms
    pub ratio_of_mins: f64,
    /// System calls of one more (untimed) run
    pub syscalls: SyscallCount,
}

#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub method: Method,
    /// (fds, median ms, median / the first size's median)
    pub points: Vec<(u32, f64, f64)>,
    /// Per step from one size to the next: (from fds, to fds, time ratio)
    pub steps: Vec<(u32, u32, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Aim {
    pub what: String,
    pub value: f64,
    pub target: String,
    pub met: bool,
}

/// Smallest value (0 for none).
pub fn min(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Median (mean of the middle two for an even count; 0 for none).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    crate::bench::median(v)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One method's result at one size, with CRIB's runs of the same rounds for the ratios.
pub fn method_result(
    method: Method,
    runs_ms: Vec<f64>,
    crib_runs_ms: &[f64],
    table_fds: usize,
    syscalls: SyscallCount,
) -> MethodResult {
    let per_round: Vec<f64> = runs_ms
        .iter()
        .zip(crib_runs_ms)
        .map(|(m, c)| m / c)
        .collect();
    let (min_ms, median_ms) = (min(&runs_ms), median(&runs_ms));
    MethodResult {
        method,
        min_ms,
        median_ms,
        median_us_per_fd: median_ms * 1e3 / table_fds.max(1) as f64,
        ratio_to_crib: median(&per_round),
        ratio_of_medians: median_ms / median(crib_runs_ms),
        ratio_of_mins: min_ms / min(crib_runs_ms),
        runs_ms,
        syscalls,
    }
}

/// Time growth per method over the sizes (in the order run).
pub fn growth(sizes: &[SizeResult]) -> Vec<Growth> {
    let Some(first) = sizes.first() else {
        return Vec::new();
    };
    first
        .methods
        .iter()
        .map(|m0| {
            let medians: Vec<(u32, f64)> = sizes
                .iter()
                .filter_map(|s| {
                    s.methods
                        .iter()
                        .find(|m| m.method == m0.method)
                        .map(|m| (s.fds, m.median_ms))
                })
                .collect();
            Growth {
                method: m0.method,
                points: medians
                    .iter()
                    .map(|(f, t)| (*f, *t, t / m0.median_ms))
                    .collect(),
                steps: medians
                    .windows(2)
                    .map(|w| (w[0].0, w[1].0, w[1].1 / w[0].1))
                    .collect(),
            }
        })
        .collect()
}

/// Issue 10's aims, for the sizes this run had: at 10k fds CRIB at least 25x faster than the
/// procfs walk and 2x faster than iter/task_file; 100k within 12x of 10k.
pub fn aims(sizes: &[SizeResult]) -> Vec<Aim> {
    let find = |fds: u32, m: Method| {
        sizes
            .iter()
            .find(|s| s.fds == fds)
            .and_then(|s| s.methods.iter().find(|r| r.method == m))
    };
    let mut out = Vec::new();
    for (m, target) in [(Method::Procfs, 25.0), (Method::IterTaskFile, 2.0)] {
        if let Some(r) = find(10_000, m) {
            out.push(Aim {
                what: format!("{m} / CRIB at 10k fds (median of per-round ratios)"),
                value: r.ratio_to_crib,
                target: format!(">= {target}"),
                met: r.ratio_to_crib >= target,
            });
        }
    }
    if let (Some(a), Some(b)) = (find(10_000, Method::Crib), find(100_000, Method::Crib)) {
        let v = b.median_ms / a.median_ms;
        out.push(Aim {
            what: "CRIB median at 100k / at 10k fds".into(),
            value: v,
            target: "<= 12".into(),
            met: v <= 12.0,
        });
    }
    out
}

impl Report {
    /// The text table `crib bench-fds` prints.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "fd dump benchmark: kernel {} ({}), {}, {} CPUs, {} rounds, harness {}, {}",
            m.kernel_release,
            m.flavor.as_deref().unwrap_or("?"),
            m.accel,
            m.cpus,
            self.rounds,
            m.harness_build,
            self.date_utc
        );
        let _ = writeln!(
            s,
            "program load (not in the dump times): CRIB {:.1} ms, iter/task_file {:.1} ms",
            self.crib_load_ms, self.iter_load_ms
        );
        for size in &self.sizes {
            let _ = writeln!(
                s,
                "\n{} fds ({} in the table: {} regular, {} pipe ends, {} unix sockets, {} \
                 eventfds; iter link {:.2} ms); the {} methods run agree on every compared field",
                size.fds,
                size.table_fds,
                size.mix.regular,
                size.mix.pipe_ends,
                size.mix.unix_sockets,
                size.mix.eventfds,
                size.iter_link_ms,
                size.methods.len()
            );
            let _ = writeln!(
                s,
                "  {:<15} {:>11} {:>11} {:>9} {:>10} {:>10}",
                "method", "min ms", "median ms", "us/fd", "x CRIB", "syscalls"
            );
            let p = &size.parts;
            let _ = writeln!(
                s,
                "  steps (median of {} more runs, ms): CRIB run+decode in place {:.2} \
                 (BPF_PROG_RUN {:.2}, ring buffer read and decoded {:.2}; copying: run+drain {:.2}, decode {:.2}), rows {:.2}; iter read {:.2}, decode in place \
                 {:.2}, rows {:.2}",
                super::parts::RUNS,
                p.crib_run_decode_ms,
                p.crib_prog_run_ms,
                p.crib_consume_ms,
                p.crib_run_drain_ms,
                p.crib_decode_ms,
                p.crib_rows_ms,
                p.iter_read_ms,
                p.iter_decode_ms,
                p.iter_rows_ms
            );
            for r in &size.methods {
                let _ = writeln!(
                    s,
                    "  {:<15} {:>11.3} {:>11.3} {:>9.3} {:>10.2} {:>10}",
                    r.method.as_str(),
                    r.min_ms,
                    r.median_ms,
                    r.median_us_per_fd,
                    r.ratio_to_crib,
                    r.syscalls.total
                );
            }
            for k in &size.skipped {
                let _ = writeln!(s, "  {}: not run: {}", k.method, k.why);
            }
        }
        if self.sizes.len() > 1 {
            let _ = writeln!(s, "\ngrowth of the median time:");
            for g in &self.growth {
                let steps: Vec<String> = g
                    .steps
                    .iter()
                    .map(|(a, b, r)| format!("{a}->{b} fds: x{r:.2}"))
                    .collect();
                let _ = writeln!(s, "  {:<15} {}", g.method.as_str(), steps.join(", "));
            }
        }
        for a in &self.aims {
            let _ = writeln!(
                s,
                "aim: {}: {:.2} (target {}): {}",
                a.what,
                a.value,
                a.target,
                if a.met { "met" } else { "MISSED" }
            );
        }
        if let Some(p) = &self.plot {
            let _ = writeln!(s, "plot: {}", p.path);
        }
        s
    }
}

/// Now, UTC, as "YYYY-MM-DDTHH:MM:SSZ".
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(min(&[3.0, 1.0, 2.0]), 1.0);
        assert_eq!((min(&[]), median(&[])), (0.0, 0.0));
        let r = method_result(
            Method::Procfs,
            vec![30.0, 20.0, 50.0],
            &[1.0, 2.0, 1.0],
            10,
            SyscallCount::default(),
        );
        // per round: 30, 10, 50
        assert_eq!(r.ratio_to_crib, 30.0);
        assert_eq!(r.ratio_of_medians, 30.0);
        assert_eq!(r.ratio_of_mins, 20.0);
        assert_eq!(r.median_us_per_fd, 3000.0);
    }

    #[test]
    fn dates() {
        let d = now_utc();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20") && d.ends_with('Z'), "{d}");
    }
}

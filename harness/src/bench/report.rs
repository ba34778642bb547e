//! Statistics over the measured rounds, and the table `crib bench` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{is_bench_file, Fail, Mode, TableFd, SCOPED_UNAVAILABLE};

/// Median of a non-empty slice (mean of the middle two for an even length); NaN if empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The measured rounds of one mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// fds every run walked (checked equal in every run)
    pub nr_fds: u32,
    /// fds the mode could not use, and why (the same in every run)
    pub fails: Vec<(u32, Fail)>,
    pub walk_ns: Vec<u64>,
    pub wall_ns: Vec<u64>,
}

impl Measured {
    fn ns_per_fd(&self) -> Vec<f64> {
        let n = f64::from(self.nr_fds.max(1));
        self.walk_ns.iter().map(|&t| t as f64 / n).collect()
    }
    pub fn median_ns_per_fd(&self) -> f64 {
        median(&self.ns_per_fd())
    }
    pub fn min_ns_per_fd(&self) -> f64 {
        self.ns_per_fd().into_iter().fold(f64::NAN, f64::min)
    }
    pub fn median_wall_us(&self) -> f64 {
        let v: Vec<f64> = self.wall_ns.iter().map(|&t| t as f64 / 1e3).collect();
        median(&v)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(Measured),
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `uname -r`
    pub kernel: String,
    /// `CRIB_FLAVOR` of the guest, if set
    pub flavor: Option<String>,
    pub cpus: usize,
    pub pid: i32,
    pub files: u32,
    /// The whole table, as procfs listed it before the runs.
    pub table: Vec<TableFd>,
    pub rounds: u32,
    pub warmup: u32,
    pub modes: Vec<(Mode, Outcome)>,
}

impl Report {
    pub fn measured(&self, mode: Mode) -> Option<&Measured> {
        self.modes.iter().find_map(|(m, o)| match o {
            Outcome::Measured(x) if *m == mode => Some(x),
            _ => None,
        })
    }

    /// `stat(a) / stat(b)`, if both modes ran.
    pub(super) fn ratio(&self, a: Mode, b: Mode, stat: fn(&Measured) -> f64) -> Option<f64> {
        Some(stat(self.measured(a)?) / stat(self.measured(b)?))
    }

    /// `stat(a) - stat(b)`, if both modes ran.
    fn diff(&self, a: Mode, b: Mode, stat: fn(&Measured) -> f64) -> Option<f64> {
        Some(stat(self.measured(a)?) - stat(self.measured(b)?))
    }

    /// Median over the rounds of `f(a's ns/fd, b's ns/fd)` in the same round: the modes of a
    /// round run back to back, so this cancels drift of the machine's speed between rounds.
    pub(super) fn paired(&self, a: Mode, b: Mode, f: fn(f64, f64) -> f64) -> Option<f64> {
        let (a, b) = (self.measured(a)?.ns_per_fd(), self.measured(b)?.ns_per_fd());
        if a.len() != b.len() || a.is_empty() {
            return None;
        }
        let v: Vec<f64> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
        Some(median(&v))
    }

    /// "D ns/fd (medians), D (paired), D (mins)" for `a - b`.
    fn diff_line(&self, a: Mode, b: Mode) -> Option<String> {
        Some(format!(
            "{:.1} ns/fd (medians), {:.1} (paired), {:.1} (mins)",
            self.diff(a, b, Measured::median_ns_per_fd)?,
            self.paired(a, b, |x, y| x - y)?,
            self.diff(a, b, Measured::min_ns_per_fd)?
        ))
    }

    /// "R (medians), R (paired), R (mins)" for `a / b`.
    fn ratio_line(&self, a: Mode, b: Mode) -> Option<String> {
        Some(format!(
            "{:.2}x (medians), {:.2}x (paired), {:.2}x (mins)",
            self.ratio(a, b, Measured::median_ns_per_fd)?,
            self.paired(a, b, |x, y| x / y)?,
            self.ratio(a, b, Measured::min_ns_per_fd)?
        ))
    }

    /// The table `crib bench` prints.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let flavor = self.flavor.as_deref().unwrap_or("unknown");
        let _ = writeln!(
            s,
            "crib bench: {flavor} kernel {}, {} CPU(s)",
            self.kernel, self.cpus
        );
        let others: Vec<String> = self
            .table
            .iter()
            .filter(|t| !is_bench_file(t))
            .map(|t| {
                format!(
                    "{} {} ({}{})",
                    t.fd,
                    t.link,
                    if t.readable {
                        "readable"
                    } else {
                        "not readable"
                    },
                    if t.regular { "" } else { ", not regular" }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "target: pid {}, {} fds = {} regular files (O_RDONLY){}",
            self.pid,
            self.table.len(),
            self.files,
            if others.is_empty() {
                String::new()
            } else {
                format!(" + {}", others.join(", "))
            }
        );
        let _ = writeln!(
            s,
            "{} rounds after {} warm-up round(s), modes interleaved (order rotated every round);\n\
             ns/fd = bpf_ktime_get_ns() around new()..destroy() in the program / fds walked",
            self.rounds, self.warmup
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:<43} {:>4} {:>7} {:>7} {:>12} {:>9} {:>9} {:>7} {:>7} {:>13}",
            "mode",
            "fds",
            "no file",
            "dyn err",
            "median ns/fd",
            "min ns/fd",
            "x mode 1",
            "paired",
            "mins",
            "run median us"
        );
        let med: fn(&Measured) -> f64 = Measured::median_ns_per_fd;
        let min: fn(&Measured) -> f64 = Measured::min_ns_per_fd;
        let x = |r: Option<f64>| r.map_or_else(|| "-".into(), |r| format!("{r:.2}x"));
        for (mode, outcome) in &self.modes {
            let name = format!("{} {}", mode.number(), mode.label());
            match outcome {
                Outcome::Unavailable(why) => {
                    let _ = writeln!(s, "{name:<43} {why}");
                }
                Outcome::Measured(m) => {
                    let count = |used: bool, f: fn(&Fail) -> bool| {
                        if used {
                            m.fails.iter().filter(|(_, x)| f(x)).count().to_string()
                        } else {
                            "-".into()
                        }
                    };
                    let nofile = count(mode.uses_get_file(), |f| *f == Fail::NoFile);
                    let dynerr = count(mode.uses_dynptr(), |f| matches!(f, Fail::Dynptr(_)));
                    let _ = writeln!(
                        s,
                        "{name:<43} {:>4} {nofile:>7} {dynerr:>7} {:>12.1} {:>9.1} {:>9} {:>7} \
                         {:>7} {:>13.1}",
                        m.nr_fds,
                        med(m),
                        min(m),
                        x(self.ratio(*mode, Mode::Walk, med)),
                        x(self.paired(*mode, Mode::Walk, |a, b| a / b)),
                        x(self.ratio(*mode, Mode::Walk, min)),
                        m.median_wall_us()
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "(x mode 1: ratio of the medians; paired: median of the per-round ratios; mins: ratio \
             of the minimums)"
        );
        let _ = writeln!(s);
        if let Some(l) = self.diff_line(Mode::GetPut, Mode::Walk) {
            let _ = writeln!(s, "one get/put pair, mode 2 - mode 1:            {l}");
        }
        let (a, b) = (Mode::GetDynptrPut, Mode::ScopedDynptr);
        match (self.diff_line(a, b), self.ratio_line(a, b)) {
            (Some(d), Some(r)) => {
                let _ = writeln!(s, "get/put per dynptr use, mode 3 - mode 4:      {d}");
                let _ = writeln!(s, "mode 3 / mode 4:                              {r}");
            }
            _ => {
                let _ = writeln!(
                    s,
                    "mode 3 / mode 4:                              - (mode 4 {SCOPED_UNAVAILABLE})"
                );
            }
        }
        // Which fds a mode could not use, and why: fd -> failure -> modes.
        let mut fails: BTreeMap<(u32, Fail), Vec<String>> = BTreeMap::new();
        for (mode, outcome) in &self.modes {
            if let Outcome::Measured(m) = outcome {
                for &(fd, fail) in &m.fails {
                    fails
                        .entry((fd, fail))
                        .or_default()
                        .push(mode.number().to_string());
                }
            }
        }
        if !fails.is_empty() {
            let _ = writeln!(
                s,
                "not used (counted, in the times; the kernel may refuse files that are not \
                 regular files open for reading):"
            );
            for ((fd, fail), modes) in fails {
                let link = self
                    .table
                    .iter()
                    .find(|t| t.fd == fd)
                    .map_or("?", |t| t.link.as_str());
                let _ = writeln!(s, "  fd {fd} {link}: {fail} in mode {}", modes.join(", "));
            }
        }
        s
    }
}

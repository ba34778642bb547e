//! What `crib bench` runs: the number of files, rounds and warm-up rounds.

use std::ffi::OsString;

use super::{BenchError, DEFAULT_FDS, DEFAULT_ROUNDS, DEFAULT_WARMUP, MAX_FDS};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Regular files the target opens (its table also holds whatever stdio it inherited).
    pub fds: u32,
    /// Measured rounds; each runs every available mode once.
    pub rounds: u32,
    /// Rounds run (and checked) before measuring.
    pub warmup: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fds: DEFAULT_FDS,
            rounds: DEFAULT_ROUNDS,
            warmup: DEFAULT_WARMUP,
        }
    }
}

pub const USAGE: &str = "usage: crib bench [--fds N] [--rounds N] [--warmup N]";

impl Options {
    /// Parse `crib bench` arguments (`--fds N`, `--fds=N`, ...). `Ok(None)` for `--help`.
    pub fn parse(args: &[OsString]) -> Result<Option<Options>, BenchError> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let s = a.to_str().ok_or_else(|| {
                BenchError::Usage(format!("argument {a:?} is not UTF-8\n{USAGE}"))
            })?;
            if s == "-h" || s == "--help" {
                return Ok(None);
            }
            let (flag, inline) = match s.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (s, None),
            };
            let field = match flag {
                "--fds" => &mut o.fds,
                "--rounds" => &mut o.rounds,
                "--warmup" => &mut o.warmup,
                _ => {
                    return Err(BenchError::Usage(format!(
                        "unexpected argument {s:?}\n{USAGE}"
                    )))
                }
            };
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .and_then(|v| v.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| BenchError::Usage(format!("{flag} needs a value\n{USAGE}")))?,
            };
            *field = v.parse().map_err(|_| {
                BenchError::Usage(format!("{flag} {v:?}: want a whole number\n{USAGE}"))
            })?;
        }
        o.check()?;
        Ok(Some(o))
    }

    pub fn check(&self) -> Result<(), BenchError> {
        if self.fds == 0 || self.fds > MAX_FDS {
            return Err(BenchError::Usage(format!(
                "--fds {}: want 1..={MAX_FDS}",
                self.fds
            )));
        }
        if self.rounds == 0 || self.rounds > 1_000_000 {
            return Err(BenchError::Usage(format!(
                "--rounds {}: want 1..=1000000",
                self.rounds
            )));
        }
        if self.warmup > 1_000_000 {
            return Err(BenchError::Usage(format!(
                "--warmup {}: want 0..=1000000",
                self.warmup
            )));
        }
        Ok(())
    }
}

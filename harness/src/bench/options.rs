//! What `crib bench` runs: the number of files, rounds and warm-up rounds (the CLI parses
//! them with clap, `cli::bench::BenchArgs`).

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

impl Options {
    /// The limits `crib bench`'s arguments have too: 1..=MAX_FDS files, 1..=1,000,000 rounds,
    /// 0..=1,000,000 warm-up rounds.
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

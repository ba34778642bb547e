//! Where CRIB's and the iterator's time goes: the same dumps as the timed runs, cut into their
//! steps and timed step by step (median of a few untimed-in-the-table runs): for CRIB the
//! program run with its records decoded in place in the ring buffer (what `crib dump` does),
//! beside the same run drained into one `Vec` per record and decoded afterwards (what it did
//! before: the copy this measures the price of), and the conversion to rows; for
//! iter/task_file the reads of the iterator fd, cutting the stream into records, the same
//! decode and conversion.

use std::time::Instant;

use serde::Serialize;

use super::crib::{rows, Crib};
use super::iter::{number, split, IterLink};
use super::report::{median, ms};
use super::MethodError;
use crate::dump::{self, DumpError};
use crate::records::{crib_dump_ctx, CRIB_DUMP_F_PATHS};

/// Runs per method.
pub const RUNS: usize = 3;

/// Median ms per step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Parts {
    /// CRIB: BPF_PROG_RUN + the ring buffer decoded in place + completeness checks
    pub crib_run_decode_ms: f64,
    /// CRIB, the copying way: BPF_PROG_RUN + draining the ring buffer into per-record Vecs
    pub crib_run_drain_ms: f64,
    /// iter/task_file: creating the iterator fd and read() to the end
    pub iter_read_ms: f64,
    /// iter/task_file: cutting the byte stream into per-record Vecs
    pub iter_split_ms: f64,
    /// CRIB, the copying way: decode_stream + finish of those Vecs (the same code for the
    /// iterator: `iter_decode_ms`)
    pub crib_decode_ms: f64,
    pub iter_decode_ms: f64,
    /// Records to benchmark rows (both)
    pub crib_rows_ms: f64,
    pub iter_rows_ms: f64,
}

/// Time the steps of both BPF methods on `pid`.
pub fn measure(crib: &Crib, link: &IterLink, pid: i32) -> Result<Parts, MethodError> {
    let wrap = |e: DumpError| MethodError::Crib(Box::new(e));
    let mut v: [Vec<f64>; 8] = Default::default();
    for _ in 0..RUNS {
        let mut ctx = crib_dump_ctx {
            pid,
            flags: CRIB_DUMP_F_PATHS,
        };
        // What `crib dump` does: Dumper's own in-place path, not a copy of it.
        let t0 = Instant::now();
        let files = crib.dumper().dump_with_paths(pid).map_err(wrap)?;
        v[7].push(ms(t0.elapsed()));
        drop(files);

        let t0 = Instant::now();
        let (retval, records) = crib.dumper().program().run(&mut ctx).map_err(wrap)?;
        let t1 = Instant::now();
        let files = dump::finish(pid, retval, dump::decode_stream(&records).map_err(wrap)?)
            .map_err(wrap)?;
        let t2 = Instant::now();
        let r = rows("CRIB", &files)?;
        let t3 = Instant::now();
        drop(r);
        v[0].push(ms(t1 - t0));
        v[3].push(ms(t2 - t1));
        v[5].push(ms(t3 - t2));

        let t0 = Instant::now();
        let bytes = link.read_all()?;
        let t1 = Instant::now();
        let mut records = split(&bytes)?;
        number(&mut records);
        let t2 = Instant::now();
        let iwrap = |e: DumpError| MethodError::Iter(Box::new(e));
        let files =
            dump::finish(pid, 0, dump::decode_stream(&records).map_err(iwrap)?).map_err(iwrap)?;
        let t3 = Instant::now();
        let r = rows("iter/task_file", &files)?;
        let t4 = Instant::now();
        drop(r);
        v[1].push(ms(t1 - t0));
        v[2].push(ms(t2 - t1));
        v[4].push(ms(t3 - t2));
        v[6].push(ms(t4 - t3));
    }
    Ok(Parts {
        crib_run_decode_ms: median(&v[7]),
        crib_run_drain_ms: median(&v[0]),
        iter_read_ms: median(&v[1]),
        iter_split_ms: median(&v[2]),
        crib_decode_ms: median(&v[3]),
        iter_decode_ms: median(&v[4]),
        crib_rows_ms: median(&v[5]),
        iter_rows_ms: median(&v[6]),
    })
}

//! Where CRIB's and the iterator's time goes: the same dumps as the timed runs, cut into their
//! steps and timed step by step (median of a few untimed-in-the-table runs): for CRIB the
//! program run with its records decoded in place in the ring buffer (what `crib dump` does),
//! beside the same run drained into one `Vec` per record and decoded afterwards (what it did
//! before: the copy this measures the price of), and the conversion to rows; for
//! iter/task_file the reads of the iterator fd, the same decode in place in the bytes read,
//! and the same conversion.

use std::time::Instant;

use serde::Serialize;

use super::crib::{rows, Crib};
use super::iter::{decode, IterLink};
use super::report::{median, ms};
use super::MethodError;
use crate::dump::{self, DumpError, FileDecoder};
use crate::records::{crib_dump_ctx, CRIB_DUMP_F_PATHS};

/// Runs per method.
pub const RUNS: usize = 3;

/// Median ms per step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Parts {
    /// CRIB: BPF_PROG_RUN + the ring buffer decoded in place + completeness checks
    pub crib_run_decode_ms: f64,
    /// ... of which the BPF_PROG_RUN system call (the program and its ring buffer writes)
    pub crib_prog_run_ms: f64,
    /// ... and reading the ring buffer into the in-place decoder
    pub crib_consume_ms: f64,
    /// CRIB, the copying way: BPF_PROG_RUN + draining the ring buffer into per-record Vecs
    pub crib_run_drain_ms: f64,
    /// iter/task_file: creating the iterator fd and read() to the end
    pub iter_read_ms: f64,
    /// CRIB, the copying way: decode_stream + finish of those Vecs
    pub crib_decode_ms: f64,
    /// iter/task_file: cutting the bytes read into records, numbering and decoding them in
    /// place (the decoder of CRIB's in-place run) + finish
    pub iter_decode_ms: f64,
    /// Records to benchmark rows (both)
    pub crib_rows_ms: f64,
    pub iter_rows_ms: f64,
}

/// Time the steps of both BPF methods on `pid`.
pub fn measure(crib: &Crib, link: &IterLink, pid: i32) -> Result<Parts, MethodError> {
    let wrap = |e: DumpError| MethodError::Crib(Box::new(e));
    let mut v: [Vec<f64>; 9] = Default::default();
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

        // The same in-place run, its two halves timed apart.
        let (_, decoder, times) = crib
            .dumper()
            .program()
            .run_timed(&mut ctx, FileDecoder::default())
            .map_err(wrap)?;
        v[2].push(ms(times.run));
        v[8].push(ms(times.consume));
        drop(decoder);

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
        let mut bytes = link.read_all()?;
        let t1 = Instant::now();
        let files = decode(pid, &mut bytes)?;
        let t2 = Instant::now();
        let r = rows("iter/task_file", &files)?;
        let t3 = Instant::now();
        drop(r);
        v[1].push(ms(t1 - t0));
        v[4].push(ms(t2 - t1));
        v[6].push(ms(t3 - t2));
    }
    Ok(Parts {
        crib_run_decode_ms: median(&v[7]),
        crib_prog_run_ms: median(&v[2]),
        crib_consume_ms: median(&v[8]),
        crib_run_drain_ms: median(&v[0]),
        iter_read_ms: median(&v[1]),
        crib_decode_ms: median(&v[3]),
        iter_decode_ms: median(&v[4]),
        crib_rows_ms: median(&v[5]),
        iter_rows_ms: median(&v[6]),
    })
}

//! What the record streams of all dump programs share: the common header (its size is the
//! record's length), sequence numbers 0, 1, 2, ... with nothing after the end record, the end
//! record itself, and handing records to a decoder in place, in the ring buffer's memory
//! ([`RecordSink`]).

use std::mem::size_of;

use super::DumpError;
use crate::records::{crib_rec_end, crib_rec_hdr, CRIB_REC_END, CRIB_REC_SOCK};

/// The end record of one program run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRecord {
    pub error: i32,
    pub nr_records: u32,
    pub nr_dropped: u32,
}

impl EndRecord {
    /// `bytes` as an end record, if it is one of the right size.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let hdr: crib_rec_hdr = read_pod(bytes)?;
        if u32::from(hdr.type_) != CRIB_REC_END || bytes.len() != size_of::<crib_rec_end>() {
            return None;
        }
        let e: crib_rec_end = read_pod(bytes)?;
        Some(Self {
            error: e.error,
            nr_records: e.nr_records,
            nr_dropped: e.nr_dropped,
        })
    }
}

/// Takes the records of one program run, one at a time, as they lie in the ring buffer: a
/// decoder keeps what it needs and copies nothing else.
pub trait RecordSink: std::any::Any + Send {
    fn record(&mut self, bytes: &[u8]);
}

/// Every record, copied out.
impl RecordSink for Vec<Vec<u8>> {
    fn record(&mut self, bytes: &[u8]) {
        self.push(bytes.to_vec());
    }
}

/// Discards the records (what an aborted run left behind).
impl RecordSink for () {
    fn record(&mut self, _: &[u8]) {}
}

/// Counts the records and their bytes, and keeps none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCount {
    pub records: usize,
    pub bytes: usize,
}

impl RecordSink for RecordCount {
    fn record(&mut self, bytes: &[u8]) {
        self.records += 1;
        self.bytes += bytes.len();
    }
}

pub(crate) fn bad_record(index: usize, reason: String) -> DumpError {
    DumpError::BadRecord { index, reason }
}

pub(crate) fn read_pod<T: Copy + Default>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is one of the bindgen record structs: plain integers and arrays, valid for
    // every bit pattern; the length was checked and read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Record `index` of type `ty` as `T`, which must be its exact size.
pub(crate) fn fixed_record<T: Copy + Default>(
    index: usize,
    ty: u32,
    bytes: &[u8],
) -> Result<T, DumpError> {
    let expect = size_of::<T>();
    if bytes.len() != expect {
        return Err(bad_record(
            index,
            format!(
                "type {ty} record of {} bytes, expected {expect} (truncated or from another ABI)",
                bytes.len()
            ),
        ));
    }
    read_pod(bytes).ok_or_else(|| bad_record(index, "short record".into()))
}

/// The header of ring-buffer record `index`, checked against the record's length.
pub(crate) fn record_header(index: usize, bytes: &[u8]) -> Result<crib_rec_hdr, DumpError> {
    let hdr: crib_rec_hdr = read_pod(bytes).ok_or_else(|| {
        bad_record(
            index,
            format!("{} bytes, shorter than a record header", bytes.len()),
        )
    })?;
    // A socket record's packets follow its fixed part, which is what hdr.size counts: they
    // can be more than its 16 bits hold (crib_records.h). Its decoder checks the rest.
    let fits = if u32::from(hdr.type_) == CRIB_REC_SOCK {
        usize::from(hdr.size) <= bytes.len()
    } else {
        usize::from(hdr.size) == bytes.len()
    };
    if !fits {
        return Err(bad_record(
            index,
            format!(
                "header says {} bytes, ring buffer record has {}",
                hdr.size,
                bytes.len()
            ),
        ));
    }
    Ok(hdr)
}

/// The checks every record of a run passes before its type is looked at: a header whose size
/// is the record's length, the sequence number that is its index (a gap is a lost record),
/// and no record after the end record, which is decoded and kept.
#[derive(Debug, Default)]
pub struct StreamCheck {
    next: usize,
    end: Option<EndRecord>,
}

impl StreamCheck {
    /// Check the next record: its index and header.
    pub fn next(&mut self, bytes: &[u8]) -> Result<(usize, crib_rec_hdr), DumpError> {
        let index = self.next;
        self.next += 1;
        let hdr = record_header(index, bytes)?;
        if self.end.is_some() {
            return Err(bad_record(index, "record after the end record".into()));
        }
        if hdr.seq as usize != index {
            return Err(bad_record(
                index,
                format!("sequence number {} (records lost or reordered)", hdr.seq),
            ));
        }
        if u32::from(hdr.type_) == CRIB_REC_END {
            let end = EndRecord::parse(bytes).ok_or_else(|| {
                bad_record(
                    index,
                    format!(
                        "end record of {} bytes, expected {}",
                        bytes.len(),
                        size_of::<crib_rec_end>()
                    ),
                )
            })?;
            self.end = Some(end);
        }
        Ok((index, hdr))
    }

    /// The end record, once it came.
    pub fn end(&self) -> Option<EndRecord> {
        self.end
    }

    /// Records checked so far.
    pub fn count(&self) -> usize {
        self.next
    }
}

/// Building records for unit tests, as the programs write them.
#[cfg(test)]
pub(crate) mod test_records {
    use super::*;

    /// The bytes of a bindgen record struct.
    pub fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: bindgen record structs are plain data with explicit padding fields.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    /// A record header of type `ty` for a record of `size` bytes.
    pub fn header(ty: u32, size: usize, seq: u32) -> crib_rec_hdr {
        crib_rec_hdr {
            type_: ty as u16,
            size: size as u16,
            seq,
        }
    }

    /// An end record.
    pub fn end(seq: u32, error: i32, nr_records: u32, nr_dropped: u32) -> Vec<u8> {
        bytes_of(&crib_rec_end {
            hdr: header(CRIB_REC_END, size_of::<crib_rec_end>(), seq),
            error,
            nr_records,
            nr_dropped,
            ..Default::default()
        })
    }
}

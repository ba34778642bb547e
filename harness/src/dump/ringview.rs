//! Reading a run's records where the program wrote them, without giving their room back until
//! the reader is done: a zero-copy dump keeps its packet bytes in the ring buffer instead of
//! copying them out (the socket benchmark's CRIB side, where the copy was 40% of a dump).
//!
//! The layout is the kernel's (`kernel/bpf/ringbuf.c`) as libbpf reads it: at offset 0 the
//! consumer page (read-write), from one page on the producer page and then the data area mapped
//! twice in a row, so a record that wraps around the end reads as one slice. Each record is an
//! 8-byte header (length with the BUSY and DISCARD bits, page offset) and its bytes, the whole
//! rounded up to 8. libbpf's consumer moves `consumer_pos` past each record as soon as its
//! callback returns; [`RingSpan`] moves it only when dropped, so until then the kernel cannot
//! reserve that room again and the bytes stay as they are.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `BPF_RINGBUF_BUSY_BIT`, `BPF_RINGBUF_DISCARD_BIT`, `BPF_RINGBUF_HDR_SZ` (uapi bpf.h).
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: u64 = 8;

/// Why a ring buffer could not be mapped or read in place.
#[derive(Debug, thiserror::Error)]
pub enum RingViewError {
    #[error("mmap of the ring buffer's {what}: {source}")]
    Map {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("ring buffer of {0} bytes: not a power of two of at least a page")]
    Size(u32),
    #[error("a record at ring position {0} is still being written (BUSY) after the run returned")]
    Busy(u64),
    #[error("ring buffer positions out of order: consumer {cons}, producer {prod}, {size} bytes")]
    Positions { cons: u64, prod: u64, size: u64 },
    #[error("the records of an earlier run are still held in place (drop its RingSpan first)")]
    Held,
    #[error("a record at ring position {at} says {len} bytes, past the span's end {end}")]
    Record { at: u64, len: u32, end: u64 },
}

/// One ring buffer map, mapped for in-place reading.
pub struct RingMap {
    consumer: NonNull<u8>,
    producer: NonNull<u8>,
    page: usize,
    size: u64,
    held: AtomicBool,
}

// SAFETY: the mappings are plain shared memory; positions are read and written with atomics,
// record bytes are only read, and `held` keeps two spans from overlapping.
unsafe impl Send for RingMap {}
unsafe impl Sync for RingMap {}

fn mmap(
    fd: BorrowedFd<'_>,
    len: usize,
    prot: i32,
    offset: usize,
    what: &'static str,
) -> Result<NonNull<u8>, RingViewError> {
    let offset = libc::off_t::try_from(offset).map_err(|_| RingViewError::Map {
        what,
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: a fresh shared mapping of the map's fd; nothing else refers to the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            offset,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(RingViewError::Map {
            what,
            source: std::io::Error::last_os_error(),
        });
    }
    NonNull::new(p.cast()).ok_or(RingViewError::Map {
        what,
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

impl RingMap {
    /// Map ring buffer `fd` of `size` bytes (its `max_entries`).
    pub fn open(fd: BorrowedFd<'_>, size: u32) -> Result<Self, RingViewError> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        if !size.is_power_of_two() || (size as usize) < page {
            return Err(RingViewError::Size(size));
        }
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let consumer = mmap(fd, page, rw, 0, "consumer page")?;
        let data_len = page + 2 * size as usize;
        let producer = match mmap(fd, data_len, libc::PROT_READ, page, "data pages") {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: mapped just above with this length, not used since.
                unsafe { libc::munmap(consumer.as_ptr().cast(), page) };
                return Err(e);
            }
        };
        Ok(Self {
            consumer,
            producer,
            page,
            size: u64::from(size),
            held: AtomicBool::new(false),
        })
    }

    fn pos(&self, p: NonNull<u8>) -> &AtomicU64 {
        // SAFETY: both position words are the first 8 bytes of a mapped page, 8-aligned, and
        // live as long as self; the kernel and libbpf access them atomically too.
        unsafe { &*p.as_ptr().cast::<AtomicU64>() }
    }

    /// The records between the consumer and the producer position, held in place until the
    /// span is dropped. Fails if another span is still held.
    pub fn span(&self) -> Result<RingSpan<'_>, RingViewError> {
        if self.held.swap(true, Ordering::Acquire) {
            return Err(RingViewError::Held);
        }
        let span = RingSpan {
            map: self,
            start: self.pos(self.consumer).load(Ordering::Acquire),
            end: self.pos(self.producer).load(Ordering::Acquire),
        };
        if span.end < span.start || span.end - span.start > self.size {
            let e = RingViewError::Positions {
                cons: span.start,
                prod: span.end,
                size: self.size,
            };
            drop(span);
            return Err(e);
        }
        Ok(span)
    }

    /// True while a [`RingSpan`] holds records in place (a run must not start then: libbpf's
    /// consumer would hand their room back).
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// The data area (mapped twice in a row).
    fn data(&self) -> *const u8 {
        // SAFETY: the data area starts one page into the second mapping, inside it.
        unsafe { self.producer.as_ptr().add(self.page) }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: the two mappings made in open(), with their lengths; no span outlives self.
        unsafe {
            libc::munmap(self.consumer.as_ptr().cast(), self.page);
            libc::munmap(
                self.producer.as_ptr().cast(),
                self.page + 2 * self.size as usize,
            );
        }
    }
}

/// The records of one run, read in place. Dropping it gives their room back to the kernel.
pub struct RingSpan<'a> {
    map: &'a RingMap,
    start: u64,
    end: u64,
}

impl<'a> RingSpan<'a> {
    /// Every committed, not discarded record of the span, in order.
    pub fn records(&self) -> RingRecords<'_> {
        RingRecords {
            span: self,
            pos: self.start,
        }
    }

    /// Bytes of the span, headers and padding included.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The `len` bytes at address `addr`, if they lie inside this span's records: how a
    /// zero-copy dump, which keeps the addresses of the record bytes it was given, reads them
    /// back. None for anything else (another span's room, outside the mapping).
    pub fn slice(&self, addr: usize, len: usize) -> Option<&[u8]> {
        let size = self.map.size as usize;
        let off = addr.checked_sub(self.map.data() as usize)?;
        if off.checked_add(len)? > 2 * size {
            return None;
        }
        // Where `off` is in the span, counting from its first byte (the data area repeats
        // every `size` bytes).
        let first = (self.start % self.map.size) as usize;
        let rel = (off % size + size - first) % size;
        if rel as u64 + len as u64 > self.len() {
            return None;
        }
        // SAFETY: inside the data mapping (checked above), which lives as long as the map,
        // and inside this span's room, which the kernel does not reserve again while the
        // span is held, so its bytes do not change.
        Some(unsafe { std::slice::from_raw_parts(addr as *const u8, len) })
    }
}

impl Drop for RingSpan<'_> {
    fn drop(&mut self) {
        self.map
            .pos(self.map.consumer)
            .store(self.end, Ordering::Release);
        self.map.held.store(false, Ordering::Release);
    }
}

/// Iterator over a [`RingSpan`]'s records; a record still BUSY ends it with an error.
pub struct RingRecords<'s> {
    span: &'s RingSpan<'s>,
    pos: u64,
}

impl<'s> Iterator for RingRecords<'s> {
    type Item = Result<&'s [u8], RingViewError>;

    fn next(&mut self) -> Option<Self::Item> {
        let map = self.span.map;
        while self.pos < self.span.end {
            let off = (self.pos & (map.size - 1)) as usize;
            // SAFETY: `off` < size, and the data area is mapped twice, so the header's 8 bytes
            // and the record after it (at most size) are inside the mapping; the header word
            // is 8-aligned (records are rounded up to 8) and the kernel commits it atomically.
            let hdr = unsafe { &*map.data().add(off).cast::<std::sync::atomic::AtomicU32>() };
            let len = hdr.load(Ordering::Acquire);
            if len & BUSY != 0 {
                let at = self.pos;
                self.pos = self.span.end;
                return Some(Err(RingViewError::Busy(at)));
            }
            let n = len & !(BUSY | DISCARD);
            let next = self.pos + (u64::from(n) + HDR).div_ceil(8) * 8;
            if next > self.span.end {
                // Not what the kernel writes; reading on would leave the mapping.
                let e = RingViewError::Record {
                    at: self.pos,
                    len: n,
                    end: self.span.end,
                };
                self.pos = self.span.end;
                return Some(Err(e));
            }
            self.pos = next;
            if len & DISCARD != 0 {
                continue;
            }
            // SAFETY: as above; the record's n bytes follow its header inside the mapping.
            let rec = unsafe {
                std::slice::from_raw_parts(map.data().add(off + HDR as usize), n as usize)
            };
            return Some(Ok(rec));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    /// A stand-in for a ring buffer map: a memfd laid out as the kernel's mmap of one
    /// (consumer page, producer page, data), without the data area's second mapping, which
    /// records that do not wrap do not need.
    struct FakeRing {
        fd: OwnedFd,
        page: usize,
        size: usize,
    }

    impl FakeRing {
        fn new(size: usize) -> Self {
            let fd = nix::sys::memfd::memfd_create(
                c"crib-ringview-test",
                nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
            )
            .expect("memfd_create");
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
            nix::unistd::ftruncate(&fd, (2 * page + 2 * size) as i64).expect("ftruncate");
            Self { fd, page, size }
        }

        fn write_at(&self, off: usize, bytes: &[u8]) {
            nix::sys::uio::pwrite(&self.fd, bytes, off as i64).expect("pwrite");
        }

        fn set_producer(&self, pos: u64) {
            self.write_at(self.page, &pos.to_ne_bytes());
        }

        fn consumer(&self) -> u64 {
            let mut b = [0u8; 8];
            nix::sys::uio::pread(&self.fd, &mut b, 0).expect("pread");
            u64::from_ne_bytes(b)
        }

        /// Write a record of `body` with header bits `bits` at ring position `pos`; the next
        /// record's position.
        fn record(&self, pos: u64, body: &[u8], bits: u32) -> u64 {
            let off = 2 * self.page + (pos as usize % self.size);
            let hdr = (body.len() as u32 | bits).to_ne_bytes();
            self.write_at(off, &hdr);
            self.write_at(off + 8, body);
            pos + (body.len() as u64 + 8).div_ceil(8) * 8
        }

        fn map(&self) -> RingMap {
            RingMap::open(self.fd.as_fd(), self.size as u32).expect("map")
        }
    }

    #[test]
    fn records_in_order_skipping_discarded_and_room_given_back_on_drop() {
        let ring = FakeRing::new(1 << 16);
        let mut pos = ring.record(0, b"first", 0);
        pos = ring.record(pos, b"dropped by the program", DISCARD);
        pos = ring.record(pos, &[7u8; 100], 0);
        ring.set_producer(pos);
        let map = ring.map();
        {
            let span = map.span().expect("span");
            let recs: Vec<&[u8]> = span.records().map(|r| r.expect("record")).collect();
            assert_eq!(recs, vec![&b"first"[..], &[7u8; 100][..]]);
            assert_eq!(span.len(), pos);
            // Held: no second span, and the consumer has not moved.
            assert!(map.is_held());
            assert!(matches!(map.span(), Err(RingViewError::Held)));
            assert_eq!(ring.consumer(), 0);
        }
        assert!(!map.is_held());
        assert_eq!(
            ring.consumer(),
            pos,
            "dropping the span gives the room back"
        );
    }

    #[test]
    fn slice_reads_only_inside_the_span() {
        let ring = FakeRing::new(1 << 16);
        let end = ring.record(0, b"0123456789", 0);
        ring.set_producer(end);
        let map = ring.map();
        let span = map.span().expect("span");
        let rec = span.records().next().expect("one").expect("record");
        let addr = rec.as_ptr() as usize;
        assert_eq!(span.slice(addr + 2, 5), Some(&b"23456"[..]));
        assert_eq!(span.slice(addr, 10), Some(&b"0123456789"[..]));
        // Past the span's last record, before its start, outside the mapping.
        assert_eq!(span.slice(addr, end as usize), None);
        assert_eq!(span.slice(addr - 16, 4), None);
        assert_eq!(span.slice(8, 4), None);
        assert_eq!(span.slice(usize::MAX - 2, 8), None);
    }

    #[test]
    fn a_busy_record_is_an_error_not_the_end() {
        let ring = FakeRing::new(1 << 16);
        let mut pos = ring.record(0, b"done", 0);
        pos = ring.record(pos, b"half written", BUSY);
        ring.set_producer(pos);
        let map = ring.map();
        let span = map.span().expect("span");
        let got: Vec<_> = span.records().collect();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[1], Err(RingViewError::Busy(16))), "{got:?}");
    }

    #[test]
    fn a_record_longer_than_the_span_is_an_error() {
        let ring = FakeRing::new(1 << 16);
        let end = ring.record(0, b"short", 0);
        ring.write_at(2 * ring.page, &(60_000u32).to_ne_bytes());
        ring.set_producer(end);
        let map = ring.map();
        let span = map.span().expect("span");
        let got: Vec<_> = span.records().collect();
        assert!(
            matches!(
                got[..],
                [Err(RingViewError::Record {
                    at: 0,
                    len: 60_000,
                    ..
                })]
            ),
            "{got:?}"
        );
    }

    #[test]
    fn positions_out_of_order_are_refused_and_release_the_hold() {
        let ring = FakeRing::new(1 << 16);
        ring.set_producer(1 << 20);
        let map = ring.map();
        assert!(matches!(map.span(), Err(RingViewError::Positions { .. })));
        assert!(!map.is_held());
    }

    #[test]
    fn sizes_that_are_no_ring_are_refused() {
        let ring = FakeRing::new(1 << 16);
        assert!(matches!(
            RingMap::open(ring.fd.as_fd(), 3 << 12),
            Err(RingViewError::Size(_))
        ));
    }
}

//! Decoding a socket dump's records in place and checking that the stream is complete: every
//! socket followed by exactly the items its record announces, every item by exactly its bytes,
//! the snapshot's per-queue counts and byte totals equal to what the items add up to, and the
//! end record last ([`finish`]).

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{errno_str, Item, Queue, QueueStore, SockDump, SockRecord, F_V6};
use crate::dump::stream::{bad_record, fixed_record};
use crate::dump::{read_pod, DumpError, EndRecord, RecordSink, StreamCheck};
use crate::records::{
    crib_rec_sock, crib_rec_sock_data, crib_rec_sock_item, CRIB_REC_END, CRIB_REC_SOCK,
    CRIB_REC_SOCK_DATA, CRIB_REC_SOCK_ITEM, CRIB_SOCK_CHUNK, CRIB_SOCK_ROOM_MIN,
};

fn addr_of(family: u16, raw: &[u8; 16], port: u16) -> Option<(IpAddr, u16)> {
    match i32::from(family) {
        libc::AF_INET => Some((
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
            port,
        )),
        libc::AF_INET6 => Some((IpAddr::V6(Ipv6Addr::from(*raw)), port)),
        _ => None,
    }
}

fn decode_sock(r: &crib_rec_sock) -> SockRecord {
    SockRecord {
        fd: r.fd,
        queue_err: r.queue_err,
        family: r.family,
        sock_type: r.type_,
        protocol: r.protocol,
        state: r.state,
        src: addr_of(r.family, &r.src_addr, r.src_port),
        dst: addr_of(r.family, &r.dst_addr, r.dst_port),
        snd_una: r.snd_una,
        snd_nxt: r.snd_nxt,
        write_seq: r.write_seq,
        rcv_nxt: r.rcv_nxt,
        copied_seq: r.copied_seq,
        cork_len: r.cork_len,
        nr: r.nr,
        bytes: r.bytes,
        snd_wl1: r.snd_wl1,
        snd_wnd: r.snd_wnd,
        max_window: r.max_window,
        rcv_wnd: r.rcv_wnd,
        rcv_wup: r.rcv_wup,
        mss_cache: r.mss_cache,
        snd_wscale: r.snd_wscale,
        rcv_wscale: r.rcv_wscale,
        nr_items: r.nr_items,
    }
}

/// The result of one program run, decoded and checked for internal completeness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSockDump<Q: QueueStore = Vec<u8>> {
    pub socks: Vec<SockDump<Q>>,
    pub end: Option<EndRecord>,
}

/// Most bytes reserved for one queue up front from what its socket record announces (the
/// kfuncs' snapshot holds at most 64 MiB; a bogus total must not allocate more).
const MAX_RESERVE: u64 = 64 << 20;

/// Decodes the records of one run as they come, in place, and checks them: sizes, sequence
/// numbers, that every item belongs to the socket before it and comes in index order, that
/// data chunks are contiguous and add up to their item's length, that each socket got
/// exactly the items it announced, and that the snapshot's per-queue counts and byte totals
/// equal the items'. The first problem stops the decoding and is kept.
#[derive(Debug, Default)]
pub struct SockDecoder<Q: QueueStore = Vec<u8>> {
    check: StreamCheck,
    /// `CRIB_SOCK_DUMP_F_NO_ITEMS`: socket records only
    summaries: bool,
    socks: Vec<SockDump<Q>>,
    error: Option<DumpError>,
    /// the last record, if it was an end record (also after an error)
    last_end: Option<EndRecord>,
}

impl SockDecoder {
    /// A decoder for a dump with packets, or (`summaries`) of socket records only, that
    /// copies each queue's bytes into a vector.
    pub fn new(summaries: bool) -> Self {
        Self::with_store(summaries)
    }
}

impl<Q: QueueStore> SockDecoder<Q> {
    /// [`SockDecoder::new`], keeping the queues' bytes in `Q`.
    pub fn with_store(summaries: bool) -> Self {
        Self {
            check: StreamCheck::default(),
            summaries,
            socks: Vec::new(),
            error: None,
            last_end: None,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), DumpError> {
        let (index, hdr) = self.check.next(bytes)?;
        let bad = |reason: String| bad_record(index, reason);
        let ty = u32::from(hdr.type_);
        match ty {
            CRIB_REC_SOCK => {
                self.close_sock(index)?;
                let sock = decode_sock(&fixed_record(index, ty, bytes)?);
                if sock.queue_err != 0 && sock.nr_items != 0 {
                    return Err(bad(format!(
                        "fd {}: queue error {} but {} items announced",
                        sock.fd, sock.queue_err, sock.nr_items
                    )));
                }
                if self.summaries && sock.nr_items != 0 {
                    return Err(bad(format!("fd {}: items in a summary", sock.fd)));
                }
                let mut s = SockDump::<Q>::new(sock);
                if !self.summaries {
                    for (q, &b) in s.queues.iter_mut().zip(&s.sock.bytes) {
                        q.reserve(b.min(MAX_RESERVE) as usize);
                    }
                }
                self.socks.push(s);
            }
            CRIB_REC_SOCK_ITEM if !self.summaries => {
                let r: crib_rec_sock_item = fixed_record(index, ty, bytes)?;
                self.push_item(index, &r)?;
            }
            CRIB_REC_SOCK_DATA if !self.summaries => self.push_data(index, bytes)?,
            CRIB_REC_END => self.close_sock(index)?,
            CRIB_REC_SOCK_ITEM | CRIB_REC_SOCK_DATA => {
                return Err(bad(format!("record type {ty} in a summary dump")))
            }
            _ => return Err(bad(format!("unknown record type {ty}"))),
        }
        Ok(())
    }

    fn push_item(&mut self, index: usize, r: &crib_rec_sock_item) -> Result<(), DumpError> {
        let bad = |reason: String| bad_record(index, reason);
        let s = self
            .socks
            .last_mut()
            .ok_or_else(|| bad("item before any socket record".into()))?;
        if r.fd != s.sock.fd || r.index as usize != s.items.len() {
            return Err(bad(format!(
                "item fd {} index {} after {} items of fd {}",
                r.fd,
                r.index,
                s.items.len(),
                s.sock.fd
            )));
        }
        if let Some(prev) = s.items.last() {
            check_item_complete(index, s.sock.fd, prev)?;
        }
        let queue = Queue::from_raw(r.queue).ok_or_else(|| {
            bad(format!(
                "fd {} item {}: unknown queue {}",
                r.fd, r.index, r.queue
            ))
        })?;
        let fam = if r.flags & F_V6 != 0 {
            libc::AF_INET6
        } else {
            libc::AF_INET
        } as u16;
        let src = (queue == Queue::UdpRecv)
            .then(|| addr_of(fam, &r.src_addr, u16::from_be(r.src_port)))
            .flatten();
        let at = s.queues[queue as usize].len();
        s.items.push(Item {
            index: r.index,
            queue,
            len: r.len,
            skip: r.skip,
            seq: r.seq,
            end_seq: r.end_seq,
            flags: r.flags,
            nr_fds: r.nr_fds,
            src,
            data: at..at,
        });
        Ok(())
    }

    /// A chunk: its fixed part, then its bytes, which go straight to the end of its queue.
    fn push_data(&mut self, index: usize, bytes: &[u8]) -> Result<(), DumpError> {
        let bad = |reason: String| bad_record(index, reason);
        let fixed = size_of::<crib_rec_sock_data>();
        let r: crib_rec_sock_data = read_pod(bytes).ok_or_else(|| {
            bad(format!(
                "data record of {} bytes, shorter than its {fixed}-byte fixed part",
                bytes.len()
            ))
        })?;
        let room = &bytes[fixed..];
        if r.len == 0 || r.len > CRIB_SOCK_CHUNK || room.len() != chunk_room(r.len) {
            return Err(bad(format!(
                "fd {} item {}: data record with {} bytes of room says it carries {} \
                 (1..={CRIB_SOCK_CHUNK} bytes, in room rounded up to a power of two >= \
                 {CRIB_SOCK_ROOM_MIN})",
                r.fd,
                r.index,
                room.len(),
                r.len
            )));
        }
        // The record's room past len is not data (crib_records.h, CRIB_SOCK_ROOM_MIN).
        let payload = &room[..r.len as usize];
        let s = self.socks.last_mut().filter(|s| s.sock.fd == r.fd);
        let Some(s) = s.filter(|s| s.items.last().is_some_and(|i| i.index == r.index)) else {
            return Err(bad(format!(
                "data of fd {} item {} does not follow that item",
                r.fd, r.index
            )));
        };
        let SockDump { items, queues, .. } = s;
        let Some(item) = items.last_mut() else {
            return Err(bad("data before any item".into()));
        };
        let have = item.data.len();
        if r.offset as usize != have || have + payload.len() > item.len as usize {
            return Err(bad(format!(
                "fd {} item {}: chunk at offset {} of {} bytes, after {have} of {} bytes",
                r.fd, r.index, r.offset, r.len, item.len
            )));
        }
        let q = &mut queues[item.queue as usize];
        q.append(payload);
        item.data.end = q.len();
        Ok(())
    }

    /// The socket before record `index` is complete (no-op before the first).
    fn close_sock(&self, index: usize) -> Result<(), DumpError> {
        match self.socks.last() {
            Some(prev) if !self.summaries => check_sock_complete(index, prev),
            _ => Ok(()),
        }
    }

    /// What was decoded, or the first problem.
    pub fn into_raw(self) -> Result<RawSockDump<Q>, DumpError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(RawSockDump {
                socks: self.socks,
                end: self.check.end(),
            }),
        }
    }

    /// Judge one run of pid `pid` that returned `retval`: only a complete dump is Ok. A run
    /// that says it failed (a full ring buffer above all) is reported as such, not as the gap
    /// its lost records leave in the stream.
    pub fn judge(self, pid: i32, retval: i32) -> Result<Vec<SockDump<Q>>, DumpError> {
        if let Some(end) = self.last_end {
            if end.error != 0 || end.nr_dropped != 0 || retval != 0 {
                let end = Some(end);
                return finish(
                    pid,
                    retval,
                    RawSockDump {
                        socks: self.socks,
                        end,
                    },
                );
            }
        }
        finish(pid, retval, self.into_raw()?)
    }
}

impl<Q: QueueStore> RecordSink for SockDecoder<Q> {
    fn record(&mut self, bytes: &[u8]) {
        self.last_end = EndRecord::parse(bytes);
        if self.error.is_none() {
            if let Err(e) = self.push(bytes) {
                self.error = Some(e);
            }
        }
    }
}

/// The payload room of a data record carrying `len` bytes: `len` rounded up to a power of two,
/// at least `CRIB_SOCK_ROOM_MIN` (`chunk_room()` in dump_socks.bpf.c).
pub fn chunk_room(len: u32) -> usize {
    len.max(CRIB_SOCK_ROOM_MIN).next_power_of_two() as usize
}

/// Decode the records of one run, copied out of the ring buffer ([`SockDecoder`] decodes them
/// in place).
pub fn decode_stream(records: &[Vec<u8>]) -> Result<RawSockDump, DumpError> {
    let mut d = SockDecoder::new(false);
    for r in records {
        d.record(r);
    }
    d.into_raw()
}

fn check_item_complete(index: usize, fd: u32, item: &Item) -> Result<(), DumpError> {
    if item.data.len() != item.len as usize {
        return Err(bad_record(
            index,
            format!(
                "fd {fd} item {} ({}): {} of its {} bytes arrived",
                item.index,
                item.queue,
                item.data.len(),
                item.len
            ),
        ));
    }
    Ok(())
}

fn check_sock_complete<Q: QueueStore>(index: usize, s: &SockDump<Q>) -> Result<(), DumpError> {
    let bad = |reason: String| bad_record(index, reason);
    if let Some(last) = s.items.last() {
        check_item_complete(index, s.sock.fd, last)?;
    }
    if s.items.len() != s.sock.nr_items as usize {
        return Err(bad(format!(
            "fd {}: {} items announced, {} arrived",
            s.sock.fd,
            s.sock.nr_items,
            s.items.len()
        )));
    }
    for q in Queue::ALL {
        let nr = s.queue(q).count();
        let bytes: u64 = s.queue(q).map(|i| u64::from(i.len)).sum();
        let held = s.queue_store(q).len() as u64;
        if nr != s.sock.nr_of(q) as usize || bytes != s.sock.bytes_of(q) || held != bytes {
            return Err(bad(format!(
                "fd {} queue {q}: snapshot info says {} packets / {} bytes, the items are {nr} / \
                 {bytes} ({held} bytes held)",
                s.sock.fd,
                s.sock.nr_of(q),
                s.sock.bytes_of(q)
            )));
        }
    }
    // Queues come in the order of enum crib_sock_queue.
    if let Some(w) = s.items.windows(2).find(|w| w[0].queue > w[1].queue) {
        return Err(bad(format!(
            "fd {}: item {} ({}) after item {} ({})",
            s.sock.fd, w[1].index, w[1].queue, w[0].index, w[0].queue
        )));
    }
    Ok(())
}

/// Judge one run: only a complete dump is Ok.
pub fn finish<Q: QueueStore>(
    pid: i32,
    retval: i32,
    raw: RawSockDump<Q>,
) -> Result<Vec<SockDump<Q>>, DumpError> {
    let incomplete = |reason: String| DumpError::Incomplete { pid, reason };
    let Some(end) = raw.end else {
        return Err(incomplete(format!(
            "no end record after {} sockets (program returned {retval})",
            raw.socks.len()
        )));
    };
    if end.error != retval {
        return Err(incomplete(format!(
            "program returned {retval} but its end record says {}",
            end.error
        )));
    }
    if end.nr_dropped > 0 {
        return Err(incomplete(format!(
            "{} records did not fit in the ring buffer",
            end.nr_dropped
        )));
    }
    if retval != 0 {
        return Err(incomplete(format!(
            "program failed with {} after {} sockets",
            errno_str(-retval),
            raw.socks.len()
        )));
    }
    Ok(raw.socks)
}

//! Decoding a socket dump's records in place and checking that the stream is complete: every
//! socket record holding exactly the packets it announces, every packet exactly its bytes, the
//! snapshot's per-queue counts and byte totals equal to what the packets add up to, and the
//! end record last ([`finish`]).

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{errno_str, Item, Queue, QueueStore, SockDump, SockRecord, F_V6, NR_QUEUES};
use crate::dump::stream::bad_record;
use crate::dump::{read_pod, DumpError, EndRecord, RecordSink, StreamCheck};
use crate::records::{crib_rec_sock, crib_sock_item, CRIB_REC_END, CRIB_REC_SOCK, CRIB_SOCK_SLACK};

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
/// numbers, that each socket record holds exactly the packets it announces, in index order,
/// each with exactly its bytes and nothing after the last but the program's slack, and that
/// the snapshot's per-queue counts and byte totals equal the packets'. The first problem stops
/// the decoding and is kept.
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
        match u32::from(hdr.type_) {
            CRIB_REC_SOCK => self.push_sock(index, bytes),
            CRIB_REC_END => Ok(()),
            ty => Err(bad_record(index, format!("unknown record type {ty}"))),
        }
    }

    /// A socket record: its fixed part, then its packets, each a `crib_sock_item` and its
    /// bytes padded to 8, `items_size` bytes in all, then at most the program's slack.
    fn push_sock(&mut self, index: usize, bytes: &[u8]) -> Result<(), DumpError> {
        let bad = |reason: String| bad_record(index, reason);
        let fixed = size_of::<crib_rec_sock>();
        let r: crib_rec_sock = read_pod(bytes).ok_or_else(|| {
            bad(format!(
                "socket record of {} bytes, shorter than its {fixed}-byte fixed part",
                bytes.len()
            ))
        })?;
        if usize::from(r.hdr.size) != fixed {
            return Err(bad(format!(
                "socket record's fixed part is {} bytes, expected {fixed} (from another ABI)",
                r.hdr.size
            )));
        }
        let sock = decode_sock(&r);
        let fd = sock.fd;
        let nr_items = sock.nr_items as usize;
        if sock.queue_err != 0 && nr_items != 0 {
            return Err(bad(format!(
                "fd {fd}: queue error {} but {nr_items} packets announced",
                sock.queue_err
            )));
        }
        if self.summaries && nr_items != 0 {
            return Err(bad(format!("fd {fd}: packets in a summary")));
        }
        let rest = &bytes[fixed..];
        let items_size = r.items_size as usize;
        let Some(mut area) = rest.get(..items_size) else {
            return Err(bad(format!(
                "fd {fd}: {items_size} bytes of packets announced, the record has {} after its \
                 fixed part",
                rest.len()
            )));
        };
        // Reserved before the packets were seen: 7 bytes of padding a packet and the last
        // read's slice at most (crib_records.h); anything longer is not this program's record.
        let slack = rest.len() - items_size;
        let max_slack = if nr_items == 0 {
            0
        } else {
            7 * nr_items + CRIB_SOCK_SLACK as usize
        };
        if slack > max_slack {
            return Err(bad(format!(
                "fd {fd}: {slack} bytes after its packets, more than the {max_slack} the \
                 program reserves beyond them"
            )));
        }
        let mut s = SockDump::<Q>::new(sock);
        if !self.summaries {
            for (q, &b) in s.queues.iter_mut().zip(&s.sock.bytes) {
                q.reserve(b.min(MAX_RESERVE) as usize);
            }
        }
        let head = size_of::<crib_sock_item>();
        s.items.reserve_exact(nr_items.min(area.len() / head));
        for i in 0..nr_items {
            let it: crib_sock_item = read_pod(area).ok_or_else(|| {
                bad(format!(
                    "fd {fd}: packet {i} of {nr_items}: its header runs past the record's \
                     {items_size} bytes of packets"
                ))
            })?;
            area = &area[head..];
            if it.index as usize != i {
                return Err(bad(format!(
                    "fd {fd}: packet {i} says it is packet {}",
                    it.index
                )));
            }
            let queue = Queue::from_raw(it.queue)
                .ok_or_else(|| bad(format!("fd {fd} packet {i}: unknown queue {}", it.queue)))?;
            let len = it.len as usize;
            let padded = len.next_multiple_of(8);
            if area.len() < padded {
                return Err(bad(format!(
                    "fd {fd} packet {i}: its {len} bytes run past the record's packets \
                     ({} bytes left)",
                    area.len()
                )));
            }
            let payload = &area[..len];
            area = &area[padded..];
            let fam = if it.flags & F_V6 != 0 {
                libc::AF_INET6
            } else {
                libc::AF_INET
            } as u16;
            let src = (queue == Queue::UdpRecv)
                .then(|| addr_of(fam, &it.src_addr, u16::from_be(it.src_port)))
                .flatten();
            let q = &mut s.queues[queue as usize];
            let at = q.len();
            if !payload.is_empty() {
                q.append(payload);
            }
            s.items.push(Item {
                index: it.index,
                queue,
                len: it.len,
                skip: it.skip,
                seq: it.seq,
                end_seq: it.end_seq,
                flags: it.flags,
                nr_fds: it.nr_fds,
                src,
                data: at..q.len(),
            });
        }
        if !area.is_empty() {
            return Err(bad(format!(
                "fd {fd}: {} bytes of packets left after its {nr_items} packets",
                area.len()
            )));
        }
        if !self.summaries {
            check_sock_complete(index, &s)?;
        }
        self.socks.push(s);
        Ok(())
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

/// Decode the records of one run, copied out of the ring buffer ([`SockDecoder`] decodes them
/// in place).
pub fn decode_stream(records: &[Vec<u8>]) -> Result<RawSockDump, DumpError> {
    let mut d = SockDecoder::new(false);
    for r in records {
        d.record(r);
    }
    d.into_raw()
}

fn check_sock_complete<Q: QueueStore>(index: usize, s: &SockDump<Q>) -> Result<(), DumpError> {
    let bad = |reason: String| bad_record(index, reason);
    // One pass over the items (this runs once per socket of every dump).
    let mut nrs = [0usize; NR_QUEUES];
    let mut sums = [0u64; NR_QUEUES];
    for i in &s.items {
        nrs[i.queue as usize] += 1;
        sums[i.queue as usize] += u64::from(i.len);
    }
    for q in Queue::ALL {
        let (nr, bytes) = (nrs[q as usize], sums[q as usize]);
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

//! Socket dumps: run `selftests/progs/dump_socks.bpf.c` against a pid, decode its records
//! (one socket record, then per queued packet an item record and the data chunks of its bytes)
//! into typed values, and check that the stream is internally complete.
//!
//! Records are decoded in place, in the ring buffer's memory ([`SockDecoder`] is the
//! [`RecordSink`] of the run): the one copy of a queue's bytes is the one into that queue's
//! byte vector, sized beforehand from the socket record's totals.
//!
//! The layouts come from bindgen (`crate::records`). A dump is returned only when it is
//! complete: the program returned 0, the end record came last with no error and no drops, every
//! socket is followed by exactly the items its record announces, every item by exactly its
//! bytes, and the per-queue counts and byte totals the kernel took with the snapshot equal what
//! the items add up to. A socket whose queues the kernel refused (kTLS, listening, MPTCP,
//! sockmap) is part of a complete dump: its `queue_err` says why and no items follow it.

use std::fmt;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::Path;

use crate::dump::stream::{bad_record, fixed_record};
use crate::dump::{read_pod, DumpError, EndRecord, RecordSink, RingbufProgram, StreamCheck};
use crate::records::{
    crib_rec_sock, crib_rec_sock_data, crib_rec_sock_item, crib_sock_dump_ctx, CRIB_REC_END,
    CRIB_REC_SOCK, CRIB_REC_SOCK_DATA, CRIB_REC_SOCK_ITEM, CRIB_SOCK_CHUNK,
    CRIB_SOCK_DUMP_F_NO_ITEMS, CRIB_SOCK_NR_QUEUES,
};

/// Name of the program (and its object file stem) that dumps sockets.
pub const PROG_NAME: &str = "crib_dump_socks";
/// Object file holding [`PROG_NAME`], relative to [`crate::BPF_DIR`].
pub const OBJ_FILE: &str = "dump_socks.bpf.o";
/// Ring buffer map of the dump program.
pub const MAP_NAME: &str = "records";

const NR_QUEUES: usize = CRIB_SOCK_NR_QUEUES as usize;

/// The queues of `enum crib_sock_queue` (kfuncs/crib.h; the numbering is the kfunc ABI, which
/// selftests/include/crib_kfuncs.h repeats for the programs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Queue {
    TcpRecv = 0,
    TcpOfo = 1,
    TcpRtx = 2,
    TcpWrite = 3,
    UdpRecv = 4,
    UdpCork = 5,
    UnixRecv = 6,
    Error = 7,
}

impl Queue {
    pub const ALL: [Queue; NR_QUEUES] = [
        Self::TcpRecv,
        Self::TcpOfo,
        Self::TcpRtx,
        Self::TcpWrite,
        Self::UdpRecv,
        Self::UdpCork,
        Self::UnixRecv,
        Self::Error,
    ];

    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }

    /// Bit of this queue in a queue mask.
    pub fn bit(self) -> u32 {
        1 << self as u32
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TcpRecv => "tcp-recv",
            Self::TcpOfo => "tcp-ofo",
            Self::TcpRtx => "tcp-rtx",
            Self::TcpWrite => "tcp-write",
            Self::UdpRecv => "udp-recv",
            Self::UdpCork => "udp-cork",
            Self::UnixRecv => "unix-recv",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `bpf_iter_sock_queue_item.flags` bits (kfuncs/crib.h).
pub const F_FIN: u32 = 1 << 0;
pub const F_SYN: u32 = 1 << 1;
pub const F_OOB: u32 = 1 << 2;
pub const F_V6: u32 = 1 << 3;

/// One socket as the dump program saw it (`struct crib_rec_sock`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockRecord {
    pub fd: u32,
    /// `bpf_iter_sock_queue_new()`'s errno (negative), 0 when the queues were dumped
    pub queue_err: i32,
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    pub state: u8,
    pub src: Option<(IpAddr, u16)>,
    pub dst: Option<(IpAddr, u16)>,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub write_seq: u32,
    pub rcv_nxt: u32,
    pub copied_seq: u32,
    pub cork_len: u32,
    pub nr: [u32; NR_QUEUES],
    pub bytes: [u64; NR_QUEUES],
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
    pub mss_cache: u32,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub nr_items: u32,
}

impl SockRecord {
    pub fn nr_of(&self, q: Queue) -> u32 {
        self.nr[q as usize]
    }

    pub fn bytes_of(&self, q: Queue) -> u64 {
        self.bytes[q as usize]
    }
}

/// One queued packet with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub index: u32,
    pub queue: Queue,
    pub len: u32,
    pub skip: u32,
    pub seq: u32,
    pub end_seq: u32,
    pub flags: u32,
    pub nr_fds: u32,
    /// UDP receive: the sender
    pub src: Option<(IpAddr, u16)>,
    /// Where the packet's bytes are in its queue's bytes ([`SockDump::data`] gives them);
    /// `data.len()` bytes have arrived.
    pub data: Range<usize>,
}

/// One socket and its packets, in the order the kernel walked them, with the bytes of each
/// queue in one vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockDump {
    pub sock: SockRecord,
    pub items: Vec<Item>,
    queues: [Vec<u8>; NR_QUEUES],
}

impl SockDump {
    /// A socket with no packets (yet).
    pub fn new(sock: SockRecord) -> Self {
        Self {
            sock,
            ..Self::default()
        }
    }

    /// The packets of queue `q`, in order.
    pub fn queue(&self, q: Queue) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.queue == q)
    }

    /// The bytes of queue `q`: its packets' bytes, in order.
    pub fn queue_data(&self, q: Queue) -> &[u8] {
        &self.queues[q as usize]
    }

    /// A copy of [`SockDump::queue_data`].
    pub fn queue_bytes(&self, q: Queue) -> Vec<u8> {
        self.queue_data(q).to_vec()
    }

    /// The bytes of queue `q`, moved out (the dump keeps an empty queue).
    pub fn take_queue_bytes(&mut self, q: Queue) -> Vec<u8> {
        std::mem::take(&mut self.queues[q as usize])
    }

    /// The bytes of packet `item` (one of this socket's).
    pub fn data(&self, item: &Item) -> &[u8] {
        self.queues[item.queue as usize]
            .get(item.data.clone())
            .unwrap_or_default()
    }
}

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
pub struct RawSockDump {
    pub socks: Vec<SockDump>,
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
pub struct SockDecoder {
    check: StreamCheck,
    /// `CRIB_SOCK_DUMP_F_NO_ITEMS`: socket records only
    summaries: bool,
    socks: Vec<SockDump>,
    error: Option<DumpError>,
    /// the last record, if it was an end record (also after an error)
    last_end: Option<EndRecord>,
}

impl SockDecoder {
    /// A decoder for a dump with packets, or (`summaries`) of socket records only.
    pub fn new(summaries: bool) -> Self {
        Self {
            summaries,
            ..Self::default()
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
                let mut s = SockDump::new(sock);
                if !self.summaries {
                    for (q, &b) in s.queues.iter_mut().zip(&s.sock.bytes) {
                        q.reserve_exact(b.min(MAX_RESERVE) as usize);
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
        let payload = &bytes[fixed..];
        if r.len as usize != payload.len() || r.len == 0 || r.len > CRIB_SOCK_CHUNK {
            return Err(bad(format!(
                "fd {} item {}: data record of {} bytes says it carries {} (1..={CRIB_SOCK_CHUNK})",
                r.fd,
                r.index,
                bytes.len(),
                r.len
            )));
        }
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
        q.extend_from_slice(payload);
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
    pub fn into_raw(self) -> Result<RawSockDump, DumpError> {
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
    pub fn judge(self, pid: i32, retval: i32) -> Result<Vec<SockDump>, DumpError> {
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

impl RecordSink for SockDecoder {
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

fn check_sock_complete(index: usize, s: &SockDump) -> Result<(), DumpError> {
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
        let held = s.queue_data(q).len() as u64;
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
pub fn finish(pid: i32, retval: i32, raw: RawSockDump) -> Result<Vec<SockDump>, DumpError> {
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

/// "EOPNOTSUPP (95)" for an errno.
pub fn errno_str(errno: i32) -> String {
    let name = crate::errno::symbol(errno).unwrap_or_else(|| "errno".into());
    format!("{name} ({errno})")
}

/// The loaded socket dump program.
pub struct SockDumper {
    prog: RingbufProgram,
}

impl SockDumper {
    pub fn load() -> Result<Self, DumpError> {
        Self::load_from(&Path::new(crate::BPF_DIR).join(OBJ_FILE))
    }

    pub fn load_from(obj: &Path) -> Result<Self, DumpError> {
        Ok(Self {
            prog: RingbufProgram::load(obj, PROG_NAME, MAP_NAME)?,
        })
    }

    fn ctx(pid: i32, fd: Option<i32>, queues: u32, flags: u32) -> crib_sock_dump_ctx {
        crib_sock_dump_ctx {
            pid,
            fd: fd.unwrap_or(-1),
            queues,
            flags,
        }
    }

    /// Run once: the program's return value and its records, copied out.
    pub fn run_raw(
        &self,
        pid: i32,
        fd: Option<i32>,
        queues: u32,
    ) -> Result<(i32, Vec<Vec<u8>>), DumpError> {
        self.prog.run(&mut Self::ctx(pid, fd, queues, 0))
    }

    /// Run once, handing the records to `sink` in place.
    pub fn run_into<S: RecordSink>(
        &self,
        pid: i32,
        fd: Option<i32>,
        sink: S,
    ) -> Result<(i32, S), DumpError> {
        self.prog.run_into(&mut Self::ctx(pid, fd, 0, 0), sink)
    }

    /// Dump every socket of `pid` (or only `fd`), all queues.
    pub fn dump(&self, pid: i32, fd: Option<i32>) -> Result<Vec<SockDump>, DumpError> {
        let (retval, dec) = self.run_into(pid, fd, SockDecoder::new(false))?;
        dec.judge(pid, retval)
    }

    /// Every socket of `pid` with its queues' packet counts and byte totals only, no packets
    /// (`CRIB_SOCK_DUMP_F_NO_ITEMS`): what `crib dump` shows.
    pub fn summaries(&self, pid: i32) -> Result<Vec<SockRecord>, DumpError> {
        let mut ctx = Self::ctx(pid, None, 0, CRIB_SOCK_DUMP_F_NO_ITEMS);
        let (retval, dec) = self.prog.run_into(&mut ctx, SockDecoder::new(true))?;
        let socks = dec.judge(pid, retval)?;
        Ok(socks.into_iter().map(|s| s.sock).collect())
    }

    /// Dump socket `fd` of this process.
    pub fn dump_own_fd(&self, fd: i32) -> Result<SockDump, DumpError> {
        let pid = std::process::id() as i32;
        let mut socks = self.dump(pid, Some(fd))?;
        if socks.len() != 1 {
            return Err(DumpError::Incomplete {
                pid,
                reason: format!("fd {fd}: {} socket records, expected 1", socks.len()),
            });
        }
        Ok(socks.remove(0))
    }
}

#[cfg(test)]
mod tests;

//! Socket dumps: run `selftests/progs/dump_socks.bpf.c` against a pid, decode its records
//! (one socket record, then per queued packet an item record and the data chunks of its bytes)
//! into typed values, and check that the stream is internally complete.
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
use std::path::Path;

use crate::dump::{read_pod, record_header, DumpError, EndRecord, RingbufProgram};
use crate::records::{
    crib_rec_end, crib_rec_hdr, crib_rec_sock, crib_rec_sock_data, crib_rec_sock_item,
    crib_sock_dump_ctx, CRIB_REC_END, CRIB_REC_SOCK, CRIB_REC_SOCK_DATA, CRIB_REC_SOCK_ITEM,
    CRIB_SOCK_CHUNK, CRIB_SOCK_DUMP_F_NO_ITEMS, CRIB_SOCK_NR_QUEUES,
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
    pub data: Vec<u8>,
}

/// One socket and its packets, in the order the kernel walked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockDump {
    pub sock: SockRecord,
    pub items: Vec<Item>,
}

impl SockDump {
    /// The packets of queue `q`, in order.
    pub fn queue(&self, q: Queue) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.queue == q)
    }

    /// The bytes of queue `q`, concatenated.
    pub fn queue_bytes(&self, q: Queue) -> Vec<u8> {
        self.queue(q).flat_map(|i| i.data.iter().copied()).collect()
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

/// Decode the records of one run. Checks sizes, sequence numbers, that every item belongs to
/// the socket before it and comes in index order, that data chunks are contiguous and add up
/// to their item's length, that each socket got exactly the items it announced, and that the
/// snapshot's per-queue counts and byte totals equal the items'.
pub fn decode_stream(records: &[Vec<u8>]) -> Result<RawSockDump, DumpError> {
    let mut socks: Vec<SockDump> = Vec::new();
    let mut end = None;
    for (index, bytes) in records.iter().enumerate() {
        let bad = |reason: String| DumpError::BadRecord { index, reason };
        let hdr = record_header(index, bytes)?;
        if hdr.seq as usize != index {
            return Err(bad(format!(
                "sequence number {} (records lost or reordered)",
                hdr.seq
            )));
        }
        if end.is_some() {
            return Err(bad("record after the end record".into()));
        }
        let ty = u32::from(hdr.type_);
        let expect = match ty {
            CRIB_REC_SOCK => size_of::<crib_rec_sock>(),
            CRIB_REC_SOCK_ITEM => size_of::<crib_rec_sock_item>(),
            CRIB_REC_SOCK_DATA => size_of::<crib_rec_sock_data>(),
            CRIB_REC_END => size_of::<crib_rec_end>(),
            _ => return Err(bad(format!("unknown record type {ty}"))),
        };
        if bytes.len() != expect {
            return Err(bad(format!(
                "type {ty} record of {} bytes, expected {expect}",
                bytes.len()
            )));
        }
        match ty {
            CRIB_REC_SOCK => {
                if let Some(prev) = socks.last() {
                    check_sock_complete(index, prev)?;
                }
                let r: crib_rec_sock = read_pod(bytes).ok_or_else(|| bad("short".into()))?;
                let sock = decode_sock(&r);
                if sock.queue_err != 0 && sock.nr_items != 0 {
                    return Err(bad(format!(
                        "fd {}: queue error {} but {} items announced",
                        sock.fd, sock.queue_err, sock.nr_items
                    )));
                }
                socks.push(SockDump {
                    sock,
                    items: Vec::new(),
                });
            }
            CRIB_REC_SOCK_ITEM => {
                let r: crib_rec_sock_item = read_pod(bytes).ok_or_else(|| bad("short".into()))?;
                let s = socks
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
                    data: Vec::with_capacity(r.len as usize),
                });
            }
            CRIB_REC_SOCK_DATA => {
                let r: crib_rec_sock_data = read_pod(bytes).ok_or_else(|| bad("short".into()))?;
                let item = socks
                    .last_mut()
                    .filter(|s| s.sock.fd == r.fd)
                    .and_then(|s| s.items.last_mut())
                    .filter(|i| i.index == r.index)
                    .ok_or_else(|| {
                        bad(format!(
                            "data of fd {} item {} does not follow that item",
                            r.fd, r.index
                        ))
                    })?;
                if r.offset as usize != item.data.len()
                    || r.len == 0
                    || r.len > CRIB_SOCK_CHUNK
                    || item.data.len() + r.len as usize > item.len as usize
                {
                    return Err(bad(format!(
                        "fd {} item {}: chunk at offset {} of {} bytes, after {} of {} bytes",
                        r.fd,
                        r.index,
                        r.offset,
                        r.len,
                        item.data.len(),
                        item.len
                    )));
                }
                item.data.extend_from_slice(&r.data[..r.len as usize]);
            }
            _ => {
                let e: crib_rec_end = read_pod(bytes).ok_or_else(|| bad("short".into()))?;
                if let Some(prev) = socks.last() {
                    check_sock_complete(index, prev)?;
                }
                end = Some(EndRecord {
                    error: e.error,
                    nr_records: e.nr_records,
                    nr_dropped: e.nr_dropped,
                });
            }
        }
    }
    Ok(RawSockDump { socks, end })
}

fn check_item_complete(index: usize, fd: u32, item: &Item) -> Result<(), DumpError> {
    if item.data.len() != item.len as usize {
        return Err(DumpError::BadRecord {
            index,
            reason: format!(
                "fd {fd} item {} ({}): {} of its {} bytes arrived",
                item.index,
                item.queue,
                item.data.len(),
                item.len
            ),
        });
    }
    Ok(())
}

fn check_sock_complete(index: usize, s: &SockDump) -> Result<(), DumpError> {
    let bad = |reason: String| DumpError::BadRecord { index, reason };
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
        if nr != s.sock.nr_of(q) as usize || bytes != s.sock.bytes_of(q) {
            return Err(bad(format!(
                "fd {} queue {q}: snapshot info says {} packets / {} bytes, the items are {nr} / \
                 {bytes}",
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

/// The end record, if `bytes` is one.
fn end_record(bytes: &[u8]) -> Option<EndRecord> {
    let hdr: crib_rec_hdr = read_pod(bytes)?;
    if u32::from(hdr.type_) != CRIB_REC_END || bytes.len() != size_of::<crib_rec_end>() {
        return None;
    }
    let e: crib_rec_end = read_pod(bytes)?;
    Some(EndRecord {
        error: e.error,
        nr_records: e.nr_records,
        nr_dropped: e.nr_dropped,
    })
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

    /// Run once: the program's return value and its raw records.
    pub fn run_raw(
        &self,
        pid: i32,
        fd: Option<i32>,
        queues: u32,
    ) -> Result<(i32, Vec<Vec<u8>>), DumpError> {
        self.prog.run(&mut crib_sock_dump_ctx {
            pid,
            fd: fd.unwrap_or(-1),
            queues,
            flags: 0,
        })
    }

    /// Dump every socket of `pid` (or only `fd`), all queues.
    pub fn dump(&self, pid: i32, fd: Option<i32>) -> Result<Vec<SockDump>, DumpError> {
        let (retval, records) = self.run_raw(pid, fd, 0)?;
        // A run that says it failed (a full ring buffer above all) is reported as such, not as
        // the gap its lost records leave in the stream.
        if let Some(end) = records.last().and_then(|r| end_record(r)) {
            if end.error != 0 || end.nr_dropped != 0 || retval != 0 {
                let socks = decode_stream(&records).map(|r| r.socks).unwrap_or_default();
                return finish(
                    pid,
                    retval,
                    RawSockDump {
                        socks,
                        end: Some(end),
                    },
                );
            }
        }
        finish(pid, retval, decode_stream(&records)?)
    }

    /// Every socket of `pid` with its queues' packet counts and byte totals only, no packets
    /// (`CRIB_SOCK_DUMP_F_NO_ITEMS`): what `crib dump` shows.
    pub fn summaries(&self, pid: i32) -> Result<Vec<SockRecord>, DumpError> {
        let (retval, records) = self.prog.run(&mut crib_sock_dump_ctx {
            pid,
            fd: -1,
            queues: 0,
            flags: CRIB_SOCK_DUMP_F_NO_ITEMS,
        })?;
        let mut socks = Vec::new();
        let mut end = None;
        for (index, bytes) in records.iter().enumerate() {
            let bad = |reason: String| DumpError::BadRecord { index, reason };
            let hdr = record_header(index, bytes)?;
            if hdr.seq as usize != index || end.is_some() {
                return Err(bad(format!("record {} out of order", hdr.seq)));
            }
            match u32::from(hdr.type_) {
                CRIB_REC_SOCK if bytes.len() == size_of::<crib_rec_sock>() => {
                    let r: crib_rec_sock = read_pod(bytes).ok_or_else(|| bad("short".into()))?;
                    let sock = decode_sock(&r);
                    if sock.nr_items != 0 {
                        return Err(bad(format!("fd {}: items in a summary", sock.fd)));
                    }
                    socks.push(SockDump {
                        sock,
                        items: Vec::new(),
                    });
                }
                CRIB_REC_END => {
                    end = Some(end_record(bytes).ok_or_else(|| bad("bad end record".into()))?)
                }
                ty => return Err(bad(format!("record type {ty} in a summary dump"))),
            }
        }
        let socks = finish(pid, retval, RawSockDump { socks, end })?;
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

//! Socket dumps: run `selftests/progs/dump_socks.bpf.c` against a pid, decode its records
//! (one per socket: its fixed part, then each queued packet's header and bytes) into typed
//! values, and check that the stream is internally complete.
//!
//! Records are decoded in place, in the ring buffer's memory ([`SockDecoder`] is the
//! [`RecordSink`] of the run): the one copy of a queue's bytes is the one into that queue's
//! byte vector, sized beforehand from the socket record's totals. [`SockDumper::dump_in_place`]
//! does not make that copy either: each queue keeps where its packets' bytes are in the ring
//! buffer ([`InRing`], a chunk per packet), read back through the run's `RingSpan`, which holds the records' room until
//! the dump is dropped.
//!
//! The layouts come from bindgen (`crate::records`). A dump is returned only when it is
//! complete: the program returned 0, the end record came last with no error and no drops, every
//! socket record holds exactly the packets (items) it announces, each with exactly its bytes,
//! and the per-queue counts and byte totals the kernel took with the snapshot equal what the
//! items add up to. A socket whose queues the kernel refused (kTLS, listening, MPTCP, sockmap)
//! is part of a complete dump: its `queue_err` says why and it holds no items.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use crate::dump::ringview::RingSpan;
use crate::dump::{DumpError, RecordSink, RingbufProgram};
use crate::records::{crib_sock_dump_ctx, CRIB_SOCK_DUMP_F_NO_ITEMS, CRIB_SOCK_NR_QUEUES};

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

/// Where a [`SockDump`] keeps each queue's bytes: copied into one vector per queue
/// (`Vec<u8>`, the default), or left in the ring buffer where the program wrote them
/// ([`InRing`]).
pub trait QueueStore: Default + std::fmt::Debug + Clone + PartialEq + Eq + Send + 'static {
    /// Append one chunk: bytes inside the record being decoded.
    fn append(&mut self, bytes: &[u8]);
    /// Bytes held.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Room for `n` bytes, announced by the socket record (a hint).
    fn reserve(&mut self, n: usize);
}

impl QueueStore for Vec<u8> {
    fn append(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn reserve(&mut self, n: usize) {
        self.reserve_exact(n);
    }
}

/// A queue's bytes not copied: where each chunk is in the ring buffer, read back through the
/// run's [`RingSpan`] (a checkpoint writer would hand the chunks to `writev()` as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InRing {
    /// address and length of each chunk, in order
    chunks: Vec<(usize, usize)>,
    len: usize,
}

impl QueueStore for InRing {
    fn append(&mut self, bytes: &[u8]) {
        self.chunks.push((bytes.as_ptr() as usize, bytes.len()));
        self.len += bytes.len();
    }
    fn len(&self) -> usize {
        self.len
    }
    fn reserve(&mut self, _: usize) {}
}

impl InRing {
    /// The chunks, in order, read in place through `span`, the run they were decoded from;
    /// None if one of them is not in it.
    pub fn chunks<'s>(&self, span: &'s RingSpan<'_>) -> Option<Vec<&'s [u8]>> {
        self.chunks
            .iter()
            .map(|&(addr, len)| span.slice(addr, len))
            .collect()
    }

    /// Address and length of each chunk, in order (read them through [`RingSpan::slice`]).
    pub fn places(&self) -> &[(usize, usize)] {
        &self.chunks
    }
}

/// One socket and its packets, in the order the kernel walked them, with the bytes of each
/// queue in one [`QueueStore`] (by default a vector).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockDump<Q: QueueStore = Vec<u8>> {
    pub sock: SockRecord,
    pub items: Vec<Item>,
    queues: [Q; NR_QUEUES],
}

impl<Q: QueueStore> SockDump<Q> {
    /// A socket with no packets (yet).
    pub fn new(sock: SockRecord) -> Self {
        Self {
            sock,
            items: Vec::new(),
            queues: Default::default(),
        }
    }

    /// The packets of queue `q`, in order.
    pub fn queue(&self, q: Queue) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.queue == q)
    }

    /// Where queue `q`'s bytes are.
    pub fn queue_store(&self, q: Queue) -> &Q {
        &self.queues[q as usize]
    }
}

impl SockDump {
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

/// The sockets of one run, their bytes left in the ring buffer ([`SockDumper::dump_in_place`]);
/// the ring buffer's room is given back when this is dropped.
pub struct InPlaceDump<'a> {
    pub socks: Vec<SockDump<InRing>>,
    pub span: RingSpan<'a>,
}

impl InPlaceDump<'_> {
    /// Queue `q` of `sock` (one of `self.socks`) as the chunks in the ring buffer.
    pub fn chunks(&self, sock: &SockDump<InRing>, q: Queue) -> Option<Vec<&[u8]>> {
        sock.queue_store(q).chunks(&self.span)
    }

    /// The dump with every queue's bytes copied out, as [`SockDumper::dump`] gives it; None if
    /// a chunk is not in this run's records.
    pub fn to_owned(&self) -> Option<Vec<SockDump>> {
        self.socks
            .iter()
            .map(|s| {
                let mut queues: [Vec<u8>; NR_QUEUES] = Default::default();
                for q in Queue::ALL {
                    queues[q as usize] = self.chunks(s, q)?.concat();
                }
                Some(SockDump {
                    sock: s.sock.clone(),
                    items: s.items.clone(),
                    queues,
                })
            })
            .collect()
    }
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

    /// [`SockDumper::dump`] without copying the packet bytes out of the ring buffer: the
    /// records are decoded and checked as they lie, and each queue keeps where its chunks are.
    pub fn dump_in_place(&self, pid: i32, fd: Option<i32>) -> Result<InPlaceDump<'_>, DumpError> {
        let (retval, span, _) = self.prog.run_in_place(&mut Self::ctx(pid, fd, 0, 0))?;
        let mut dec = SockDecoder::<InRing>::with_store(false);
        for r in span.records() {
            dec.record(r?);
        }
        let socks = dec.judge(pid, retval)?;
        Ok(InPlaceDump { socks, span })
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

mod decode;
#[cfg(test)]
mod tests;

pub use decode::{decode_stream, finish, RawSockDump, SockDecoder};

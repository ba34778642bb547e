//! The two dumps in one shape: CRIB's socket dumps and CRIU's method's, as [`TcpSock`]s.

use super::SockBenchError;
use crate::criu_dump::{self, TcpSock};
use crate::sock_dump::{self, InPlaceDump, Queue, SockDump, SockDumper};
use crate::sock_truth::TcpWindow;

/// A CRIB socket dump as a [`TcpSock`], its queues' bytes moved, not copied (but for a send
/// queue split between the retransmit and write queues); None for a socket that is not TCP
/// over IP.
pub fn tcp_sock_of(mut d: SockDump) -> Result<Option<TcpSock>, SockBenchError> {
    let r = &d.sock;
    let inet = matches!(i32::from(r.family), libc::AF_INET | libc::AF_INET6);
    if !inet || i32::from(r.protocol) != libc::IPPROTO_TCP {
        return Ok(None);
    }
    let bad = |m: String| SockBenchError::Check(format!("CRIB dump, fd {}: {m}", r.fd));
    if r.queue_err != 0 {
        return Err(bad(format!(
            "queues refused: {}",
            sock_dump::errno_str(-r.queue_err)
        )));
    }
    if r.nr_of(Queue::TcpOfo) != 0 {
        return Err(bad(format!(
            "{} out-of-order packets, which CRIU's method cannot see",
            r.nr_of(Queue::TcpOfo)
        )));
    }
    let addr = |a: Option<(std::net::IpAddr, u16)>, which: &str| {
        a.map(|(ip, port)| std::net::SocketAddr::new(ip, port))
            .ok_or_else(|| bad(format!("no {which} address")))
    };
    let src = addr(r.src, "local")?;
    let dst = addr(r.dst, "peer")?;
    let recv = d.take_queue_bytes(Queue::TcpRecv);
    let mut send = d.take_queue_bytes(Queue::TcpRtx);
    if send.is_empty() {
        send = d.take_queue_bytes(Queue::TcpWrite);
    } else {
        send.extend_from_slice(d.queue_data(Queue::TcpWrite));
    }
    let r = &d.sock;
    Ok(Some(TcpSock {
        fd: r.fd,
        family: r.family,
        state: r.state,
        src,
        dst,
        snd_una: r.snd_una,
        snd_nxt: r.snd_nxt,
        write_seq: r.write_seq,
        rcv_nxt: r.rcv_nxt,
        copied_seq: r.copied_seq,
        window: TcpWindow {
            snd_wl1: r.snd_wl1,
            snd_wnd: r.snd_wnd,
            max_window: r.max_window,
            rcv_wnd: r.rcv_wnd,
            rcv_wup: r.rcv_wup,
        },
        mss: r.mss_cache,
        snd_wscale: r.snd_wscale,
        rcv_wscale: r.rcv_wscale,
        recv,
        send,
    }))
}

pub(super) fn tcp_socks(dumps: Vec<SockDump>) -> Result<Vec<TcpSock>, SockBenchError> {
    let mut v = Vec::with_capacity(dumps.len());
    for d in dumps {
        if let Some(s) = tcp_sock_of(d)? {
            v.push(s);
        }
    }
    v.sort_by_key(|s| s.fd);
    Ok(v)
}

/// CRIB copying the bytes out: one program run, decoded, as [`TcpSock`]s.
pub fn crib_dump(d: &SockDumper, pid: i32) -> Result<Vec<TcpSock>, SockBenchError> {
    tcp_socks(d.dump(pid, None)?)
}

/// CRIB as the benchmark times it: one program run, the records decoded and checked where
/// they lie, and every queue of every socket resolved to its chunks in the ring buffer (what a
/// checkpoint writer would hand to `writev()`); the bytes are not copied. The dump holds the
/// ring buffer's room until it is dropped.
pub fn crib_dump_in_place(d: &SockDumper, pid: i32) -> Result<InPlaceDump<'_>, SockBenchError> {
    let dump = d.dump_in_place(pid, None)?;
    let mut bytes = 0;
    for s in &dump.socks {
        for q in Queue::ALL {
            for &(addr, len) in s.queue_store(q).places() {
                let c = dump.span.slice(addr, len).ok_or_else(|| {
                    SockBenchError::Check(format!(
                        "CRIB dump, fd {} queue {q}: a chunk outside the run's records",
                        s.sock.fd
                    ))
                })?;
                bytes += c.len();
            }
        }
    }
    std::hint::black_box(bytes);
    Ok(dump)
}

/// An in-place CRIB dump as [`TcpSock`]s (the bytes copied out: for comparing, not timed).
pub fn tcp_socks_in_place(dump: &InPlaceDump<'_>) -> Result<Vec<TcpSock>, SockBenchError> {
    let owned = dump.to_owned().ok_or_else(|| {
        SockBenchError::Check("CRIB dump: a chunk outside the run's records".into())
    })?;
    tcp_socks(owned)
}

/// CRIU's method, as [`TcpSock`]s.
pub fn criu_method_dump(pid: i32) -> Result<Vec<TcpSock>, SockBenchError> {
    Ok(criu_dump::dump_tcp(pid, None)?
        .into_iter()
        .map(|c| c.sock)
        .collect())
}

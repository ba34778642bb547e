//! Step 3 of CRIU's socket dump, per TCP socket: libsoccr's pause and save (repair mode, the
//! state reads, and per queue its sequence number and one peek of its bytes).

use std::os::fd::RawFd;

use super::{io_err, Clock, CriuError, CriuExtra, CriuSock, DiagSock, Phases, TcpSock};
use crate::sock_truth::{self, Repair, TCP_RECV_QUEUE, TCP_SEND_QUEUE};

/// Room for a partly acked head packet in the send-queue peek (see the module comment).
const SEND_PEEK_SLACK: usize = 1 << 17;
/// include/uapi/linux/tcp.h
const TCP_TIMESTAMP: i32 = 24;

/// `libsoccr_pause()` + `libsoccr_save()` on `fd` (a copy of the target's fd `tfd`).
pub(super) fn save_tcp(
    fd: RawFd,
    tfd: u32,
    d: &DiagSock,
    inode: u64,
    clock: &mut Clock,
    ph: &mut Phases,
) -> Result<CriuSock, CriuError> {
    let what = |s: &str| format!("fd {tfd}: {s}");
    clock.lap();
    let repair = Repair::enter(fd).map_err(io_err(what("TCP_REPAIR on")))?;
    ph.repair += clock.lap();
    let info = sock_truth::tcp_info_head(fd).map_err(io_err(what("TCP_INFO")))?;
    let outq = sock_truth::outq(fd).map_err(io_err(what("SIOCOUTQ")))?;
    let outq_nsd = sock_truth::outq_nsd(fd).map_err(io_err(what("SIOCOUTQNSD")))?;
    let inq = sock_truth::inq(fd).map_err(io_err(what("SIOCINQ")))?;
    let window = repair.window().map_err(io_err(what("TCP_REPAIR_WINDOW")))?;
    let mss_clamp = sock_truth::getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, "")
        .map_err(io_err(what("TCP_MAXSEG")))? as u32;
    let timestamp = if info.options & sock_truth::TCPI_OPT_TIMESTAMPS != 0 {
        ph.syscalls += 1;
        Some(
            sock_truth::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP, "")
                .map_err(io_err(what("TCP_TIMESTAMP")))? as u32,
        )
    } else {
        None
    };
    ph.state += clock.lap();
    let rcv_nxt = repair
        .queue_seq(TCP_RECV_QUEUE)
        .map_err(io_err(what("TCP_QUEUE_SEQ (receive)")))?;
    // CRIU peeks one byte more than SIOCINQ, to see that there are no more.
    let recv = if inq > 0 {
        repair
            .peek(inq as usize + 1)
            .map_err(io_err(what("peek of the receive queue")))?
    } else {
        Vec::new()
    };
    if recv.len() != inq as usize {
        return Err(CriuError::Diag(format!(
            "fd {tfd}: peeked {} bytes of the receive queue, SIOCINQ says {inq}",
            recv.len()
        )));
    }
    let write_seq = repair
        .queue_seq(TCP_SEND_QUEUE)
        .map_err(io_err(what("TCP_QUEUE_SEQ (send)")))?;
    // As CRIU: SIOCOUTQ + 1 bytes. Only a partly acked head packet gives more; then once
    // more with room for it.
    let mut send = Vec::new();
    if outq > 0 {
        send = repair
            .peek(outq as usize + 1)
            .map_err(io_err(what("peek of the send queue")))?;
        if send.len() > outq as usize {
            ph.syscalls += 1;
            send = repair
                .peek(outq as usize + SEND_PEEK_SLACK)
                .map_err(io_err(what("peek of the send queue")))?;
        }
    }
    if send.len() < outq as usize {
        return Err(CriuError::Diag(format!(
            "fd {tfd}: peeked {} bytes of the send queue, SIOCOUTQ says {outq}",
            send.len()
        )));
    }
    send.drain(..send.len() - outq as usize);
    ph.queues += clock.lap();
    drop(repair);
    ph.repair += clock.lap();
    // on, TCP_INFO, 3 ioctls, window, maxseg, 2 x (select, seq), the peeks, and leaving
    // (select no queue, off)
    ph.syscalls += 1 + 1 + 3 + 1 + 1 + 4 + u64::from(inq > 0) + u64::from(outq > 0) + 2;
    ph.sockets += 1;
    Ok(CriuSock {
        sock: TcpSock {
            fd: tfd,
            family: d.family,
            state: d.state,
            src: d.src,
            dst: d.dst,
            snd_una: write_seq.wrapping_sub(outq),
            snd_nxt: write_seq.wrapping_sub(outq_nsd),
            write_seq,
            rcv_nxt,
            copied_seq: rcv_nxt.wrapping_sub(inq),
            window,
            mss: info.snd_mss,
            snd_wscale: info.snd_wscale,
            rcv_wscale: info.rcv_wscale,
            recv,
            send,
        },
        extra: CriuExtra {
            inode,
            mss_clamp,
            options: info.options,
            timestamp,
        },
    })
}

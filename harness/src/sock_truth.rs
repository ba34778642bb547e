//! Ground truth for socket dumps, from the socket API alone (what CRIU uses): TCP sequence
//! numbers from `TCP_REPAIR` + `TCP_QUEUE_SEQ` and the `SIOCINQ`/`SIOCOUTQ`/`SIOCOUTQNSD`
//! ioctls, windows from `TCP_REPAIR_WINDOW`, MSS and window scales from `TCP_INFO`, send-queue
//! bytes from a repair-mode peek, receive bytes from `MSG_PEEK` with `SO_PEEK_OFF`, and the
//! first difference between two byte strings for failure messages.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

/// include/uapi/linux/tcp.h
pub const TCP_REPAIR_QUEUE: libc::c_int = 20;
pub const TCP_RECV_QUEUE: libc::c_int = 1;
pub const TCP_SEND_QUEUE: libc::c_int = 2;
pub const TCP_REPAIR_ON: libc::c_int = 1;
/// Leave repair mode without sending a window probe.
pub const TCP_REPAIR_OFF_NO_WP: libc::c_int = -1;

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

pub fn setsockopt_int(fd: RawFd, level: i32, opt: i32, val: i32, what: &str) -> io::Result<()> {
    // SAFETY: val outlives the call; the size is that of an int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    check(rc, what).map(|_| ())
}

pub fn getsockopt_int(fd: RawFd, level: i32, opt: i32, what: &str) -> io::Result<i32> {
    let mut val: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: val and len are valid for writes of their sizes.
    let rc = unsafe { libc::getsockopt(fd, level, opt, (&mut val as *mut i32).cast(), &mut len) };
    check(rc, what).map(|_| val)
}

fn ioctl_int(fd: RawFd, req: libc::c_ulong, what: &str) -> io::Result<u32> {
    let mut val: libc::c_int = 0;
    // SAFETY: the request writes one int.
    let rc = unsafe { libc::ioctl(fd, req as _, &mut val) };
    check(rc, what).map(|_| val as u32)
}

/// `SIOCINQ`: unread bytes (TCP), the first datagram's length (UDP).
pub fn inq(fd: RawFd) -> io::Result<u32> {
    ioctl_int(fd, libc::FIONREAD, "SIOCINQ")
}

/// `SIOCOUTQ`: TCP bytes not yet acked (write_seq - snd_una).
pub fn outq(fd: RawFd) -> io::Result<u32> {
    ioctl_int(fd, libc::TIOCOUTQ, "SIOCOUTQ")
}

/// `SIOCOUTQNSD`: TCP bytes not yet sent (write_seq - snd_nxt).
pub fn outq_nsd(fd: RawFd) -> io::Result<u32> {
    ioctl_int(fd, libc::SIOCOUTQNSD, "SIOCOUTQNSD")
}

/// Repair mode for as long as the guard lives (needs CAP_NET_ADMIN); left with
/// `TCP_REPAIR_OFF_NO_WP`, so leaving sends nothing.
pub struct Repair {
    fd: RawFd,
}

impl Repair {
    pub fn enter(fd: RawFd) -> io::Result<Self> {
        setsockopt_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_REPAIR,
            TCP_REPAIR_ON,
            "TCP_REPAIR on",
        )?;
        Ok(Self { fd })
    }

    fn queue(&self, q: i32) -> io::Result<()> {
        setsockopt_int(
            self.fd,
            libc::IPPROTO_TCP,
            TCP_REPAIR_QUEUE,
            q,
            "TCP_REPAIR_QUEUE",
        )
    }

    /// `TCP_QUEUE_SEQ` of queue `q`: write_seq (send) or rcv_nxt (receive).
    pub fn queue_seq(&self, q: i32) -> io::Result<u32> {
        self.queue(q)?;
        getsockopt_int(
            self.fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUEUE_SEQ,
            "TCP_QUEUE_SEQ",
        )
        .map(|v| v as u32)
    }

    /// `TCP_REPAIR_WINDOW`.
    pub fn window(&self) -> io::Result<TcpWindow> {
        let mut w = [0u32; 5];
        let mut len = size_of::<[u32; 5]>() as libc::socklen_t;
        // SAFETY: w and len are valid for writes of their sizes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_REPAIR_WINDOW,
                w.as_mut_ptr().cast(),
                &mut len,
            )
        };
        check(rc, "TCP_REPAIR_WINDOW")?;
        Ok(TcpWindow {
            snd_wl1: w[0],
            snd_wnd: w[1],
            max_window: w[2],
            rcv_wnd: w[3],
            rcv_wup: w[4],
        })
    }

    /// The send queue's bytes as `tcp_peek_sndq()` gives them: every packet of the
    /// retransmit queue and of the write queue from its start (an acked head included).
    pub fn peek_send_queue(&self, max: usize) -> io::Result<Vec<u8>> {
        self.queue(TCP_SEND_QUEUE)?;
        self.peek(max)
    }

    /// Up to `max` bytes of the queue [`Self::queue_seq`] selected last, with one
    /// `recv(MSG_PEEK | MSG_DONTWAIT)` (CRIU's `get_queue()`): the receive queue from
    /// copied_seq, or the send queue as in [`Self::peek_send_queue`]. An empty queue gives an
    /// empty buffer when `max` is 0.
    ///
    /// The buffer is not zeroed first: CRIU's `get_queue()` peeks into a fresh `xmalloc()`, and
    /// zeroing 16 MB per dump of 1,000 sockets was a cost only this side of the socket
    /// benchmark paid.
    pub fn peek(&self, max: usize) -> io::Result<Vec<u8>> {
        let cap = max.max(1);
        let mut buf = Vec::<u8>::with_capacity(cap);
        // SAFETY: recv() writes at most `cap` bytes into the vector's spare capacity, which
        // has room for `cap`; set_len() below covers only the `n` bytes it wrote.
        let rc = unsafe {
            libc::recv(
                self.fd,
                buf.spare_capacity_mut().as_mut_ptr().cast(),
                cap,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        let n = match usize::try_from(rc) {
            Ok(n) => n.min(cap),
            Err(_) => match Errno::last() {
                Errno::EAGAIN if max == 0 => return Ok(Vec::new()),
                e => {
                    let kind = io::Error::from(e).kind();
                    return Err(io::Error::new(kind, format!("repair-mode peek: {e}")));
                }
            },
        };
        // SAFETY: the first n <= cap bytes were written by recv().
        unsafe { buf.set_len(n) };
        Ok(buf)
    }
}

impl Drop for Repair {
    fn drop(&mut self) {
        let _ = self.queue(0);
        let _ = setsockopt_int(
            self.fd,
            libc::IPPROTO_TCP,
            libc::TCP_REPAIR,
            TCP_REPAIR_OFF_NO_WP,
            "TCP_REPAIR off",
        );
    }
}

/// `struct tcp_repair_window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpWindow {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}

/// TCP state the socket API shows, read in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTruth {
    pub write_seq: u32,
    pub rcv_nxt: u32,
    /// write_seq - SIOCOUTQ
    pub snd_una: u32,
    /// write_seq - SIOCOUTQNSD
    pub snd_nxt: u32,
    /// rcv_nxt - SIOCINQ
    pub copied_seq: u32,
    pub inq: u32,
    pub outq: u32,
    pub outq_nsd: u32,
    pub window: TcpWindow,
    /// TCP_INFO tcpi_snd_mss (tp->mss_cache)
    pub mss: u32,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// TCP_INFO tcpi_state
    pub state: u8,
}

/// Read [`TcpTruth`] of `fd` (enters and leaves repair mode).
pub fn tcp_truth(fd: RawFd) -> io::Result<TcpTruth> {
    let (inq, outq, outq_nsd) = (inq(fd)?, outq(fd)?, outq_nsd(fd)?);
    let (state, mss, snd_wscale, rcv_wscale) = tcp_info(fd)?;
    let r = Repair::enter(fd)?;
    let write_seq = r.queue_seq(TCP_SEND_QUEUE)?;
    let rcv_nxt = r.queue_seq(TCP_RECV_QUEUE)?;
    let window = r.window()?;
    drop(r);
    Ok(TcpTruth {
        write_seq,
        rcv_nxt,
        snd_una: write_seq.wrapping_sub(outq),
        snd_nxt: write_seq.wrapping_sub(outq_nsd),
        copied_seq: rcv_nxt.wrapping_sub(inq),
        inq,
        outq,
        outq_nsd,
        window,
        mss,
        snd_wscale,
        rcv_wscale,
        state,
    })
}

/// `TCP_INFO`: (state, snd_mss, snd_wscale, rcv_wscale), from the fixed head of
/// `struct tcp_info`.
pub fn tcp_info(fd: RawFd) -> io::Result<(u8, u32, u8, u8)> {
    let h = tcp_info_head(fd)?;
    Ok((h.state, h.snd_mss, h.snd_wscale, h.rcv_wscale))
}

/// `struct tcp_info`'s options bit for timestamps (`TCPI_OPT_TIMESTAMPS`).
pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
/// ... and for window scaling (`TCPI_OPT_WSCALE`).
pub const TCPI_OPT_WSCALE: u8 = 4;

/// The fixed head of `struct tcp_info`, what CRIU's libsoccr reads of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfoHead {
    pub state: u8,
    /// `TCPI_OPT_*` bits
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// `tp->mss_cache`
    pub snd_mss: u32,
}

/// `TCP_INFO`, its fixed head: u8 state at 0, u8 options at 5, the two 4-bit scales at 6,
/// u32 snd_mss at 16.
pub fn tcp_info_head(fd: RawFd) -> io::Result<TcpInfoHead> {
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf and len are valid for writes of their sizes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    check(rc, "TCP_INFO")?;
    Ok(TcpInfoHead {
        state: buf[0],
        options: buf[5],
        snd_wscale: buf[6] & 0xf,
        rcv_wscale: buf[6] >> 4,
        snd_mss: u32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]),
    })
}

/// The send queue bytes not yet acked (the last `outq` bytes of the repair peek, `outq` being
/// SIOCOUTQ of the truth they are compared with: an error if SIOCOUTQ moved since).
pub fn tcp_unacked_bytes(fd: RawFd, outq: u32) -> io::Result<Vec<u8>> {
    let now = self::outq(fd)?;
    if now != outq {
        return Err(io::Error::other(format!(
            "SIOCOUTQ moved from {outq} to {now}: the socket is not quiet"
        )));
    }
    let outq = outq as usize;
    let r = Repair::enter(fd)?;
    // A partly acked head packet is peeked whole: room for one more packet.
    let all = r.peek_send_queue(outq + (1 << 17))?;
    drop(r);
    if all.len() < outq {
        return Err(io::Error::other(format!(
            "repair peek gave {} bytes, SIOCOUTQ says {outq}",
            all.len()
        )));
    }
    Ok(all[all.len() - outq..].to_vec())
}

/// Peek `n` bytes of a stream socket's receive queue with `MSG_PEEK` and `SO_PEEK_OFF`
/// (which is left at -1, off, afterwards); nothing is consumed.
pub fn peek_stream(fd: RawFd, n: usize) -> io::Result<Vec<u8>> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0, "SO_PEEK_OFF 0")?;
    let mut out = vec![0u8; n];
    let mut got = 0;
    let res = (|| {
        while got < n {
            let peek = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
            match recv(fd, &mut out[got..], peek) {
                Ok(0) => {
                    return Err(io::Error::other(format!(
                        "MSG_PEEK at offset {got} of {n}: end of stream"
                    )))
                }
                Ok(r) => got += r,
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "MSG_PEEK at offset {got} of {n}: {e}"
                    )))
                }
            }
        }
        Ok(())
    })();
    setsockopt_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_PEEK_OFF,
        -1,
        "SO_PEEK_OFF -1",
    )?;
    res.map(|_| out)
}

/// Read exactly `n` bytes (blocking).
pub fn read_exact(fd: RawFd, n: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match recv(fd, &mut out[got..], MsgFlags::empty())? {
            0 => {
                return Err(io::Error::other(format!(
                    "end of stream after {got} of {n}"
                )))
            }
            r => got += r,
        }
    }
    Ok(out)
}

/// Where two byte strings first differ, for a failure message; None if equal.
pub fn first_difference(what: &str, dumped: &[u8], truth: &[u8]) -> Option<String> {
    if dumped == truth {
        return None;
    }
    let at = dumped
        .iter()
        .zip(truth)
        .position(|(a, b)| a != b)
        .unwrap_or(dumped.len().min(truth.len()));
    let show = |b: &[u8]| {
        let end = (at + 8).min(b.len());
        format!("{:02x?}", &b[at.min(end)..end])
    };
    Some(format!(
        "{what}: dump has {} bytes, truth {}; first difference at byte {at}: dump {} truth {}",
        dumped.len(),
        truth.len(),
        show(dumped),
        show(truth)
    ))
}

/// The deterministic pattern tests write: byte i of stream `tag` is a function of (tag, i)
/// that does not repeat with a period of any power of two up to 2^16.
pub fn pattern(tag: u8, start: usize, n: usize) -> Vec<u8> {
    (start..start + n)
        .map(|i| {
            let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(tag) << 56);
            (x >> 56) as u8 ^ (i % 251) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_names_the_offset() {
        assert_eq!(first_difference("x", b"abc", b"abc"), None);
        let d = first_difference("x", b"abcd", b"abXd").unwrap();
        assert!(d.contains("first difference at byte 2"), "{d}");
        let d = first_difference("x", b"ab", b"abc").unwrap();
        assert!(
            d.contains("at byte 2") && d.contains("dump has 2 bytes, truth 3"),
            "{d}"
        );
    }

    #[test]
    fn pattern_is_stable_and_position_dependent() {
        let a = pattern(1, 0, 70_000);
        assert_eq!(&a[1000..1100], &pattern(1, 1000, 100)[..]);
        assert_ne!(&a[..4096], &a[4096..8192]);
        assert_ne!(&a[..65536], &a[1..65537]);
        assert_ne!(pattern(1, 0, 64), pattern(2, 0, 64));
    }
}

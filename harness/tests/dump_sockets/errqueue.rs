//! The error queue: an ICMP error against what `MSG_ERRQUEUE` returns.

use super::*;

pub(super) fn error_queue(v6: bool) -> Result<()> {
    let what = format!("UDP {} error queue", if v6 { "v6" } else { "v4" });
    let d = SockDumper::load()?;
    let closed = UdpSocket::bind(loopback(v6))?.local_addr()?; // dropped: nobody listens
    let s = UdpSocket::bind(loopback(v6))?;
    if v6 {
        set(&s, sockopt::Ipv6RecvErr, &true, "IPV6_RECVERR")?;
    } else {
        set(&s, sockopt::Ipv4RecvErr, &true, "IP_RECVERR")?;
    }
    let data = pattern(30, 0, 333);
    s.send_to(&data, closed)?;
    let mut pfd = [PollFd::new(s.as_fd(), PollFlags::empty())];
    let _ = poll(&mut pfd, PollTimeout::from(5000u16));
    ensure!(
        pfd[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR)),
        "{what}: no error queued"
    );
    let dump = d.dump_own_fd(s.as_raw_fd())?;
    let mut buf = vec![0u8; 2000];
    let mut cbuf = vec![0u8; 512];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let n = sock::recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cbuf),
        MsgFlags::MSG_ERRQUEUE,
    )
    .context("MSG_ERRQUEUE")?
    .bytes;
    buf.truncate(n);
    let mut df = Diffs::default();
    df.eq("queue_err", errno_str(-dump.sock.queue_err), errno_str(0));
    df.eq("error queue entries", dump.sock.nr_of(Queue::Error), 1);
    df.bytes(
        "error queue entry vs MSG_ERRQUEUE read",
        &dump.queue_bytes(Queue::Error),
        &buf,
    );
    df.bytes("MSG_ERRQUEUE read vs the sent payload", &buf, &data);
    df.finish(&what)?;
    let again = d.dump_own_fd(s.as_raw_fd())?;
    ensure!(
        again.sock.nr_of(Queue::Error) == 0,
        "{what}: error queue not empty after MSG_ERRQUEUE"
    );
    println!("{what}: {} bytes match", buf.len());
    Ok(())
}

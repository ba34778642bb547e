//! unix: stream, dgram and seqpacket queues with message boundaries and passed-fd counts.

use super::*;

pub(super) fn socketpair(ty: SockType) -> Result<(OwnedFd, OwnedFd)> {
    sock::socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).context("socketpair")
}

/// sendmsg of `data` with `fds` passed as SCM_RIGHTS.
pub(super) fn send_with_fds(fd: RawFd, data: &[u8], fds: &[RawFd]) -> Result<()> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let n = sock::sendmsg::<()>(fd, &[IoSlice::new(data)], cmsgs, MsgFlags::empty(), None)
        .with_context(|| format!("sendmsg of {} bytes", data.len()))?;
    ensure!(n == data.len(), "sendmsg of {} bytes: {n} sent", data.len());
    Ok(())
}

/// recvmsg of one message (up to `max` bytes): its bytes and how many fds came with it
/// (closed at once).
fn recv_with_fds(fd: RawFd, max: usize) -> Result<(Vec<u8>, usize)> {
    let mut buf = vec![0u8; max.max(1)];
    let mut cbuf = vec![0u8; 1024];
    let mut iov = [IoSliceMut::new(&mut buf[..max])];
    let msg = sock::recvmsg::<()>(fd, &mut iov, Some(&mut cbuf), MsgFlags::MSG_CMSG_CLOEXEC)
        .context("recvmsg")?;
    let n = msg.bytes;
    let mut nfds = 0;
    for c in msg.cmsgs().context("recvmsg: control messages truncated")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            nfds += fds.len();
            for f in fds {
                let _ = nix::unistd::close(f);
            }
        }
    }
    buf.truncate(n);
    Ok((buf, nfds))
}

/// Messages with boundaries (dgram, seqpacket): each dumped message has the length, bytes and
/// passed-fd count of what the reader then receives.
pub(super) fn messages(ty: SockType, name: &str) -> Result<()> {
    let what = format!("unix {name}");
    let d = SockDumper::load()?;
    let (a, b) = socketpair(ty)?;
    let extra = std::fs::File::open("/dev/null")?;
    let msgs: Vec<(Vec<u8>, Vec<RawFd>)> = vec![
        (pattern(10, 0, 1), vec![]),
        (pattern(11, 0, 3000), vec![extra.as_raw_fd(), b.as_raw_fd()]),
        (pattern(12, 0, 0), vec![]),
        (pattern(13, 0, 9000), vec![]),
        (pattern(14, 0, 17), vec![extra.as_raw_fd(); 3]),
    ];
    for (data, fds) in &msgs {
        send_with_fds(a.as_raw_fd(), data, fds)?;
    }
    let dump = d.dump_own_fd(b.as_raw_fd())?;
    let items: Vec<_> = dump.queue(Queue::UnixRecv).collect();
    let mut df = Diffs::default();
    df.eq("queue_err", errno_str(-dump.sock.queue_err), errno_str(0));
    df.eq(
        "family",
        i32::from(dump.sock.family),
        AddressFamily::Unix as i32,
    );
    df.eq("type", i32::from(dump.sock.sock_type), ty as i32);
    df.eq("messages", items.len(), msgs.len());
    for (k, (data, fds)) in msgs.iter().enumerate() {
        let (got, nfds) = recv_with_fds(b.as_raw_fd(), 65536)?;
        df.bytes(&format!("message {k}: read vs sent"), &got, data);
        df.eq(&format!("message {k}: fds read vs sent"), nfds, fds.len());
        let Some(it) = items.get(k) else { continue };
        df.bytes(&format!("message {k}: dump vs read"), dump.data(it), &got);
        df.eq(
            &format!("message {k}: nr_fds vs fds read"),
            it.nr_fds as usize,
            nfds,
        );
        df.eq(&format!("message {k}: skip"), it.skip, 0);
    }
    df.finish(&what)?;
    println!("{what}: {} messages match", msgs.len());
    Ok(())
}

/// A byte stream: the unread bytes (the head message partly read: skip) match the peek, the
/// bytes written, and the reads after the dump; the message that carried fds says how many.
pub(super) fn stream() -> Result<()> {
    let what = "unix stream";
    let d = SockDumper::load()?;
    let (a, b) = socketpair(SockType::Stream)?;
    let extra = std::fs::File::open("/dev/null")?;
    let parts = [
        pattern(20, 0, 5000),
        pattern(21, 0, 20),
        pattern(22, 0, 70_000),
    ];
    send_with_fds(a.as_raw_fd(), &parts[0], &[])?;
    send_with_fds(
        a.as_raw_fd(),
        &parts[1],
        &[extra.as_raw_fd(), extra.as_raw_fd()],
    )?;
    // The third write is larger than what one skb takes: several packets.
    let w = std::thread::scope(|sc| {
        let h = sc.spawn(|| send_with_fds(a.as_raw_fd(), &parts[2], &[]));
        std::thread::sleep(Duration::from_millis(200));
        h.join()
    });
    w.map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let read = 1234;
    let (head, nfds) = recv_with_fds(b.as_raw_fd(), read)?;
    ensure!(
        head == parts[0][..read] && nfds == 0,
        "{what}: the first read differs"
    );
    let unread: Vec<u8> = [&parts[0][read..], &parts[1][..], &parts[2][..]].concat();
    let dump = d.dump_own_fd(b.as_raw_fd())?;
    let items: Vec<_> = dump.queue(Queue::UnixRecv).collect();
    let mut df = Diffs::default();
    df.eq("queue_err", errno_str(-dump.sock.queue_err), errno_str(0));
    df.eq(
        "type",
        i32::from(dump.sock.sock_type),
        SockType::Stream as i32,
    );
    df.eq("state (connected: TCP_ESTABLISHED)", dump.sock.state, 1);
    let got = dump.queue_bytes(Queue::UnixRecv);
    df.bytes("unread bytes vs written", &got, &unread);
    let peek = truth::peek_stream(b.as_raw_fd(), unread.len())?;
    df.bytes("unread bytes vs MSG_PEEK", &got, &peek);
    df.check(
        "head skip",
        items.first().is_some_and(|i| i.skip == read as u32),
        || format!("first item {:?}", items.first().map(|i| (i.skip, i.len))),
    );
    // The fds ride with the 20-byte write: the item that starts at its offset.
    let mut at = 0usize;
    let mut with_fds = Vec::new();
    for i in &items {
        if i.nr_fds > 0 {
            with_fds.push((at, i.len, i.nr_fds));
        }
        at += i.len as usize;
    }
    df.eq(
        "items with fds (offset, len, nr_fds)",
        with_fds,
        vec![(parts[0].len() - read, 20, 2)],
    );
    let rest = truth::read_exact(b.as_raw_fd(), unread.len())?;
    df.bytes("read after the dump vs dumped", &rest, &got);
    df.finish(what)?;
    println!(
        "{what}: {} bytes in {} packets match",
        unread.len(),
        items.len()
    );
    Ok(())
}

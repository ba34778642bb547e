//! TCP: queues and sequence numbers against repair mode and peeks, sendfile'd (paged) data,
//! a peer that does not read, and an out-of-order segment injected with a raw socket.

use super::*;

pub(super) struct TcpPair {
    pub(super) client: TcpStream,
    pub(super) server: TcpStream,
}

/// A connected pair over lo; `rcvbuf` is set on the listener, so the accepted end has it.
pub(super) fn tcp_pair(v6: bool, rcvbuf: Option<usize>) -> Result<TcpPair> {
    let l = TcpListener::bind(loopback(v6)).context("bind listener")?;
    if let Some(b) = rcvbuf {
        set(&l, sockopt::RcvBuf, &b, "SO_RCVBUF")?;
    }
    let client = TcpStream::connect(l.local_addr()?).context("connect")?;
    let (server, _) = l.accept().context("accept")?;
    Ok(TcpPair { client, server })
}

/// Dump `fd` and read the truth before and after; retry until both truths agree (no packet
/// moved meanwhile), so the dump saw the same state.
fn stable_tcp_dump(d: &SockDumper, fd: RawFd) -> Result<(SockDump, TcpTruth)> {
    let mut last = None;
    for _ in 0..20 {
        let before = truth::tcp_truth(fd).with_context(|| format!("fd {fd}: truth"))?;
        let dump = d
            .dump_own_fd(fd)
            .with_context(|| format!("fd {fd}: dump"))?;
        let after = truth::tcp_truth(fd).with_context(|| format!("fd {fd}: truth"))?;
        if before == after {
            return Ok((dump, after));
        }
        last = Some((before, after));
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("fd {fd}: the socket never stood still for a dump: {last:?}")
}

/// Everything a TCP socket record and its queues must agree with: the socket API's view
/// (`t`), the sequence arithmetic within the dump, and the bytes the test expects unread
/// (`recv`) and unacked (`send`).
fn check_tcp(
    what: &str,
    s: &TcpStream,
    dump: &SockDump,
    t: &TcpTruth,
    recv: &[u8],
    send: &[u8],
) -> Result<()> {
    let fd = s.as_raw_fd();
    let r = &dump.sock;
    let mut d = Diffs::default();
    let fam = if s.local_addr()?.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    d.eq("queue_err", errno_str(-r.queue_err), errno_str(0));
    d.eq("family", i32::from(r.family), fam as i32);
    d.eq("type", i32::from(r.sock_type), SockType::Stream as i32);
    d.eq("protocol", i32::from(r.protocol), SockProtocol::Tcp as i32);
    d.eq("state (TCP_INFO)", r.state, t.state);
    d.eq("local address", r.src, Some(addr_parts(s.local_addr()?)));
    d.eq("peer address", r.dst, Some(addr_parts(s.peer_addr()?)));
    d.eq("write_seq (TCP_QUEUE_SEQ)", r.write_seq, t.write_seq);
    d.eq("rcv_nxt (TCP_QUEUE_SEQ)", r.rcv_nxt, t.rcv_nxt);
    d.eq("snd_una (write_seq - SIOCOUTQ)", r.snd_una, t.snd_una);
    d.eq("snd_nxt (write_seq - SIOCOUTQNSD)", r.snd_nxt, t.snd_nxt);
    d.eq("copied_seq (rcv_nxt - SIOCINQ)", r.copied_seq, t.copied_seq);
    d.eq("snd_wl1 (TCP_REPAIR_WINDOW)", r.snd_wl1, t.window.snd_wl1);
    d.eq("snd_wnd (TCP_REPAIR_WINDOW)", r.snd_wnd, t.window.snd_wnd);
    d.eq(
        "max_window (TCP_REPAIR_WINDOW)",
        r.max_window,
        t.window.max_window,
    );
    d.eq("rcv_wnd (TCP_REPAIR_WINDOW)", r.rcv_wnd, t.window.rcv_wnd);
    d.eq("rcv_wup (TCP_REPAIR_WINDOW)", r.rcv_wup, t.window.rcv_wup);
    d.eq("mss (TCP_INFO tcpi_snd_mss)", r.mss_cache, t.mss);
    d.eq("snd_wscale (TCP_INFO)", r.snd_wscale, t.snd_wscale);
    d.eq("rcv_wscale (TCP_INFO)", r.rcv_wscale, t.rcv_wscale);

    // Within the snapshot: the queues hold exactly the sequence ranges.
    let rq = r.bytes_of(Queue::TcpRecv);
    let sq = r.bytes_of(Queue::TcpRtx) + r.bytes_of(Queue::TcpWrite);
    d.eq(
        "receive queue bytes vs rcv_nxt - copied_seq",
        rq,
        u64::from(r.rcv_nxt.wrapping_sub(r.copied_seq)),
    );
    d.eq(
        "rtx + write queue bytes vs write_seq - snd_una",
        sq,
        u64::from(r.write_seq.wrapping_sub(r.snd_una)),
    );
    check_tcp_ranges(&mut d, dump);
    d.eq("out-of-order packets", r.nr_of(Queue::TcpOfo), 0);

    // Bytes: the dump, the socket API's peeks, and what the test wrote.
    let got_recv = dump.queue_bytes(Queue::TcpRecv);
    let peeked = truth::peek_stream(fd, t.inq as usize).context("MSG_PEEK")?;
    d.bytes("receive queue vs MSG_PEEK", &got_recv, &peeked);
    d.bytes("receive queue vs the bytes written", &got_recv, recv);
    let mut got_send = dump.queue_bytes(Queue::TcpRtx);
    got_send.extend(dump.queue_bytes(Queue::TcpWrite));
    let repair = truth::tcp_unacked_bytes(fd, t.outq).context("repair peek")?;
    d.bytes("rtx + write queues vs TCP_REPAIR peek", &got_send, &repair);
    d.bytes("rtx + write queues vs the bytes written", &got_send, send);
    d.finish(&format!("{what} (fd {fd})"))
}

/// Sequence ranges: each queue's packets are contiguous, the receive queue runs from
/// copied_seq (first packet's seq + skip) to rcv_nxt, rtx from snd_una to snd_nxt, write
/// from snd_nxt to write_seq; and each packet's range holds skip + len bytes.
pub(super) fn check_tcp_ranges(d: &mut Diffs, dump: &SockDump) {
    let r = &dump.sock;
    let spans = [
        (Queue::TcpRecv, r.copied_seq, r.rcv_nxt),
        (Queue::TcpRtx, r.snd_una, r.snd_nxt),
        (Queue::TcpWrite, r.snd_nxt, r.write_seq),
    ];
    for (q, from, to) in spans {
        let mut at = None;
        for i in dump.queue(q) {
            let flags = u32::from(i.flags & 1 != 0) + u32::from(i.flags & 2 != 0);
            d.eq(
                &format!(
                    "{q} item {}: end_seq - seq vs skip + len + SYN/FIN",
                    i.index
                ),
                i.end_seq.wrapping_sub(i.seq),
                i.skip + i.len + flags,
            );
            match at {
                None => d.eq(
                    &format!("{q} item {}: seq + skip vs start of queue", i.index),
                    i.seq.wrapping_add(i.skip),
                    from,
                ),
                Some(prev) => {
                    d.eq(
                        &format!("{q} item {}: seq vs end of previous", i.index),
                        i.seq,
                        prev,
                    );
                    d.eq(
                        &format!("{q} item {}: skip after the first", i.index),
                        i.skip,
                        0,
                    );
                }
            }
            at = Some(i.end_seq);
        }
        d.eq(
            &format!("{q}: end of the last packet"),
            at.unwrap_or(from),
            to,
        );
    }
}

/// Wait until the peer acked everything `s` sent (the receiver's queue can hold it).
fn wait_all_acked(what: &str, s: &TcpStream) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let q = truth::outq(s.as_raw_fd())?;
        if q == 0 {
            return Ok(());
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "{what}: {q} bytes still unacked after 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Write `data` fully (blocking).
fn write_all(s: &mut TcpStream, data: &[u8]) -> Result<()> {
    s.write_all(data).context("write")
}

/// One scenario: `n` bytes client -> server, the server reads `read` of them; both ends are
/// dumped and checked, then the server reads the rest and must get the dumped bytes.
fn tcp_scenario(d: &SockDumper, v6: bool, n: usize, read: usize) -> Result<()> {
    let what = format!(
        "TCP {} {n} bytes, {read} read",
        if v6 { "v6" } else { "v4" }
    );
    step(&what);
    let mut p = tcp_pair(v6, None)?;
    let data = pattern(1, 0, n);
    write_all(&mut p.client, &data)?;
    if read > 0 {
        let got = truth::read_exact(p.server.as_raw_fd(), read)?;
        ensure!(
            got == data[..read],
            "{what}: the first {read} bytes read differ"
        );
    }
    wait_all_acked(&what, &p.client)?;
    // Both ends settle: all data acked, none in flight.
    let (sd, st) = stable_tcp_dump(d, p.server.as_raw_fd())?;
    let (cd, ct) = stable_tcp_dump(d, p.client.as_raw_fd())?;
    ensure!(
        st.inq as usize == n - read,
        "{what}: receiver has {} bytes unread, expected {}",
        st.inq,
        n - read
    );
    check_tcp(
        &format!("{what}: receiver"),
        &p.server,
        &sd,
        &st,
        &data[read..],
        &[],
    )?;
    check_tcp(&format!("{what}: sender"), &p.client, &cd, &ct, &[], &[])?;
    if read > 0 && n > read {
        ensure!(
            sd.queue(Queue::TcpRecv).next().is_some_and(|i| i.skip > 0),
            "{what}: the partly read head packet shows no skip: {:?}",
            sd.queue(Queue::TcpRecv)
                .next()
                .map(|i| (i.seq, i.skip, i.len))
        );
    }
    // The dump changed nothing: the application reads exactly the dumped bytes.
    let rest = truth::read_exact(p.server.as_raw_fd(), n - read)?;
    let mut df = Diffs::default();
    df.bytes(
        "read after the dump vs dumped",
        &rest,
        &sd.queue_bytes(Queue::TcpRecv),
    );
    df.finish(&what)?;
    println!(
        "{what}: ok ({} recv packets, seq {}..{})",
        sd.sock.nr_of(Queue::TcpRecv),
        sd.sock.copied_seq,
        sd.sock.rcv_nxt
    );
    Ok(())
}

pub(super) fn small(v6: bool) -> Result<()> {
    let d = SockDumper::load()?;
    let mss = {
        let p = tcp_pair(v6, None)?;
        truth::tcp_info(p.client.as_raw_fd())?.1 as usize
    };
    for (n, read) in [
        (0, 0),
        (1, 0),
        (mss, 0),
        (65536, 0),
        (10000, 3000),
        (65536, 1),
    ] {
        tcp_scenario(&d, v6, n, read)?;
    }
    Ok(())
}

/// The receiver does not read: more than 1 MiB piles up in its receive queue, and the
/// sender's data waits in its retransmit and write queues.
pub(super) fn peer_not_reading(v6: bool) -> Result<()> {
    let what = format!("TCP {} peer not reading", if v6 { "v6" } else { "v4" });
    // Let the receive buffer grow past 1 MiB without the application reading.
    sysctl("net/core/rmem_max", "16777216")?;
    let d = SockDumper::load()?;
    // sk_rcvbuf 2 MiB (twice SO_RCVBUF): over 1 MiB of data fits, the 6 MiB written do not.
    let mut p = tcp_pair(v6, Some(1 << 20))?;
    set_nonblocking(&p.client)?;
    let mut sent = 0usize;
    let chunk = pattern(2, 0, 6 << 20);
    // Write until the sender is stuck for a while (EAGAIN and nothing moves).
    let mut idle = 0;
    while idle < 20 && sent < chunk.len() {
        match p.client.write(&chunk[sent..]) {
            Ok(n) => {
                sent += n;
                idle = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                idle += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).context("write"),
        }
    }
    step(&format!("{what}: {sent} bytes written"));
    let (sd, st) = stable_tcp_dump(&d, p.server.as_raw_fd())?;
    let (cd, ct) = stable_tcp_dump(&d, p.client.as_raw_fd())?;
    let unread = st.inq as usize;
    ensure!(
        unread > 1 << 20,
        "{what}: only {unread} bytes unread at the receiver"
    );
    ensure!(
        ct.outq > 0,
        "{what}: nothing waits at the sender (SIOCOUTQ 0)"
    );
    check_tcp(
        &format!("{what}: receiver"),
        &p.server,
        &sd,
        &st,
        &chunk[..unread],
        &[],
    )?;
    check_tcp(
        &format!("{what}: sender"),
        &p.client,
        &cd,
        &ct,
        &[],
        &chunk[unread..sent],
    )?;
    println!(
        "{what}: {sent} written, {unread} unread at the receiver in {} packets, {} unacked \
         ({} rtx packets) and {} unsent ({} write packets) at the sender",
        sd.sock.nr_of(Queue::TcpRecv),
        ct.outq - ct.outq_nsd,
        cd.sock.nr_of(Queue::TcpRtx),
        ct.outq_nsd,
        cd.sock.nr_of(Queue::TcpWrite)
    );
    // The dump changed nothing: the receiver reads every byte written, in order.
    let all = truth::read_exact(p.server.as_raw_fd(), unread)?;
    let mut df = Diffs::default();
    df.bytes(
        "read after the dump vs dumped",
        &all,
        &sd.queue_bytes(Queue::TcpRecv),
    );
    df.finish(&what)?;
    // The sender's queued bytes reach the peer as it reads, without the sender doing anything.
    let rest = truth::read_exact(p.server.as_raw_fd(), sent - unread)
        .context("reading the sender's queued bytes")?;
    let mut df = Diffs::default();
    df.bytes("peer's read of the sender's queue vs dumped", &rest, &{
        let mut v = cd.queue_bytes(Queue::TcpRtx);
        v.extend(cd.queue_bytes(Queue::TcpWrite));
        v
    });
    df.finish(&what)
}

/// Paged receive data from page-cache pages: sendfile() of a tmpfs file.
pub(super) fn sendfile(v6: bool) -> Result<()> {
    let what = "TCP sendfile";
    let d = SockDumper::load()?;
    let p = tcp_pair(v6, None)?;
    let data = pattern(3, 0, 100_000);
    let path = std::env::temp_dir().join(format!("crib-sendfile-{}", std::process::id()));
    std::fs::write(&path, &data)?;
    let f = std::fs::File::open(&path)?;
    let mut off = 0;
    while (off as usize) < data.len() {
        let left = data.len() - off as usize;
        let n = nix::sys::sendfile::sendfile(&p.client, &f, Some(&mut off), left)
            .context("sendfile")?;
        ensure!(n > 0, "sendfile: sent nothing at offset {off}");
    }
    wait_all_acked(what, &p.client)?;
    let (sd, st) = stable_tcp_dump(&d, p.server.as_raw_fd())?;
    check_tcp(what, &p.server, &sd, &st, &data, &[])?;
    let got = truth::read_exact(p.server.as_raw_fd(), data.len())?;
    ensure!(got == data, "{what}: read after the dump differs");
    let _ = std::fs::remove_file(&path);
    println!("{what}: ok, {} packets", sd.sock.nr_of(Queue::TcpRecv));
    Ok(())
}

/// One's-complement sum of 16-bit words (the Internet checksum, not yet inverted).
fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A TCP segment from `from` to `to` (ACK|PSH, no options) with a correct checksum.
fn tcp_segment(from: SocketAddr, to: SocketAddr, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(20 + data.len());
    h.extend(from.port().to_be_bytes());
    h.extend(to.port().to_be_bytes());
    h.extend(seq.to_be_bytes());
    h.extend(ack.to_be_bytes());
    h.extend([5 << 4, 0x18]);
    h.extend(0xffffu16.to_be_bytes());
    h.extend([0, 0, 0, 0]); // checksum, urgent pointer
    h.extend(data);
    let len = h.len() as u32;
    let mut pseudo = ip_bytes(from.ip());
    pseudo.extend(ip_bytes(to.ip()));
    if from.is_ipv6() {
        pseudo.extend(len.to_be_bytes());
        pseudo.extend([0, 0, 0, SockProtocol::Tcp as u8]);
    } else {
        pseudo.extend([0, SockProtocol::Tcp as u8]);
        pseudo.extend((len as u16).to_be_bytes());
    }
    let sum = csum_add(csum_add(0, &pseudo), &h);
    h[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h
}

/// Send `segment` from a raw socket (the kernel adds the IP header; the address's port is 0).
fn raw_send(to: SocketAddr, segment: &[u8]) -> Result<()> {
    let (fam, addr) = match to {
        SocketAddr::V4(a) => (
            AddressFamily::Inet,
            SockaddrStorage::from(SocketAddrV4::new(*a.ip(), 0)),
        ),
        SocketAddr::V6(a) => (
            AddressFamily::Inet6,
            SockaddrStorage::from(SocketAddrV6::new(*a.ip(), 0, 0, 0)),
        ),
    };
    let fd = sock::socket(fam, SockType::Raw, SockFlag::empty(), SockProtocol::Tcp)
        .context("raw socket")?;
    let n =
        sock::sendto(fd.as_raw_fd(), segment, &addr, MsgFlags::empty()).context("raw sendto")?;
    ensure!(
        n == segment.len(),
        "raw sendto: {n} of {} bytes",
        segment.len()
    );
    Ok(())
}

/// A segment injected with a raw socket 1,000 bytes beyond rcv_nxt waits in the out-of-order
/// queue: the dump shows exactly its range and bytes, rcv_nxt does not move, and once the
/// sender fills the gap the application reads the gap and then the injected bytes.
pub(super) fn out_of_order(v6: bool) -> Result<()> {
    let what = format!("TCP {} out-of-order segment", if v6 { "v6" } else { "v4" });
    // Without timestamps a bare segment passes PAWS.
    sysctl("net/ipv4/tcp_timestamps", "0")?;
    let d = SockDumper::load()?;
    let p = tcp_pair(v6, None)?;
    let st = truth::tcp_truth(p.server.as_raw_fd())?;
    let (gap, injected) = (1000usize, pattern(50, 0, 500));
    let seq = st.rcv_nxt.wrapping_add(gap as u32);
    let seg = tcp_segment(
        p.client.local_addr()?,
        p.server.local_addr()?,
        seq,
        st.snd_nxt,
        &injected,
    );
    raw_send(p.server.local_addr()?, &seg)?;
    let mut dump = None;
    for _ in 0..50 {
        let dd = d.dump_own_fd(p.server.as_raw_fd())?;
        if dd.sock.nr_of(Queue::TcpOfo) > 0 {
            dump = Some(dd);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let dump = dump.with_context(|| format!("{what}: no out-of-order packet after 1 s"))?;
    let after = truth::tcp_truth(p.server.as_raw_fd())?;
    let items: Vec<_> = dump.queue(Queue::TcpOfo).collect();
    let mut df = Diffs::default();
    df.eq("out-of-order packets", items.len(), 1);
    df.eq(
        "rcv_nxt (TCP_QUEUE_SEQ, unchanged)",
        dump.sock.rcv_nxt,
        after.rcv_nxt,
    );
    df.eq(
        "rcv_nxt before vs after the injection",
        after.rcv_nxt,
        st.rcv_nxt,
    );
    df.eq("receive queue bytes", dump.sock.bytes_of(Queue::TcpRecv), 0);
    if let Some(i) = items.first() {
        df.eq("seq vs injected", i.seq, seq);
        df.eq(
            "end_seq vs injected",
            i.end_seq,
            seq.wrapping_add(injected.len() as u32),
        );
        df.eq("skip", i.skip, 0);
        df.bytes("bytes vs injected", dump.data(i), &injected);
    }
    df.finish(&what)?;
    // Fill the gap: the reader gets the gap's bytes and then the injected ones.
    let fill = pattern(51, 0, gap);
    (&p.client).write_all(&fill)?;
    let got = truth::read_exact(p.server.as_raw_fd(), gap + injected.len())?;
    let mut df = Diffs::default();
    df.bytes(
        "read after the gap was filled",
        &got,
        &[fill, injected].concat(),
    );
    df.finish(&what)?;
    println!("{what}: seq {seq}, {} bytes match", items[0].len);
    Ok(())
}

//! UDP: many datagrams with their sources, corked data, and a datagram reassembled from IP
//! fragments (frag_list).

use super::*;

/// Receive one datagram: (bytes, source).
fn recv_from(s: &UdpSocket) -> Result<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = s.recv_from(&mut buf).context("recv_from")?;
    buf.truncate(n);
    Ok((buf, from))
}

/// Many small datagrams from distinct sources (v4: distinct 127.0.0.x addresses and ports;
/// v6: ::1 with distinct ports), each of its own length and bytes.
pub(super) fn many(v6: bool) -> Result<()> {
    let what = format!("UDP {} many datagrams", if v6 { "v6" } else { "v4" });
    let d = SockDumper::load()?;
    let rx = UdpSocket::bind(loopback(v6))?;
    let to = rx.local_addr()?;
    let n = 64usize;
    let mut sent = Vec::new();
    for i in 0..n {
        let src = if v6 {
            "[::1]:0".to_string()
        } else {
            format!("127.0.0.{}:0", 2 + i % 200)
        };
        let tx = UdpSocket::bind(&src).with_context(|| format!("bind {src}"))?;
        let data = pattern(i as u8, i, 1 + (i * 37) % 1400);
        tx.send_to(&data, to)?;
        sent.push((data, tx.local_addr()?));
    }
    let dump = d.dump_own_fd(rx.as_raw_fd())?;
    let items: Vec<_> = dump.queue(Queue::UdpRecv).collect();
    let mut df = Diffs::default();
    df.eq("queue_err", errno_str(-dump.sock.queue_err), errno_str(0));
    df.eq("local address", dump.sock.src, Some(addr_parts(to)));
    df.eq("datagrams", items.len(), n);
    df.eq("cork_len", dump.sock.cork_len, 0);
    // Drain: the application gets exactly the dumped datagrams, in the dumped order.
    for (k, (data, src)) in sent.iter().enumerate() {
        let (got, from) = recv_from(&rx)?;
        df.bytes(&format!("datagram {k}: read vs sent"), &got, data);
        df.eq(&format!("datagram {k}: read source vs sender"), from, *src);
        let Some(it) = items.get(k) else { continue };
        df.bytes(&format!("datagram {k}: dump vs read"), dump.data(it), &got);
        df.eq(
            &format!("datagram {k}: source"),
            it.src,
            Some(addr_parts(from)),
        );
        df.eq(&format!("datagram {k}: length"), it.len as usize, got.len());
        df.eq(&format!("datagram {k}: v6 flag"), it.flags & F_V6 != 0, v6);
    }
    df.finish(&what)?;
    println!("{what}: {n} datagrams match in order, length, source and bytes");
    Ok(())
}

/// A corked UDP socket: the pending bytes are in the dump, and clearing UDP_CORK sends
/// exactly them.
pub(super) fn cork(v6: bool) -> Result<()> {
    let what = format!("UDP {} corked", if v6 { "v6" } else { "v4" });
    let d = SockDumper::load()?;
    let rx = UdpSocket::bind(loopback(v6))?;
    let tx = UdpSocket::bind(loopback(v6))?;
    tx.connect(rx.local_addr()?)?;
    udp_cork_set(&tx, true)?;
    let parts = [pattern(5, 0, 100), pattern(6, 0, 2000), pattern(7, 0, 3000)];
    for p in &parts {
        tx.send(p)?;
    }
    let pending: Vec<u8> = parts.concat();
    let dump = d.dump_own_fd(tx.as_raw_fd())?;
    let mut df = Diffs::default();
    df.eq("queue_err", errno_str(-dump.sock.queue_err), errno_str(0));
    df.eq(
        "cork_len vs bytes sent while corked",
        dump.sock.cork_len as usize,
        pending.len(),
    );
    df.bytes(
        "corked bytes vs sent",
        &dump.queue_bytes(Queue::UdpCork),
        &pending,
    );
    df.eq(
        "peer address",
        dump.sock.dst,
        Some(addr_parts(rx.local_addr()?)),
    );
    udp_cork_set(&tx, false)?;
    let (got, _) = recv_from(&rx)?;
    df.bytes(
        "peer's datagram vs dumped corked bytes",
        &got,
        &dump.queue_bytes(Queue::UdpCork),
    );
    df.finish(&what)?;
    println!(
        "{what}: {} bytes in {} packets match",
        pending.len(),
        dump.sock.nr_of(Queue::UdpCork)
    );
    Ok(())
}

/// IP reassemblies completed so far (`/proc/net/snmp` Ip ReasmOKs, `/proc/net/snmp6`
/// Ip6ReasmOKs).
fn reasm_oks(v6: bool) -> Result<u64> {
    let (file, name) = if v6 {
        ("/proc/net/snmp6", "Ip6ReasmOKs")
    } else {
        ("/proc/net/snmp", "ReasmOKs")
    };
    let text = std::fs::read_to_string(file)?;
    if v6 {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .with_context(|| format!("{file}: no {name}"))?;
        return Ok(v.trim().parse()?);
    }
    // "Ip: names..." then "Ip: values...".
    let ip: Vec<&str> = text.lines().filter(|l| l.starts_with("Ip:")).collect();
    let (names, vals) = match ip.as_slice() {
        [n, v, ..] => (n, v),
        _ => bail!("{file}: no Ip lines"),
    };
    let i = names
        .split_whitespace()
        .position(|n| n == name)
        .with_context(|| format!("{file}: no {name}"))?;
    let v = vals
        .split_whitespace()
        .nth(i)
        .with_context(|| format!("{file}: short Ip line"))?;
    Ok(v.parse()?)
}

/// A datagram larger than lo's MTU is fragmented and reassembled (a frag_list skb).
pub(super) fn reassembled(v6: bool) -> Result<()> {
    let what = format!("UDP {} reassembled datagram", if v6 { "v6" } else { "v4" });
    let st = std::process::Command::new("ip")
        .args(["link", "set", "lo", "mtu", "1500"])
        .status()?;
    ensure!(st.success(), "ip link set lo mtu 1500: {st}");
    let d = SockDumper::load()?;
    let rx = UdpSocket::bind(loopback(v6))?;
    let tx = UdpSocket::bind(loopback(v6))?;
    let data = pattern(9, 0, 30_000);
    let reasm = reasm_oks(v6)?;
    tx.send_to(&data, rx.local_addr()?)?;
    let dump = d.dump_own_fd(rx.as_raw_fd())?;
    let (got, _) = recv_from(&rx)?;
    let mut df = Diffs::default();
    df.eq("reassemblies (ReasmOKs)", reasm_oks(v6)? - reasm, 1);
    df.eq("datagrams", dump.sock.nr_of(Queue::UdpRecv), 1);
    df.bytes("dump vs sent", &dump.queue_bytes(Queue::UdpRecv), &data);
    df.bytes("read vs sent", &got, &data);
    df.finish(&what)?;
    println!("{what}: {} bytes match", data.len());
    Ok(())
}

//! Sockets whose queues cannot be described faithfully (listening, kTLS, MPTCP, sockmap):
//! each reports its errno, next to sockets that dump fine.

use super::tcp::tcp_pair;
use super::*;

/// Attach `fd` to a fresh sockmap (its psock then holds data outside the queues).
fn sockmap_attach(fd: RawFd) -> Result<MapHandle> {
    // Default options, as a null pointer would give.
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let map = MapHandle::create(MapType::Sockmap, Some("crib_sockmap"), 4, 4, 1, &opts)
        .context("creating a sockmap")?;
    let key = 0u32.to_ne_bytes();
    let val = (fd as u32).to_ne_bytes();
    map.update(&key, &val, MapFlags::ANY)
        .context("sockmap update")?;
    Ok(map)
}

pub(super) fn refused() -> Result<()> {
    let d = SockDumper::load()?;
    let plain = tcp_pair(false, None)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let tls = tcp_pair(false, None)?;
    set(
        &tls.client,
        sockopt::TcpUlp::default(),
        b"tls",
        "TCP_ULP tls",
    )?;
    // nix has no IPPROTO_MPTCP; rustix has.
    use rustix::net::{ipproto, AddressFamily as Af, SocketType};
    let mptcp = rustix::net::socket(Af::INET, SocketType::STREAM, Some(ipproto::MPTCP))
        .context("MPTCP socket")?;
    let mapped = tcp_pair(false, None)?;
    let _map = sockmap_attach(mapped.client.as_raw_fd())?;

    // One dump of every socket: the refused ones say why, the others are complete.
    let all = d.dump(std::process::id() as i32, None)?;
    let find = |fd: RawFd| all.iter().find(|s| s.sock.fd == fd as u32);
    let mut df = Diffs::default();
    for (what, fd, errno) in [
        ("established TCP", plain.client.as_raw_fd(), 0),
        ("listening TCP", listener.as_raw_fd(), Errno::EINVAL as i32),
        (
            "kTLS (TCP_ULP tls)",
            tls.client.as_raw_fd(),
            Errno::EOPNOTSUPP as i32,
        ),
        ("kTLS peer (plain TCP)", tls.server.as_raw_fd(), 0),
        ("MPTCP", mptcp.as_raw_fd(), Errno::EPROTONOSUPPORT as i32),
        (
            "sockmap member",
            mapped.client.as_raw_fd(),
            Errno::EOPNOTSUPP as i32,
        ),
    ] {
        match find(fd) {
            None => df.0.push(format!("{what} (fd {fd}): no socket record")),
            Some(s) => {
                df.eq(
                    &format!("{what} (fd {fd}): queue error"),
                    errno_str(-s.sock.queue_err),
                    errno_str(errno),
                );
                df.eq(&format!("{what} (fd {fd}): items"), s.items.len(), 0);
            }
        }
    }
    df.finish("refused sockets")?;
    println!("listening EINVAL, kTLS EOPNOTSUPP, MPTCP EPROTONOSUPPORT, sockmap EOPNOTSUPP");
    Ok(())
}

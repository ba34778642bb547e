//! Step 1 of CRIU's socket dump: one `NETLINK_SOCK_DIAG` dump per family, the TCP sockets
//! keyed by inode with their state, addresses and ports (`collect_sockets()`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use super::{nix_err, CriuError, DiagSock};

/// include/uapi/linux/sock_diag.h, inet_diag.h
pub(super) const SOCK_DIAG_BY_FAMILY: u16 = 20;

pub(super) fn sockaddr(family: u16, addr: &[u8], port: [u8; 2]) -> SocketAddr {
    let port = u16::from_be_bytes(port);
    let ip = if i32::from(family) == libc::AF_INET6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&addr[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    };
    SocketAddr::new(ip, port)
}

/// `inet_diag_req_v2` for all TCP sockets of `family`, in an `nlmsghdr`.
pub(super) fn diag_request(family: u8, seq: u32) -> Vec<u8> {
    const NLMSG_HDR: usize = 16;
    const REQ: usize = 56; // inet_diag_req_v2 with its 48-byte inet_diag_sockid
    let len = (NLMSG_HDR + REQ) as u32;
    let mut m = Vec::with_capacity(len as usize);
    m.extend(len.to_ne_bytes());
    m.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend(((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // nlmsg_pid
    m.push(family); // sdiag_family
    m.push(libc::IPPROTO_TCP as u8); // sdiag_protocol
    m.push(0); // idiag_ext
    m.push(0); // pad
    m.extend(u32::MAX.to_ne_bytes()); // idiag_states: all
    m.resize(len as usize, 0); // the socket id: no filter
    m
}

/// The TCP sockets of this network namespace by inode, as `collect_sockets()` gets them:
/// one sock_diag dump per family.
pub fn diag_tcp_sockets() -> Result<HashMap<u64, DiagSock>, CriuError> {
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(nix_err("socket(NETLINK_SOCK_DIAG)"))?;
    let kernel = NetlinkAddr::new(0, 0);
    let mut out = HashMap::new();
    let mut buf = vec![0u8; 32 << 10];
    for (seq, family) in [(1u32, libc::AF_INET), (2, libc::AF_INET6)] {
        let req = diag_request(family as u8, seq);
        sendto(nl.as_raw_fd(), &req, &kernel, MsgFlags::empty())
            .map_err(nix_err("sendto(sock_diag request)"))?;
        'dump: loop {
            let n = recv(nl.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(nix_err("recv(sock_diag)"))?;
            if n == 0 {
                return Err(CriuError::Diag("end of stream before NLMSG_DONE".into()));
            }
            let mut off = 0;
            while off + 16 <= n {
                let h = &buf[off..n];
                let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let ty = u16::from_ne_bytes([h[4], h[5]]);
                if len < 16 || len > h.len() {
                    return Err(CriuError::Diag(format!(
                        "message of {len} bytes at offset {off} of {n}"
                    )));
                }
                match i32::from(ty) {
                    libc::NLMSG_DONE => break 'dump,
                    libc::NLMSG_ERROR => {
                        let errno = h
                            .get(16..20)
                            .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
                            .unwrap_or(0);
                        return Err(CriuError::Io {
                            what: format!("sock_diag dump of family {family}"),
                            source: io::Error::from_raw_os_error(-errno),
                        });
                    }
                    _ => {
                        // inet_diag_msg: family, state, timer, retrans, then the socket id
                        // (sport, dport, src[16], dst[16], if, cookie[2]), expires, rqueue,
                        // wqueue, uid, inode.
                        let m = &h[16..len];
                        if m.len() < 72 {
                            return Err(CriuError::Diag(format!(
                                "inet_diag_msg of {} bytes",
                                m.len()
                            )));
                        }
                        let fam = u16::from(m[0]);
                        let inode = u32::from_ne_bytes([m[68], m[69], m[70], m[71]]);
                        out.insert(
                            u64::from(inode),
                            DiagSock {
                                family: fam,
                                state: m[1],
                                src: sockaddr(fam, &m[8..24], [m[4], m[5]]),
                                dst: sockaddr(fam, &m[24..40], [m[6], m[7]]),
                            },
                        );
                    }
                }
                // NLMSG_ALIGN
                off += (len + 3) & !3;
            }
        }
    }
    Ok(out)
}

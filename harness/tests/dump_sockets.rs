//! Socket dump correctness (issue 7, items 6, 7 and 9): `selftests/progs/dump_socks.bpf.c`
//! walks a process's fds, and for each socket dumps its state and the bytes of every queued
//! packet through the socket queue iterator. Each test builds sockets with known contents in
//! the guest, dumps them, and compares field by field and byte for byte with ground truth from
//! the socket API (`TCP_REPAIR` + `TCP_QUEUE_SEQ`, `SIOCINQ`/`SIOCOUTQ`/`SIOCOUTQNSD`,
//! `TCP_REPAIR_WINDOW`, `TCP_INFO`, repair-mode and `MSG_PEEK` peeks) and with the bytes the
//! test wrote; then the application reads (or the peer receives) and must get exactly the
//! dumped bytes. A failure names the socket, the field or the first differing byte offset.
//!
//! Each test body runs in its own guest (root, lo up, crib_kfuncs.ko loaded on stock); the VM
//! runner fails a test on any kernel splat.
//!
//! Every test is registered at the end of this file (one line per case and kernel); the bodies
//! live in one file per concern under `dump_sockets/`: `tcp.rs`, `udp.rs`, `unix.rs`,
//! `errqueue.rs`, `refused.rs` (sockets a dump must refuse) and `race.rs` (dumps during
//! traffic). They share this file's imports and helpers (`use super::*`).

use std::io::{IoSlice, IoSliceMut, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use crib_harness::kernel::Flavor;
use crib_harness::sock_dump::{errno_str, Queue, SockDump, SockDumper, F_V6};
use crib_harness::sock_truth::{self as truth, first_difference, pattern, TcpTruth};
use crib_harness::vm::guest_test as run;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self as sock, setsockopt, sockopt, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage,
};

/// One test per kernel flavor, named `<what>_stock` and `<what>_patched` (filter with
/// `-E 'not test(/patched/)'` where the patched kernel is not built).
macro_rules! on_both_kernels {
    ($stock:ident, $patched:ident, $body:expr) => {
        #[test]
        fn $stock() {
            run(Flavor::Stock, stringify!($stock), $body);
        }

        #[test]
        fn $patched() {
            run(Flavor::Patched, stringify!($patched), $body);
        }
    };
}

fn step(what: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    eprintln!("[sock {:>7.2}s] {what}", t.as_secs_f64());
}

/// Differences found, each one line naming the socket and the field.
#[derive(Default)]
struct Diffs(Vec<String>);

impl Diffs {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, dump: T, truth: T) {
        if dump != truth {
            self.0
                .push(format!("{what}: dump says {dump:?}, truth {truth:?}"));
        }
    }

    fn bytes(&mut self, what: &str, dump: &[u8], truth: &[u8]) {
        if let Some(d) = first_difference(what, dump, truth) {
            self.0.push(d);
        }
    }

    fn check(&mut self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        if !ok {
            self.0.push(format!("{what}: {}", detail()));
        }
    }

    fn finish(self, what: &str) -> Result<()> {
        ensure!(
            self.0.is_empty(),
            "{what}: {} differences:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
        Ok(())
    }
}

/// Set a socket option, naming it in the error.
fn set<O: nix::sys::socket::SetSockOpt>(
    fd: &impl AsFd,
    opt: O,
    val: &O::Val,
    what: &str,
) -> Result<()> {
    setsockopt(fd, opt, val).with_context(|| format!("setsockopt {what}"))
}

/// UDP_CORK on or off (nix has no option type for it).
fn udp_cork_set(s: &UdpSocket, on: bool) -> Result<()> {
    let what = if on { "UDP_CORK" } else { "UDP_CORK off" };
    truth::setsockopt_int(
        s.as_raw_fd(),
        libc::IPPROTO_UDP,
        libc::UDP_CORK,
        on.into(),
        what,
    )?;
    Ok(())
}

fn set_nonblocking(fd: &impl AsFd) -> Result<()> {
    let fl = fcntl(fd, FcntlArg::F_GETFL).context("F_GETFL")?;
    let fl = OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(fl)).context("O_NONBLOCK")?;
    Ok(())
}

/// Write to the guest's sysctl (each test has its own guest).
fn sysctl(path: &str, val: &str) -> Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), val).with_context(|| format!("sysctl {path}"))
}

/// The loopback address with port 0 (any free port), v4 or v6.
fn loopback(v6: bool) -> &'static str {
    if v6 {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    }
}

/// An address as the dump decodes it: (IP, port).
fn addr_parts(a: SocketAddr) -> (IpAddr, u16) {
    (a.ip(), a.port())
}

#[path = "dump_sockets/errqueue.rs"]
mod errqueue;
#[path = "dump_sockets/race.rs"]
mod race;
#[path = "dump_sockets/refused.rs"]
mod refused;
#[path = "dump_sockets/tcp.rs"]
mod tcp;
#[path = "dump_sockets/udp.rs"]
mod udp;
#[path = "dump_sockets/unix.rs"]
mod unix;

on_both_kernels!(
    tcp_v4_queues_and_seqs_match_repair_and_peek_stock,
    tcp_v4_queues_and_seqs_match_repair_and_peek_patched,
    |_| {
        tcp::small(false)?;
        tcp::sendfile(false)
    }
);

on_both_kernels!(
    tcp_v6_queues_and_seqs_match_repair_and_peek_stock,
    tcp_v6_queues_and_seqs_match_repair_and_peek_patched,
    |_| {
        tcp::small(true)?;
        tcp::sendfile(true)
    }
);

on_both_kernels!(
    tcp_out_of_order_segment_matches_injected_stock,
    tcp_out_of_order_segment_matches_injected_patched,
    |_| {
        tcp::out_of_order(false)?;
        tcp::out_of_order(true)
    }
);

on_both_kernels!(
    tcp_v4_over_1mib_unread_and_unacked_match_stock,
    tcp_v4_over_1mib_unread_and_unacked_match_patched,
    |_| tcp::peer_not_reading(false)
);

on_both_kernels!(
    tcp_v6_over_1mib_unread_and_unacked_match_stock,
    tcp_v6_over_1mib_unread_and_unacked_match_patched,
    |_| tcp::peer_not_reading(true)
);

on_both_kernels!(
    udp_datagrams_sources_and_cork_match_stock,
    udp_datagrams_sources_and_cork_match_patched,
    |_| {
        for v6 in [false, true] {
            udp::many(v6)?;
            udp::cork(v6)?;
        }
        for v6 in [false, true] {
            udp::reassembled(v6)?;
        }
        Ok(())
    }
);

on_both_kernels!(
    unix_stream_dgram_seqpacket_queues_match_stock,
    unix_stream_dgram_seqpacket_queues_match_patched,
    |_| {
        unix::stream()?;
        unix::messages(SockType::Datagram, "dgram")?;
        unix::messages(SockType::SeqPacket, "seqpacket")
    }
);

on_both_kernels!(
    error_queue_entry_matches_msg_errqueue_stock,
    error_queue_entry_matches_msg_errqueue_patched,
    |_| {
        errqueue::error_queue(false)?;
        errqueue::error_queue(true)
    }
);

on_both_kernels!(
    unsupported_sockets_report_their_errno_stock,
    unsupported_sockets_report_their_errno_patched,
    |_| refused::refused()
);

on_both_kernels!(
    dumps_during_traffic_are_consistent_stock,
    dumps_during_traffic_are_consistent_patched,
    |_| race::race()
);

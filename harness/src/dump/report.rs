//! What `crib dump` prints: an lsof-like table, or one JSON document whose schema is
//! versioned ([`SCHEMA`], [`VERSION`]; described in harness/README.md, "crib dump").
//!
//! A [`Report`] joins the file records of one dump (with paths) and the socket summaries of
//! one socket dump (`SockDumper::summaries`) of the same process.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{kdev_split, FileKind, FileRecord, FMODE_READ, FMODE_WRITE, O_CLOEXEC};
use crate::sock_dump::{Queue, SockRecord};
use crate::truth::FdTruth;

/// Name of the JSON document's schema.
pub const SCHEMA: &str = "crib-dump";
/// Version of the JSON schema: bumped when a field changes meaning or goes away (adding a
/// field does not bump it).
pub const VERSION: u32 = 1;

/// The whole dump of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// [`VERSION`].
    pub version: u32,
    pub pid: i32,
    /// One entry per open fd, in ascending fd order.
    pub files: Vec<Entry>,
}

/// One open fd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub fd: u32,
    /// reg, dir, fifo, sock, chr, blk, lnk, anon (anon_inode and pidfs files), other
    pub kind: &'static str,
    /// The open flags as fdinfo's `flags:` shows them: `f_flags`, plus O_CLOEXEC when the fd
    /// is close-on-exec.
    pub flags: u32,
    pub cloexec: bool,
    /// "r", "w", "rw" or "-" (FMODE_READ / FMODE_WRITE of `f_mode`)
    pub mode: &'static str,
    /// `f_mode` itself (FMODE_* bits)
    pub f_mode: u32,
    pub pos: u64,
    /// as fdinfo's `mnt_id:`
    pub mnt_id: u32,
    /// `major:minor` of the inode's file system
    pub dev: String,
    pub ino: u64,
    /// `i_mode` (type and permission bits)
    pub i_mode: u32,
    /// `major:minor` of a device file
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdev: Option<String>,
    /// As `readlink /proc/<pid>/fd/<fd>` prints it (not UTF-8: lossily converted); null when
    /// the kernel could not give it (`path_error` says why)
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_error: Option<String>,
    /// anon_inode name: `"[eventfd]"`, `"[eventpoll]"`, `"[pidfd]"`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anon_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<Socket>,
}

/// A socket's identity, endpoints and queue sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// "unix", "inet", "inet6", "netlink", "packet" or the number
    pub family: String,
    /// "stream", "dgram", "raw", "seqpacket" or the number
    #[serde(rename = "type")]
    pub sock_type: String,
    pub protocol: u16,
    /// The fields below come from the socket dump; null if it did not cover this fd.
    /// TCP state names (also for unix and UDP, which use the same numbering)
    pub state: Option<String>,
    /// inet: `"addr:port"` (`"[addr]:port"` for IPv6)
    pub local: Option<String>,
    pub remote: Option<String>,
    /// Bytes waiting to be read: TCP receive queue (in order), UDP or unix receive queue
    pub recv_q: Option<u64>,
    /// Bytes not yet acknowledged or sent: TCP retransmit + write queues, UDP cork
    pub send_q: Option<u64>,
    /// Every queue that holds something: packets and bytes, by queue name (tcp-recv,
    /// tcp-ofo, tcp-rtx, tcp-write, udp-recv, udp-cork, unix-recv, error)
    pub queues: BTreeMap<&'static str, QueueSize>,
    /// Why the kernel gave no queue snapshot (e.g. EINVAL for a listening socket)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueSize {
    pub packets: u32,
    pub bytes: u64,
}

impl Report {
    /// Join the file records and the socket summaries of `pid` (matched by fd; a socket
    /// summary of an fd that is not a socket in `files` is ignored).
    pub fn new(pid: i32, files: &[FileRecord], socks: &[SockRecord]) -> Report {
        let socks: BTreeMap<u32, &SockRecord> = socks.iter().map(|s| (s.fd, s)).collect();
        Report {
            schema: SCHEMA,
            version: VERSION,
            pid,
            files: files
                .iter()
                .map(|f| Entry::new(f, socks.get(&f.fd).copied()))
                .collect(),
        }
    }

    /// The JSON document, pretty-printed.
    pub fn to_json(&self) -> String {
        // A Report is strings, numbers and maps with string keys: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The lsof-like table: a header line, then one line per fd. NAME (last) is the path,
    /// for sockets followed by protocol, endpoints and state.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>7} {:<5} {:>9} {:<4} {:>12} {:>6} {:>10} {:>8} {:>8} NAME\n",
            "FD", "KIND", "FLAGS", "MODE", "POS", "MNT_ID", "INODE", "RECV-Q", "SEND-Q"
        );
        for e in &self.files {
            let q = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            let (rq, sq) = e
                .socket
                .as_ref()
                .map_or((None, None), |s| (s.recv_q, s.send_q));
            let _ = writeln!(
                out,
                "{:>7} {:<5} {:>9} {:<4} {:>12} {:>6} {:>10} {:>8} {:>8} {}",
                e.fd,
                e.kind,
                format!("0{:o}", e.flags),
                e.mode,
                e.pos,
                e.mnt_id,
                e.ino,
                q(rq),
                q(sq),
                e.name()
            );
        }
        out
    }
}

impl Report {
    /// Every way this report differs from what procfs shows of the same process (`truth`,
    /// read right after the dump): the fd sets, and per fd the path (readlink), mnt_id, flags,
    /// pos and inode of fdinfo. Empty when they agree.
    pub fn mismatches_with(&self, truth: &BTreeMap<u32, FdTruth>) -> Vec<String> {
        let mut out = Vec::new();
        let dumped: Vec<u32> = self.files.iter().map(|e| e.fd).collect();
        let listed: Vec<u32> = truth.keys().copied().collect();
        if dumped != listed {
            out.push(format!(
                "pid {}: the dump lists fds {dumped:?}, /proc/{}/fd lists {listed:?}",
                self.pid, self.pid
            ));
        }
        for e in &self.files {
            let Some(t) = truth.get(&e.fd) else { continue };
            let mut differ = |field: &str, dumped: String, procfs: String| {
                if dumped != procfs {
                    out.push(format!(
                        "fd {}: {field}: the dump says {dumped}, procfs says {procfs}",
                        e.fd
                    ));
                }
            };
            differ(
                "path (readlink)",
                format!("{:?}", e.path.as_deref().unwrap_or("")),
                format!("{:?}", t.link),
            );
            differ("mnt_id", e.mnt_id.to_string(), t.mnt_id.to_string());
            differ(
                "flags",
                format!("0{:o}", e.flags),
                format!("0{:o}", t.flags),
            );
            differ("pos", e.pos.to_string(), t.pos.to_string());
            differ("ino", e.ino.to_string(), t.fdinfo_ino.to_string());
        }
        out
    }
}

impl Entry {
    fn new(f: &FileRecord, sock: Option<&SockRecord>) -> Entry {
        let kdev = |d: u32| {
            let (maj, min) = kdev_split(d);
            format!("{maj}:{min}")
        };
        let mode = match (f.f_mode & FMODE_READ != 0, f.f_mode & FMODE_WRITE != 0) {
            (true, true) => "rw",
            (true, false) => "r",
            (false, true) => "w",
            (false, false) => "-",
        };
        Entry {
            fd: f.fd,
            kind: f.kind.as_str(),
            flags: f.f_flags | if f.cloexec { O_CLOEXEC } else { 0 },
            cloexec: f.cloexec,
            mode,
            f_mode: f.f_mode,
            pos: f.f_pos,
            mnt_id: f.mnt_id,
            dev: kdev(f.dev),
            ino: f.ino,
            i_mode: f.i_mode,
            rdev: matches!(f.kind, FileKind::CharDev | FileKind::BlockDev).then(|| kdev(f.rdev)),
            path: f.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
            path_error: (f.path_errno != 0).then(|| errno_name(f.path_errno)),
            anon_name: f.anon_name.clone(),
            socket: f.sock.map(|k| {
                let s = sock.filter(|s| s.family == k.family && s.sock_type == k.sock_type);
                Socket::new(k.family, k.sock_type, k.protocol, s)
            }),
        }
    }

    /// The table's NAME column.
    fn name(&self) -> String {
        let mut name = match (&self.path, &self.path_error) {
            (Some(p), _) => p.clone(),
            (None, Some(e)) => format!("(no path: {e})"),
            (None, None) => "(no path)".into(),
        };
        if let Some(s) = &self.socket {
            let proto = match (s.family.as_str(), s.sock_type.as_str(), s.protocol) {
                ("inet" | "inet6", "stream", 6) => "TCP".to_string(),
                ("inet" | "inet6", "dgram", 17) => "UDP".to_string(),
                (fam, ty, _) => format!("{}/{}", fam.to_uppercase(), ty.to_uppercase()),
            };
            let _ = write!(name, " {proto}");
            match (&s.local, &s.remote) {
                (Some(l), Some(r)) if !r.ends_with(":0") => {
                    let _ = write!(name, " {l}->{r}");
                }
                (Some(l), _) => {
                    let _ = write!(name, " {l}");
                }
                _ => {}
            }
            if let Some(st) = &s.state {
                let _ = write!(name, " ({st})");
            }
        }
        name
    }
}

impl Socket {
    fn new(family: u16, sock_type: u16, protocol: u16, s: Option<&SockRecord>) -> Socket {
        let endpoint = |a: Option<(std::net::IpAddr, u16)>| {
            a.map(|(ip, port)| std::net::SocketAddr::new(ip, port).to_string())
        };
        let queues: BTreeMap<&'static str, QueueSize> = s
            .filter(|s| s.queue_err == 0)
            .map(|s| {
                Queue::ALL
                    .iter()
                    .filter(|q| s.nr_of(**q) != 0 || s.bytes_of(**q) != 0)
                    .map(|q| {
                        let size = QueueSize {
                            packets: s.nr_of(*q),
                            bytes: s.bytes_of(*q),
                        };
                        (q.as_str(), size)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sum = |qs: &[Queue]| {
            s.filter(|s| s.queue_err == 0)
                .map(|s| qs.iter().map(|q| s.bytes_of(*q)).sum::<u64>())
        };
        Socket {
            family: family_name(family),
            sock_type: type_name(sock_type),
            protocol,
            state: s.map(|s| tcp_state_name(s.state)),
            local: s.and_then(|s| endpoint(s.src)),
            remote: s.and_then(|s| endpoint(s.dst)),
            recv_q: sum(&[Queue::TcpRecv, Queue::UdpRecv, Queue::UnixRecv]),
            send_q: sum(&[Queue::TcpRtx, Queue::TcpWrite, Queue::UdpCork]),
            queues,
            queue_error: s
                .filter(|s| s.queue_err != 0)
                .map(|s| errno_name(-s.queue_err)),
        }
    }
}

fn family_name(f: u16) -> String {
    match i32::from(f) {
        libc::AF_UNIX => "unix".into(),
        libc::AF_INET => "inet".into(),
        libc::AF_INET6 => "inet6".into(),
        libc::AF_NETLINK => "netlink".into(),
        libc::AF_PACKET => "packet".into(),
        n => n.to_string(),
    }
}

fn type_name(t: u16) -> String {
    match i32::from(t) {
        libc::SOCK_STREAM => "stream".into(),
        libc::SOCK_DGRAM => "dgram".into(),
        libc::SOCK_RAW => "raw".into(),
        libc::SOCK_SEQPACKET => "seqpacket".into(),
        n => n.to_string(),
    }
}

/// include/net/tcp_states.h
fn tcp_state_name(s: u8) -> String {
    const NAMES: [&str; 13] = [
        "0",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
        "NEW_SYN_RECV",
    ];
    NAMES
        .get(usize::from(s))
        .map_or_else(|| s.to_string(), |n| n.to_string())
}

/// "ENAMETOOLONG" for 36.
fn errno_name(errno: i32) -> String {
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("errno {errno}"),
        e => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::SockInfo;
    use std::path::PathBuf;

    fn file(fd: u32, kind: FileKind, path: &str) -> FileRecord {
        FileRecord {
            fd,
            f_flags: 0o2,
            f_mode: FMODE_READ | FMODE_WRITE,
            i_mode: 0o100644,
            f_pos: 7,
            ino: 42,
            dev: 25,
            rdev: 0,
            kind,
            cloexec: true,
            sock: None,
            anon_name: None,
            mnt_id: 23,
            path: Some(PathBuf::from(path)),
            path_errno: 0,
        }
    }

    #[test]
    fn table_and_json_show_what_procfs_shows() {
        let mut tcp = file(4, FileKind::Socket, "socket:[99]");
        tcp.sock = Some(SockInfo {
            family: libc::AF_INET as u16,
            sock_type: libc::SOCK_STREAM as u16,
            protocol: 6,
        });
        let mut gone = file(5, FileKind::Regular, "");
        gone.path = None;
        gone.path_errno = libc::ENAMETOOLONG;
        let files = [file(3, FileKind::Regular, "/tmp/a b (deleted)"), tcp, gone];
        let mut s = SockRecord {
            fd: 4,
            family: libc::AF_INET as u16,
            sock_type: libc::SOCK_STREAM as u16,
            protocol: 6,
            state: 1,
            src: Some(("127.0.0.1".parse().unwrap(), 5000)),
            dst: Some(("127.0.0.1".parse().unwrap(), 40000)),
            ..Default::default()
        };
        s.nr[Queue::TcpRecv as usize] = 1;
        s.bytes[Queue::TcpRecv as usize] = 5;
        s.bytes[Queue::TcpWrite as usize] = 3;
        s.nr[Queue::TcpWrite as usize] = 1;
        let r = Report::new(9, &files, &[s]);
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].trim_start().starts_with("FD KIND"), "{t}");
        assert!(
            lines[1].ends_with(" 23         42        -        - /tmp/a b (deleted)"),
            "{t}"
        );
        assert!(lines[1].contains(" 02000002 rw  "), "{t}");
        assert!(
            lines[2].ends_with(
                "5        3 socket:[99] TCP 127.0.0.1:5000->127.0.0.1:40000 (ESTABLISHED)"
            ),
            "{t}"
        );
        assert!(lines[3].ends_with("(no path: ENAMETOOLONG)"), "{t}");

        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["schema"], "crib-dump");
        assert_eq!(v["version"], 1);
        assert_eq!(v["pid"], 9);
        assert_eq!(v["files"][0]["path"], "/tmp/a b (deleted)");
        assert_eq!(v["files"][0]["flags"], 0o2000002);
        assert_eq!(v["files"][0]["mnt_id"], 23);
        assert_eq!(v["files"][1]["socket"]["local"], "127.0.0.1:5000");
        assert_eq!(v["files"][1]["socket"]["recv_q"], 5);
        assert_eq!(v["files"][1]["socket"]["send_q"], 3);
        assert_eq!(v["files"][1]["socket"]["queues"]["tcp-write"]["bytes"], 3);
        assert_eq!(v["files"][1]["socket"]["type"], "stream");
        assert_eq!(v["files"][2]["path"], serde_json::Value::Null);
        assert_eq!(v["files"][2]["path_error"], "ENAMETOOLONG");
    }
}

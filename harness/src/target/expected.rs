//! What the target child reports about each fd it made, the line protocol that carries it to
//! the parent, and what the racing thread did.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{AddressFamily, SockProtocol, SockType};

use crate::dump::{FileKind, SockInfo};

/// One fd the target made, and what a dump must say about it. `None` fields are not known
/// in advance (inherited stdout/stderr, for example).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFd {
    pub fd: u32,
    pub what: String,
    pub kind: Option<FileKind>,
    pub cloexec: Option<bool>,
    pub sock: Option<SockInfo>,
    pub anon_name: Option<String>,
    pub pos: Option<u64>,
    /// Another fd of the same open file (dup), which must show the same offset and inode.
    pub same_file_as: Option<u32>,
}

/// An fd number, or something that holds one (`&OwnedFd`, `&TcpStream`, ...).
pub(super) trait FdNum {
    fn num(&self) -> RawFd;
}

impl FdNum for RawFd {
    fn num(&self) -> RawFd {
        *self
    }
}

impl<T: AsRawFd> FdNum for &T {
    fn num(&self) -> RawFd {
        (*self).as_raw_fd()
    }
}

impl ExpectedFd {
    pub(super) fn new(fd: impl FdNum, what: &str, kind: FileKind, cloexec: bool) -> Self {
        Self {
            fd: fd.num() as u32,
            what: what.into(),
            kind: Some(kind),
            cloexec: Some(cloexec),
            sock: None,
            anon_name: None,
            pos: None,
            same_file_as: None,
        }
    }
    pub(super) fn sock(
        mut self,
        family: AddressFamily,
        ty: SockType,
        proto: Option<SockProtocol>,
    ) -> Self {
        self.sock = Some(SockInfo {
            family: family as u16,
            sock_type: ty as u16,
            protocol: proto.map_or(0, |p| p as u16),
        });
        self
    }
    pub(super) fn anon(mut self, name: &str) -> Self {
        self.anon_name = Some(name.into());
        self
    }
    pub(super) fn pos(mut self, pos: u64) -> Self {
        self.pos = Some(pos);
        self
    }
    pub(super) fn dup_of(mut self, fd: impl FdNum) -> Self {
        self.same_file_as = Some(fd.num() as u32);
        self
    }

    pub(super) fn encode(&self) -> String {
        let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
        let sock = self
            .sock
            .map(|s| format!("{},{},{}", s.family, s.sock_type, s.protocol));
        format!(
            "fd {} {} {} {} {} {} {} {}",
            self.fd,
            opt(self.kind.map(|k| k.as_str().to_string())),
            opt(self.cloexec.map(|c| u8::from(c).to_string())),
            opt(sock),
            opt(self.anon_name.clone()),
            opt(self.pos.map(|p| p.to_string())),
            opt(self.same_file_as.map(|p| p.to_string())),
            self.what
        )
    }

    pub(super) fn decode(line: &str) -> Option<Self> {
        let mut it = line.strip_prefix("fd ")?.splitn(8, ' ');
        let fd = it.next()?.parse().ok()?;
        let field = |s: Option<&str>| s.filter(|s| *s != "-").map(str::to_string);
        let kind = match field(it.next()) {
            Some(k) => Some(kind_from_str(&k)?),
            None => None,
        };
        let cloexec = field(it.next()).map(|c| c == "1");
        let sock = match field(it.next()) {
            Some(s) => {
                let v: Vec<u16> = s.split(',').filter_map(|x| x.parse().ok()).collect();
                let [family, sock_type, protocol] = v[..] else {
                    return None;
                };
                Some(SockInfo {
                    family,
                    sock_type,
                    protocol,
                })
            }
            None => None,
        };
        let anon_name = field(it.next());
        let pos = match field(it.next()) {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        let same_file_as = match field(it.next()) {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        let what = it.next().unwrap_or("").to_string();
        Some(Self {
            fd,
            what,
            kind,
            cloexec,
            sock,
            anon_name,
            pos,
            same_file_as,
        })
    }
}

fn kind_from_str(s: &str) -> Option<FileKind> {
    [
        FileKind::Other,
        FileKind::Regular,
        FileKind::Directory,
        FileKind::Fifo,
        FileKind::Socket,
        FileKind::CharDev,
        FileKind::BlockDev,
        FileKind::Symlink,
        FileKind::Anon,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

/// What the racing thread did, reported when the target stops.
#[derive(Debug, Clone, Default)]
pub struct RaceLog {
    /// Every (fd, inode number) the thread ever installed, including fds it got from open().
    pub installed: BTreeSet<(u32, u64)>,
    /// Operations done.
    pub ops: u64,
}

//! CRIU's images, as `crit decode` prints them (no `--pretty`: numbers stay numbers), turned
//! into a [`View`].
//!
//! Which images describe an fd: `fdinfo-<files_id>.img` (fd, FD_CLOEXEC, the file's id),
//! `files.img` (one entry per open file: `reg`, `pipe`, `usk`, `isk`, `efd`, ...),
//! `remap-fpath.img` and `ghost-file-<id>.img` (a deleted file's remap and its inode),
//! `tcp-stream-<ino in hex>.img` (an established TCP socket's queues), `sk-queues.img` (unix receive
//! queues) and `pipes-data.img` (bytes in pipes).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Deserialize;
use serde_json::Value;

use super::{octal, ParityError, View, O_CLOEXEC};

/// The decoded images of one dump, by file name (`files.img`, `fdinfo-2.img`, ...).
#[derive(Debug, Default, Clone)]
pub struct Images {
    pub by_name: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct Image<T> {
    magic: String,
    entries: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct FdinfoEntry {
    id: u32,
    flags: u32,
    #[serde(rename = "type")]
    ty: String,
    fd: u32,
}

#[derive(Debug, Deserialize)]
struct RemapEntry {
    orig_id: u32,
    remap_id: u32,
    remap_type: Value,
}

#[derive(Debug, Deserialize)]
struct GhostEntry {
    mode: u32,
    dev: u32,
    ino: u64,
}

#[derive(Debug, Deserialize)]
struct SkQueueEntry {
    id_for: u32,
    length: u64,
}

#[derive(Debug, Deserialize)]
struct PipeDataEntry {
    pipe_id: u64,
    bytes: u64,
}

#[derive(Debug, Deserialize)]
struct TcpStreamEntry {
    inq_len: u64,
    outq_len: u64,
    #[serde(default)]
    unsq_len: u64,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// FD_CLOEXEC in `FdinfoEntry.flags`.
const FD_CLOEXEC: u32 = 1;

impl Images {
    /// Add one image as `crit decode -i <name>` printed it.
    pub fn insert(&mut self, name: &str, json: &str) -> Result<(), ParityError> {
        let v: Value = serde_json::from_str(json).map_err(|e| ParityError::Image {
            what: format!("crit decode -i {name}"),
            why: format!("not JSON: {e}"),
        })?;
        self.by_name.insert(name.to_string(), v);
        Ok(())
    }

    fn image<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
        magic: &str,
    ) -> Result<Option<Vec<T>>, ParityError> {
        let Some(v) = self.by_name.get(name) else {
            return Ok(None);
        };
        let img: Image<T> = serde_json::from_value(v.clone()).map_err(|e| ParityError::Image {
            what: name.to_string(),
            why: e.to_string(),
        })?;
        if img.magic != magic {
            return Err(ParityError::Image {
                what: name.to_string(),
                why: format!("magic {:?}, expected {magic:?}", img.magic),
            });
        }
        Ok(Some(img.entries))
    }

    /// The one `fdinfo-*.img` of a one-process dump.
    fn fdinfo(&self) -> Result<Vec<FdinfoEntry>, ParityError> {
        let names: Vec<&String> = self
            .by_name
            .keys()
            .filter(|n| n.starts_with("fdinfo-"))
            .collect();
        match names.as_slice() {
            [one] => Ok(self.image(one, "FDINFO")?.unwrap_or_default()),
            _ => Err(ParityError::Image {
                what: "fdinfo-*.img".into(),
                why: format!("expected one (one process dumped), found {names:?}"),
            }),
        }
    }

    /// Every fd of the dumped process with the fields CRIU's images give it.
    pub fn view(&self) -> Result<View, ParityError> {
        let files: Vec<Value> =
            self.image("files.img", "FILES")?
                .ok_or_else(|| ParityError::Image {
                    what: "files.img".into(),
                    why: "missing from the dump".into(),
                })?;
        let by_id: BTreeMap<u64, &Value> = files
            .iter()
            .filter_map(|f| Some((f.get("id")?.as_u64()?, f)))
            .collect();
        let remaps: Vec<RemapEntry> = self
            .image("remap-fpath.img", "REMAP_FPATH")?
            .unwrap_or_default();
        let queues: Vec<SkQueueEntry> = self
            .image("sk-queues.img", "SK_QUEUES")?
            .unwrap_or_default();
        let pipes: Vec<PipeDataEntry> = self
            .image("pipes-data.img", "PIPES_DATA")?
            .unwrap_or_default();

        let mut view = View::new();
        for fi in self.fdinfo()? {
            let file = by_id
                .get(&u64::from(fi.id))
                .ok_or_else(|| ParityError::Image {
                    what: "files.img".into(),
                    why: format!("no entry with id {} (fd {})", fi.id, fi.fd),
                })?;
            let mut m = BTreeMap::new();
            m.insert(
                "cloexec".to_string(),
                (fi.flags & FD_CLOEXEC != 0).to_string(),
            );
            let key = entry_key(&fi.ty);
            let body = file.get(key).ok_or_else(|| ParityError::Image {
                what: "files.img".into(),
                why: format!("entry {} of type {} has no {key:?}", fi.id, fi.ty),
            })?;
            let num = |k: &str| body.get(k).and_then(Value::as_u64);
            if let Some(f) = num("flags") {
                m.insert("flags".into(), octal(f & !O_CLOEXEC));
            }
            // What each type describes; the keys used here are not repeated as criu.*.
            let used: &[&str] = match fi.ty.as_str() {
                "REG" => {
                    self.reg(&mut m, fi.id, body, &remaps)?;
                    &["id", "flags", "pos", "name", "mode"]
                }
                "PIPE" => {
                    m.insert("kind".into(), "fifo".into());
                    let pipe_id = num("pipe_id").unwrap_or_default();
                    m.insert("ino".into(), pipe_id.to_string());
                    if let Some(d) = pipes.iter().find(|d| d.pipe_id == pipe_id) {
                        m.insert("criu.pipes-data.bytes".into(), d.bytes.to_string());
                    }
                    &["id", "flags", "pipe_id"]
                }
                "UNIXSK" => {
                    m.insert("kind".into(), "sock".into());
                    m.insert("sock.family".into(), "unix".into());
                    put_num(&mut m, "ino", num("ino"));
                    put_sock_common(&mut m, num("type"), num("state"));
                    let mine: Vec<&SkQueueEntry> =
                        queues.iter().filter(|q| q.id_for == fi.id).collect();
                    let bytes: u64 = mine.iter().map(|q| q.length).sum();
                    m.insert("queue.unix-recv.bytes".into(), bytes.to_string());
                    m.insert("queue.unix-recv.packets".into(), mine.len().to_string());
                    m.insert("sock.recv_q".into(), bytes.to_string());
                    &["id", "flags", "ino", "type", "state"]
                }
                "INETSK" => {
                    m.insert("kind".into(), "sock".into());
                    self.inet(&mut m, body)?;
                    &[
                        "id", "flags", "ino", "family", "type", "proto", "state", "src_addr",
                        "src_port", "dst_addr", "dst_port",
                    ]
                }
                "EVENTFD" => {
                    m.insert("kind".into(), "anon".into());
                    m.insert("anon_name".into(), "[eventfd]".into());
                    &["id", "flags"]
                }
                other => {
                    m.insert("kind".into(), format!("criu:{other}"));
                    &["id", "flags"]
                }
            };
            if let Some(obj) = body.as_object() {
                for (k, v) in obj {
                    if !used.contains(&k.as_str()) {
                        m.insert(format!("criu.{key}.{k}"), compact(v));
                    }
                }
            }
            view.insert(fi.fd, m);
        }
        Ok(view)
    }

    fn reg(
        &self,
        m: &mut BTreeMap<String, String>,
        id: u32,
        body: &Value,
        remaps: &[RemapEntry],
    ) -> Result<(), ParityError> {
        let mode = body.get("mode").and_then(Value::as_u64);
        m.insert("kind".into(), kind_of_mode(mode.unwrap_or_default()).into());
        put_num(m, "i_mode", mode);
        put_num(m, "pos", body.get("pos").and_then(Value::as_u64));
        let mut path = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ghost = remaps
            .iter()
            .find(|r| r.orig_id == id && (r.remap_type == "GHOST" || r.remap_type == 1));
        if let Some(r) = ghost {
            // A deleted file: CRIU keeps its contents and inode in ghost-file-<remap_id>.img.
            path.push_str(" (deleted)");
            let name = format!("ghost-file-{}.img", r.remap_id);
            let g: Vec<GhostEntry> =
                self.image(&name, "GHOST_FILE")?
                    .ok_or_else(|| ParityError::Image {
                        what: name.clone(),
                        why: format!("missing, but remap-fpath.img names it for file {id}"),
                    })?;
            if let Some(g) = g.first() {
                m.insert("ino".into(), g.ino.to_string());
                // CRIU's kernel-format dev_t: major << 20 | minor.
                m.insert("dev".into(), format!("{}:{}", g.dev >> 20, g.dev & 0xfffff));
                m.insert("i_mode".into(), g.mode.to_string());
            }
        }
        m.insert("path".into(), path);
        Ok(())
    }

    fn inet(&self, m: &mut BTreeMap<String, String>, body: &Value) -> Result<(), ParityError> {
        let num = |k: &str| body.get(k).and_then(Value::as_u64);
        let family = num("family").unwrap_or_default();
        m.insert(
            "sock.family".into(),
            match family {
                2 => "inet".into(),
                10 => "inet6".into(),
                n => n.to_string(),
            },
        );
        put_num(m, "ino", num("ino"));
        put_num(m, "sock.protocol", num("proto"));
        put_sock_common(m, num("type"), num("state"));
        for (side, addr, port) in [
            ("sock.local", "src_addr", "src_port"),
            ("sock.remote", "dst_addr", "dst_port"),
        ] {
            let words: Vec<u32> = body
                .get(addr)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|w| w.as_u64())
                        .map(|w| w as u32)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(ip) = ip_of(family, &words) {
                let port = num(port).unwrap_or_default() as u16;
                m.insert(side.into(), SocketAddr::new(ip, port).to_string());
            }
        }
        let Some(ino) = num("ino") else { return Ok(()) };
        // CRIU names it after the inode in hex (criu/image-desc.c: "tcp-stream-%x").
        let name = format!("tcp-stream-{ino:x}.img");
        if let Some(ts) = self.image::<TcpStreamEntry>(&name, "TCP_STREAM")? {
            if let Some(t) = ts.first() {
                let rtx = t.outq_len.saturating_sub(t.unsq_len);
                for (k, v) in [
                    ("sock.recv_q", t.inq_len),
                    ("sock.send_q", t.outq_len),
                    ("queue.tcp-recv.bytes", t.inq_len),
                    ("queue.tcp-rtx.bytes", rtx),
                    ("queue.tcp-write.bytes", t.unsq_len),
                ] {
                    m.insert(k.into(), v.to_string());
                }
                for (k, v) in &t.rest {
                    m.insert(format!("criu.tcp-stream.{k}"), compact(v));
                }
            }
        }
        Ok(())
    }
}

/// The key of a files.img entry's body for an fdinfo type (protobuf `FileEntry`).
fn entry_key(ty: &str) -> &'static str {
    match ty {
        "REG" => "reg",
        "PIPE" => "pipe",
        "UNIXSK" => "usk",
        "INETSK" => "isk",
        "EVENTFD" => "efd",
        "EVENTPOLL" => "epfd",
        "SIGNALFD" => "sgfd",
        "TUNF" => "tunf",
        "TIMERFD" => "tfd",
        "INOTIFY" => "ify",
        "FANOTIFY" => "ffy",
        "FIFO" => "fifo",
        "TTY" => "tty",
        "MEMFD" => "memfd",
        "NETLINKSK" => "nlsk",
        "PACKETSK" => "psk",
        "BPFMAP" => "bpf",
        "PIDFD" => "pidfd",
        _ => "unknown",
    }
}

/// `crib dump`'s kind names for an `i_mode`.
pub fn kind_of_mode(mode: u64) -> &'static str {
    match mode as u32 & libc::S_IFMT {
        libc::S_IFREG => "reg",
        libc::S_IFDIR => "dir",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "sock",
        libc::S_IFCHR => "chr",
        libc::S_IFBLK => "blk",
        libc::S_IFLNK => "lnk",
        _ => "other",
    }
}

/// The address CRIU copied from `inet_diag` (`__be32` words, stored as host-order u32s).
fn ip_of(family: u64, words: &[u32]) -> Option<IpAddr> {
    match (family, words) {
        (2, [w, ..]) => Some(IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))),
        (10, [a, b, c, d]) => {
            let mut o = [0u8; 16];
            for (i, w) in [a, b, c, d].iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

fn put_num(m: &mut BTreeMap<String, String>, k: &str, v: Option<u64>) {
    if let Some(v) = v {
        m.insert(k.into(), v.to_string());
    }
}

fn put_sock_common(m: &mut BTreeMap<String, String>, ty: Option<u64>, state: Option<u64>) {
    if let Some(t) = ty {
        m.insert("sock.type".into(), sock_type_name(t));
    }
    if let Some(s) = state {
        m.insert("sock.state".into(), tcp_state_name(s));
    }
}

/// Socket type names as `crib dump` prints them.
pub fn sock_type_name(t: u64) -> String {
    match t {
        1 => "stream".into(),
        2 => "dgram".into(),
        3 => "raw".into(),
        5 => "seqpacket".into(),
        n => n.to_string(),
    }
}

/// include/net/tcp_states.h, as `crib dump` prints them.
pub fn tcp_state_name(s: u64) -> String {
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
        .get(s as usize)
        .map_or_else(|| s.to_string(), |n| n.to_string())
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

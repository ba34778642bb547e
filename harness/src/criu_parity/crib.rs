//! `crib dump --format json` (schema "crib-dump", version 1; harness/README.md, "crib dump")
//! turned into a [`View`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{octal, ParityError, View, O_CLOEXEC};

#[derive(Debug, Deserialize)]
struct Dump {
    schema: String,
    version: u32,
    files: Vec<File>,
}

#[derive(Debug, Deserialize)]
struct File {
    fd: u32,
    kind: String,
    flags: u64,
    cloexec: bool,
    mode: String,
    f_mode: u64,
    pos: u64,
    mnt_id: u64,
    dev: String,
    ino: u64,
    i_mode: u64,
    rdev: Option<String>,
    path: Option<String>,
    path_error: Option<String>,
    anon_name: Option<String>,
    socket: Option<Socket>,
}

#[derive(Debug, Deserialize)]
struct Socket {
    family: String,
    #[serde(rename = "type")]
    sock_type: String,
    protocol: u16,
    state: Option<String>,
    local: Option<String>,
    remote: Option<String>,
    recv_q: Option<u64>,
    send_q: Option<u64>,
    #[serde(default)]
    queues: BTreeMap<String, QueueSize>,
    queue_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QueueSize {
    packets: u64,
    bytes: u64,
}

/// The queues a socket of this kind has: `crib dump` lists only those that hold something, so
/// the others are 0 (when the queues were dumped at all).
fn queues_of(family: &str, ty: &str) -> &'static [&'static str] {
    match (family, ty) {
        ("inet" | "inet6", "stream") => &["tcp-recv", "tcp-ofo", "tcp-rtx", "tcp-write", "error"],
        ("inet" | "inet6", "dgram") => &["udp-recv", "udp-cork", "error"],
        ("unix", _) => &["unix-recv", "error"],
        _ => &["error"],
    }
}

/// Parse `crib dump --format json`'s output.
pub fn view(json: &str) -> Result<View, ParityError> {
    let d: Dump = serde_json::from_str(json).map_err(|e| ParityError::CribJson(e.to_string()))?;
    if d.schema != "crib-dump" || d.version != 1 {
        return Err(ParityError::CribJson(format!(
            "schema {:?} version {}, this comparison reads crib-dump version 1",
            d.schema, d.version
        )));
    }
    let mut view = View::new();
    for f in d.files {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("kind", f.kind);
        put("cloexec", f.cloexec.to_string());
        put("flags", octal(f.flags & !O_CLOEXEC));
        put("crib.mode", f.mode);
        put("crib.f_mode", format!("0x{:x}", f.f_mode));
        put("pos", f.pos.to_string());
        put("mnt_id", f.mnt_id.to_string());
        put("dev", f.dev);
        put("ino", f.ino.to_string());
        put("i_mode", f.i_mode.to_string());
        if let Some(r) = f.rdev {
            put("crib.rdev", r);
        }
        if let Some(p) = f.path {
            put("path", p);
        }
        if let Some(e) = f.path_error {
            put("crib.path_error", e);
        }
        if let Some(a) = f.anon_name {
            put("anon_name", a);
        }
        if let Some(s) = f.socket {
            put("sock.protocol", s.protocol.to_string());
            for (k, v) in [
                ("sock.state", s.state),
                ("sock.local", s.local),
                ("sock.remote", s.remote),
                ("sock.recv_q", s.recv_q.map(|v| v.to_string())),
                ("sock.send_q", s.send_q.map(|v| v.to_string())),
                ("crib.queue_error", s.queue_error.clone()),
            ] {
                if let Some(v) = v {
                    put(k, v);
                }
            }
            if s.queue_error.is_none() && s.recv_q.is_some() {
                for q in queues_of(&s.family, &s.sock_type) {
                    let (p, b) = s.queues.get(*q).map_or((0, 0), |z| (z.packets, z.bytes));
                    put(&format!("queue.{q}.bytes"), b.to_string());
                    put(&format!("queue.{q}.packets"), p.to_string());
                }
            }
            put("sock.family", s.family);
            put("sock.type", s.sock_type);
        }
        view.insert(f.fd, m);
    }
    Ok(view)
}

//! System calls per method: `crib_count_syscalls` (in `iter_task_file.bpf.c`), a
//! `tp_btf/sys_enter` program counting, per tgid, the calls this process and its children and
//! grandchildren enter (lsof forks helpers) while it is attached. Each method runs once more
//! with it attached, untimed; the count includes the one `close()` that detaches it.

use std::collections::BTreeMap;

use std::ptr::NonNull;

use libbpf_rs::{AsRawLibbpf, Link, MapCore, MapFlags, Object};

use super::iter::COUNTER_PROG;
use super::MethodError;
use crate::loader;

/// What one counted run entered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyscallCount {
    /// All counted calls.
    pub total: u64,
    /// Calls of the benchmark process itself.
    pub own: u64,
    /// Calls of its children and grandchildren, by tgid (lsof and its helpers).
    pub children: BTreeMap<u32, u64>,
}

fn err(why: impl std::fmt::Display) -> MethodError {
    MethodError::Load {
        what: "the system call counter".into(),
        why: why.to_string(),
    }
}

/// Run `f` once with the counter attached and return its result and the calls counted.
pub fn count<R>(
    object: &Object,
    f: impl FnOnce() -> Result<R, MethodError>,
) -> Result<(R, SyscallCount), MethodError> {
    let find = |name: &str| {
        object
            .maps()
            .find(|m| m.name() == name)
            .ok_or_else(|| err(format!("no map {name}")))
    };
    let counts = find("syscall_counts")?;
    let cfg = find("count_cfg")?;
    let keys: Vec<Vec<u8>> = counts.keys().collect();
    for k in keys {
        counts.delete(&k).map_err(err)?;
    }
    let me = std::process::id();
    let zero = 0u32.to_ne_bytes();
    cfg.update(&zero, &me.to_ne_bytes(), MapFlags::ANY)
        .map_err(err)?;
    let prog = loader::find_prog(object, COUNTER_PROG)
        .ok_or_else(|| err(format!("no program {COUNTER_PROG}")))?;
    // SAFETY: the program belongs to the loaded object, alive for this call; libbpf returns
    // NULL (errno set) or a link owned by the `Link`, whose Drop destroys it.
    let raw = unsafe { libbpf_sys::bpf_program__attach(prog.as_libbpf_object().as_ptr()) };
    let ptr = NonNull::new(raw).ok_or_else(|| err(std::io::Error::last_os_error()))?;
    // SAFETY: a valid link just created by libbpf, owned by nothing else.
    let link = unsafe { Link::from_ptr(ptr) };
    let result = f();
    drop(link);
    cfg.update(&zero, &0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(err)?;
    let r = result?;
    let mut c = SyscallCount::default();
    for k in counts.keys() {
        let Some(v) = counts.lookup(&k, MapFlags::ANY).map_err(err)? else {
            continue;
        };
        let (Ok(kb), Ok(vb)) = (<[u8; 4]>::try_from(&k[..]), <[u8; 8]>::try_from(&v[..])) else {
            return Err(err("a count of the wrong size"));
        };
        let (tgid, n) = (u32::from_ne_bytes(kb), u64::from_ne_bytes(vb));
        c.total += n;
        if tgid == me {
            c.own += n;
        } else {
            c.children.insert(tgid, n);
        }
    }
    Ok((r, c))
}

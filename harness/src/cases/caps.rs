//! Capability handling for unprivileged cases: the calling thread's capability sets
//! (`capget`/`capset`; Linux keeps them per thread) and the sysctl that allows unprivileged
//! BPF at all.

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// What test_loader's `drop_capabilities()` takes from an unprivileged case.
pub const DROPPED: u64 =
    (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN) | (1 << CAP_PERFMON) | (1 << CAP_BPF);

const UNPRIV_SYSCTL: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";

/// Make unprivileged BPF possible if the kernel allows turning it on (value 2 can be reset
/// to 0 by root; 1 is permanent until reboot).
pub fn enable_unpriv_bpf(notes: &mut Vec<String>) -> Result<(), String> {
    let cur = std::fs::read_to_string(UNPRIV_SYSCTL)
        .map_err(|e| format!("cannot read {UNPRIV_SYSCTL}: {e}"))?;
    match cur.trim() {
        "0" => Ok(()),
        "2" => {
            std::fs::write(UNPRIV_SYSCTL, "0")
                .map_err(|e| format!("cannot write 0 to {UNPRIV_SYSCTL}: {e}"))?;
            notes.push(format!(
                "set {UNPRIV_SYSCTL} from 2 to 0 for the unprivileged load"
            ));
            Ok(())
        }
        v => Err(format!(
            "{UNPRIV_SYSCTL} is {v}: unprivileged BPF is disabled until reboot, cannot run the \
             unprivileged variant"
        )),
    }
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const VERSION_3: u32 = 0x2008_0522;

#[derive(Clone, Copy)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// `cur` with [`DROPPED`] taken out of the effective set and the permitted ones of `extra`
/// (the `__caps_unpriv` bits) put back.
pub fn reduced(cur: Sets, extra: u64) -> Sets {
    Sets {
        effective: (cur.effective & !DROPPED) | (extra & cur.permitted),
        ..cur
    }
}

/// This thread's sets.
pub fn get() -> std::io::Result<Sets> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget with a v3 header and two data elements.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(Sets {
        effective: join(d[0].effective, d[1].effective),
        permitted: join(d[0].permitted, d[1].permitted),
        inheritable: join(d[0].inheritable, d[1].inheritable),
    })
}

/// Set this thread's sets (other threads keep theirs).
pub fn set(s: Sets) -> std::io::Result<()> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let d = [
        Data {
            effective: s.effective as u32,
            permitted: s.permitted as u32,
            inheritable: s.inheritable as u32,
        },
        Data {
            effective: (s.effective >> 32) as u32,
            permitted: (s.permitted >> 32) as u32,
            inheritable: (s.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: capset with a v3 header and two data elements.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

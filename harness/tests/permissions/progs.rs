//! The permission programs (`permissions.bpf.o`) and small file helpers.

use super::*;

/// `permissions.bpf.c`'s two programs, loaded.
pub(super) struct PermProgs {
    pub(super) walk: RingbufProgram,
    pub(super) fget: RingbufProgram,
}

impl PermProgs {
    pub(super) fn load() -> Result<Self> {
        let obj = Path::new(crib_harness::BPF_DIR).join(PERM_OBJ);
        Ok(Self {
            walk: RingbufProgram::load(&obj, "perm_walk_pause", PERM_MAP)?,
            fget: RingbufProgram::load(&obj, "perm_fget_read", PERM_MAP)?,
        })
    }

    /// bpf_fget_task(pid, fd) and a read through it: None if no reference was handed out.
    pub(super) fn fget_read(&self, pid: i32, fd: u32) -> Result<Option<Outcome>> {
        let mut ctx = crib_perm_ctx {
            pid,
            fd,
            ..Default::default()
        };
        let (ret, recs) = self.fget.run(&mut ctx)?;
        match ret {
            0 => Ok(None),
            1 => {
                ensure!(recs.len() == 1, "perm_fget_read: {} records", recs.len());
                Ok(Some(file_read::decode(0, &recs[0])?.1))
            }
            r => bail!("perm_fget_read({pid}, {fd}) returned {r}"),
        }
    }

    /// Walk `pid`, pausing after `pause_after` elements (0: never). Return the program's
    /// return value and fd -> outcome in walk order.
    pub(super) fn walk(&self, pid: i32, pause_after: u32) -> Result<(i32, Vec<(u32, Outcome)>)> {
        let mut ctx = crib_perm_ctx {
            pid,
            pause_after,
            ..Default::default()
        };
        let (ret, recs) = self.walk.run(&mut ctx)?;
        let mut out = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            out.push(file_read::decode(i, r)?);
        }
        Ok((ret, out))
    }

    pub(super) fn sync_fd(&self) -> Result<RawFd> {
        self.walk
            .map_fd(PERM_SYNC)
            .context("no perm_sync map in permissions.bpf.o")
    }
}

pub(super) fn sync_get(fd: RawFd) -> Result<crib_perm_sync> {
    let key = 0u32;
    let mut v = crib_perm_sync::default();
    // SAFETY: key and value have the map's key and value sizes (u32, struct crib_perm_sync).
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            fd,
            (&key as *const u32).cast(),
            (&mut v as *mut crib_perm_sync).cast(),
        )
    };
    ensure!(rc == 0, "perm_sync lookup: {rc}");
    Ok(v)
}

pub(super) fn sync_set(fd: RawFd, v: crib_perm_sync) -> Result<()> {
    let key = 0u32;
    // SAFETY: as in sync_get.
    let rc = unsafe {
        libbpf_sys::bpf_map_update_elem(
            fd,
            (&key as *const u32).cast(),
            (&v as *const crib_perm_sync).cast(),
            0,
        )
    };
    ensure!(rc == 0, "perm_sync update: {rc}");
    Ok(())
}

pub(super) fn errno_of(e: &DumpError) -> Option<i32> {
    match e {
        DumpError::Target { errno, .. } | DumpError::Stopped { errno, .. } => Some(*errno),
        _ => None,
    }
}

/// A root-owned file with `content` and `mode`.
pub(super) fn write_file(path: &Path, content: &[u8], owner: u32, mode: u32) -> Result<()> {
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    chown(path, Some(owner), Some(owner)).with_context(|| format!("chown {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
}

pub(super) fn ino_of(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok((m.ino(), m.dev()))
}

pub(super) fn show_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Read(b) => format!("read {:?}", String::from_utf8_lossy(b)),
        o => format!("{o:?}"),
    }
}

//! A tmpfs for the target's files, so a test can check that nothing still references them.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{io_err, TargetError};

/// A tmpfs mounted on a fresh directory under `/tmp`; unmounted (and checked) by
/// [`Tmpfs::umount`].
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    mounted: bool,
}

impl Tmpfs {
    pub fn mount() -> Result<Self, TargetError> {
        let dir = tempfile::Builder::new()
            .prefix("crib-dump-")
            .tempdir_in("/tmp")
            .map_err(io_err("mkdir under /tmp"))?;
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64m"),
        )
        .map_err(io_err(format!("mount tmpfs on {}", dir.path().display())))?;
        Ok(Self {
            dir: Some(dir),
            mounted: true,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// umount(2) without MNT_DETACH or MNT_FORCE: EBUSY if any file on it is still referenced.
    pub fn umount(mut self) -> Result<(), TargetError> {
        umount2(self.path(), MntFlags::empty()).map_err(io_err(format!(
            "umount {} (a file on it is still referenced)",
            self.path().display()
        )))?;
        self.mounted = false;
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy unmount, so the directory can go.
            let _ = umount2(self.path(), MntFlags::MNT_DETACH);
        }
    }
}

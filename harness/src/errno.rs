//! Names of errnos for messages, from nix's [`Errno`] instead of hand-kept tables.

use nix::errno::Errno;

/// `ENOTSUPP`: kernel-internal (include/linux/errno.h), which BPF returns to user space at
/// times; libc and nix do not name it.
pub const ENOTSUPP: i32 = 524;

/// `"EPERM"` for 1 or -1; `None` for 0 and numbers without a name.
pub fn symbol(errno: i32) -> Option<String> {
    let e = errno.checked_abs()?;
    if e == ENOTSUPP {
        return Some("ENOTSUPP".into());
    }
    match Errno::from_raw(e) {
        Errno::UnknownErrno => None,
        known => Some(format!("{known:?}")),
    }
}

/// `"EBADF"`, `"-EBADF"` for a negative errno, `"errno 600"` for a number without a name.
pub fn signed_name(errno: i32) -> String {
    match symbol(errno) {
        Some(name) if errno < 0 => format!("-{name}"),
        Some(name) => name,
        None => format!("errno {errno}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_nix_and_aliases_use_the_main_name() {
        assert_eq!(symbol(libc::EPERM).as_deref(), Some("EPERM"));
        assert_eq!(symbol(-libc::EBADF).as_deref(), Some("EBADF"));
        assert_eq!(symbol(libc::EWOULDBLOCK).as_deref(), Some("EAGAIN"));
        assert_eq!(symbol(libc::ENOTSUP).as_deref(), Some("EOPNOTSUPP"));
        assert_eq!(symbol(ENOTSUPP).as_deref(), Some("ENOTSUPP"));
        assert_eq!(symbol(0), None);
        assert_eq!(symbol(4000), None);
        assert_eq!(symbol(i32::MIN), None);
        assert_eq!(signed_name(-libc::ESRCH), "-ESRCH");
        assert_eq!(signed_name(libc::ENOSPC), "ENOSPC");
        assert_eq!(signed_name(-4000), "errno -4000");
    }
}

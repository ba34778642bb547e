//! Results: a case's verdict and notes, the rendered `PASS`/`FAIL`/`SKIP` block, and the
//! errno names and log context that failure reports carry.

use std::fmt::Write as _;
use std::time::Duration;

use super::matching::tail;

/// Outcome of one case.
#[derive(Debug)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// Not run, with the reason. Never counts as a pass.
    Skip(String),
}

#[derive(Debug)]
pub struct CaseReport {
    pub verdict: Verdict,
    /// Short lines on what was checked (shown for passes too).
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

impl CaseReport {
    /// Human-readable result block.
    pub fn render(&self, name: &str) -> String {
        let (word, detail) = match &self.verdict {
            Verdict::Pass => ("PASS", None),
            Verdict::Fail(d) => ("FAIL", Some(d.as_str())),
            Verdict::Skip(d) => ("SKIP", Some(d.as_str())),
        };
        let mut s = format!("{word} {name} ({:.2}s)", self.elapsed.as_secs_f64());
        for n in &self.notes {
            let _ = write!(s, "\n    {n}");
        }
        if let Some(d) = detail {
            for l in d.lines() {
                let _ = write!(s, "\n    {l}");
            }
        }
        s
    }
}

/// The symbolic name of an errno a BPF load can return, if it is one of those.
fn errno_symbol(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::ETIME => "ETIME",
        libc::EPROTO => "EPROTO",
        libc::EBADMSG => "EBADMSG",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ECANCELED => "ECANCELED",
        libc::EOWNERDEAD => "EOWNERDEAD",
        // Kernel-internal (include/linux/errno.h), which BPF returns to user space at times.
        524 => "ENOTSUPP",
        _ => return None,
    })
}

/// `EPERM (1: Operation not permitted)`; `errno 600 (Unknown error 600)` for a number
/// without a name here.
pub fn errno_name(e: i32) -> String {
    let text = std::io::Error::from_raw_os_error(e).to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    match errno_symbol(e) {
        Some(sym) => format!("{sym} ({e}: {text})"),
        None => format!("errno {e} ({text})"),
    }
}

/// libbpf's messages and the end of the verifier log, for a report about a failed load.
pub fn load_failure_context(libbpf: &str, log: &str) -> String {
    let libbpf = libbpf.trim_end();
    let mut out = if libbpf.is_empty() {
        "libbpf: (no messages)\n".to_string()
    } else {
        format!("libbpf:\n{libbpf}\n")
    };
    if log.trim().is_empty() {
        out.push_str(
            "verifier log: empty (nothing from the verifier: the kernel refused the program \
             before the verifier ran, or libbpf failed before the program reached the kernel)",
        );
    } else {
        let _ = write!(out, "last 30 lines of the verifier log:\n{}", tail(log, 30));
    }
    out
}

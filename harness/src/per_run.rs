//! Work done once per nextest run and shared by its test processes.
//!
//! nextest runs every test in its own process, all with the same `NEXTEST_RUN_ID`. What does
//! not change during a run (a batch guest's output, where this checkout's kernels are) is
//! computed by the first process that needs it, under a lock the others wait on, and saved in
//! a file named after the key and the run; the others read the file. Nothing carries over to
//! another run. Without nextest (`cargo test`, one process) the work is simply done.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file `key`'s result of run `run_id` is saved in (extension added by the caller).
fn run_file(key: &str, run_id: &str) -> PathBuf {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    std::env::temp_dir().join(format!("crib-{}-{}", safe(key), safe(run_id)))
}

/// Open (creating it) and exclusively `flock` the file at `path`, waiting for another holder;
/// the lock goes with the returned value. For "one process computes, the others wait and read".
pub fn lock_exclusive(path: &Path) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))
}

/// `compute()`'s text, once per nextest run (see the module docs). A failed `compute()` is
/// returned and not saved (the next process tries again). `lock_err` turns a failure to take
/// the run's lock into the caller's error.
pub fn once<E>(
    key: &str,
    compute: impl FnOnce() -> Result<String, E>,
    lock_err: impl FnOnce(String) -> E,
) -> Result<String, E> {
    let run_id = std::env::var("NEXTEST_RUN_ID")
        .ok()
        .filter(|id| !id.is_empty());
    once_in(run_id.as_deref(), key, compute, lock_err)
}

fn once_in<E>(
    run_id: Option<&str>,
    key: &str,
    compute: impl FnOnce() -> Result<String, E>,
    lock_err: impl FnOnce(String) -> E,
) -> Result<String, E> {
    let Some(base) = run_id.map(|r| run_file(key, r)) else {
        return compute();
    };
    let lock_path = base.with_extension("lock");
    let res_path = base.with_extension("results");
    // Released when `_lock` is dropped, at the end of this function.
    let _lock = match lock_exclusive(&lock_path) {
        Ok(l) => l,
        Err(e) => return Err(lock_err(format!("lock {}: {e}", lock_path.display()))),
    };
    if let Ok(t) = std::fs::read_to_string(&res_path) {
        return Ok(t);
    }
    let text = compute()?;
    let tmp = res_path.with_extension("tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &res_path));
    if let Err(e) = written {
        log::warn!(
            "cannot save this run's {key} to {}: {e} (each test will redo it)",
            res_path.display()
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// One process plays two tests of the same run: the second gets the first one's text
    /// without computing, a failure is not saved, another run and no run compute again.
    #[test]
    fn computed_once_per_run_and_failures_are_not_kept() {
        let run = format!("unit-{}", std::process::id());
        let next = format!("{run}-next");
        let calls = Cell::new(0);
        let compute = |t: &str| {
            calls.set(calls.get() + 1);
            Ok::<_, String>(t.to_string())
        };
        let key = "per-run-test";
        let once =
            |r: Option<&str>, f: &dyn Fn() -> Result<String, String>| once_in(r, key, f, |e| e);
        assert_eq!(
            once(Some(&run), &|| Err("boom".into())).unwrap_err(),
            "boom"
        );
        assert_eq!(once(Some(&run), &|| compute("first")).unwrap(), "first");
        assert_eq!(once(Some(&run), &|| compute("second")).unwrap(), "first");
        assert_eq!(calls.get(), 1);
        assert_eq!(once(Some(&next), &|| compute("third")).unwrap(), "third");
        assert_eq!(once(None, &|| compute("fourth")).unwrap(), "fourth");
        assert_eq!(calls.get(), 3);
        for r in [&run, &next] {
            let b = run_file(key, r);
            std::fs::remove_file(b.with_extension("results")).ok();
            std::fs::remove_file(b.with_extension("lock")).ok();
        }
    }
}

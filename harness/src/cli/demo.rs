//! `crib demo`: the main job `scripts/setup` runs in each freshly booted kernel.

use std::os::fd::AsRawFd;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{dump, hello, truth, vm};

/// (In a guest) the main job scripts/setup runs in each kernel
///
/// Checks the CRIB kfuncs with the hello program, dumps this process's own fd table and
/// compares every field with procfs.
///
/// Exit 0 only if everything matched.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DemoArgs {}

/// Run `crib demo`.
pub fn run(_: &DemoArgs) -> Result<i32> {
    if !vm::in_guest() {
        bail!(
            "crib demo loads BPF programs that need the CRIB kernel: run it in a guest, \
             e.g. scripts/vm --kernel stock -- target/debug/crib demo"
        );
    }
    let uname = nix::sys::utsname::uname().context("uname")?;
    let flavor = crate::settings::get()
        .flavor
        .clone()
        .unwrap_or_else(|| "?".into());
    println!(
        "crib demo: {flavor} kernel {}",
        uname.release().to_string_lossy()
    );

    let me = std::process::id();
    let h = hello::run(u64::from(me)).context("running the hello program")?;
    println!(
        "  hello: bpf_fget_task() found inode {} of {}, run by pid {} tgid {} uid {} comm {:?}",
        h.ino,
        hello::FILE,
        h.pid,
        h.tgid,
        h.uid,
        h.comm()
    );
    if h.tgid != me {
        bail!("hello record says tgid {}, this process is {me}", h.tgid);
    }

    // A few files of different kinds, so the dump has something to show.
    let dir = tempfile::tempdir_in("/tmp").context("temp dir in /tmp")?;
    let mut f = std::fs::File::create(dir.path().join("data")).context("creating a file")?;
    std::io::Write::write_all(&mut f, b"checkpoint me").context("writing the file")?;
    let (r, w) = nix::unistd::pipe().context("pipe")?;
    let (s1, s2) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    let keep = [
        f.as_raw_fd(),
        r.as_raw_fd(),
        w.as_raw_fd(),
        s1.as_raw_fd(),
        s2.as_raw_fd(),
    ];

    let dumper = dump::Dumper::load().context("loading the dump program")?;
    let t = Instant::now();
    let recs = dumper
        .dump(me as i32)
        .context("dumping this process's file table")?;
    let dump_time = t.elapsed();
    let t = Instant::now();
    let table = truth::read_fd_table(me as i32).context("reading /proc/self/fd")?;
    let proc_time = t.elapsed();

    let mut mismatches = Vec::new();
    for rec in &recs {
        println!("  {}", dump::format_line(rec));
        // The dump's own objects (the program's fds, the ring buffer) may come and go between
        // the dump and the procfs read; the files made above must be there and match.
        match table.get(&rec.fd) {
            Some(t) => mismatches.extend(truth::compare(rec, t)),
            None if keep.contains(&(rec.fd as i32)) => {
                bail!("fd {} was dumped but is not in /proc/self/fd", rec.fd)
            }
            None => {}
        }
    }
    for fd in keep {
        if !recs.iter().any(|r| r.fd as i32 == fd) {
            bail!("fd {fd} is open but the dump does not list it");
        }
    }
    if !mismatches.is_empty() {
        for m in &mismatches {
            log::error!("MISMATCH {m}");
        }
        bail!("{} field(s) differ from procfs", mismatches.len());
    }
    // A small table's fixed cost, side by side: the loaded program's dump (one BPF_PROG_RUN,
    // ring buffer drain, decode) against the procfs walk of the same table, interleaved.
    const ROUNDS: usize = 21;
    let (mut crib_us, mut proc_us, mut open_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let open = dumper.program().reader_open_close_cost()?;
        open_us.push(open.as_secs_f64() * 1e6);
        let t = Instant::now();
        dumper
            .dump(me as i32)
            .context("dumping this process's file table")?;
        crib_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        truth::read_fd_table(me as i32).context("reading /proc/self/fd")?;
        proc_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (crib_med, proc_med) = (median_of(&mut crib_us), median_of(&mut proc_us));
    let open_med = median_of(&mut open_us);
    println!(
        "  dump: {} fds, every field matches procfs (first dump {:?}, first procfs walk {:?})",
        recs.len(),
        dump_time,
        proc_time
    );
    println!(
        "  small-table cost, median of {ROUNDS} interleaved: CRIB {crib_med:.0} us, procfs \
         walk {proc_med:.0} us (procfs/CRIB {:.2}); opening and closing a ring buffer \
         reader {open_med:.0} us (kept open now; every dump used to do it twice); \
         informational, see the benchmarks",
        proc_med / crib_med
    );
    drop((r, w, s1, s2));
    Ok(0)
}

/// Median of `v` (sorted in place); NaN for an empty slice.
pub fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

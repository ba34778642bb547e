//! `crib demo`: the main job `scripts/setup` runs in each freshly booted kernel, and the demo
//! process it ends with (also what `tests/dump_tool.rs` dumps).

use std::io::{Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use crate::{dump, hello, truth, vm};

/// (In a guest) the main job scripts/setup runs in each kernel
///
/// Checks the CRIB kfuncs with the hello program, dumps this process's own fd table and
/// compares every field with procfs, then dumps a demo process holding regular and deleted
/// files, a pipe, unix, TCP and UDP sockets with queued bytes and an eventfd the way
/// `crib dump` does, prints the table and checks it against procfs and readlink.
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

    // What `crib dump --pid N` shows of a process that holds a bit of everything.
    let demo = DemoProcess::spawn(dir.path()).context("starting the demo process")?;
    let report = super::dump::collect(demo.pid())
        .with_context(|| format!("crib dump --pid {}", demo.pid()))?;
    let truth = truth::read_fd_table(demo.pid()).context("reading the demo's /proc/<pid>/fd")?;
    println!(
        "  crib dump --pid {} (the demo process: {}):",
        demo.pid(),
        DemoProcess::HOLDS
    );
    for line in report.table().lines() {
        println!("    {line}");
    }
    let mismatches = report.mismatches_with(&truth);
    if !mismatches.is_empty() {
        for m in &mismatches {
            log::error!("MISMATCH {m}");
        }
        bail!(
            "{} field(s) of the demo's dump differ from procfs and readlink",
            mismatches.len()
        );
    }
    println!(
        "  demo dump: {} fds; paths match readlink, mnt_id/flags/pos/ino match fdinfo",
        report.files.len()
    );
    Ok(0)
}

/// A child process (`sleep`) that holds a bit of everything, for `crib dump` to show: a
/// regular file at offset 5, a deleted file, a pipe with bytes in it (both ends), a unix
/// stream pair with 11 bytes queued, a TCP listener and a connection over 127.0.0.1 with 5
/// bytes queued each way, a UDP socket with one datagram
/// queued to itself, and an eventfd. Killed and reaped on drop.
pub struct DemoProcess {
    child: Child,
}

impl DemoProcess {
    /// What the demo holds, for people.
    pub const HOLDS: &'static str = "a regular and a deleted file, a pipe, unix, TCP and UDP \
                                     sockets with queued bytes, an eventfd";
    /// Bytes queued in the unix pair, in the TCP connection (each way) and on the UDP socket.
    pub const UNIX_QUEUED: usize = 11;
    pub const TCP_QUEUED: usize = 5;
    pub const UDP_QUEUED: usize = 7;

    /// Make the files in `dir` (a tmpfs: the guest's /tmp) and start the child with them.
    pub fn spawn(dir: &Path) -> Result<DemoProcess> {
        let mut held: Vec<OwnedFd> = Vec::new();
        let mut f = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("demo data"))
            .context("creating the demo's file")?;
        f.write_all(b"checkpoint me").context("writing it")?;
        f.seek(SeekFrom::Start(5)).context("seeking")?;
        held.push(f.into());
        let gone = dir.join("gone");
        let g = std::fs::File::create(&gone).context("creating the file to delete")?;
        std::fs::remove_file(&gone).context("deleting it")?;
        held.push(g.into());
        let (r, w) = nix::unistd::pipe().context("pipe")?;
        nix::unistd::write(&w, b"in the pipe").context("writing into the pipe")?;
        held.extend([r, w]);
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::empty(),
        )
        .context("socketpair")?;
        nix::unistd::write(&a, &[b'u'; Self::UNIX_QUEUED]).context("writing to the pair")?;
        held.extend([a, b]);
        let listener = TcpListener::bind("127.0.0.1:0").context("TCP listen")?;
        let mut client = TcpStream::connect(listener.local_addr()?).context("TCP connect")?;
        let (mut server, _) = listener.accept().context("TCP accept")?;
        client.write_all(&[b't'; Self::TCP_QUEUED])?;
        server.write_all(&[b's'; Self::TCP_QUEUED])?;
        held.extend([listener.into(), client.into(), server.into()]);
        let udp = UdpSocket::bind("127.0.0.1:0").context("UDP bind")?;
        udp.send_to(&[b'd'; Self::UDP_QUEUED], udp.local_addr()?)
            .context("UDP send")?;
        held.push(udp.into());
        let efd = nix::sys::eventfd::EventFd::from_value(3).context("eventfd")?;
        held.push(efd.into());
        for fd in &held {
            fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
                .context("clearing FD_CLOEXEC for the child")?;
        }
        let child = Command::new("sleep")
            .arg("3600")
            .stdin(Stdio::null())
            .spawn()
            .context("starting sleep")?;
        let demo = DemoProcess { child };
        // Its fd table is final once it has exec'd sleep (comm changes with the exec).
        let t = Instant::now();
        let comm = format!("/proc/{}/comm", demo.pid());
        while std::fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
            // Minutes, not seconds, on a loaded TCG host.
            if t.elapsed() > std::time::Duration::from_secs(60) {
                bail!("the demo process did not exec sleep within 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(held);
        Ok(demo)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

//! `crib dump` as a user runs it (issue 10, items 1-3): the `crib` binary dumps the demo
//! process of `crib demo` (regular and deleted files, a pipe, unix, TCP and UDP sockets with
//! queued bytes, an eventfd) as a table and as JSON, and both are checked against procfs: the
//! fd set, every path against `readlink /proc/<pid>/fd/<fd>`, mount id, flags, position and
//! inode against fdinfo, the queued bytes against what the demo queued. Its errors say what
//! went wrong: no such process, permission denied (to the target, to loading BPF), the CRIB
//! kfuncs unavailable (stock, after `rmmod`), a program the verifier rejects (the end of its
//! log, which names the call and the argument).
//!
//! Each test body runs in a guest (root, tmpfs on /tmp, crib_kfuncs.ko loaded on stock).

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use crib_harness::cli::demo::DemoProcess;
use crib_harness::dump::kfuncs::{self, Provider};
use crib_harness::dump::{DumpError, RingbufProgram};
use crib_harness::kernel::Flavor;
use crib_harness::test_support;
use crib_harness::truth::{self, FdTruth};
use crib_harness::vm::{current_test_name, guest_test as run};
use rstest::rstest;
use serde_json::Value;

const CRIB: &str = env!("CARGO_BIN_EXE_crib");

fn crib(args: &[&str]) -> Result<Output> {
    Command::new(CRIB)
        .args(args)
        .output()
        .with_context(|| format!("running {CRIB} {args:?}"))
}

/// `cmd` must exit `code`; its stderr is returned.
fn expect_exit(out: &Output, code: i32, what: &str) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(code),
        "{what}: exit {:?}, expected {code}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(stderr)
}

/// Compare one fd's dumped fields with procfs; the first difference is an error.
fn check_fd(
    fd: u32,
    t: &FdTruth,
    path: &str,
    flags: u64,
    pos: u64,
    mnt_id: u64,
    ino: u64,
) -> Result<()> {
    ensure!(
        path == t.link,
        "fd {fd}: path {path:?}, readlink says {:?}",
        t.link
    );
    ensure!(
        flags == u64::from(t.flags),
        "fd {fd}: flags 0{flags:o}, fdinfo says 0{:o}",
        t.flags
    );
    ensure!(pos == t.pos, "fd {fd}: pos {pos}, fdinfo says {}", t.pos);
    ensure!(
        mnt_id == t.mnt_id,
        "fd {fd}: mnt_id {mnt_id}, fdinfo says {}",
        t.mnt_id
    );
    ensure!(
        ino == t.fdinfo_ino,
        "fd {fd}: ino {ino}, fdinfo says {}",
        t.fdinfo_ino
    );
    Ok(())
}

fn json_dump(pid: i32, truth: &BTreeMap<u32, FdTruth>) -> Result<Vec<Value>> {
    let out = crib(&["dump", "--pid", &pid.to_string(), "--format", "json"])?;
    expect_exit(&out, 0, "crib dump --format json")?;
    let v: Value = serde_json::from_slice(&out.stdout).context("crib dump's JSON")?;
    ensure!(v["schema"] == "crib-dump", "schema: {}", v["schema"]);
    ensure!(v["version"] == 1, "version: {}", v["version"]);
    ensure!(v["pid"] == pid, "pid: {}", v["pid"]);
    let files = v["files"]
        .as_array()
        .context("files is not an array")?
        .clone();
    let fds: Vec<u64> = files.iter().filter_map(|f| f["fd"].as_u64()).collect();
    let listed: Vec<u64> = truth.keys().map(|&fd| u64::from(fd)).collect();
    ensure!(
        fds == listed,
        "JSON fds {fds:?}, /proc/{pid}/fd lists {listed:?}"
    );
    let num = |f: &Value, k: &str| f[k].as_u64().with_context(|| format!("{k} in {f}"));
    for f in &files {
        let fd = num(f, "fd")? as u32;
        let path = f["path"].as_str().with_context(|| format!("path in {f}"))?;
        check_fd(
            fd,
            &truth[&fd],
            path,
            num(f, "flags")?,
            num(f, "pos")?,
            num(f, "mnt_id")?,
            num(f, "ino")?,
        )?;
    }
    Ok(files)
}

/// One line of the table: the nine columns before NAME, and NAME.
struct Row {
    fd: u32,
    flags: u64,
    pos: u64,
    mnt_id: u64,
    ino: u64,
    recv_q: Option<u64>,
    name: String,
}

fn parse_row(line: &str) -> Result<Row> {
    let mut cols = Vec::new();
    let mut rest = line.trim_start();
    for _ in 0..9 {
        let end = rest
            .find(' ')
            .with_context(|| format!("short line {line:?}"))?;
        cols.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    let n = |s: &str| {
        s.parse::<u64>()
            .with_context(|| format!("{s:?} in {line:?}"))
    };
    Ok(Row {
        fd: n(cols[0])? as u32,
        flags: u64::from_str_radix(cols[2].trim_start_matches('0'), 8).unwrap_or(0),
        pos: n(cols[4])?,
        mnt_id: n(cols[5])?,
        ino: n(cols[6])?,
        recv_q: n(cols[7]).ok(),
        name: rest.to_string(),
    })
}

fn table_dump(pid: i32, truth: &BTreeMap<u32, FdTruth>) -> Result<Vec<Row>> {
    let out = crib(&["dump", "--pid", &pid.to_string()])?;
    expect_exit(&out, 0, "crib dump")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    let mut lines = text.lines();
    let header = lines.next().context("empty table")?;
    ensure!(
        header.split_whitespace().collect::<Vec<_>>()
            == [
                "FD", "KIND", "FLAGS", "MODE", "POS", "MNT_ID", "INODE", "RECV-Q", "SEND-Q", "NAME"
            ],
        "header {header:?}"
    );
    let rows = lines.map(parse_row).collect::<Result<Vec<_>>>()?;
    let fds: Vec<u32> = rows.iter().map(|r| r.fd).collect();
    let listed: Vec<u32> = truth.keys().copied().collect();
    ensure!(
        fds == listed,
        "table fds {fds:?}, /proc/{pid}/fd lists {listed:?}"
    );
    for r in &rows {
        let t = &truth[&r.fd];
        // NAME is the path, then for sockets protocol, endpoints and state.
        let path = if r.name.starts_with("socket:[") {
            r.name.split(' ').next().unwrap_or_default()
        } else {
            r.name.as_str()
        };
        check_fd(r.fd, t, path, r.flags, r.pos, r.mnt_id, r.ino)?;
    }
    Ok(rows)
}

/// Every kernel this suite builds has `bpf_iter_task_file_get_path()` (kfuncs/ and the series
/// carry it). On one that lacks it (a kernel built elsewhere from an older series), `crib dump`
/// must fail with the message that says so, and the test fails too, saying why: the table
/// and the other errors cannot be checked there, and a test that did not check them must not
/// pass.
fn require_path_kfunc(flavor: Flavor, pid: i32) -> Result<()> {
    if kfuncs::has(kfuncs::PATH_KFUNC) {
        return Ok(());
    }
    let err = expect_exit(
        &crib(&["dump", "--pid", &pid.to_string()])?,
        1,
        "crib dump without the path kfunc",
    )?;
    ensure!(
        err.contains("lack bpf_iter_task_file_get_path()"),
        "{flavor}: without the path kfunc, crib dump said: {err}"
    );
    bail!(
        "this {flavor} kernel has no {} (its CRIB kfuncs predate it): crib dump fails as it \
         should ({}), but nothing else could be checked; rebuild the kernel from this tree \
         (scripts/build)",
        kfuncs::PATH_KFUNC,
        err.trim()
    )
}

fn table_and_json(flavor: Flavor) -> Result<()> {
    let dir = tempfile::tempdir_in("/tmp")?;
    let demo = DemoProcess::spawn(dir.path())?;
    let pid = demo.pid();
    require_path_kfunc(flavor, pid)?;
    let truth = truth::read_fd_table(pid)?;
    let files = json_dump(pid, &truth)?;
    let rows = table_dump(pid, &truth)?;

    // Every kind the demo holds, as readlink shows it.
    let paths: Vec<&str> = files.iter().filter_map(|f| f["path"].as_str()).collect();
    let data = dir.path().join("demo data");
    let gone = format!("{} (deleted)", dir.path().join("gone").display());
    for (what, found) in [
        (
            "the regular file at offset 5",
            files
                .iter()
                .any(|f| f["path"] == data.to_string_lossy().as_ref() && f["pos"] == 5),
        ),
        ("the deleted file", paths.contains(&gone.as_str())),
        (
            "both ends of the pipe",
            // Only the demo's own fds: its stdio may be pipes too (the direct backend's are).
            files
                .iter()
                .filter(|f| f["fd"].as_i64() >= Some(3))
                .filter(|f| f["path"].as_str().is_some_and(|p| p.starts_with("pipe:[")))
                .count()
                == 2,
        ),
        (
            "the eventfd",
            paths.contains(&"anon_inode:[eventfd]")
                && files.iter().any(|f| f["anon_name"] == "[eventfd]"),
        ),
        (
            "six sockets",
            paths.iter().filter(|p| p.starts_with("socket:[")).count() == 6,
        ),
    ] {
        ensure!(found, "{flavor}: the dump does not show {what}: {paths:?}");
    }

    // Sockets: endpoints, states and the bytes the demo queued.
    let socks: Vec<&Value> = files
        .iter()
        .map(|f| &f["socket"])
        .filter(|s| s.is_object())
        .collect();
    let with = |family: &str, ty: &str| -> Vec<&Value> {
        socks
            .iter()
            .copied()
            .filter(|s| s["family"] == family && s["type"] == ty)
            .collect()
    };
    let unix = with("unix", "stream");
    let unix_q: Vec<u64> = unix.iter().filter_map(|s| s["recv_q"].as_u64()).collect();
    ensure!(
        unix.len() == 2 && unix_q.contains(&(DemoProcess::UNIX_QUEUED as u64)),
        "unix pair: {unix:?}"
    );
    let tcp = with("inet", "stream");
    let listen: Vec<&&Value> = tcp.iter().filter(|s| s["state"] == "LISTEN").collect();
    let est: Vec<&&Value> = tcp.iter().filter(|s| s["state"] == "ESTABLISHED").collect();
    ensure!(
        listen.len() == 1 && est.len() == 2,
        "TCP: one listener and two established sockets expected: {tcp:?}"
    );
    ensure!(
        est[0]["local"] == est[1]["remote"] && est[1]["local"] == est[0]["remote"],
        "TCP endpoints do not mirror each other: {est:?}"
    );
    ensure!(
        est.iter().any(|s| s["local"] == listen[0]["local"]),
        "no accepted socket on the listener's address: {tcp:?}"
    );
    for s in &est {
        ensure!(
            s["recv_q"] == DemoProcess::TCP_QUEUED as u64
                && s["queues"]["tcp-recv"]["bytes"] == DemoProcess::TCP_QUEUED as u64,
            "TCP socket without the {} bytes the peer sent: {s}",
            DemoProcess::TCP_QUEUED
        );
    }
    let udp = with("inet", "dgram");
    ensure!(
        udp.len() == 1 && udp[0]["recv_q"] == DemoProcess::UDP_QUEUED as u64,
        "UDP socket without its {}-byte datagram: {udp:?}",
        DemoProcess::UDP_QUEUED
    );
    // The table shows the same queues and endpoints.
    let tcp_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.name.contains(" TCP 127.0.0.1:") && r.name.ends_with("(ESTABLISHED)"))
        .collect();
    ensure!(
        tcp_rows.len() == 2
            && tcp_rows
                .iter()
                .all(|r| r.recv_q == Some(DemoProcess::TCP_QUEUED as u64)),
        "table: TCP rows {:?}",
        tcp_rows.iter().map(|r| &r.name).collect::<Vec<_>>()
    );
    println!(
        "{flavor}: crib dump of the demo (pid {pid}, {} fds): table and JSON match procfs and \
         readlink",
        files.len()
    );
    Ok(())
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn crib_dump_table_and_json_match_procfs(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), table_and_json);
}

// ---------------------------------------------------------------------------------------------
// Errors

fn errors(flavor: Flavor) -> Result<()> {
    require_path_kfunc(flavor, 1)?;
    // No such process.
    let pid = test_support::free_pid()?;
    let err = expect_exit(
        &crib(&["dump", "--pid", &pid.to_string()])?,
        1,
        "missing pid",
    )?;
    ensure!(
        err.contains(&format!("no process with pid {pid} in this pid namespace")),
        "missing pid: {err}"
    );
    println!("no such process: {}", err.trim());

    // Permission denied: root without CAP_SYS_PTRACE, on a process of another user.
    let mut target = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sleep",
            "60",
        ])
        .spawn()
        .context("starting a target as uid 65534")?;
    let tpid = target.id().to_string();
    let t = Instant::now();
    while std::fs::read_to_string(format!("/proc/{tpid}/comm"))?.trim() != "sleep" {
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "the target did not exec sleep within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = Command::new("setpriv")
        .args([
            "--inh-caps=-sys_ptrace",
            "--bounding-set=-sys_ptrace",
            CRIB,
            "dump",
            "--pid",
            &tpid,
        ])
        .output()?;
    let _ = target.kill();
    let _ = target.wait();
    let err = expect_exit(&out, 1, "dump without CAP_SYS_PTRACE")?;
    ensure!(
        err.contains("permission denied") && err.contains(&format!("pid {tpid}")),
        "without CAP_SYS_PTRACE: {err}"
    );
    println!("permission denied (target): {}", err.trim());

    // Permission denied: a user who may not load BPF programs.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            CRIB,
            "dump",
            "--pid",
            "1",
        ])
        .output()?;
    let err = expect_exit(&out, 1, "dump as nobody")?;
    ensure!(
        err.contains("permission denied") && err.contains("CAP_BPF"),
        "as nobody: {err}"
    );
    println!(
        "permission denied (loading): {}",
        err.lines().next().unwrap_or("")
    );

    // A program the verifier rejects: the error carries the end of the verifier log.
    let obj = std::path::Path::new(crib_harness::BPF_DIR).join("task_file_failure.bpf.o");
    match RingbufProgram::load(&obj, "tf_get_path_null_buf", "records") {
        Err(e @ DumpError::Rejected { .. }) => {
            let msg = e.to_string();
            ensure!(
                msg.contains("failed to load")
                    && msg.contains("verifier log")
                    && msg.contains("R2")
                    && msg.contains("bpf_iter_task_file_get_path"),
                "rejection: {msg}"
            );
            println!(
                "program failed to load: {}",
                msg.lines().next().unwrap_or("")
            );
        }
        Err(e) => bail!("expected a verifier rejection, got: {e}"),
        Ok(_) => bail!("tf_get_path_null_buf loaded"),
    }

    // The kfuncs unavailable: only a stock kernel can lose them (rmmod).
    match (flavor, kfuncs::provider()) {
        (Flavor::Patched, Ok(Provider::BuiltIn)) => {
            println!(
                "patched: the kfuncs are built in; the unavailable case needs the stock kernel"
            )
        }
        (Flavor::Stock, Ok(Provider::Module)) => {
            test_support::rmmod_kfuncs()?;
            let err = expect_exit(
                &crib(&["dump", "--pid", "1"])?,
                1,
                "dump without the module",
            )?;
            ensure!(
                err.contains("the CRIB kfuncs are not available")
                    && err.contains("insmod")
                    && err.contains("--kernel patched"),
                "without the module: {err}"
            );
            println!("kfuncs unavailable: {}", err.trim());
        }
        (f, p) => bail!("{f} kernel: kfuncs {p:?}"),
    }
    Ok(())
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn crib_dump_errors_say_what_went_wrong(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), errors);
}

//! The fd-dump benchmark (`crib bench-fds`, `harness/src/fd_bench/`) at a small size: 1,000 fds,
//! 2 rounds, in a guest of each kernel. `fd_bench::run` fails unless CRIB, iter/task_file, the
//! procfs walk and lsof agree field by field before timing and every timed run gives its
//! method's table again; here, on top, the JSON it wrote must parse and say so, the PNG must be
//! a PNG, and a table with one field changed must fail the comparison, naming the fd and field.
//!
//! Correctness only: no timing is checked (a TCG guest on a shared host says nothing a test
//! could rely on). Each test boots a guest of its flavor; the body runs there.

use anyhow::{ensure, Context, Result};
use crib_harness::fd_bench::{self, crib::Crib, procfs, row, table::FdTable, Method, Options};
use crib_harness::kernel::Flavor;
use crib_harness::target::Tmpfs;
use crib_harness::vm::{current_test_name, guest_test};
use rstest::rstest;
use serde_json::Value;

const FDS: u32 = 1_000;

fn body(_flavor: Flavor) -> Result<()> {
    let out = tempfile::tempdir()?;
    let (json, png) = (out.path().join("fds.json"), out.path().join("fds.png"));
    let opts = Options {
        sizes: vec![FDS],
        rounds: 2,
        json: Some(json.clone()),
        plot: Some(png.clone()),
    };
    let report = fd_bench::run(&opts, &mut |m| eprintln!("[bench-fds] {m}"))?;
    print!("{}", report.render());

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)
        .with_context(|| format!("{} is not JSON", json.display()))?;
    ensure!(
        doc["schema"] == "crib-bench-fds/1",
        "schema: {}",
        doc["schema"]
    );
    let size = &doc["sizes"][0];
    ensure!(size["fds"] == FDS, "sizes[0].fds: {}", size["fds"]);
    let table_fds = size["table_fds"].as_u64().context("table_fds")?;
    ensure!(table_fds >= u64::from(FDS) + 2, "table_fds {table_fds}");
    let methods = size["methods"].as_array().context("methods")?;
    let names: Vec<&str> = methods
        .iter()
        .filter_map(|m| m["method"].as_str())
        .collect();
    ensure!(
        names == ["crib", "iter_task_file", "procfs", "lsof"],
        "methods {names:?}"
    );
    for m in methods {
        let runs = m["runs_ms"].as_array().context("runs_ms")?;
        ensure!(runs.len() == 2, "{}: {} runs", m["method"], runs.len());
        ensure!(
            m["min_ms"].as_f64().is_some_and(|v| v > 0.0)
                && m["syscalls"]["total"].as_u64().is_some_and(|v| v > 0),
            "{}: no time or no system calls: {m}",
            m["method"]
        );
    }
    // Every other method was compared with CRIB on every fd for the fields it has.
    for (method, fields) in [
        (
            "iter_task_file",
            &["kind", "flags", "pos", "mnt_id", "ino", "path"][..],
        ),
        (
            "procfs",
            &["kind", "flags", "pos", "mnt_id", "ino", "path"][..],
        ),
        ("lsof", &["kind", "flags", "pos", "ino"][..]),
    ] {
        for f in fields {
            let n = size["compared"][method][f].as_u64().unwrap_or(0);
            ensure!(
                n == table_fds,
                "{method}: {f} compared on {n} of {table_fds} fds"
            );
        }
    }
    // lsof has paths for the files and eventfds, not for pipes and sockets
    let lsof_paths = size["compared"]["lsof"]["path"].as_u64().unwrap_or(0);
    ensure!(
        lsof_paths >= u64::from(FDS / 2),
        "lsof: path compared on {lsof_paths} fds"
    );
    let head = std::fs::read(&png)?;
    ensure!(
        head.len() > 1000 && head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG ({} bytes)",
        png.display(),
        head.len()
    );
    ensure!(
        doc["plot"]["path"].as_str().is_some(),
        "no plot in the JSON"
    );
    println!(
        "bench-fds: JSON {} and PNG {} ({} bytes) written",
        json.display(),
        png.display(),
        head.len()
    );

    // The comparison catches one changed field of a real table.
    let fs = Tmpfs::mount()?;
    let t = FdTable::spawn(fs.path(), 64)?;
    let crib = Crib::load()?.dump(t.pid())?;
    let mut walk = procfs::walk(t.pid())?;
    row::compare(Method::Crib, &crib, Method::Procfs, &walk)?;
    let victim = walk.iter_mut().find(|r| r.fd == 40).context("no fd 40")?;
    victim.pos = victim.pos.map(|p| p + 1);
    let err = row::compare(Method::Crib, &crib, Method::Procfs, &walk)
        .err()
        .context("a changed pos went unnoticed")?
        .to_string();
    ensure!(err.starts_with("fd 40: pos: CRIB says"), "{err}");
    t.stop()?;
    fs.umount()?;
    Ok(())
}

/// `bench_fds_methods_agree::case_1_stock` and `::case_2_patched`.
#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn bench_fds_methods_agree(#[case] flavor: Flavor) {
    guest_test(flavor, &current_test_name(), body);
}

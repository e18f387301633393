//! Smoke test of the side-by-side benchmark script `perf/compare.sh`.
//!
//! Goal: the script runs end to end on a CI machine and its tandem table has
//! real figures: every (mode, load, clients) row of the tandem section
//! (primary alone at `local`, primary with one synchronous standby at `on`
//! and `remote_apply`; tpcb and simple-update; 1 and 8 clients) reports
//! tps > 0, the run finishes in bounded time and leaves no process behind
//! (none whose command line names the temp dir the script ran in).
//!
//! Method: runs `SMOKE=1 SECTIONS=tandem perf/compare.sh` (2 s runs; only the
//! tandem section, so neither PostgreSQL nor Redis is installed or needed)
//! with `BIN_DIR` pointing at the binaries cargo built for this test run (a
//! nested `cargo build` would wait on the build-directory lock the running
//! `cargo test` holds). The child is killed if it exceeds a time bound.
//! Its stdout (the markdown report) is parsed for the tandem table rows.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The smoke runs 12 two-second loads plus two data set loads and a standby
/// build: ~40 s on the 2-core dev machine. Generous bound for busy CI hosts.
const TIME_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn compare_sh_smoke_tandem_section_reports_tps() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tandem"))
        .parent()
        .expect("binary dir")
        .to_path_buf();
    assert!(
        bin_dir.join("fsync-probe").exists() && bin_dir.join("tandem-bench").exists(),
        "tandem-bench and fsync-probe must be built next to {}",
        bin_dir.display()
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out_file = out_dir.path().join("smoke.md");
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(root.join("perf/compare.sh"))
        .current_dir(root)
        .env("SMOKE", "1")
        .env("SECTIONS", "tandem")
        .env("BIN_DIR", &bin_dir)
        .env("OUT", &out_file)
        .env("TMPDIR", out_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run perf/compare.sh");
    // Drain both pipes on threads so a full pipe never stalls the script.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIME_LIMIT {
            // SIGTERM first so the script's EXIT trap stops its servers.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
            child.kill().ok();
            child.wait().ok();
            panic!(
                "perf/compare.sh smoke exceeded {TIME_LIMIT:?}; stderr:\n{}",
                err_thread.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let stdout = out_thread.join().unwrap();
    let stderr = err_thread.join().unwrap();
    assert!(
        status.success(),
        "perf/compare.sh failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // Rows of the tandem table: | mode | load | clients | tps | p50 | p99 | ...
    let mut rows = Vec::new();
    for line in stdout.lines() {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() == 10 && ["local", "on", "remote_apply"].contains(&cells[0]) {
            let tps: f64 = cells[3]
                .parse()
                .unwrap_or_else(|_| panic!("tps cell not a number in: {line}"));
            rows.push((
                cells[0].to_string(),
                cells[1].to_string(),
                cells[2].to_string(),
                tps,
            ));
        }
    }
    for mode in ["local", "on", "remote_apply"] {
        for load in ["tpcb", "simple-update"] {
            for clients in ["1", "8"] {
                let row = rows
                    .iter()
                    .find(|r| r.0 == mode && r.1 == load && r.2 == clients)
                    .unwrap_or_else(|| {
                        panic!("no row for {mode} {load} c={clients} in:\n{stdout}")
                    });
                assert!(
                    row.3 > 0.0,
                    "tps is 0 for {mode} {load} c={clients}:\n{stdout}"
                );
            }
        }
    }
    assert_eq!(rows.len(), 12, "unexpected tandem rows:\n{stdout}");
    // The report is also written to OUT, identical to what was echoed.
    let written = std::fs::read_to_string(&out_file).expect("OUT file written");
    assert!(stdout.contains(written.trim()), "OUT differs from stdout");
    // Every server ran in a temp dir under TMPDIR: none may outlive the script.
    let marker = out_dir.path().to_string_lossy().to_string();
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&marker) {
                leftovers.push(cmdline);
            }
        }
    }
    assert!(
        leftovers.is_empty(),
        "processes left running: {leftovers:?}"
    );
    eprintln!("perf/compare.sh smoke: {} rows, {elapsed:?}", rows.len());
}

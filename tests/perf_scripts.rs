//! Smoke tests of the benchmark scripts `perf/compare.sh` (side by side
//! with other systems) and `perf/ab.sh` (two tandem builds).
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

/// Where cargo built `tandem` (and, beside it, `tandem-bench` and
/// `fsync-probe`).
fn bin_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
        .parent()
        .expect("binary dir")
        .to_path_buf()
}

#[test]
fn compare_sh_smoke_tandem_section_reports_tps() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = bin_dir();
    assert!(
        bin_dir.join("fsync-probe").exists() && bin_dir.join("tandem-bench").exists(),
        "tandem-bench and fsync-probe must be built next to {}",
        bin_dir.display()
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out_file = out_dir.path().join("smoke.md");
    let envs: [(&str, std::ffi::OsString); 4] = [
        ("SMOKE", "1".into()),
        ("SECTIONS", "tandem".into()),
        ("BIN_DIR", bin_dir.clone().into_os_string()),
        ("OUT", out_file.clone().into_os_string()),
    ];
    let (status, stdout, stderr, elapsed) =
        run_script(root, "perf/compare.sh", &envs, out_dir.path(), TIME_LIMIT);
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
    let leftovers = processes_naming(out_dir.path());
    assert!(
        leftovers.is_empty(),
        "processes left running: {leftovers:?}"
    );
    eprintln!("perf/compare.sh smoke: {} rows, {elapsed:?}", rows.len());
}

/// `perf/ab.sh` with the same build on both sides, one short round: every
/// measurement line it promises is printed with a rate above zero, and no
/// process it started outlives it.
#[test]
fn ab_sh_smoke_prints_every_measurement_for_both_builds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let envs: [(&str, std::ffi::OsString); 4] = [
        ("ROUNDS", "1".into()),
        ("T", "1".into()),
        ("N", "2000".into()),
        ("N1", "300".into()),
    ];
    let (status, stdout, stderr, elapsed) = run_script_with_args(
        root,
        "perf/ab.sh",
        &[bin_dir.as_os_str(), bin_dir.as_os_str()],
        &envs,
        tmp.path(),
        TIME_LIMIT,
    );
    assert!(
        status.success(),
        "perf/ab.sh failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for build in ["A", "B"] {
        for what in [
            "on simple-update c=1 tps=",
            "on simple-update c=64 tps=",
            "on tpcb c=64 tps=",
            "local redis-benchmark SET c=1 rps=",
            "local redis-benchmark SET c=64 rps=",
        ] {
            let prefix = format!("{build} {what}");
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{stdout}\n{stderr}"));
            let rate: f64 = line[prefix.len()..]
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no rate in {line:?}"));
            assert!(rate > 0.0, "rate is 0: {line}");
        }
    }
    let leftovers = processes_naming(tmp.path());
    assert!(
        leftovers.is_empty(),
        "processes left running: {leftovers:?}"
    );
    eprintln!("perf/ab.sh smoke: {elapsed:?}");
}

/// `perf/compare-redo.sh` in its smoke mode (tandem only, scale 1, a 2 s
/// stop, 20 MiB of WAL to crash-recover), both sections: each table has a
/// row for W=1 and W=2 with a rate above zero (catch-up: receive and apply
/// MiB/s; recovery: redo and start-to-ready MiB/s), the report is also
/// written to OUT, and no process or temp dir of the script outlives it.
#[test]
fn compare_redo_sh_smoke_reports_catchup_and_recovery_per_worker_count() {
    // ~10 s on the 2-core dev machine; generous for busy CI hosts.
    const REDO_TIME_LIMIT: Duration = Duration::from_secs(120);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = bin_dir();
    assert!(
        bin_dir.join("tandem-bench").exists(),
        "tandem-bench must be built next to {}",
        bin_dir.display()
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out_file = out_dir.path().join("redo-smoke.md");
    let envs: [(&str, std::ffi::OsString); 4] = [
        ("SMOKE", "1".into()),
        ("SECTIONS", "catchup,recovery".into()),
        ("BIN_DIR", bin_dir.clone().into_os_string()),
        ("OUT", out_file.clone().into_os_string()),
    ];
    let (status, stdout, stderr, elapsed) = run_script(
        root,
        "perf/compare-redo.sh",
        &envs,
        out_dir.path(),
        REDO_TIME_LIMIT,
    );
    assert!(
        status.success(),
        "perf/compare-redo.sh failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // Table rows per section: (heading prefix, cells per row, the MiB/s
    // columns that must be > 0).
    let tables: [(&str, usize, &[usize]); 2] = [
        // | system | W | transactions | load tps | backlog MiB | received s
        // | receive MiB/s | flushed s | applied s | apply MiB/s | ...
        ("## Catch-up", 14, &[6, 9]),
        // | system | W | transactions | WAL MiB redone | redo s | redo MiB/s
        // | redo tx/s | checkpoint s | start to ready s | start to ready MiB/s | ...
        ("## Crash recovery", 13, &[5, 9]),
    ];
    for (heading, width, rate_cols) in tables {
        let section: Vec<&str> = stdout
            .lines()
            .skip_while(|l| !l.starts_with(heading))
            .skip(1)
            .take_while(|l| !l.starts_with("## "))
            .collect();
        assert!(!section.is_empty(), "no {heading:?} section in:\n{stdout}");
        let rows: Vec<Vec<&str>> = section
            .iter()
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect::<Vec<_>>()
            })
            .filter(|cells| cells.len() == width && cells[0] == "tandem")
            .collect();
        for w in ["1", "2"] {
            let row = rows
                .iter()
                .find(|r| r[1] == w)
                .unwrap_or_else(|| panic!("no tandem W={w} row under {heading:?} in:\n{stdout}"));
            for &c in rate_cols {
                let rate: f64 = row[c].parse().unwrap_or_else(|_| {
                    panic!("column {c} not a number in {row:?} under {heading:?}")
                });
                assert!(
                    rate > 0.0,
                    "rate 0 in column {c} of {row:?} under {heading:?}"
                );
            }
        }
        assert_eq!(
            rows.len(),
            2,
            "unexpected tandem rows under {heading:?}:\n{stdout}"
        );
        // W=1 is the base of the x W=1 column.
        let w1 = rows.iter().find(|r| r[1] == "1").unwrap();
        assert_eq!(
            w1[width - 3],
            "1.00",
            "x W=1 of W=1 under {heading:?}: {w1:?}"
        );
    }
    let written = std::fs::read_to_string(&out_file).expect("OUT file written");
    assert!(stdout.contains(written.trim()), "OUT differs from stdout");
    let leftovers = processes_naming(out_dir.path());
    assert!(
        leftovers.is_empty(),
        "processes left running: {leftovers:?}"
    );
    // Its temp dir is gone: only OUT is left in TMPDIR.
    let left: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "redo-smoke.md")
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    eprintln!("perf/compare-redo.sh smoke: {elapsed:?}");
}

fn run_script(
    root: &Path,
    script: &str,
    envs: &[(&str, std::ffi::OsString)],
    tmpdir: &Path,
    limit: Duration,
) -> (std::process::ExitStatus, String, String, Duration) {
    run_script_with_args(root, script, &[], envs, tmpdir, limit)
}

/// Runs `bash script args...` in `root` with `envs` and `TMPDIR=tmpdir`,
/// draining both pipes; kills it (SIGTERM first, so the script's EXIT trap
/// stops its servers) when it exceeds `limit`.
fn run_script_with_args(
    root: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, std::ffi::OsString)],
    tmpdir: &Path,
    limit: Duration,
) -> (std::process::ExitStatus, String, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(root.join(script))
        .args(args)
        .current_dir(root)
        .envs(envs.iter().map(|(k, v)| (*k, v)))
        .env("TMPDIR", tmpdir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
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
        if started.elapsed() > limit {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
            child.kill().ok();
            child.wait().ok();
            panic!(
                "{script} smoke exceeded {limit:?}; stderr:\n{}",
                err_thread.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    (
        status,
        out_thread.join().unwrap(),
        err_thread.join().unwrap(),
        elapsed,
    )
}

/// Command lines of running processes that name `dir` (every server a
/// script starts runs in a temp dir under it).
fn processes_naming(dir: &Path) -> Vec<String> {
    let marker = dir.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&marker) {
                found.push(cmdline);
            }
        }
    }
    found
}

//! Goal: a full disk makes writes fail with a "disk full" error reply, not
//! a crash or a lost write: every acknowledged key stays readable, writes
//! succeed again once space is freed, and a SIGKILL + restart (with the
//! disk full, and again afterwards) still finds every acknowledged key.
//! Method: a 40 MiB tmpfs (needs root; the test is skipped with a message
//! when mounting fails) holds the data dir and a filler file that leaves
//! about 12 MiB free; small WAL segments and data-file growth steps make
//! the node hit ENOSPC on allocation. Values of 4 KiB are written until a
//! write fails; the node is SIGKILLed and restarted while the disk is
//! still full; the filler is then deleted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{start_with_config, verify_pages, wait_until, NodeProc};
use redis::Commands;

const CONFIG: &str = "wal_segment_bytes = 1048576\n\
                      data_extend_pages = 16\n\
                      buffer_pool_bytes = 1048576\n";

/// A mounted tmpfs, unmounted on drop (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs ({}); run as root to test a full disk",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    v.resize(4096, b'a' + (i % 26) as u8);
    v
}

fn check_keys(n: &NodeProc, acked: usize) {
    let mut c = n.client();
    for i in 0..acked {
        let got: Option<Vec<u8>> = c.get(format!("key:{i:06}")).unwrap();
        assert!(got.as_deref() == Some(&value(i)[..]), "key:{i:06} wrong");
    }
}

/// Writes keys from `from` until a write fails; returns the first key not
/// acknowledged and the error text.
fn fill_until_error(c: &mut redis::Connection, from: usize) -> (usize, String) {
    for i in from..from + 100_000 {
        if let Err(e) = c.set::<_, _, ()>(format!("key:{i:06}"), value(i)) {
            return (i, e.to_string());
        }
    }
    panic!("100000 writes of 4 KiB fit in a 40 MiB tmpfs");
}

#[test]
fn full_disk_fails_writes_cleanly_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let Some(_fs) = Tmpfs::mount(&mnt, "40m") else {
        return;
    };
    let data = mnt.join("data");
    let mut n = start_with_config(&data, CONFIG, &[]);
    let filler = mnt.join("filler");
    let fill = free_bytes(&mnt).saturating_sub(12 << 20);
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();

    let mut c = n.client();
    let (acked, err) = fill_until_error(&mut c, 0);
    println!("{acked} keys acknowledged before: {err}");
    assert!(acked > 100, "only {acked} keys fit in ~12 MiB");
    assert!(err.contains("disk full"), "{err}");
    assert!(c
        .get::<_, Option<Vec<u8>>>(format!("key:{acked:06}"))
        .unwrap()
        .is_none());
    check_keys(&n, acked);
    // Still full: the next write fails the same way (or a few more fit
    // into space already allocated; they are acknowledged keys too).
    let (acked, again) = fill_until_error(&mut c, acked);
    assert!(again.contains("disk full"), "{again}");

    // A crash while the disk is full: the node recovers without free space.
    n.kill9();
    n.spawn();
    check_keys(&n, acked);
    let mut c = n.client();
    let (acked, err) = fill_until_error(&mut c, acked);
    assert!(err.contains("disk full"), "{err}");
    check_keys(&n, acked);

    std::fs::remove_file(&filler).unwrap();
    let mut next = acked;
    wait_until(Duration::from_secs(10), "writes to succeed again", || {
        let ok = c
            .set::<_, _, ()>(format!("key:{next:06}"), value(next))
            .is_ok();
        next += usize::from(ok);
        ok
    });
    for _ in 0..100 {
        let _: () = c.set(format!("key:{next:06}"), value(next)).unwrap();
        next += 1;
    }
    check_keys(&n, next);

    n.kill9();
    n.spawn();
    check_keys(&n, next);
    let mut c = n.client();
    assert_eq!(redis::cmd("DBSIZE").query::<usize>(&mut c).unwrap(), next);
    assert_eq!(n.terminate(), Some(0), "{}", n.log_text());
    let (code, out) = verify_pages(&data);
    assert_eq!(code, Some(0), "{out}");
}

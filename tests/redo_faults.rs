//! Goal (issue 12, error policy): a fault of the data stops redo for good
//! and says so, and a failed data-file fsync is final.
//! - A redo worker that cannot apply a record (failpoint
//!   `redo::workers::apply`) makes the standby report `role:needs_build`
//!   with the reason; it does not reconnect in a loop, and it serves no
//!   read from then on (its pages may be half a batch ahead).
//! - A data page that fails its checksum on a standby, read by redo for a
//!   record streamed later, does the same, naming the page.
//! - A primary whose data-file fsync fails (failpoint
//!   `engine::data_file::sync`) refuses writes with the reason
//!   (`role:fault`) and keeps serving reads; after a restart (recovery
//!   from the WAL) every write it acknowledged is there.
//!
//! Method: real nodes on loopback; failpoints set over HTTP on the metrics
//! port (builds with the `failpoints` feature, as tools/test.sh builds),
//! corruption by flipping a byte of a stopped standby's data file.

mod common;

use std::time::Duration;

use common::repl::{field, streaming_standby, wait_caught_up, wait_streaming};
use common::{wait_until, NodeProc};
use redis::Commands;

const WITHIN: Duration = Duration::from_secs(30);
const PAGE_BYTES: usize = 8192;

fn repl_info(n: &NodeProc) -> String {
    n.info("replication")
}

/// Connections the primary authenticated, from its log.
fn stream_connects(p: &NodeProc) -> usize {
    p.log_text()
        .lines()
        .filter(|l| l.contains("replication peer authenticated") && l.contains("Stream"))
        .count()
}

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_redo_apply_failure_makes_the_standby_need_a_build_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let s = streaming_standby(dir.path(), &p, &["--recovery-redo-workers", "2"]);
    let mut c = p.client();
    let () = c.set("before", "v").unwrap();
    wait_caught_up(&p, &[&s], WITHIN);
    s.set_failpoint("redo::workers::apply", "return");
    let () = c.set("after", "v").unwrap();
    let mut info = String::new();
    wait_until(WITHIN, "the standby to report it needs a build", || {
        info = repl_info(&s);
        field(&info, "role") == Some("needs_build")
    });
    let reason = field(&info, "needs_build_reason")
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("redo failed"), "{info}");
    // No retry loop: the receiver stopped streaming for good.
    let connects = stream_connects(&p);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        stream_connects(&p),
        connects,
        "the standby reconnected:\n{}",
        p.log_text()
    );
    // And it serves nothing that could be half applied.
    let err = s.client().get::<_, Option<String>>("before").unwrap_err();
    assert!(err.to_string().contains("needs a build"), "{err}");
    let log = s.log_text();
    assert_eq!(
        log.matches("redo stopped").count(),
        1,
        "redo must stop once, not retry:\n{log}"
    );
}

/// Leaf pages of a data file holding `needle`.
fn leaf_pages_with(pages: &[u8], needle: &[u8]) -> Vec<usize> {
    const KIND_AT: usize = 16;
    const LEAF_KIND: u8 = 2;
    pages
        .chunks(PAGE_BYTES)
        .enumerate()
        .filter(|(_, p)| p[KIND_AT] == LEAF_KIND && p.windows(needle.len()).any(|w| w == needle))
        .map(|(no, _)| no)
        .collect()
}

#[test]
fn a_corrupt_data_page_met_by_redo_stops_it_and_names_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let mut s = streaming_standby(dir.path(), &p, &[]);
    let mut c = p.client();
    let value = |i: usize| format!("v{i:05}-{}", "x".repeat(80));
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.set(format!("k{i:05}"), value(i)).ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    wait_caught_up(&p, &[&s], WITHIN);
    // A clean stop writes every page; then one leaf goes bad on disk.
    assert_eq!(s.terminate(), Some(0), "{}", s.log_text());
    let path = s.data_dir.join("pages");
    let mut pages = std::fs::read(&path).unwrap();
    let victim = 1234;
    let [bad] = leaf_pages_with(&pages, value(victim).as_bytes())[..] else {
        panic!("k{victim:05} is not on exactly one leaf");
    };
    pages[bad * PAGE_BYTES + PAGE_BYTES - 7] ^= 0x10;
    std::fs::write(&path, &pages).unwrap();
    s.spawn();
    wait_streaming(&p, "s", WITHIN);
    // A change of a key on that page makes redo read it.
    let () = c.set(format!("k{victim:05}"), "new").unwrap();
    let mut info = String::new();
    wait_until(WITHIN, "the standby to report it needs a build", || {
        info = repl_info(&s);
        field(&info, "role") == Some("needs_build")
    });
    let reason = field(&info, "needs_build_reason").unwrap_or_default();
    assert!(
        reason.contains("redo failed") && reason.contains(&format!("page {bad}")),
        "{info}"
    );
}

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_failed_data_file_sync_fences_writes_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = NodeProc::start_primary(
        &dir.path().join("p"),
        "p",
        &["--checkpoint-interval-secs", "1"],
    );
    let mut c = p.client();
    let mut acked = Vec::new();
    for i in 0..300 {
        let () = c.set(format!("k{i}"), i).unwrap();
        acked.push(i);
    }
    p.set_failpoint("engine::data_file::sync", "return");
    // Writes go on until the next checkpoint's sync fails; then refused.
    let mut refused = None;
    for i in 300..100_000 {
        match c.set::<_, _, ()>(format!("k{i}"), i) {
            Ok(()) => acked.push(i),
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let refused = refused.expect("writes were never refused after the sync failed");
    assert!(refused.contains("data file failed to sync"), "{refused}");
    let info = repl_info(&p);
    assert_eq!(field(&info, "role"), Some("fault"), "{info}");
    assert!(
        field(&info, "fault_reason").is_some_and(|r| r.contains("fdatasync")),
        "{info}"
    );
    // Reads go on.
    let v: Option<i64> = c.get("k1").unwrap();
    assert_eq!(v, Some(1));
    // A later checkpoint does not pretend the pages are safe.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(field(&repl_info(&p), "role"), Some("fault"));
    p.set_failpoint("engine::data_file::sync", "off");
    p.kill9();
    p.spawn();
    let mut c = p.client();
    for i in &acked {
        let v: Option<i64> = c.get(format!("k{i}")).unwrap();
        assert_eq!(v, Some(*i as i64), "acknowledged k{i} lost");
    }
    let () = c.set("after-restart", 1).unwrap();
    println!("{} writes acknowledged before the fence", acked.len());
}

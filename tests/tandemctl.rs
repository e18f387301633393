//! Goal: `tandemctl query --json` and `digest --json` parse and carry the
//! documented fields on a primary and a standby, the human output names
//! the role, failures exit non-zero with a clear message, and `stop`
//! shuts a node down cleanly.
//! Method: a primary and a standby built from it, real processes on
//! loopback; the ctl binary is run as a user would.

mod common;

use std::process::Command;
use std::time::Duration;

use common::repl::{wait_caught_up, wait_streaming};
use common::NodeProc;

fn ctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tandemctl"))
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ctl(args);
    assert!(
        out.status.success(),
        "tandemctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn query_and_digest_report_both_roles() {
    let dir = tempfile::tempdir().unwrap();
    let primary = NodeProc::start_primary(
        &dir.path().join("p"),
        "p1",
        &["--synchronous-standby-names", "s1"],
    );
    let mut c = primary.client();
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let standby = NodeProc::start_standby(&dir.path().join("s"), primary.repl_port, "s1", &[]);
    wait_streaming(&primary, "s1", Duration::from_secs(20));
    wait_caught_up(&primary, &[&standby], Duration::from_secs(20));

    let p = json(&["query", "--host", &primary.addr(), "--json"]);
    assert_eq!(p["role"], "primary");
    assert_eq!(p["timeline"], "1");
    assert_eq!(p["synchronous_standby_names"], "FIRST 1 (s1)");
    let standbys = p["standbys"].as_array().unwrap();
    assert_eq!(standbys.len(), 1);
    assert_eq!(standbys[0]["name"], "s1");
    assert_eq!(standbys[0]["sync_state"], "sync");
    for field in ["flush_lsn", "replay_lsn", "lag_bytes", "state"] {
        assert!(
            standbys[0].get(field).is_some(),
            "standby entry lacks {field}: {p}"
        );
    }
    let s = json(&["query", "--host", &standby.addr(), "--json"]);
    assert_eq!(s["role"], "standby");
    assert_eq!(s["upstream"], format!("127.0.0.1:{}", primary.repl_port));
    assert_eq!(s["upstream_state"], "streaming");
    assert_eq!(s["primary"], primary.addr());
    assert_eq!(s["applied_lsn"], p["flush_lsn"]);

    let pd = json(&["digest", "--host", &primary.addr(), "--json"]);
    let sd = json(&["digest", "--host", &standby.addr(), "--json"]);
    assert_eq!(pd["digest"], sd["digest"]);
    assert_eq!(pd["pages"], sd["pages"]);
    assert_eq!(pd["lsn"], sd["lsn"]);

    let human = ctl(&["query", "--host", &standby.addr()]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("role             : standby"), "{text}");
}

#[test]
fn failures_exit_nonzero_and_stop_is_clean() {
    let out = ctl(&["query", "--host", "127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to 127.0.0.1:1"));

    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&dir.path().join("d"), &[]);
    let out = ctl(&["stop", "--host", &node.addr()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(node.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(node.log_text().contains("shut down cleanly"));
}

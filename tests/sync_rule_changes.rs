//! Goal (issue 17): every way the synchronous-commit rule can change takes
//! effect for the next commit, and for the commits waiting at that
//! moment: names in the config file at start; names set at run time on a
//! node started without any (the bug: those commits were acknowledged with
//! no standby); set, cleared and set again; changed from one rule to
//! another; the level set by the config file, by `CONFIG SET` and by
//! `CLIENT SYNC` at each remote level; a standby that reconnects; a
//! restart; and the new primary after a switchover and after a failover
//! (it applies the rule its old primary shipped, see
//! `replication::sync_rule_file`).
//!
//! Method: real primary and standbys on loopback. For each case the
//! standbys the rule needs are SIGSTOPped (connected but silent), so a
//! commit that waits is observable: `common::commit_probe::assert_commit_waits`
//! checks that a commit waits, that `synchronous_commit_timeout_ms` ends
//! the wait with its error, and that a waiting commit completes once the
//! standbys run again; `assert_commit_completes` checks the cases where the
//! rule still holds without them.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cluster::{ctl_json, repl_info, wait_healthy};
use common::commit_probe::{
    assert_commit_completes, assert_commit_waits, config_get, config_set, cont, stop, Raw,
    NOT_CONFIRMED,
};
use common::repl::{field, wait_streaming};
use common::NodeProc;

const WITHIN: Duration = Duration::from_secs(30);

/// Primary `p` (with `flags`) and standbys `a` and `b` streaming from it.
fn p_a_b(dir: &Path, flags: &[&str]) -> (NodeProc, NodeProc, NodeProc) {
    let p = NodeProc::start_primary(&dir.join("p"), "p", flags);
    let a = NodeProc::start_standby(&dir.join("a"), p.repl_port, "a", &[]);
    let b = NodeProc::start_standby(&dir.join("b"), p.repl_port, "b", &[]);
    wait_streaming(&p, "a", WITHIN);
    wait_streaming(&p, "b", WITHIN);
    (p, a, b)
}

#[test]
fn names_in_the_config_file_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "synchronous_commit = \"on\"\nsynchronous_standby_names = \"FIRST 1 (a)\"\n",
    )
    .unwrap();
    let (p, a, b) = p_a_b(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let info = repl_info(&p);
    assert_eq!(
        field(&info, "sync_rule_origin"),
        Some("config_file node=p"),
        "{info}"
    );
    assert_commit_waits(&p, &[&a], &[], "config-first1-a");
    assert_commit_completes(&p, &[&b], &[], "config-first1-a-b-stopped");
}

/// The bug of issue 17, in each form it was found in.
#[test]
fn names_set_at_run_time_on_a_node_started_without_any() {
    let dir = tempfile::tempdir().unwrap();
    let (p, a, b) = p_a_b(dir.path(), &[]);
    assert_commit_completes(&p, &[&a, &b], &[], "no-names");
    // The level first, then the names (and the other order below).
    config_set(&p, "synchronous_commit", "on");
    assert_commit_completes(&p, &[&a, &b], &[], "level-without-names");
    for (names, stopped) in [
        ("FIRST 1 (a)", vec![&a]),
        ("a", vec![&a]),
        ("*", vec![&a, &b]),
        ("ANY 1 (*)", vec![&a, &b]),
    ] {
        config_set(&p, "synchronous_standby_names", names);
        assert_commit_waits(&p, &stopped, &[], &format!("run-time {names}"));
        // Set, cleared, set again.
        config_set(&p, "synchronous_standby_names", "");
        assert_commit_completes(&p, &[&a, &b], &[], &format!("cleared after {names}"));
        config_set(&p, "synchronous_standby_names", names);
        assert_commit_waits(&p, &stopped, &[], &format!("set again {names}"));
        config_set(&p, "synchronous_standby_names", "");
    }
    // Names first, then the level; a status that says sync is true.
    config_set(&p, "synchronous_commit", "local");
    config_set(&p, "synchronous_standby_names", "FIRST 1 (a)");
    assert_commit_completes(&p, &[&a], &[], "names-with-local");
    config_set(&p, "synchronous_commit", "on");
    let entry = common::repl::standby_entry(&repl_info(&p), "a").unwrap();
    assert_eq!(entry["sync_state"], "sync");
    assert_commit_waits(&p, &[&a], &[], "names-then-level");
}

#[test]
fn from_one_rule_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let (p, a, b) = p_a_b(
        dir.path(),
        &[
            "--synchronous-commit",
            "on",
            "--synchronous-standby-names",
            "FIRST 1 (a)",
        ],
    );
    assert_commit_waits(&p, &[&a], &[], "first1-a");
    config_set(&p, "synchronous_standby_names", "FIRST 1 (b)");
    assert_commit_completes(&p, &[&a], &[], "first1-b-a-stopped");
    assert_commit_waits(&p, &[&b], &[], "first1-b");
    config_set(&p, "synchronous_standby_names", "ANY 1 (a, b)");
    assert_commit_completes(&p, &[&a], &[], "any1-a-stopped");
    assert_commit_waits(&p, &[&a, &b], &[], "any1-both-stopped");
    config_set(&p, "synchronous_standby_names", "ANY 2 (a, b)");
    assert_commit_waits(&p, &[&b], &[], "any2-b-stopped");
    config_set(&p, "synchronous_standby_names", "FIRST 2 (a, b)");
    assert_commit_waits(&p, &[&a], &[], "first2-a-stopped");
    config_set(&p, "synchronous_standby_names", "*");
    assert_commit_waits(&p, &[&a, &b], &[], "star-both-stopped");
    config_set(&p, "synchronous_standby_names", "FIRST 1 (c, b)");
    assert_commit_waits(&p, &[&b], &[], "first1-c-b");
}

/// The level at each remote level, set three ways: the config file at
/// start, `CONFIG SET`, `CLIENT SYNC` on the writing connection.
#[test]
fn each_remote_level_by_config_file_config_set_and_client_sync() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    let write_cfg = |level: &str| {
        std::fs::write(
            &cfg,
            format!(
                "synchronous_commit = \"{level}\"\nsynchronous_standby_names = \"FIRST 1 (a)\"\n"
            ),
        )
        .unwrap()
    };
    write_cfg("local");
    let (mut p, a, _b) = p_a_b(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let levels = ["remote_receive", "remote_write", "on", "remote_apply"];
    for level in levels {
        // A config file changed while the node is stopped applies at the
        // next start; the rule file a CONFIG SET left would override it.
        assert_eq!(p.terminate(), Some(0));
        let _ = std::fs::remove_file(p.data_dir.join("sync_rule.toml"));
        write_cfg(level);
        p.spawn();
        wait_streaming(&p, "a", WITHIN);
        assert_eq!(config_get(&p, "synchronous_commit"), level);
        assert_commit_waits(&p, &[&a], &[], &format!("config-file-{level}"));
    }
    for level in levels {
        config_set(&p, "synchronous_commit", level);
        assert_commit_waits(&p, &[&a], &[], &format!("config-set-{level}"));
    }
    config_set(&p, "synchronous_commit", "local");
    for level in levels {
        let sync: &[&str] = &["CLIENT", "SYNC", level];
        assert_commit_waits(&p, &[&a], &[sync], &format!("client-sync-{level}"));
    }
    assert_commit_completes(&p, &[&a], &[&["CLIENT", "SYNC", "local"]], "client-local");
    assert_commit_completes(&p, &[&a], &[], "node-local");
}

/// A sync standby that restarts and reconnects is counted again, and only
/// for what it confirms after it is back; a restarted primary keeps the
/// rule set at run time (`sync_rule.toml`) over its config file's.
#[test]
fn a_standby_that_reconnects_and_a_primary_that_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, mut a, _b) = p_a_b(dir.path(), &[]);
    config_set(&p, "synchronous_commit", "remote_apply");
    config_set(&p, "synchronous_standby_names", "FIRST 1 (a)");
    a.kill9();
    a.spawn();
    wait_streaming(&p, "a", WITHIN);
    assert_commit_waits(&p, &[&a], &[], "reconnected-a");

    assert_eq!(p.terminate(), Some(0));
    p.spawn();
    wait_streaming(&p, "a", WITHIN);
    assert_eq!(config_get(&p, "synchronous_commit"), "remote_apply");
    assert_eq!(config_get(&p, "synchronous_standby_names"), "FIRST 1 (a)");
    let info = repl_info(&p);
    assert!(
        field(&info, "sync_rule_origin").is_some_and(|o| o.starts_with("config_set node=p")),
        "{info}"
    );
    assert_commit_waits(&p, &[&a], &[], "restarted-primary");
}

/// Changes of the rule reach commits that are already waiting.
#[test]
fn commits_already_waiting_are_judged_by_the_new_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut a, b) = p_a_b(
        dir.path(),
        &[
            "--synchronous-commit",
            "on",
            "--synchronous-standby-names",
            "FIRST 1 (a)",
        ],
    );
    let waiting = |key: &str| {
        let mut raw = Raw::connect(&p.addr());
        raw.send(&["SET", key, "v"]);
        assert_eq!(
            raw.reply_within(Duration::from_millis(400)),
            None,
            "{key}: acknowledged with its sync standby stopped"
        );
        raw
    };
    stop(&a);
    // Names moved to a running standby: the waiting commit completes.
    let mut w = waiting("names-loosened");
    config_set(&p, "synchronous_standby_names", "FIRST 1 (b)");
    assert_eq!(w.reply_within(WITHIN).as_deref(), Some("+OK"));
    config_set(&p, "synchronous_standby_names", "FIRST 1 (a)");
    // The level lowered to local: completes (the new rule holds).
    let mut w = waiting("level-loosened");
    config_set(&p, "synchronous_commit", "local");
    assert_eq!(w.reply_within(WITHIN).as_deref(), Some("+OK"));
    config_set(&p, "synchronous_commit", "on");
    // A timeout set while it waits ends the wait (it counts from the start
    // of the wait, which is already longer).
    let mut w = waiting("timeout-set");
    config_set(&p, "synchronous_commit_timeout_ms", "200");
    let reply = w.reply_within(Duration::from_secs(5)).unwrap();
    assert!(reply.starts_with(NOT_CONFIRMED), "{reply}");
    config_set(&p, "synchronous_commit_timeout_ms", "0");
    // Tightened while waiting: FIRST 1 (a) -> FIRST 2 (a, b) with a back:
    // the commit waits for b too.
    stop(&b);
    let mut w = waiting("tightened");
    config_set(&p, "synchronous_standby_names", "FIRST 2 (a, b)");
    cont(&a);
    assert_eq!(
        w.reply_within(Duration::from_millis(600)),
        None,
        "a commit completed under FIRST 2 with b stopped"
    );
    cont(&b);
    assert_eq!(w.reply_within(WITHIN).as_deref(), Some("+OK"));
    config_set(&p, "synchronous_standby_names", "FIRST 1 (a)");

    // most_available_sync: a gone (disconnected), the commit waits (strict);
    // turned on, the waiting commit proceeds, flagged as degraded; off
    // again, the next commit waits.
    a.kill9();
    common::wait_until(WITHIN, "the primary to see a gone", || {
        common::repl::standby_entry(&repl_info(&p), "a")
            .is_none_or(|e| e["state"] == "disconnected")
    });
    let mut w = waiting("most-available-sync");
    config_set(&p, "most_available_sync", "on");
    assert_eq!(w.reply_within(WITHIN).as_deref(), Some("+OK"));
    assert_eq!(field(&repl_info(&p), "sync_degraded"), Some("1"));
    config_set(&p, "most_available_sync", "off");
    let mut w = waiting("strict-again");
    config_set(&p, "synchronous_commit_timeout_ms", "100");
    let reply = w.reply_within(Duration::from_secs(5)).unwrap();
    assert!(reply.starts_with(NOT_CONFIRMED), "{reply}");
}

/// The rule is a cluster setting: set at run time on the primary, it
/// reaches the standbys (shown in their INFO, kept in their data
/// directory), a standby refuses to change it, and a node promoted by a
/// switchover or a failover applies it.
#[test]
fn the_new_primary_applies_the_rule_after_a_switchover_and_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = common::cluster::cluster(dir.path(), 3, &[]);
    let p = &nodes[0];
    config_set(p, "synchronous_commit", "on");
    config_set(p, "synchronous_standby_names", "ANY 1 (*)");
    for s in &nodes[1..] {
        common::wait_until(WITHIN, "the rule to reach the standby", || {
            let info = repl_info(s);
            field(&info, "synchronous_standby_names") == Some("ANY 1 (*)")
                && field(&info, "synchronous_commit") == Some("on")
                && field(&info, "sync_rule_origin").is_some_and(|o| o.contains("node=n0"))
        });
        let mut raw = Raw::connect(&s.addr());
        let reply = raw.call(&["CONFIG", "SET", "synchronous_standby_names", ""]);
        assert!(
            reply.contains("cluster setting") && reply.contains(&p.addr()),
            "{reply}"
        );
    }
    let hosts = common::cluster::hosts(&nodes);
    let v = ctl_json(&[
        "switchover",
        "--host",
        &nodes[1].addr(),
        "--hosts",
        &hosts,
        "--json",
    ]);
    assert_eq!(v["new_primary"], nodes[1].addr());
    wait_healthy(&nodes, WITHIN);
    assert_eq!(
        config_get(&nodes[1], "synchronous_standby_names"),
        "ANY 1 (*)"
    );
    assert_commit_waits(&nodes[1], &[&nodes[0], &nodes[2]], &[], "after-switchover");

    nodes[1].kill9();
    let alive = format!("{},{}", nodes[0].addr(), nodes[2].addr());
    let v = ctl_json(&["failover", "--auto-pick", "--hosts", &alive, "--json"]);
    let new = nodes
        .iter()
        .position(|n| v["new_primary"] == n.addr())
        .unwrap();
    let other = if new == 0 { 2 } else { 0 };
    wait_healthy(&nodes, WITHIN); // the killed node is skipped
    assert_eq!(config_get(&nodes[new], "synchronous_commit"), "on");
    assert_commit_waits(&nodes[new], &[&nodes[other]], &[], "after-failover");
    assert_commit_completes(&nodes[new], &[], &[], "after-failover-running");
}

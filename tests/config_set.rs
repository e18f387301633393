//! Goal: every setting `CONFIG GET *` lists either changes at run time as
//! README says, or `CONFIG SET` refuses it with a clear reason; a
//! `CONFIG SET` of several settings is all or nothing; a damaged
//! `sync_rule.toml` stops the node with its path instead of falling back
//! to a looser rule (issue 17, item 4).
//!
//! Method: one real node on loopback. The run-time settings are the four
//! of the synchronous-commit rule; what each does to commits is checked
//! with standbys in `tests/sync_rule_changes.rs`, here that the node takes
//! the value, shows it in CONFIG GET and INFO, keeps it across a restart,
//! and refuses a bad one.

mod common;

use std::process::Command;

use common::commit_probe::{config_get, Raw};
use common::repl::field;
use common::{tandem_bin, NodeProc};

/// Run-time settings, each with a valid value (and the canonical form
/// CONFIG GET shows) and an invalid one.
const RUN_TIME: [(&str, &str, &str, &str); 4] = [
    ("synchronous_commit", "remote_flush", "on", "sometimes"),
    (
        "synchronous_standby_names",
        "a,b",
        "FIRST 1 (a, b)",
        "FIRST 0 (a)",
    ),
    ("most_available_sync", "yes", "on", "maybe"),
    ("synchronous_commit_timeout_ms", "1500", "1500", "-1"),
];

fn all_settings(n: &NodeProc) -> Vec<(String, String)> {
    let mut c = n.client();
    let flat: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut c)
        .unwrap();
    flat.chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

#[test]
fn every_setting_changes_at_run_time_or_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = NodeProc::start_primary(&dir.path().join("n"), "n", &[]);
    let settings = all_settings(&n);
    assert!(settings.len() >= 10, "{settings:?}");
    let mut raw = Raw::connect(&n.addr());
    for (name, value) in &settings {
        if let Some((_, good, shown, bad)) = RUN_TIME.iter().find(|s| s.0 == name) {
            let reply = raw.call(&["CONFIG", "SET", name, bad]);
            assert!(
                reply.starts_with("-ERR CONFIG SET failed") && reply.contains(name.as_str()),
                "{name} {bad:?}: {reply}"
            );
            assert_eq!(
                &config_get(&n, name),
                value,
                "a refused value changed {name}"
            );
            assert_eq!(raw.call(&["CONFIG", "SET", name, good]), "+OK", "{name}");
            assert_eq!(&config_get(&n, name), shown);
            let info = n.info("replication");
            assert_eq!(field(&info, name), Some(*shown), "INFO replication {name}");
        } else {
            let reply = raw.call(&["CONFIG", "SET", name, value]);
            assert!(
                reply.contains("start-up setting") && reply.contains(name.as_str()),
                "CONFIG SET {name}: {reply}"
            );
        }
    }
    for (name, ..) in RUN_TIME {
        assert!(
            settings.iter().any(|(n, _)| n == name),
            "CONFIG GET * lacks {name}"
        );
    }
    let reply = raw.call(&["CONFIG", "SET", "no_such_setting", "1"]);
    assert!(reply.contains("Unknown option"), "{reply}");

    // All or nothing: a good pair followed by a refused one changes nothing.
    let reply = raw.call(&[
        "CONFIG",
        "SET",
        "synchronous_commit",
        "off",
        "maxclients",
        "5",
    ]);
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert_eq!(config_get(&n, "synchronous_commit"), "on");

    // Kept across a restart (sync_rule.toml), with where it came from.
    assert_eq!(n.terminate(), Some(0));
    n.spawn();
    for (name, _, shown, _) in RUN_TIME {
        assert_eq!(config_get(&n, name), shown, "{name} after a restart");
    }
    let info = n.info("replication");
    assert!(
        field(&info, "sync_rule_origin").is_some_and(|o| o.starts_with("config_set node=n")),
        "{info}"
    );
}

#[test]
fn a_damaged_rule_file_stops_the_node_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut n = NodeProc::start_primary(&data, "n", &[]);
    common::commit_probe::config_set(&n, "synchronous_commit", "on");
    assert_eq!(n.terminate(), Some(0));
    let file = data.join("sync_rule.toml");
    std::fs::write(
        &file,
        "synchronous_commit = \"on\"\nsynchronous_standby_names = \"FIRST 9 (a)\"\n",
    )
    .unwrap();
    let out = Command::new(tandem_bin())
        .args(["node", "--data-dir"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port())])
        .args([
            "--repl-listen",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "started on a damaged rule file:\n{text}"
    );
    assert!(
        text.contains("sync_rule.toml") && text.contains("damaged"),
        "{text}"
    );
}

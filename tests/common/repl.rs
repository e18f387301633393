//! Replication helpers: primaries and standbys sharing a cluster secret
//! (standbys made with `tandem build`), INFO replication fields, waiting
//! for standbys to catch up, page digests, WAL directory sizes.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::{tandem_bin, wait_until, NodeProc};

pub const SECRET: &str = "repl-test-secret";

fn with_identity(name: &str, secret: &str, extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> = ["--name", name, "--cluster-secret", secret]
        .iter()
        .map(|s| s.to_string())
        .collect();
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs `tandem build --from 127.0.0.1:<from_repl_port>` into `data_dir`.
pub fn build(from_repl_port: u16, data_dir: &Path, name: &str, secret: &str) -> Output {
    Command::new(tandem_bin())
        .arg("build")
        .args(["--from", &format!("127.0.0.1:{from_repl_port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--name", name, "--cluster-secret", secret, "--quiet"])
        .output()
        .expect("run tandem build")
}

/// stdout followed by stderr of a finished command.
pub fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

impl NodeProc {
    /// Starts a node named `name` with the test cluster secret.
    pub fn start_primary(data_dir: &Path, name: &str, extra: &[&str]) -> NodeProc {
        NodeProc::start(data_dir, &as_strs(&with_identity(name, SECRET, extra)))
    }

    /// Builds a standby of the node whose replication port is `upstream`
    /// and returns it, not started (set `env` first if needed).
    pub fn build_standby(data_dir: &Path, upstream: u16, name: &str, extra: &[&str]) -> NodeProc {
        let out = build(upstream, data_dir, name, SECRET);
        assert!(
            out.status.success(),
            "tandem build {name}: {}",
            output_text(&out)
        );
        NodeProc::new(data_dir, &as_strs(&with_identity(name, SECRET, extra)))
    }

    /// Builds a standby of `upstream` (a replication port) and starts it.
    pub fn start_standby(data_dir: &Path, upstream: u16, name: &str, extra: &[&str]) -> NodeProc {
        let mut n = NodeProc::build_standby(data_dir, upstream, name, extra);
        n.spawn();
        n
    }

    /// The text of `INFO <section>` (a new connection per call).
    pub fn info(&self, section: &str) -> String {
        let mut c = self.client();
        redis::cmd("INFO").arg(section).query(&mut c).unwrap()
    }
}

/// A `field:value` line of an INFO text.
pub fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
}

/// A numeric `field:value` line of an INFO text.
pub fn field_u64(info: &str, name: &str) -> u64 {
    field(info, name)
        .unwrap_or_else(|| panic!("INFO lacks {name}:\n{info}"))
        .parse()
        .unwrap()
}

/// The `standbyN:name=...,state=...` line for standby `name` of a
/// primary's INFO replication, as a map.
pub fn standby_entry(info: &str, name: &str) -> Option<HashMap<String, String>> {
    info.lines()
        .filter(|l| l.starts_with("standby"))
        .filter_map(|l| l.split_once(':'))
        .map(|(_, rest)| {
            rest.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect::<HashMap<_, _>>()
        })
        .find(|m| m.get("name").map(String::as_str) == Some(name))
}

/// Waits until `primary` lists standby `name` as streaming.
/// A standby named `s` of `primary` in `dir/s`, started with `args` and
/// streaming.
#[allow(dead_code)]
pub fn streaming_standby(dir: &Path, primary: &NodeProc, args: &[&str]) -> NodeProc {
    let s = NodeProc::start_standby(&dir.join("s"), primary.repl_port, "s", args);
    wait_streaming(primary, "s", Duration::from_secs(60));
    s
}

pub fn wait_streaming(primary: &NodeProc, name: &str, within: Duration) {
    let mut c = primary.client();
    wait_until(within, &format!("standby {name} streaming"), || {
        let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
        standby_entry(&info, name).is_some_and(|e| e["state"] == "streaming")
    });
}

/// Waits (writes stopped) until every standby's `applied_lsn` equals the
/// primary's `flush_lsn`; returns that LSN.
pub fn wait_caught_up(primary: &NodeProc, standbys: &[&NodeProc], within: Duration) -> u64 {
    let mut p = primary.client();
    let mut cs: Vec<redis::Connection> = standbys.iter().map(|s| s.client()).collect();
    let mut target = 0;
    wait_until(
        within,
        "standbys applied up to the primary's flush_lsn",
        || {
            let info: String = redis::cmd("INFO").arg("replication").query(&mut p).unwrap();
            target = field_u64(&info, "flush_lsn");
            cs.iter_mut().all(|c| {
                let info: String = redis::cmd("INFO").arg("replication").query(c).unwrap();
                field_u64(&info, "applied_lsn") == target
            })
        },
    );
    target
}

/// `(digest_pages, digest)` of `INFO digest`.
pub fn digest(n: &NodeProc) -> (u64, String) {
    let info = n.info("digest");
    let d = field(&info, "digest").unwrap_or_else(|| panic!("no digest:\n{info}"));
    (field_u64(&info, "digest_pages"), d.to_string())
}

/// Total bytes of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

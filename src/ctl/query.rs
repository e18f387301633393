//! `tandemctl query` and `digest`: what a node says about itself, from
//! `INFO` (the `gs_ctl query` view), human-readable or as JSON.
//!
//! The JSON carries every field of `INFO replication` as it comes (new
//! roles and fields appear without a change here), plus a few of
//! `server` and `persistence`; values stay strings, as INFO sends them.

use std::collections::BTreeMap;

use super::client::{standbys, Conn};
use super::CtlError;

/// `INFO server persistence replication` of `host` as one JSON object
/// (the `query --json` shape).
pub fn node_json(
    host: &str,
    password: Option<&str>,
) -> Result<serde_json::Map<String, serde_json::Value>, CtlError> {
    let mut conn = Conn::open(host, password)?;
    let info = conn.info(&["server", "persistence", "replication"])?;
    let empty = BTreeMap::new();
    let repl = info.get("replication").unwrap_or(&empty);
    let server = info.get("server").unwrap_or(&empty);
    let persistence = info.get("persistence").unwrap_or(&empty);
    let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    let mut node = serde_json::Map::new();
    node.insert("host".into(), host.into());
    for k in [
        "node_name",
        "system_id",
        "tandem_version",
        "process_id",
        "uptime_in_seconds",
    ] {
        node.insert(k.into(), get(server, k).into());
    }
    for (k, v) in repl.iter().filter(|(k, _)| !k.starts_with("standby")) {
        node.insert(k.clone(), v.clone().into());
    }
    for k in [
        "synchronous_commit",
        "wal_inserted_lsn",
        "wal_flushed_lsn",
        "checkpoint_redo_lsn",
    ] {
        node.insert(k.into(), get(persistence, k).into());
    }
    let list = serde_json::to_value(standbys(repl)).map_err(|source| CtlError::Json { source })?;
    node.insert("standbys".into(), list);
    Ok(node)
}

/// Prints role, timeline, LSNs, standbys and sync states of `host`.
pub fn query(host: &str, password: Option<&str>, json: bool) -> Result<(), CtlError> {
    let node = node_json(host, password)?;
    if json {
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(node))
            .map_err(|source| CtlError::Json { source })?;
        println!("{text}");
        return Ok(());
    }
    let get = |k: &str| node.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    println!(" node             : {} ({})", get("node_name"), host);
    println!(" role             : {}", get("role"));
    println!(" timeline         : {}", get("timeline"));
    println!(" system id        : {}", get("system_id"));
    println!(" flush lsn        : {}", get("flush_lsn"));
    println!(" applied lsn      : {}", get("applied_lsn"));
    println!(" timeline start   : {}", get("timeline_start_lsn"));
    if get("fenced") == "1" {
        println!(" fenced           : yes (switchover in progress: no new writes)");
    }
    if node.contains_key("needs_build_reason") {
        println!(" needs build      : {}", get("needs_build_reason"));
    }
    if node.contains_key("divergence_lsn") {
        println!(" divergence lsn   : {}", get("divergence_lsn"));
    }
    println!(" sync commit      : {}", get("synchronous_commit"));
    println!(" sync standbys    : {}", get("synchronous_standby_names"));
    if node.contains_key("upstream") {
        println!(
            " upstream         : {} ({})",
            get("upstream"),
            get("upstream_state")
        );
        println!(" primary          : {}", get("primary"));
        println!(" received lsn     : {}", get("received_lsn"));
        println!(
            " redo             : {} workers, backlog {} B at {} B/s, estimated RTO {} ms",
            get("redo_workers"),
            get("redo_backlog_bytes"),
            get("redo_rate_bytes_per_s"),
            get("estimated_rto_ms")
        );
    } else if !matches!(get("recovery_time_target"), "" | "0") {
        println!(
            " rto throttle     : {} us per write (recovery_time_target {} s)",
            get("rto_throttle_us"),
            get("recovery_time_target")
        );
    }
    let list = node
        .get("standbys")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    println!(" standbys         : {}", list.len());
    for s in &list {
        let f = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("?");
        println!(
            "   {:<12} {:<10} flush {:>14} replay {:>14} lag {:>10} B  rto {:>6} ms  {}",
            f("name"),
            f("state"),
            f("flush_lsn"),
            f("replay_lsn"),
            f("lag_bytes"),
            f("estimated_rto_ms"),
            f("sync_state"),
        );
    }
    Ok(())
}

/// Prints the applied LSN and the page digest of `host`.
pub fn digest(host: &str, password: Option<&str>, json: bool) -> Result<(), CtlError> {
    let mut conn = Conn::open(host, password)?;
    let info = conn.info(&["digest"])?;
    let d = info.get("digest").ok_or_else(|| CtlError::NoSection {
        host: host.to_string(),
        section: "digest",
    })?;
    if let Some(e) = d.get("digest_error") {
        return Err(CtlError::Digest {
            host: host.to_string(),
            reason: e.clone(),
        });
    }
    let field = |k: &str| d.get(k).cloned().unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::json!({"host": host, "lsn": field("digest_lsn"), "pages": field("digest_pages"), "digest": field("digest")})
        );
    } else {
        println!(
            "{host} lsn {} pages {} digest {}",
            field("digest_lsn"),
            field("digest_pages"),
            field("digest")
        );
    }
    Ok(())
}

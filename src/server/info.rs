//! INFO and ROLE texts.
//!
//! INFO follows Redis' `# Section` / `key:value` layout; the replication
//! section carries the fields DESIGN.md section 5 fixes (`role:`,
//! `timeline:`, `flush_lsn:`, `applied_lsn:`, `connected_standbys:`), LSNs
//! as decimal u64. ROLE answers in Redis' `master` shape.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::resp::{write_array_header, write_bulk, write_integer};
use crate::node::Node;

const DEFAULT_SECTIONS: [&str; 7] = [
    "server",
    "clients",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "keyspace",
];

pub fn render(node: &Node, wanted: &[String]) -> String {
    let all = wanted.iter().any(|w| w == "all" || w == "everything");
    let show = |name: &str| {
        if wanted.is_empty() || wanted.iter().any(|w| w == "default") {
            DEFAULT_SECTIONS.contains(&name)
        } else {
            all || wanted.iter().any(|w| w == name)
        }
    };
    let mut s = String::new();
    let engine = &node.engine;
    let wal = engine.wal();
    if show("server") {
        let _ = write!(
            s,
            "# Server\r\nredis_version:7.0.0\r\ntandem_version:{}\r\nredis_mode:standalone\r\nos:Linux\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nnode_name:{}\r\ncore_map:{}\r\nsystem_id:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            node.config.listen.port(),
            node.started.elapsed().as_secs(),
            node.config.name,
            node.config.core_map,
            engine.system_id(),
        );
    }
    if show("clients") {
        let _ = write!(
            s,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            node.connections.load(Ordering::Relaxed),
            node.config.connections_max
        );
    }
    if show("persistence") {
        let _ = write!(
            s,
            "# Persistence\r\nloading:0\r\naof_enabled:1\r\nsynchronous_commit:{}\r\nwal_inserted_lsn:{}\r\nwal_flushed_lsn:{}\r\ncheckpoint_redo_lsn:{}\r\ncheckpoints:{}\r\n\r\n",
            node.synchronous_commit().as_str(),
            wal.inserted(),
            wal.flushed(),
            engine.redo_lsn(),
            engine.checkpoints(),
        );
    }
    if show("stats") {
        let pool = engine.pool_stats();
        let _ = write!(
            s,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_commits:{}\r\nrejected_connections:{}\r\nbuffer_pool_hits:{}\r\nbuffer_pool_misses:{}\r\npage_checksum_failures:{}\r\n\r\n",
            node.metrics.connections_accepted.get(),
            node.metrics.commands.get(),
            node.metrics.commits.get(),
            node.metrics.connections_rejected.get(),
            pool.hits.load(Ordering::Relaxed),
            pool.misses.load(Ordering::Relaxed),
            pool.checksum_failures.load(Ordering::Relaxed),
        );
    }
    if show("replication") {
        let flushed = wal.flushed();
        let _ = write!(
            s,
            "# Replication\r\nrole:primary\r\ntimeline:{}\r\nflush_lsn:{}\r\napplied_lsn:{}\r\nconnected_standbys:0\r\nconnected_slaves:0\r\nmaster_repl_offset:{}\r\n\r\n",
            engine.timeline(),
            flushed,
            flushed,
            flushed,
        );
    }
    if show("cpu") {
        let _ = write!(s, "# CPU\r\n\r\n");
    }
    if show("keyspace") {
        let keys = engine.key_count();
        let _ = write!(s, "# Keyspace\r\n");
        if keys > 0 {
            let _ = write!(s, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
        }
        let _ = write!(s, "\r\n");
    }
    if s.ends_with("\r\n\r\n") {
        s.truncate(s.len() - 2);
    }
    s
}

/// `ROLE` on a primary: `["master", offset, []]`.
pub fn write_role(node: &Node, out: &mut Vec<u8>) {
    write_array_header(out, 3);
    write_bulk(out, b"master");
    write_integer(out, node.engine.wal().flushed().0 as i64);
    write_array_header(out, 0);
}

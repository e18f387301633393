//! INFO and ROLE texts.
//!
//! INFO follows Redis' `# Section` / `key:value` layout; the replication
//! section carries the fields DESIGN.md section 5 fixes (`role:`,
//! `timeline:`, `flush_lsn:`, `applied_lsn:`, `connected_standbys:`), LSNs
//! as decimal u64. ROLE answers in Redis' `master` shape.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::resp::{write_array_header, write_bulk, write_integer};
use crate::engine::WriteBlock;
use crate::ids::Lsn;
use crate::node::Node;
use crate::replication::status::{LinkState, StandbyEntry};
use crate::replication::sync_commit::{sync_states, StandbyPosition};

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
        replication_section(node, &mut s);
    }
    if wanted.iter().any(|w| w == "digest") {
        let _ = write!(s, "# Digest\r\n");
        match engine.digest() {
            Ok((lsn, pages, digest)) => {
                let _ = write!(
                    s,
                    "digest_lsn:{lsn}\r\ndigest_pages:{pages}\r\ndigest:{digest:08x}\r\n\r\n"
                );
            }
            Err(e) => {
                let _ = write!(
                    s,
                    "digest_error:{}\r\n\r\n",
                    e.to_string().replace(['\r', '\n'], " ")
                );
            }
        }
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

/// The replication section (DESIGN.md section 5 fixes its fields).
fn replication_section(node: &Node, s: &mut String) {
    let engine = &node.engine;
    let wal = engine.wal();
    let repl = &node.repl;
    let standbys = repl.standbys.snapshot();
    let connected: Vec<_> = standbys
        .iter()
        .filter(|e| e.state != LinkState::Disconnected)
        .collect();
    let _ = write!(s, "# Replication\r\n");
    // Redo that stopped on a fault of the data makes the node need a
    // build, whether or not its receiver has noticed yet.
    let needs_build = repl.needs_build().or_else(|| {
        engine
            .redo_fault()
            .map(|e| crate::replication::context::NeedsBuild {
                reason: format!("redo failed: {e}"),
                divergence: None,
            })
    });
    if node.is_standby() {
        let up = repl.upstream.get();
        let state = up
            .as_ref()
            .map(|u| u.state)
            .unwrap_or(LinkState::Connecting);
        let role = if state == LinkState::NeedsBuild || needs_build.is_some() {
            "needs_build"
        } else {
            "standby"
        };
        let _ = write!(
            s,
            "role:{role}\r\ntimeline:{}\r\nupstream:{}\r\nupstream_state:{}\r\nprimary:{}\r\nreceived_lsn:{}\r\nflush_lsn:{}\r\napplied_lsn:{}\r\n",
            engine.timeline(),
            up.as_ref().map(|u| u.upstream.as_str()).unwrap_or(""),
            state.as_str(),
            up.as_ref().map(|u| u.primary_client_addr.as_str()).unwrap_or(""),
            up.as_ref().map(|u| u.received).unwrap_or(Lsn::ZERO),
            wal.flushed(),
            engine.applied_lsn(),
        );
        let received = up.as_ref().map(|u| u.received).unwrap_or(Lsn::ZERO);
        let stats = engine.redo_stats();
        let _ = write!(
            s,
            "redo_workers:{}\r\nredo_backlog_bytes:{}\r\nredo_rate_bytes_per_s:{}\r\nestimated_rto_ms:{}\r\n",
            engine.redo_workers(),
            received.bytes_since(engine.applied_lsn()),
            stats.rate_bytes_per_s.load(std::sync::atomic::Ordering::Relaxed),
            crate::replication::receiver::estimated_rto_ms(repl),
        );
        if let Some(e) = up.as_ref().and_then(|u| u.last_error.as_ref()) {
            let _ = write!(
                s,
                "upstream_last_error:{}\r\n",
                e.replace(['\r', '\n'], " ")
            );
        }
    } else {
        let flushed = wal.flushed();
        let block = engine.write_block();
        let role = match block {
            _ if needs_build.is_some() => "needs_build",
            Some(WriteBlock::NeedsBuild) => "needs_build",
            Some(WriteBlock::Pending) => "pending",
            Some(WriteBlock::DataFileFailed) => "fault",
            _ => "primary",
        };
        let _ = write!(
            s,
            "role:{role}\r\ntimeline:{}\r\nflush_lsn:{flushed}\r\napplied_lsn:{flushed}\r\nfenced:{}\r\nrecovery_time_target:{}\r\nrto_throttle_us:{}\r\n",
            engine.timeline(),
            u8::from(block == Some(WriteBlock::Switchover)),
            repl.throttle.target_ms() / 1000,
            repl.throttle.delay_us(),
        );
    }
    if engine.write_block() == Some(WriteBlock::DataFileFailed) {
        let _ = write!(
            s,
            "fault_reason:{}\r\n",
            engine
                .data_file_failure()
                .unwrap_or_default()
                .replace(['\r', '\n'], " ")
        );
    }
    let history = repl.history.lock().clone();
    let _ = write!(
        s,
        "timeline_start_lsn:{}\r\nrepl_listen:{}\r\npeers:{}\r\n",
        history.start_lsn_of(history.current()).unwrap_or(Lsn::ZERO),
        repl.repl_addr,
        repl.peers.join(","),
    );
    if let Some(nb) = &needs_build {
        let _ = write!(
            s,
            "needs_build_reason:{}\r\n",
            nb.reason.replace(['\r', '\n'], " ")
        );
        if let Some(at) = nb.divergence {
            let _ = write!(s, "divergence_lsn:{at}\r\n");
        }
    }
    let rule = repl.sync.rule();
    let names = rule.names.clone();
    let positions: Vec<StandbyPosition> = standbys.iter().map(StandbyEntry::position).collect();
    let states = sync_states(&names, &positions);
    let end = wal.flushed();
    let _ = write!(
        s,
        "connected_standbys:{}\r\nconnected_slaves:{}\r\nsynchronous_commit:{}\r\nsynchronous_standby_names:{}\r\nmost_available_sync:{}\r\nsynchronous_commit_timeout_ms:{}\r\nsync_rule_origin:{}\r\nsync_degraded:{}\r\n",
        connected.len(),
        connected.len(),
        rule.level,
        rule.names,
        if rule.most_available_sync { "on" } else { "off" },
        rule.timeout_ms,
        repl.sync.origin(),
        if repl.sync.degraded(rule.level) { 1 } else { 0 },
    );
    for (i, (e, st)) in standbys.iter().zip(states).enumerate() {
        let lag_ms = e.last_reply.elapsed().as_millis();
        let _ = write!(
            s,
            "standby{i}:name={},addr={},state={},sent_lsn={},receive_lsn={},write_lsn={},flush_lsn={},replay_lsn={},lag_bytes={},reply_age_ms={lag_ms},estimated_rto_ms={},sync_state={}\r\n",
            e.name,
            e.addr,
            e.state.as_str(),
            e.sent,
            e.received,
            e.written,
            e.flushed,
            e.applied,
            end.bytes_since(e.applied),
            e.estimated_rto_ms,
            st.as_str(),
        );
    }
    let _ = write!(s, "master_repl_offset:{}\r\n\r\n", end);
}

/// `ROLE`: `["master", offset, [[host, port, offset]...]]` on a primary,
/// `["slave", host, port, state, offset]` on a standby (Redis' shapes).
pub fn write_role(node: &Node, out: &mut Vec<u8>) {
    let unsettled = if node.repl.needs_build().is_some() {
        Some("needs_build")
    } else {
        match node.engine.write_block() {
            Some(WriteBlock::Pending) => Some("pending"),
            Some(WriteBlock::NeedsBuild) => Some("needs_build"),
            Some(WriteBlock::DataFileFailed) => Some("fault"),
            _ => None,
        }
    };
    if let (Some(state), false) = (unsettled, node.is_standby()) {
        // Not a primary clients may write to: a replica-shaped answer that
        // names no primary, with the state in Redis' `state` slot.
        write_array_header(out, 5);
        write_bulk(out, b"slave");
        write_bulk(out, b"");
        write_integer(out, 0);
        write_bulk(out, state.as_bytes());
        write_integer(out, node.engine.wal().flushed().0 as i64);
        return;
    }
    if node.is_standby() {
        let up = node.repl.upstream.get();
        let addr = up
            .as_ref()
            .map(|u| u.primary_client_addr.clone())
            .unwrap_or_default();
        let (host, port) = addr.rsplit_once(':').unwrap_or(("", "0"));
        let state = match up.as_ref().map(|u| u.state) {
            Some(LinkState::Streaming) | Some(LinkState::CatchingUp) => "connected",
            Some(LinkState::NeedsBuild) => "needs_build",
            _ if unsettled.is_some() => "needs_build",
            _ => "connect",
        };
        write_array_header(out, 5);
        write_bulk(out, b"slave");
        write_bulk(out, host.as_bytes());
        write_integer(out, port.parse::<i64>().unwrap_or(0));
        write_bulk(out, state.as_bytes());
        write_integer(out, node.engine.applied_lsn().0 as i64);
        return;
    }
    let standbys = node.repl.standbys.snapshot();
    let live: Vec<_> = standbys
        .iter()
        .filter(|e| e.state != LinkState::Disconnected)
        .collect();
    write_array_header(out, 3);
    write_bulk(out, b"master");
    write_integer(out, node.engine.wal().flushed().0 as i64);
    write_array_header(out, live.len());
    for e in live {
        let (host, port) = e.addr.rsplit_once(':').unwrap_or((e.addr.as_str(), "0"));
        write_array_header(out, 3);
        write_bulk(out, host.as_bytes());
        write_bulk(out, port.as_bytes());
        write_bulk(out, e.flushed.0.to_string().as_bytes());
    }
}

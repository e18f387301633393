//! One client connection: read, parse, execute, wait for durability,
//! reply. Runs as a task on a session core's compio runtime.
//!
//! Pipelining and group commit: all complete requests in a read are
//! executed first, then the session waits once for the highest LSN any of
//! them needs (its commits, and the commits of pages its reads touched),
//! then writes all replies. No reply leaves before what it reports is
//! durable under the session's `synchronous_commit` (`off`: no wait).
//!
//! Waiting commands (`WAIT`, `WAITLSN`) end a batch: the session runs them
//! after the durability wait of the requests before them and outside the
//! node's in-flight count (`Node::enter`: a long wait is no command in
//! flight), then goes on with the requests buffered behind them.
//!
//! Read-your-writes across nodes: `LASTLSN` answers the commit LSN of this
//! connection's last write (`last_write`); `WAITLSN lsn timeout_ms` on any
//! node waits until that node applied `lsn`
//! ([`repl_admin::wait_applied`](super::repl_admin::wait_applied)).
//!
//! Invariants: a request over the limits, or bytes that are not RESP, get
//! one error reply and the connection is closed (the stream cannot be
//! resynchronised); nothing on input panics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;

use super::command::{write_command_reply, Command, CommandError};
use super::exec;
use super::glob::{glob_match, glob_match_nocase};
use super::info;
use super::listener::ConnectionGuard;
use super::repl_admin::{lsn_reply, ReplRequest};
use super::resp::{
    write_array_header, write_bulk, write_error, write_integer, write_map_header, write_null,
    write_simple, Args, OwnedArgs, Protocol, RequestLimits, RequestParser,
};
use crate::config::{limits, SyncLevel};
use crate::engine::{btree, EngineError};
use crate::ids::Lsn;
use crate::node::{Node, StopReason};
use crate::replication::sync_commit::SYNC_RULE_SETTINGS;
use crate::replication::sync_rule_file::{OriginKind, RuleOrigin};
use crate::replication::sync_wait::WaitEnd;

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);
const READ_BYTES: usize = 64 * 1024;

/// Tells a connection over `connections_max` why, then closes it.
pub async fn refuse(mut stream: TcpStream, _guard: ConnectionGuard) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n".to_vec())
        .await;
}

/// A waiting command that ends its batch; run after the batch's replies
/// are durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingWait {
    /// `WAIT replicas timeout_ms`.
    Replicas { replicas: i64, timeout_ms: u64 },
    /// `WAITLSN lsn timeout_ms`.
    Lsn { lsn: Lsn, timeout_ms: u64 },
}

struct Session {
    node: Arc<Node>,
    id: u64,
    protocol: Protocol,
    authenticated: bool,
    name: Vec<u8>,
    /// Commands queued by MULTI; `Some` while a transaction is open.
    multi: Option<Vec<OwnedArgs>>,
    /// A queued command failed to parse: EXEC must abort.
    multi_failed: bool,
    /// Per-connection `synchronous_commit` (`CLIENT SYNC level`); `None`
    /// follows the node's setting (`CONFIG SET synchronous_commit`).
    sync_commit: Option<SyncLevel>,
    /// WAIT or WAITLSN requested by the last request of a batch.
    pending_wait: Option<PendingWait>,
    /// A `REPL` request: run after the batch, off the session core.
    pending_repl: Option<ReplRequest>,
    /// Commit LSN of this connection's last write (for WAIT and LASTLSN).
    last_write: Lsn,
    scan_cursors: VecDeque<(u64, Vec<u8>)>,
    next_cursor: u64,
    closing: bool,
    stop_after_reply: bool,
}

/// Serves one connection until the peer closes, QUIT, or a protocol error.
pub async fn serve(mut stream: TcpStream, node: Arc<Node>) -> std::io::Result<()> {
    let mut session = Session {
        authenticated: node.config.requirepass.is_none(),
        node,
        id: NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed),
        protocol: Protocol::Resp2,
        name: Vec::new(),
        multi: None,
        multi_failed: false,
        sync_commit: None,
        pending_wait: None,
        pending_repl: None,
        last_write: Lsn::ZERO,
        scan_cursors: VecDeque::new(),
        next_cursor: 1,
        closing: false,
        stop_after_reply: false,
    };
    let limits = RequestLimits {
        args_max: limits::ARGS_MAX,
        bulk_bytes_max: session.node.config.request_bytes_max,
        inline_bytes_max: limits::INLINE_BYTES_MAX,
        request_bytes_max: session.node.config.request_bytes_max + 4096,
    };
    let mut parser = RequestParser::new(limits);
    let mut read_buf: Vec<u8> = Vec::with_capacity(READ_BYTES);
    let mut out: Vec<u8> = Vec::with_capacity(READ_BYTES);
    loop {
        let started = Instant::now();
        let in_flight = session.node.enter();
        // Before anything of this batch is appended: frames that carry it
        // ask the standbys for an immediate receipt (replication::sync_wait,
        // "Receipts"). A level changed inside the batch takes effect with
        // the next one; its commits are answered by the flush status.
        let receipts = session
            .effective_sync_commit()
            .needs_receipts()
            .then(|| session.node.repl.sync.want_receipts());
        let mut wait = Lsn::ZERO;
        let mut wrote = false;
        let mut replies = 0usize;
        loop {
            match parser.next_request() {
                Ok(Some(args)) => {
                    session.node.metrics.commands.inc();
                    let (lsn, w) = session.dispatch(args, &mut out);
                    replies += 1;
                    wait = wait.max(lsn);
                    wrote |= w;
                    if session.closing
                        || session.pending_wait.is_some()
                        || session.pending_repl.is_some()
                    {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    write_error(&mut out, &format!("ERR {e}"));
                    session.closing = true;
                    break;
                }
            }
        }
        session.wait_durable(wait, replies, &mut out).await;
        if wrote {
            // `recovery_time_target`: a synchronous standby's redo is too far
            // behind, so hold this write's reply a little (`replication::rto`).
            let delay_us = session.node.repl.throttle.delay_us();
            if delay_us > 0 {
                compio::time::sleep(std::time::Duration::from_micros(delay_us)).await;
            }
            session
                .node
                .metrics
                .commit_latency_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        drop(receipts);
        drop(in_flight);
        match session.pending_wait.take() {
            Some(PendingWait::Replicas {
                replicas,
                timeout_ms,
            }) => {
                let n = session.wait_replicas(replicas, timeout_ms).await;
                write_integer(&mut out, n);
            }
            Some(PendingWait::Lsn { lsn, timeout_ms }) => {
                match super::repl_admin::wait_applied(&session.node, lsn, timeout_ms).await {
                    Ok(applied) => write_integer(&mut out, lsn_reply(applied)),
                    Err(e) => write_error(&mut out, &e.reply()),
                }
            }
            None => {}
        }
        if let Some(request) = session.pending_repl.take() {
            super::repl_admin::run(&session.node, request, &mut out).await;
        }
        if !out.is_empty() {
            let compio::BufResult(res, buf) = stream.write_all(std::mem::take(&mut out)).await;
            out = buf;
            out.clear();
            res?;
        }
        if session.stop_after_reply {
            session.node.request_stop(StopReason::ShutdownCommand);
        }
        if session.closing {
            return Ok(());
        }
        if parser.pending_bytes() > 0 && replies > 0 {
            continue; // requests after a WAIT are already buffered
        }
        read_buf.clear();
        let compio::BufResult(res, buf) = stream.read(read_buf).await;
        read_buf = buf;
        let n = res?;
        if n == 0 {
            return Ok(());
        }
        parser.feed(&read_buf[..n]);
    }
}

impl Session {
    fn effective_sync_commit(&self) -> SyncLevel {
        self.sync_commit
            .unwrap_or_else(|| self.node.synchronous_commit())
    }

    /// Holds the replies of a batch until what they report is durable under
    /// the session's level: the local WAL flush, then (on a primary, for
    /// the remote levels) the synchronous standbys. On a timeout the
    /// replies become errors: the writes are committed locally but not
    /// confirmed, and must not be reported as if they were.
    async fn wait_durable(&mut self, wait: Lsn, replies: usize, out: &mut Vec<u8>) {
        let level = self.effective_sync_commit();
        if level == SyncLevel::Off || wait == Lsn::ZERO {
            return;
        }
        if let Err(e) = self.node.engine.wal().wait_flushed(wait).await {
            out.clear();
            write_error(out, &format!("ERR WAL write failed, nothing after the last acknowledged write is durable: {e}"));
            self.closing = true;
            return;
        }
        if let Err(timeout_ms) = self.wait_for_standbys(wait).await {
            out.clear();
            let level = self.effective_sync_commit();
            for _ in 0..replies.max(1) {
                write_error(
                    out,
                    &format!(
                        "ERR committed locally, not confirmed by standbys within {timeout_ms} ms (synchronous_commit={})",
                        level.as_str()
                    ),
                );
            }
        }
    }

    /// After the local flush: waits until the synchronous-commit rule in
    /// force holds for a commit ending at `lsn`. The level (the
    /// connection's, else the node's) and the timeout are read again
    /// whenever the rule changes, and the timeout counts from the start of
    /// this wait, so a commit waiting when a rule changes is judged by the
    /// new one (issue 17). `Err(timeout_ms)` when the timeout ran out.
    async fn wait_for_standbys(&self, lsn: Lsn) -> Result<(), u64> {
        let sync = &self.node.repl.sync;
        let started = Instant::now();
        loop {
            let level = self.effective_sync_commit();
            if !level.waits_for_standbys() || self.node.is_standby() {
                return Ok(());
            }
            let timeout_ms = sync.timeout_ms();
            let wait = sync.wait(level, lsn);
            let end = if timeout_ms == 0 {
                wait.await
            } else {
                let limit = std::time::Duration::from_millis(timeout_ms);
                let left = limit.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(timeout_ms);
                }
                match compio::time::timeout(left, wait).await {
                    Ok(end) => end,
                    Err(_) => return Err(timeout_ms),
                }
            };
            if end == WaitEnd::Confirmed {
                return Ok(());
            }
        }
    }

    /// WAIT: standbys that flushed this connection's last write, waiting
    /// up to `timeout_ms` (0: no limit) for `replicas` of them.
    async fn wait_replicas(&self, replicas: i64, timeout_ms: u64) -> i64 {
        let target = self.last_write;
        let deadline = Instant::now() + std::time::Duration::from_millis(timeout_ms);
        loop {
            let n = self
                .node
                .repl
                .standbys
                .snapshot()
                .iter()
                .filter(|s| {
                    s.flushed >= target
                        && s.state != crate::replication::status::LinkState::Disconnected
                })
                .count() as i64;
            if n >= replicas
                || (timeout_ms > 0 && Instant::now() >= deadline)
                || self.node.is_standby()
            {
                return n;
            }
            // WAIT is a timed command; a short poll keeps it simple.
            compio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Runs one request; returns the LSN its reply must wait for and
    /// whether it wrote.
    fn dispatch(&mut self, args: Args<'_>, out: &mut Vec<u8>) -> (Lsn, bool) {
        let cmd = match Command::parse(args) {
            Ok(cmd) => cmd,
            Err(e) => {
                if self.multi.is_some() {
                    self.multi_failed = true;
                }
                write_error(out, &e.to_string());
                return (Lsn::ZERO, false);
            }
        };
        if !self.authenticated
            && !matches!(
                cmd,
                Command::Auth { .. } | Command::Hello { .. } | Command::Quit
            )
        {
            write_error(out, &CommandError::NoAuth.to_string());
            return (Lsn::ZERO, false);
        }
        if self.multi.is_some()
            && !matches!(
                cmd,
                Command::Exec | Command::Discard | Command::Multi | Command::Quit
            )
        {
            if matches!(
                cmd,
                Command::Wait { .. } | Command::WaitLsn { .. } | Command::Shutdown
            ) {
                self.multi_failed = true;
                write_error(out, &CommandError::NotAllowedInMulti.to_string());
            } else if let Some(q) = self.multi.as_mut() {
                q.push(args.to_owned_args());
                write_simple(out, "QUEUED");
            }
            return (Lsn::ZERO, false);
        }
        if exec::is_data_command(&cmd) {
            return self.run_single(cmd, out);
        }
        self.run_control(cmd, out)
    }

    /// Runs data commands as one transaction; one reply per command, or
    /// one error reply if the transaction aborted. Returns the LSN to wait
    /// for and whether it wrote.
    fn run_data(
        &mut self,
        cmds: &[Command<'_>],
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<(Lsn, bool), String> {
        if self.node.is_shutting_down() {
            return Err("ERR server is shutting down".into());
        }
        if let Some(block) = self.node.engine.write_block() {
            if cmds.iter().any(|c| c.is_write()) {
                return Err(readonly_blocked(block));
            }
        }
        if self.node.is_standby() && cmds.iter().any(|c| c.is_write()) {
            let primary = self
                .node
                .repl
                .upstream
                .get()
                .map(|u| u.primary_client_addr)
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| "unknown".into());
            return Err(CommandError::ReadOnly { primary }.to_string());
        }
        for cmd in cmds {
            exec::check_limits(cmd).map_err(|e| engine_error_reply(&e))?;
        }
        let proto = self.protocol;
        let start = replies.len();
        let result = self.node.engine.execute(|tx| {
            for cmd in cmds {
                let mut r = Vec::new();
                exec::run(tx, cmd, &mut r, proto)?;
                replies.push(r);
            }
            Ok(())
        });
        match result {
            Ok(outcome) => {
                if outcome.wrote {
                    self.node.metrics.commits.inc();
                    self.last_write = outcome.wait_lsn;
                }
                Ok((outcome.wait_lsn, outcome.wrote))
            }
            Err(e) => {
                replies.truncate(start);
                if matches!(e, EngineError::DiskFull) {
                    self.node.metrics.errors_disk_full.inc();
                }
                Err(engine_error_reply(&e))
            }
        }
    }

    fn run_single(&mut self, cmd: Command<'_>, out: &mut Vec<u8>) -> (Lsn, bool) {
        let mut replies = Vec::with_capacity(1);
        match self.run_data(&[cmd], &mut replies) {
            Ok(r) => {
                replies.iter().for_each(|x| out.extend_from_slice(x));
                r
            }
            Err(msg) => {
                write_error(out, &msg);
                (Lsn::ZERO, false)
            }
        }
    }

    fn run_control(&mut self, cmd: Command<'_>, out: &mut Vec<u8>) -> (Lsn, bool) {
        let proto = self.protocol;
        match cmd {
            Command::Ping { message: None } => write_simple(out, "PONG"),
            Command::Ping { message: Some(m) } | Command::Echo { message: m } => write_bulk(out, m),
            Command::Auth { username, password } => match self.check_auth(username, password) {
                Ok(()) => write_simple(out, "OK"),
                Err(e) => write_error(out, &e.to_string()),
            },
            Command::Hello {
                protocol,
                auth,
                client_name,
            } => {
                if let Some((user, pass)) = auth {
                    if let Err(e) = self.check_auth(Some(user), pass) {
                        write_error(out, &e.to_string());
                        return (Lsn::ZERO, false);
                    }
                }
                if !self.authenticated {
                    write_error(out, &CommandError::HelloNoAuth.to_string());
                    return (Lsn::ZERO, false);
                }
                if let Some(p) = protocol {
                    self.protocol = p;
                }
                if let Some(n) = client_name {
                    self.name = n.to_vec();
                }
                self.write_hello(out);
            }
            Command::Info { sections } => {
                let wanted: Vec<String> = sections
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                    .collect();
                let text = info::render(&self.node, &wanted);
                write_bulk(out, text.as_bytes());
            }
            Command::Role => info::write_role(&self.node, out),
            Command::ClientSetName { name } => {
                self.name = name.to_vec();
                write_simple(out, "OK");
            }
            Command::ClientGetName => {
                if self.name.is_empty() {
                    write_null(out, proto)
                } else {
                    write_bulk(out, &self.name)
                }
            }
            Command::ClientId => write_integer(out, self.id as i64),
            Command::ClientSync { level } => {
                let text = String::from_utf8_lossy(level);
                if text.eq_ignore_ascii_case("default") {
                    self.sync_commit = None;
                    write_simple(out, "OK");
                } else {
                    match SyncLevel::parse(&text) {
                        Ok(l) => {
                            self.sync_commit = Some(l);
                            write_simple(out, "OK");
                        }
                        Err(_) => write_error(
                            out,
                            "ERR synchronous_commit must be one of: off, local, remote_receive, remote_write, on, remote_flush, remote_apply, default",
                        ),
                    }
                }
            }
            Command::ClientInfo => {
                let line = format!(
                    "id={} name={} db=0 resp={}\n",
                    self.id,
                    String::from_utf8_lossy(&self.name),
                    proto.version()
                );
                write_bulk(out, line.as_bytes());
            }
            Command::Command(q) => write_command_reply(out, proto, &q),
            Command::ConfigGet { patterns } => self.config_get(patterns.iter().collect(), out),
            Command::ConfigSet { pairs } => self.config_set(pairs.pairs().collect(), out),
            Command::Multi => {
                if self.multi.is_some() {
                    write_error(out, &CommandError::NestedMulti.to_string());
                } else {
                    self.multi = Some(Vec::new());
                    self.multi_failed = false;
                    write_simple(out, "OK");
                }
            }
            Command::Discard => {
                if self.multi.take().is_some() {
                    write_simple(out, "OK");
                } else {
                    write_error(out, &CommandError::DiscardWithoutMulti.to_string());
                }
            }
            Command::Exec => return self.exec(out),
            Command::Quit => {
                write_simple(out, "OK");
                self.closing = true;
            }
            Command::Shutdown => {
                // Like Redis, no reply: the connection closes as the node stops.
                self.stop_after_reply = true;
                self.closing = true;
            }
            Command::Wait {
                replicas,
                timeout_ms,
            } => {
                self.pending_wait = Some(PendingWait::Replicas {
                    replicas,
                    timeout_ms,
                })
            }
            Command::WaitLsn { lsn, timeout_ms } => {
                self.pending_wait = Some(PendingWait::Lsn {
                    lsn: Lsn(lsn),
                    timeout_ms,
                })
            }
            Command::Select => write_simple(out, "OK"),
            Command::LastLsn => write_integer(out, lsn_reply(self.last_write)),
            Command::Repl(r) => match ReplRequest::from_command(r) {
                Ok(req) => self.pending_repl = Some(req),
                Err(e) => write_error(out, &e),
            },
            Command::Scan {
                cursor,
                pattern,
                count,
                ..
            } => return self.scan(cursor, pattern, count, out),
            _ => write_error(out, "ERR command not handled"),
        }
        (Lsn::ZERO, false)
    }

    fn exec(&mut self, out: &mut Vec<u8>) -> (Lsn, bool) {
        let Some(queued) = self.multi.take() else {
            write_error(out, &CommandError::ExecWithoutMulti.to_string());
            return (Lsn::ZERO, false);
        };
        if std::mem::take(&mut self.multi_failed) {
            write_error(out, &CommandError::ExecAbort.to_string());
            return (Lsn::ZERO, false);
        }
        let mut cmds = Vec::with_capacity(queued.len());
        for q in &queued {
            match Command::parse(q.as_args()) {
                Ok(c) => cmds.push(c),
                Err(e) => {
                    write_error(out, &e.to_string());
                    return (Lsn::ZERO, false);
                }
            }
        }
        // Data commands run as one record group; the others (PING, INFO,
        // SCAN...) reply in place, after it, in their queued positions.
        let data: Vec<Command<'_>> = cmds.iter().copied().filter(exec::is_data_command).collect();
        let mut data_replies = Vec::with_capacity(data.len());
        let (lsn, wrote) = match self.run_data(&data, &mut data_replies) {
            Ok(r) => r,
            // A node that takes no writes answers READONLY as is, so that
            // clients following the primary retry the block there.
            Err(msg) if msg.starts_with("READONLY") => {
                write_error(out, &msg);
                return (Lsn::ZERO, false);
            }
            Err(msg) => {
                write_error(
                    out,
                    &format!("EXECABORT transaction aborted, nothing was written: {msg}"),
                );
                return (Lsn::ZERO, false);
            }
        };
        let mut data_replies = data_replies.into_iter();
        let mut wait = lsn;
        write_array_header(out, cmds.len());
        for cmd in cmds {
            if exec::is_data_command(&cmd) {
                out.extend_from_slice(&data_replies.next().unwrap_or_default());
            } else {
                wait = wait.max(self.run_control(cmd, out).0);
            }
        }
        (wait, wrote)
    }

    fn check_auth(&mut self, username: Option<&[u8]>, password: &[u8]) -> Result<(), CommandError> {
        let Some(expected) = self.node.config.requirepass.as_deref() else {
            return Err(CommandError::AuthNotConfigured);
        };
        let user_ok = username.is_none_or(|u| u == b"default");
        if user_ok && constant_time_eq(expected.as_bytes(), password) {
            self.authenticated = true;
            Ok(())
        } else {
            Err(CommandError::WrongPass)
        }
    }

    fn write_hello(&self, out: &mut Vec<u8>) {
        let p = self.protocol;
        write_map_header(out, p, 7);
        write_bulk(out, b"server");
        write_bulk(out, b"tandem");
        write_bulk(out, b"version");
        write_bulk(out, env!("CARGO_PKG_VERSION").as_bytes());
        write_bulk(out, b"proto");
        write_integer(out, p.version());
        write_bulk(out, b"id");
        write_integer(out, self.id as i64);
        write_bulk(out, b"mode");
        write_bulk(out, b"standalone");
        write_bulk(out, b"role");
        write_bulk(out, b"master");
        write_bulk(out, b"modules");
        write_array_header(out, 0);
    }

    /// Every setting `CONFIG GET` shows. The synchronous-commit rule's
    /// four can change at run time (`CONFIG SET`); the others are start-up
    /// settings that `CONFIG SET` refuses with the reason.
    fn settings(&self) -> Vec<(&'static str, String)> {
        let c = &self.node.config;
        let rule = self.node.repl.sync.rule();
        let mut settings: Vec<(&'static str, String)> = SYNC_RULE_SETTINGS
            .iter()
            .map(|&name| (name, rule.get(name).unwrap_or_default()))
            .collect();
        settings.extend([
            ("max_wal_retention", c.max_wal_retention.to_string()),
            ("requirepass", c.requirepass.clone().unwrap_or_default()),
            ("maxclients", c.connections_max.to_string()),
            ("appendonly", "yes".to_string()),
            ("save", String::new()),
            ("proto-max-bulk-len", c.request_bytes_max.to_string()),
            ("buffer_pool_bytes", c.buffer_pool_bytes.to_string()),
            ("wal_segment_bytes", c.wal_segment_bytes.to_string()),
            (
                "checkpoint_interval_secs",
                c.checkpoint_interval_secs.to_string(),
            ),
        ]);
        settings
    }

    fn config_get(&self, patterns: Vec<&[u8]>, out: &mut Vec<u8>) {
        let matched: Vec<(&str, String)> = self
            .settings()
            .into_iter()
            .filter(|(name, _)| {
                patterns
                    .iter()
                    .any(|p| glob_match_nocase(p, name.as_bytes()))
            })
            .collect();
        write_map_header(out, self.protocol, matched.len());
        for (name, value) in matched {
            write_bulk(out, name.as_bytes());
            write_bulk(out, value.as_bytes());
        }
    }

    /// `CONFIG SET name value [name value ...]`: all or nothing. The
    /// synchronous-commit rule's settings change the rule for the next
    /// commit and for the commits waiting now (`replication::sync_wait`);
    /// they are cluster settings, so a standby refuses them and names its
    /// primary. Start-up settings are refused with the reason.
    fn config_set(&mut self, pairs: Vec<(&[u8], &[u8])>, out: &mut Vec<u8>) {
        let sync = &self.node.repl.sync;
        let mut rule = sync.rule();
        let startup: Vec<&str> = self.settings().iter().map(|(n, _)| *n).collect();
        for (name, value) in &pairs {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let value = String::from_utf8_lossy(value).to_string();
            let refusal = if SYNC_RULE_SETTINGS.contains(&name.as_str()) {
                if self.node.is_standby() {
                    let primary = self
                        .node
                        .repl
                        .upstream
                        .get()
                        .map(|u| u.primary_client_addr)
                        .filter(|a| !a.is_empty())
                        .unwrap_or_else(|| "unknown".into());
                    Some(format!(
                        "ERR CONFIG SET {name}: the synchronous-commit rule is a cluster setting; set it on the primary ({primary}), whose rule this standby applies when promoted"
                    ))
                } else {
                    match rule.with(&name, &value) {
                        Ok(r) => {
                            rule = r;
                            None
                        }
                        Err(e) => Some(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                        )),
                    }
                }
            } else if startup.contains(&name.as_str()) {
                Some(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - a start-up setting that cannot change at run time: set it in the config file and restart"
                ))
            } else {
                Some(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                ))
            };
            if let Some(message) = refusal {
                write_error(out, &message);
                return;
            }
        }
        let origin = RuleOrigin {
            kind: OriginKind::ConfigSet,
            node: self.node.config.name.clone(),
            at_ms: crate::replication::sender::now_us() / 1000,
        };
        if rule != sync.rule() {
            if let Err(e) = sync.set_rule(rule, origin, &self.node.repl.standbys) {
                tracing::error!(error = %e, "CONFIG SET of the synchronous-commit rule failed");
                write_error(
                    out,
                    &format!("ERR CONFIG SET failed, the rule is unchanged: {e}"),
                );
                return;
            }
        }
        write_simple(out, "OK");
    }

    fn scan(
        &mut self,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
        out: &mut Vec<u8>,
    ) -> (Lsn, bool) {
        let start = if cursor == 0 {
            Vec::new()
        } else {
            match self.scan_cursors.iter().position(|(id, _)| *id == cursor) {
                Some(i) => self
                    .scan_cursors
                    .remove(i)
                    .map(|(_, k)| k)
                    .unwrap_or_default(),
                None => {
                    write_error(out, &CommandError::InvalidCursor.to_string());
                    return (Lsn::ZERO, false);
                }
            }
        };
        let count = count.clamp(1, 10_000);
        let result = self
            .node
            .engine
            .execute(|tx| btree::scan(tx, &start, count));
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                write_error(out, &engine_error_reply(&e));
                return (Lsn::ZERO, false);
            }
        };
        let (keys, more) = outcome.value;
        let next = match (more, keys.last()) {
            (true, Some(last)) => {
                let mut successor = last.clone();
                successor.push(0);
                let id = self.next_cursor;
                self.next_cursor += 1;
                if self.scan_cursors.len() >= limits::SCAN_CURSORS_MAX {
                    self.scan_cursors.pop_front();
                }
                self.scan_cursors.push_back((id, successor));
                id
            }
            _ => 0,
        };
        let shown: Vec<&Vec<u8>> = keys
            .iter()
            .filter(|k| pattern.is_none_or(|p| p == b"*" || glob_match(p, k)))
            .collect();
        write_array_header(out, 2);
        write_bulk(out, next.to_string().as_bytes());
        write_array_header(out, shown.len());
        for k in shown {
            write_bulk(out, k);
        }
        (outcome.wait_lsn, false)
    }
}

/// Compares secrets without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The READONLY reply of a primary that does not take writes now; clients
/// that follow the primary (the load tool, Redis clients with READONLY
/// handling) look for the new one.
fn readonly_blocked(block: crate::engine::WriteBlock) -> String {
    match block {
        // This node is the primary, only out of space: not a redirect.
        crate::engine::WriteBlock::NoTimelineYet => format!("ERR {block}"),
        _ => format!("READONLY this node takes no writes now: {block}"),
    }
}

/// Error reply text for an engine error.
pub fn engine_error_reply(e: &EngineError) -> String {
    match e {
        EngineError::DiskFull => {
            "ERR disk full: no space left on the data directory; nothing was written".into()
        }
        EngineError::Corrupt(p) => format!("ERR data corruption: {p}; the page is not served"),
        EngineError::KeyTooLarge { len, max } => {
            format!("ERR key of {len} bytes exceeds the maximum of {max} bytes")
        }
        EngineError::ValueTooLarge { len, max } => {
            format!("ERR value of {len} bytes exceeds the maximum of {max} bytes")
        }
        EngineError::ShuttingDown => "ERR server is shutting down".into(),
        EngineError::WritesBlocked(block) => readonly_blocked(*block),
        other => format!("ERR {other}"),
    }
}

//! `run --read-your-writes`: every acknowledged write transaction is read
//! back on a standby after `WAITLSN`, and a read that misses it is counted
//! as stale.
//!
//! Data flow per transaction (in `run.rs`): the client sends `LASTLSN`
//! right behind the transaction on its primary connection (one write, so
//! it answers that transaction's commit LSN without a round trip of its
//! own); once the transaction is acknowledged, [`ReadBack::check`] sends
//! `WAITLSN <lsn> <timeout_ms>` and `GET <key>` in one write to the
//! client's standby. The node runs the GET only after WAITLSN replied, so
//! the GET must see the key with the value the transaction wrote
//! ([`Probe`], taken from the rendered transaction: the command
//! [`Mix::read_back_command`](crate::script::Mix::read_back_command)
//! names, whose key no other transaction writes). A WAITLSN timeout is
//! counted apart and not judged. WAITLSN latency is timed from the send to
//! its reply.
//!
//! Standbys are the `--hosts` whose `ROLE` says `slave` at the start
//! ([`discover_standbys`]); client `i` reads on standby `i % n`, over one
//! connection of its own, and moves to the next standby after a
//! connection error. A client waits for its check before its next
//! transaction: the loop a read-your-writes application runs.

use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;

use crate::cluster::Target;
use crate::conn::Conn;
use crate::resp::{self, Value};
use crate::stats;

/// Bound on `--ryw-timeout-ms` (one minute).
pub const TIMEOUT_MS_MAX: u64 = 60_000;

/// What `run --read-your-writes` needs to know.
#[derive(Debug, Clone)]
pub struct RywConfig {
    /// Client port addresses of the standbys, in `--hosts` order.
    pub standbys: Vec<String>,
    /// WAITLSN's timeout.
    pub timeout_ms: u64,
    /// Index of the command whose key and value are read back.
    pub read_back_command: usize,
}

/// A key one transaction alone wrote, and the value it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Probe {
    /// The key and value of command `index` (`SET key value ...`) of a
    /// rendered transaction (RESP-encoded commands); `None` if there is no
    /// such command.
    pub fn from_encoded(encoded: &[u8], index: usize) -> Option<Probe> {
        let mut at = 0;
        for _ in 0..index {
            let (_, used) = resp::decode(encoded.get(at..)?).ok()??;
            at += used;
        }
        let (command, _) = resp::decode(encoded.get(at..)?).ok()??;
        let Value::Array(args) = command else {
            return None;
        };
        Some(Probe {
            key: args.get(1)?.as_bytes()?.to_vec(),
            value: args.get(2)?.as_bytes()?.to_vec(),
        })
    }
}

/// The read-your-writes figures of one thread, or merged, of the run.
#[derive(Clone)]
pub struct RywStats {
    /// Reads judged: WAITLSN replied the applied LSN, then GET answered.
    pub checks: u64,
    /// Judged reads that did not return the transaction's own write.
    pub stale_reads: u64,
    /// WAITLSN replies `TIMEOUT applied <lsn>`.
    pub timeouts: u64,
    /// Connection errors and other error replies on the standby.
    pub errors: u64,
    /// WAITLSN latency (send to reply), microseconds.
    pub waitlsn_us: Histogram<u64>,
}

impl RywStats {
    pub fn new() -> RywStats {
        RywStats {
            checks: 0,
            stale_reads: 0,
            timeouts: 0,
            errors: 0,
            waitlsn_us: stats::new_histogram(),
        }
    }

    pub fn merge(&mut self, other: &RywStats) {
        self.checks += other.checks;
        self.stale_reads += other.stale_reads;
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        // Auto-resizing histograms: adding cannot run out of range.
        let _ = self.waitlsn_us.add(&other.waitlsn_us);
    }

    /// Counts one outcome.
    pub fn record(&mut self, outcome: &CheckOutcome) {
        match outcome {
            CheckOutcome::Fresh { waitlsn_us } => {
                self.checks += 1;
                stats::record(&mut self.waitlsn_us, *waitlsn_us);
            }
            CheckOutcome::Stale { waitlsn_us, .. } => {
                self.checks += 1;
                self.stale_reads += 1;
                stats::record(&mut self.waitlsn_us, *waitlsn_us);
            }
            CheckOutcome::Timeout { .. } => self.timeouts += 1,
            CheckOutcome::Error { .. } => self.errors += 1,
        }
    }
}

/// How one read-back went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The standby returned the transaction's write.
    Fresh { waitlsn_us: u64 },
    /// WAITLSN said `applied >= lsn`, yet GET returned `got` (`None`: nil).
    Stale {
        waitlsn_us: u64,
        standby: String,
        applied: i64,
        got: Option<Vec<u8>>,
    },
    /// WAITLSN replied this error (`TIMEOUT applied <lsn>`).
    Timeout { standby: String, reply: String },
    /// Anything else (connection error, another error reply): not judged.
    Error { standby: String, detail: String },
}

/// One client's standby connection for read-backs.
pub struct ReadBack {
    /// Index into [`RywConfig::standbys`] of the standby in use.
    standby: usize,
    conn: Option<Conn>,
}

impl ReadBack {
    /// Client `client_id` starts on standby `client_id % n` (round-robin).
    pub fn new(client_id: usize, cfg: &RywConfig) -> ReadBack {
        ReadBack {
            standby: client_id % cfg.standbys.len().max(1),
            conn: None,
        }
    }

    /// Waits on the standby for `lsn`, then reads `probe.key` there.
    pub async fn check(
        &mut self,
        cfg: &RywConfig,
        target: &Target,
        probe: &Probe,
        lsn: u64,
    ) -> CheckOutcome {
        let standby = cfg
            .standbys
            .get(self.standby % cfg.standbys.len().max(1))
            .cloned()
            .unwrap_or_default();
        let outcome = self.try_check(cfg, target, probe, lsn, &standby).await;
        if matches!(outcome, CheckOutcome::Error { .. }) {
            // Drop the connection; the next check connects to the next standby.
            self.conn = None;
            self.standby = self.standby.wrapping_add(1);
        }
        outcome
    }

    async fn try_check(
        &mut self,
        cfg: &RywConfig,
        target: &Target,
        probe: &Probe,
        lsn: u64,
        standby: &str,
    ) -> CheckOutcome {
        let error = |detail: String| CheckOutcome::Error {
            standby: standby.to_string(),
            detail,
        };
        if self.conn.is_none() {
            match target.connect_any(standby).await {
                Ok(conn) => self.conn = Some(conn),
                Err(e) => return error(e.to_string()),
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return error("not connected".to_string());
        };
        let (lsn_arg, timeout_arg) = (lsn.to_string(), cfg.timeout_ms.to_string());
        conn.queue(&["WAITLSN", lsn_arg.as_str(), timeout_arg.as_str()]);
        conn.queue(&[&b"GET"[..], &probe.key]);
        let sent = Instant::now();
        if let Err(e) = conn.flush().await {
            return error(e.to_string());
        }
        let deadline = sent + Duration::from_millis(cfg.timeout_ms) + target.io_timeout;
        let waited = conn.read_reply(deadline).await;
        let waitlsn_us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        let read = conn.read_reply(deadline).await;
        let (waited, read) = match (waited, read) {
            (Ok(w), Ok(r)) => (w, r),
            (Err(e), _) | (_, Err(e)) => return error(e.to_string()),
        };
        let applied = match waited {
            Value::Int(applied) if applied >= 0 && applied as u64 >= lsn => applied,
            Value::Error(text) if text.starts_with(b"TIMEOUT") => {
                return CheckOutcome::Timeout {
                    standby: standby.to_string(),
                    reply: String::from_utf8_lossy(&text).into_owned(),
                }
            }
            other => return error(format!("WAITLSN {lsn} replied {other}")),
        };
        let got = match read {
            Value::Bulk(v) => Some(v),
            Value::Null => None,
            other => return error(format!("GET replied {other}")),
        };
        if got.as_deref() == Some(&probe.value[..]) {
            CheckOutcome::Fresh { waitlsn_us }
        } else {
            CheckOutcome::Stale {
                waitlsn_us,
                standby: standby.to_string(),
                applied,
                got,
            }
        }
    }
}

/// The standbys among `target.hosts`: hosts whose `ROLE` answers `slave`
/// and whose `WAITLSN 0 1` answers an integer. An error names what every
/// host said when there is none.
pub async fn discover_standbys(target: &Target) -> anyhow::Result<Vec<String>> {
    let mut standbys = Vec::new();
    let mut seen = Vec::new();
    for host in &target.hosts {
        match probe_host(target, host).await {
            Ok(HostRole::Standby) => standbys.push(host.clone()),
            Ok(HostRole::Other(role)) => seen.push(format!("{host}: {role}")),
            Err(e) => seen.push(format!("{host}: {e}")),
        }
    }
    if standbys.is_empty() {
        bail!(
            "--read-your-writes needs a standby among --hosts to read the writes back on, \
             and found none ({})",
            seen.join("; ")
        );
    }
    Ok(standbys)
}

enum HostRole {
    Standby,
    /// The `ROLE` reply of a node that is not a standby.
    Other(String),
}

async fn probe_host(target: &Target, host: &str) -> anyhow::Result<HostRole> {
    let mut conn = target.connect_any(host).await?;
    let role = conn.call(&["ROLE"], target.io_timeout).await?;
    let is_standby = matches!(&role, Value::Array(items)
        if items.first().and_then(Value::as_bytes) == Some(&b"slave"[..]));
    if !is_standby {
        return Ok(HostRole::Other(format!("ROLE {role}")));
    }
    let reply = conn.call(&["WAITLSN", "0", "1"], target.io_timeout).await?;
    if !matches!(reply, Value::Int(_)) {
        bail!("a standby that does not take WAITLSN (WAITLSN 0 1 replied {reply})");
    }
    Ok(HostRole::Standby)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{Mix, Script, VAR_CLIENT_ID, VAR_RUN_ID, VAR_SCALE, VAR_SEQ};

    #[test]
    fn probe_is_the_history_row_of_a_tpcb_transaction() {
        let script = Script::parse("tpcb", &Mix::Tpcb.text()).unwrap();
        let mut vars = vec![0; script.var_count()];
        vars[VAR_SCALE] = 1;
        vars[VAR_CLIENT_ID] = 4;
        vars[VAR_RUN_ID] = 99;
        vars[VAR_SEQ] = 12;
        let mut encoded = Vec::new();
        script.render(&mut vars, 7, &mut encoded).unwrap();
        let index = Mix::Tpcb.read_back_command().unwrap();
        let probe = Probe::from_encoded(&encoded, index).unwrap();
        assert_eq!(probe.key, b"history:99:4:12");
        let value = String::from_utf8(probe.value).unwrap();
        assert_eq!(value.split(' ').count(), 4, "{value}");
        assert_eq!(Probe::from_encoded(&encoded, 99), None);
        assert_eq!(Probe::from_encoded(b"*1\r\n$5\r\nMULTI\r\n", 0), None);
    }

    #[test]
    fn outcomes_are_counted_apart() {
        let mut s = RywStats::new();
        s.record(&CheckOutcome::Fresh { waitlsn_us: 300 });
        s.record(&CheckOutcome::Stale {
            waitlsn_us: 500,
            standby: "s".into(),
            applied: 10,
            got: None,
        });
        s.record(&CheckOutcome::Timeout {
            standby: "s".into(),
            reply: "TIMEOUT applied 5".into(),
        });
        s.record(&CheckOutcome::Error {
            standby: "s".into(),
            detail: "closed".into(),
        });
        let mut total = RywStats::new();
        total.merge(&s);
        total.merge(&s);
        assert_eq!(
            (
                total.checks,
                total.stale_reads,
                total.timeouts,
                total.errors
            ),
            (4, 2, 2, 2)
        );
        assert_eq!(total.waitlsn_us.len(), 4);
    }
}

//! `tandemctl switchover`, `failover`, `promote` and `demote`: role
//! changes driven over the nodes' client ports with the `REPL` commands
//! (DESIGN.md section 4).
//!
//! Switchover, in order (each step checked; on a failure before the
//! promotion the old primary is unfenced and takes writes again):
//! 1. the target must be a standby streaming from a primary;
//! 2. `REPL FENCE` on the primary: no new writes, the WAL end E returned;
//! 3. `REPL WAITLSN E` on the target, bounded by `--timeout-ms`;
//! 4. `REPL PROMOTE switchover` on the target (new timeline at E);
//! 5. `REPL DEMOTE <target repl>` on the old primary (it ends at E, so it
//!    follows without a build);
//! 6. `REPL FOLLOW <target repl>` on every other standby named by
//!    `--hosts` (standbys not named follow through the old primary, or by
//!    themselves through their `peers`).
//!
//! Failover: promote the target (given, or with `--auto-pick` the
//! reachable standby with the highest flushed LSN), refusing one that has
//! less WAL than another reachable standby, or whose primary still
//! answers, unless `--force`; then re-point the other standbys.
//!
//! Invariant: a switchover never promotes a target that has not applied
//! everything the fenced primary wrote, so no acknowledged write is lost.

use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{Conn, Info};
use super::CtlError;

#[derive(Debug, thiserror::Error)]
pub enum RoleOpError {
    #[error(transparent)]
    Ctl(#[from] CtlError),
    #[error("{host} is not a healthy standby ({why}): refusing")]
    NotHealthyStandby { host: String, why: String },
    #[error("{host} is not a primary (role {role}): refusing")]
    NotPrimary { host: String, role: String },
    #[error("{target} did not reach the primary's last LSN {lsn} within {ms} ms ({reason}); the primary {primary} takes writes again")]
    CatchUpTimeout {
        target: String,
        primary: String,
        lsn: u64,
        ms: u64,
        reason: String,
    },
    #[error("promoting {target} failed ({reason}); the primary {primary} takes writes again")]
    PromoteFailed {
        target: String,
        primary: String,
        reason: String,
    },
    #[error("{target} is the new primary (timeline {timeline}), but demoting the old primary {old} failed: {reason}; it is fenced (takes no writes): rebuild it or run `tandemctl demote --host {old} --upstream {upstream}`")]
    DemoteFailed {
        target: String,
        timeline: String,
        old: String,
        upstream: String,
        reason: String,
    },
    #[error("{host}: the node did not say {field} in INFO replication")]
    Missing { host: String, field: &'static str },
    #[error("no reachable standby among {hosts}")]
    NoCandidate { hosts: String },
    #[error("{target} has less WAL (flushed {target_lsn}) than the standby {other} (flushed {other_lsn}): promoting it could lose acknowledged writes; promote {other} or use --force")]
    BehindAnother {
        target: String,
        target_lsn: u64,
        other: String,
        other_lsn: u64,
    },
    #[error("the primary {primary} of {target} still answers: use switchover (or --force to promote anyway and risk two primaries)")]
    PrimaryAlive { target: String, primary: String },
    #[error("give --host TARGET, or --auto-pick with --hosts")]
    NoTarget,
}

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

fn repl(info: &Info) -> std::collections::BTreeMap<String, String> {
    info.get("replication").cloned().unwrap_or_default()
}

fn field(
    host: &str,
    r: &std::collections::BTreeMap<String, String>,
    key: &'static str,
) -> Result<String, RoleOpError> {
    r.get(key).cloned().ok_or_else(|| RoleOpError::Missing {
        host: host.to_string(),
        field: key,
    })
}

fn lsn(r: &std::collections::BTreeMap<String, String>, key: &str) -> u64 {
    r.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn open(host: &str, password: Option<&str>) -> Result<Conn, CtlError> {
    Conn::open_timeout(host, password, CONNECT_TIMEOUT)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// `--hosts` other than `except`, reachable standbys only, each re-pointed
/// at `upstream`; returns the hosts that follow now.
fn repoint(
    hosts: &[String],
    except: &[&str],
    upstream: &str,
    password: Option<&str>,
) -> Vec<String> {
    let mut followed = Vec::new();
    for h in hosts.iter().filter(|h| !except.contains(&h.as_str())) {
        let Ok(mut c) = open(h, password) else {
            continue;
        };
        let role = c
            .info(&["replication"])
            .ok()
            .and_then(|i| repl(&i).get("role").cloned())
            .unwrap_or_default();
        if role != "standby" {
            continue;
        }
        match c.call(&["REPL", "FOLLOW", upstream]) {
            Ok(_) => followed.push(h.clone()),
            Err(e) => eprintln!("tandemctl: {h} did not follow {upstream}: {e}"),
        }
    }
    followed
}

/// Options shared by switchover and failover.
pub struct RoleOptions<'a> {
    pub password: Option<&'a str>,
    /// Every node of the cluster (client addresses), for re-pointing.
    pub hosts: &'a [String],
    pub json: bool,
}

/// Planned handover to the standby at `target`.
pub fn switchover(target: &str, timeout_ms: u64, opt: &RoleOptions<'_>) -> Result<(), RoleOpError> {
    let started = Instant::now();
    let mut t = open(target, opt.password)?;
    let ti = repl(&t.info(&["replication"])?);
    let role = ti.get("role").cloned().unwrap_or_default();
    let state = ti.get("upstream_state").cloned().unwrap_or_default();
    if role != "standby" || state != "streaming" {
        return Err(RoleOpError::NotHealthyStandby {
            host: target.to_string(),
            why: format!("role {role}, upstream {state}"),
        });
    }
    let primary = field(target, &ti, "primary")?;
    let target_repl = field(target, &ti, "repl_listen")?;
    let mut p = open(&primary, opt.password)?;
    let pi = repl(&p.info(&["replication"])?);
    let prole = pi.get("role").cloned().unwrap_or_default();
    if prole != "primary" {
        return Err(RoleOpError::NotPrimary {
            host: primary,
            role: prole,
        });
    }
    let fenced_at = Instant::now();
    let end: u64 = p
        .call(&["REPL", "FENCE"])?
        .parse()
        .map_err(|_| CtlError::Protocol {
            host: primary.clone(),
            reply: "REPL FENCE".into(),
        })?;
    let unfence = |p: &mut Conn| {
        if let Err(e) = p.call(&["REPL", "UNFENCE"]) {
            eprintln!("tandemctl: could not unfence {primary}: {e}");
        }
    };
    t.set_timeout(Duration::from_millis(timeout_ms + 5000))?;
    if let Err(e) = t.call(&["REPL", "WAITLSN", &end.to_string(), &timeout_ms.to_string()]) {
        unfence(&mut p);
        return Err(RoleOpError::CatchUpTimeout {
            target: target.to_string(),
            primary: primary.clone(),
            lsn: end,
            ms: timeout_ms,
            reason: e.to_string(),
        });
    }
    let caught_up_ms = ms_since(fenced_at);
    let promoted = match t.call(&["REPL", "PROMOTE", "switchover"]) {
        Ok(s) => s,
        Err(e) => {
            unfence(&mut p);
            return Err(RoleOpError::PromoteFailed {
                target: target.to_string(),
                primary: primary.clone(),
                reason: e.to_string(),
            });
        }
    };
    let promoted_ms = ms_since(fenced_at);
    let (timeline, switch_lsn) = parse_promoted(&promoted);
    if let Err(e) = p.call(&["REPL", "DEMOTE", &target_repl]) {
        return Err(RoleOpError::DemoteFailed {
            target: target.to_string(),
            timeline,
            old: primary.clone(),
            upstream: target_repl,
            reason: e.to_string(),
        });
    }
    let followed = repoint(opt.hosts, &[target, &primary], &target_repl, opt.password);
    let total_ms = ms_since(started);
    if opt.json {
        let v = json!({
            "new_primary": target,
            "old_primary": primary,
            "timeline": timeline.parse::<u64>().unwrap_or(0),
            "switch_lsn": switch_lsn.parse::<u64>().unwrap_or(0),
            "fenced_lsn": end,
            "catch_up_ms": caught_up_ms,
            "write_block_ms": promoted_ms,
            "total_ms": total_ms,
            "followed": followed,
        });
        println!("{v}");
    } else {
        println!(
            "switchover done: {target} is the primary on timeline {timeline} (from LSN {switch_lsn}); \
             {primary} follows it; writes were blocked {promoted_ms:.1} ms \
             (catch-up {caught_up_ms:.1} ms); total {total_ms:.1} ms"
        );
        for f in &followed {
            println!("  {f} follows {target}");
        }
    }
    Ok(())
}

/// `PROMOTED timeline=N switch_lsn=L` -> (N, L) as text.
fn parse_promoted(s: &str) -> (String, String) {
    let get = |k: &str| {
        s.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or("?")
            .to_string()
    };
    (get("timeline="), get("switch_lsn="))
}

/// Promotes a standby because its primary is gone.
pub fn failover(
    target: Option<&str>,
    auto_pick: bool,
    force: bool,
    opt: &RoleOptions<'_>,
) -> Result<(), RoleOpError> {
    // What every reachable node says: (host, replication section).
    let mut seen = Vec::new();
    for h in opt.hosts.iter().map(String::as_str).chain(target) {
        if seen.iter().any(|(s, _): &(String, _)| s == h) {
            continue;
        }
        if let Ok(mut c) = open(h, opt.password) {
            if let Ok(i) = c.info(&["replication"]) {
                seen.push((h.to_string(), repl(&i)));
            }
        }
    }
    let standbys: Vec<_> = seen
        .iter()
        .filter(|(_, r)| r.get("role").map(String::as_str) == Some("standby"))
        .collect();
    let target = match (target, auto_pick) {
        (Some(t), _) => t.to_string(),
        (None, true) => standbys
            .iter()
            .max_by_key(|(_, r)| (lsn(r, "flush_lsn"), lsn(r, "applied_lsn")))
            .map(|(h, _)| h.clone())
            .ok_or_else(|| RoleOpError::NoCandidate {
                hosts: opt.hosts.join(","),
            })?,
        (None, false) => return Err(RoleOpError::NoTarget),
    };
    let Some((_, tr)) = seen.iter().find(|(h, _)| *h == target) else {
        return Err(CtlError::Connect {
            host: target.clone(),
            source: std::io::Error::other("no answer"),
        }
        .into());
    };
    let role = tr.get("role").cloned().unwrap_or_default();
    if role != "standby" {
        return Err(RoleOpError::NotHealthyStandby {
            host: target.clone(),
            why: format!("role {role}"),
        });
    }
    if !force {
        let mine = lsn(tr, "flush_lsn");
        if let Some((other, r)) = standbys
            .iter()
            .filter(|(h, _)| *h != target)
            .max_by_key(|(_, r)| lsn(r, "flush_lsn"))
        {
            if lsn(r, "flush_lsn") > mine {
                return Err(RoleOpError::BehindAnother {
                    target: target.clone(),
                    target_lsn: mine,
                    other: other.clone(),
                    other_lsn: lsn(r, "flush_lsn"),
                });
            }
        }
        let primary = tr.get("primary").cloned().unwrap_or_default();
        if !primary.is_empty() {
            let alive = open(&primary, opt.password)
                .and_then(|mut c| c.info(&["replication"]))
                .map(|i| repl(&i).get("role").map(String::as_str) == Some("primary"))
                .unwrap_or(false);
            if alive {
                return Err(RoleOpError::PrimaryAlive {
                    target: target.clone(),
                    primary,
                });
            }
        }
    }
    let target_repl = field(&target, tr, "repl_listen")?;
    let started = Instant::now();
    let promoted = open(&target, opt.password)?.call(&["REPL", "PROMOTE", "failover"])?;
    let promote_ms = ms_since(started);
    let (timeline, switch_lsn) = parse_promoted(&promoted);
    let followed = repoint(opt.hosts, &[target.as_str()], &target_repl, opt.password);
    if opt.json {
        let v = json!({
            "new_primary": target,
            "timeline": timeline.parse::<u64>().unwrap_or(0),
            "switch_lsn": switch_lsn.parse::<u64>().unwrap_or(0),
            "promote_ms": promote_ms,
            "followed": followed,
        });
        println!("{v}");
    } else {
        println!(
            "failover done: {target} is the primary on timeline {timeline} (from LSN {switch_lsn}); promotion took {promote_ms:.1} ms"
        );
        for f in &followed {
            println!("  {f} follows {target}");
        }
    }
    Ok(())
}

/// `tandemctl promote`: a standby (or a pending primary) takes writes.
pub fn promote(host: &str, password: Option<&str>, json: bool) -> Result<(), RoleOpError> {
    let promoted = open(host, password)?.call(&["REPL", "PROMOTE", "promote"])?;
    let (timeline, switch_lsn) = parse_promoted(&promoted);
    if json {
        println!(
            "{}",
            json!({"host": host, "timeline": timeline.parse::<u64>().unwrap_or(0), "switch_lsn": switch_lsn.parse::<u64>().unwrap_or(0)})
        );
    } else {
        println!("{host} is a primary on timeline {timeline} (from LSN {switch_lsn})");
    }
    Ok(())
}

/// `tandemctl demote`: a primary becomes a standby of `upstream` (a
/// replication address).
pub fn demote(
    host: &str,
    upstream: &str,
    password: Option<&str>,
    json: bool,
) -> Result<(), RoleOpError> {
    let mut c = open(host, password)?;
    c.call(&["REPL", "FENCE"])?;
    let end = c.call(&["REPL", "DEMOTE", upstream])?;
    if json {
        println!(
            "{}",
            json!({"host": host, "upstream": upstream, "wal_end": end.parse::<u64>().unwrap_or(0)})
        );
    } else {
        println!("{host} is a standby of {upstream} (its WAL ends at {end})");
    }
    Ok(())
}

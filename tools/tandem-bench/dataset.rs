//! The TPC-B-shaped data set: its key layout, `init`, `init --drop` and `check`.
//!
//! Key layout (all values are decimal integers unless noted):
//!
//! | key                                  | count per scale | value                      |
//! |--------------------------------------|-----------------|----------------------------|
//! | `branch:{1..=scale}`                 | 1               | balance, 0 after init      |
//! | `teller:{1..=10*scale}`              | 10              | balance                    |
//! | `account:{1..=100000*scale}`         | 100,000         | balance                    |
//! | `history:{run_id}:{client_id}:{seq}` | one per tpcb tx | `"{aid} {tid} {bid} {delta}"` |
//! | `tpcb:scale`                         | one             | the scale, written last    |
//!
//! History entries are separate keys with a per-client sequence (no hot counter
//! key); `run_id` keeps runs apart. `check` finds them with `SCAN MATCH history:*`.
//! `tpcb:scale` is written after all rows and deleted before any, so its presence
//! means a complete data set.
//!
//! `init` drops the previous data set (by known key names for the old scale, and
//! history by SCAN), then loads with `MSET` of `MSET_KEYS` keys per command,
//! `PIPELINE_DEPTH` commands per write. Runs on a compio runtime on the main thread.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cluster::Target;
use crate::conn::Conn;
use crate::resp::Value;

pub const SCALE_KEY: &str = "tpcb:scale";
pub const ACCOUNTS_PER_SCALE: i64 = 100_000;
pub const TELLERS_PER_SCALE: i64 = 10;
pub const BRANCHES_PER_SCALE: i64 = 1;
/// Largest scale accepted: 10^9 account keys is far beyond a test machine.
pub const SCALE_MAX: i64 = 10_000;

/// Keys per MSET / MGET / DEL: Redis handles 1000-key commands in well under a
/// millisecond, and fewer commands mean fewer round trips.
const MSET_KEYS: usize = 1000;
/// Batched commands written before their replies are read.
const PIPELINE_DEPTH: usize = 16;
/// Keys asked per SCAN call.
const SCAN_COUNT: &str = "1000";
/// Problems listed by `check` before it only counts them.
const PROBLEMS_SHOWN_MAX: usize = 10;

/// The three balance tables and their key counts.
fn tables(scale: i64) -> [(&'static str, i64); 3] {
    [
        ("account", ACCOUNTS_PER_SCALE * scale),
        ("teller", TELLERS_PER_SCALE * scale),
        ("branch", BRANCHES_PER_SCALE * scale),
    ]
}

/// Sends `commands` in pipelined batches; `on_reply` sees each reply in order.
async fn pipelined<I, F>(
    conn: &mut Conn,
    commands: I,
    timeout: Duration,
    mut on_reply: F,
) -> anyhow::Result<()>
where
    I: IntoIterator<Item = Vec<Vec<u8>>>,
    F: FnMut(Value) -> anyhow::Result<()>,
{
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        let mut sent = 0;
        for args in commands.by_ref().take(PIPELINE_DEPTH) {
            conn.queue(&args);
            sent += 1;
        }
        conn.flush().await?;
        let deadline = Instant::now() + timeout;
        for _ in 0..sent {
            on_reply(conn.read_reply(deadline).await?)?;
        }
    }
    Ok(())
}

fn fail_on_error(reply: Value) -> anyhow::Result<()> {
    match reply.error_text() {
        Some(text) => bail!("server error: {text}"),
        None => Ok(()),
    }
}

/// Commands over the keys `{prefix}:{1..=count}` in groups of `MSET_KEYS`.
fn key_batches(
    prefix: &'static str,
    count: i64,
    verb: &'static str,
    value: Option<&'static [u8]>,
) -> impl Iterator<Item = Vec<Vec<u8>>> {
    let batch = MSET_KEYS as i64;
    (0..(count + batch - 1) / batch).map(move |b| {
        let first = b * batch + 1;
        let last = (first + batch - 1).min(count);
        let mut args = vec![verb.as_bytes().to_vec()];
        for id in first..=last {
            args.push(format!("{prefix}:{id}").into_bytes());
            if let Some(v) = value {
                args.push(v.to_vec());
            }
        }
        args
    })
}

async fn read_scale(conn: &mut Conn, timeout: Duration) -> anyhow::Result<Option<i64>> {
    match conn.call(&["GET", SCALE_KEY], timeout).await? {
        Value::Null => Ok(None),
        Value::Error(e) => bail!("GET {SCALE_KEY}: {}", String::from_utf8_lossy(&e)),
        v => match v.as_int() {
            Some(s) if (1..=SCALE_MAX).contains(&s) => Ok(Some(s)),
            _ => bail!("{SCALE_KEY} holds {v}, not a scale in 1..={SCALE_MAX}"),
        },
    }
}

/// Reads `tpcb:scale` from the primary; `None` if there is no data set.
pub async fn discover_scale(target: &Target) -> anyhow::Result<Option<i64>> {
    let (mut conn, _) = target.connect_primary(0).await?;
    read_scale(&mut conn, target.io_timeout).await
}

/// Deletes all `history:*` keys; returns how many.
async fn drop_history(conn: &mut Conn, timeout: Duration) -> anyhow::Result<u64> {
    let mut deleted = 0;
    let mut cursor = b"0".to_vec();
    loop {
        let (next, keys) = scan(conn, &cursor, "history:*", timeout).await?;
        if !keys.is_empty() {
            let mut args = vec![b"DEL".to_vec()];
            args.extend(keys);
            let reply = conn.call(&args, timeout).await?;
            deleted += reply
                .as_int()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0);
        }
        if next == b"0" {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// One SCAN step: the next cursor and the keys.
async fn scan(
    conn: &mut Conn,
    cursor: &[u8],
    pattern: &str,
    timeout: Duration,
) -> anyhow::Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let args: [&[u8]; 6] = [
        b"SCAN",
        cursor,
        b"MATCH",
        pattern.as_bytes(),
        b"COUNT",
        SCAN_COUNT.as_bytes(),
    ];
    let reply = conn.call(&args, timeout).await?;
    let Value::Array(mut parts) = reply else {
        bail!("unexpected SCAN reply: {reply}");
    };
    let (Some(Value::Array(keys)), Some(next)) = (parts.pop(), parts.pop()) else {
        bail!("unexpected SCAN reply shape");
    };
    let next = next
        .as_bytes()
        .context("SCAN cursor is not a string")?
        .to_vec();
    let keys = keys
        .into_iter()
        .filter_map(|k| k.as_bytes().map(<[u8]>::to_vec))
        .collect();
    Ok((next, keys))
}

/// Deletes the data set of the scale recorded in `tpcb:scale` and all history.
async fn drop_dataset(conn: &mut Conn, timeout: Duration) -> anyhow::Result<()> {
    let old_scale = read_scale(conn, timeout).await.ok().flatten();
    fail_on_error(conn.call(&["DEL", SCALE_KEY], timeout).await?)?;
    if let Some(scale) = old_scale {
        for (prefix, count) in tables(scale) {
            let batches = key_batches(prefix, count, "DEL", None);
            pipelined(conn, batches, timeout, fail_on_error).await?;
        }
    }
    let history = drop_history(conn, timeout).await?;
    match old_scale {
        Some(s) => eprintln!("dropped the data set of scale {s} and {history} history entries"),
        None => eprintln!("no previous data set; dropped {history} history entries"),
    }
    Ok(())
}

/// `init`: drop the old data set, then load `scale` (unless `drop_only`).
pub async fn init(target: &Target, scale: i64, drop_only: bool) -> anyhow::Result<()> {
    let timeout = target.io_timeout;
    let (mut conn, _) = target.connect_primary(0).await?;
    drop_dataset(&mut conn, timeout).await?;
    if drop_only {
        return Ok(());
    }
    let rows: i64 = tables(scale).iter().map(|(_, n)| n).sum();
    let bar = ProgressBar::new(rows as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    let begin = Instant::now();
    for (prefix, count) in tables(scale) {
        let batches = key_batches(prefix, count, "MSET", Some(b"0"));
        pipelined(&mut conn, batches, timeout, |reply| {
            bar.inc(MSET_KEYS as u64);
            fail_on_error(reply)
        })
        .await?;
    }
    let scale_text = scale.to_string();
    fail_on_error(
        conn.call(&["SET", SCALE_KEY, scale_text.as_str()], timeout)
            .await?,
    )?;
    bar.finish_and_clear();
    let secs = begin.elapsed().as_secs_f64();
    println!(
        "init: scale {scale}, {rows} rows in {secs:.2} s ({:.0} rows/s)",
        rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Sums of one balance table plus the problems found reading it.
async fn sum_table(
    conn: &mut Conn,
    prefix: &'static str,
    count: i64,
    timeout: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<i128> {
    let mut sum: i128 = 0;
    let mut next_id: i64 = 1;
    let batches = key_batches(prefix, count, "MGET", None);
    pipelined(conn, batches, timeout, |reply| {
        let Value::Array(values) = reply else {
            bail!("unexpected MGET reply: {reply}");
        };
        for v in values {
            match v.as_int() {
                Some(n) => sum += i128::from(n),
                None => problems.push(format!("{prefix}:{next_id} holds {v}, not an integer")),
            }
            next_id += 1;
        }
        Ok(())
    })
    .await?;
    Ok(sum)
}

/// Sum of the deltas of all history entries and their count.
async fn sum_history(
    conn: &mut Conn,
    timeout: Duration,
    problems: &mut Vec<String>,
) -> anyhow::Result<(i128, u64)> {
    let (mut sum, mut entries) = (0i128, 0u64);
    let mut cursor = b"0".to_vec();
    loop {
        let (next, keys) = scan(conn, &cursor, "history:*", timeout).await?;
        if !keys.is_empty() {
            let mut args = vec![b"MGET".to_vec()];
            args.extend(keys.iter().cloned());
            let Value::Array(values) = conn.call(&args, timeout).await? else {
                bail!("unexpected MGET reply for history keys");
            };
            for (key, v) in keys.iter().zip(values) {
                let delta = v.as_bytes().and_then(|b| {
                    let text = std::str::from_utf8(b).ok()?;
                    text.split_whitespace().last()?.parse::<i64>().ok()
                });
                match delta {
                    Some(d) => {
                        sum += i128::from(d);
                        entries += 1;
                    }
                    // Deleted between SCAN and MGET: not an entry any more.
                    None if v == Value::Null => {}
                    None => problems.push(format!(
                        "{} holds {v}, not \"aid tid bid delta\"",
                        String::from_utf8_lossy(key)
                    )),
                }
            }
        }
        if next == b"0" {
            return Ok((sum, entries));
        }
        cursor = next;
    }
}

/// `check`: true if accounts, tellers, branches and history sum to the same.
pub async fn check(target: &Target, scale: Option<i64>) -> anyhow::Result<bool> {
    let timeout = target.io_timeout;
    let (mut conn, _) = target.connect_primary(0).await?;
    let scale = match scale {
        Some(s) => s,
        None => read_scale(&mut conn, timeout)
            .await?
            .with_context(|| format!("no {SCALE_KEY} key: run `tandem-bench init` or pass -s"))?,
    };
    let mut problems = Vec::new();
    let mut sums = Vec::new();
    for (prefix, count) in tables(scale) {
        let sum = sum_table(&mut conn, prefix, count, timeout, &mut problems).await?;
        println!("{prefix:<8} sum {sum} ({count} keys)");
        sums.push((prefix, sum));
    }
    let (history, entries) = sum_history(&mut conn, timeout, &mut problems).await?;
    println!("history  sum {history} ({entries} entries)");
    for p in problems.iter().take(PROBLEMS_SHOWN_MAX) {
        println!("problem: {p}");
    }
    if problems.len() > PROBLEMS_SHOWN_MAX {
        println!(
            "problem: ... and {} more",
            problems.len() - PROBLEMS_SHOWN_MAX
        );
    }
    let mismatched: Vec<String> = sums
        .iter()
        .filter(|(_, s)| *s != history)
        .map(|(prefix, s)| format!("{prefix} - history = {}", s - history))
        .collect();
    if mismatched.is_empty() && problems.is_empty() {
        println!("check: pass");
        return Ok(true);
    }
    let mut why = mismatched;
    if !problems.is_empty() {
        why.push(format!("{} unreadable values", problems.len()));
    }
    println!("check: FAIL ({})", why.join(", "));
    Ok(false)
}

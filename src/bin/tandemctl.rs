//! `tandemctl`: operator's view of a node (DESIGN.md section 5).
//!
//! `query` prints what a node says about itself and its replication peers
//! (the `gs_ctl query` view, from `INFO`), human-readable or `--json`;
//! `digest` prints the applied LSN and the page digest (equal on nodes that
//! hold the same data); `stop` shuts a node down cleanly (SHUTDOWN).
//! Switchover, failover, promote and demote come with the roles issue.
//! Exit status: 0 on success, 1 on any failure, with the reason on stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tandemctl", version, about = "Query and control tandem nodes")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Role, state, timeline, LSNs, standbys, sync states, lag.
    Query {
        /// The node's client address (HOST:PORT).
        #[arg(long)]
        host: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Applied LSN and a digest of all pages.
    Digest {
        #[arg(long)]
        host: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Clean shutdown (in-flight commits finish, checkpoint, exit 0).
    Stop {
        #[arg(long)]
        host: String,
        #[arg(long)]
        password: Option<String>,
    },
}

/// A minimal blocking RESP client: enough for INFO and SHUTDOWN.
struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    fn open(host: &str, password: Option<&str>) -> anyhow::Result<Conn> {
        let stream =
            TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut conn = Conn { reader, stream };
        if let Some(p) = password {
            conn.call(&["AUTH", p])?;
        }
        Ok(conn)
    }

    fn send(&mut self, args: &[&str]) -> anyhow::Result<()> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(req.as_bytes())?;
        Ok(())
    }

    /// Sends a command; returns a bulk or simple reply as text.
    fn call(&mut self, args: &[&str]) -> anyhow::Result<String> {
        self.send(args)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let line = line.trim_end();
        match line.as_bytes().first() {
            Some(b'+') => Ok(line[1..].to_string()),
            Some(b'-') => bail!("{} answered: {}", args.join(" "), &line[1..]),
            Some(b'$') => {
                let len: usize = line[1..].parse().context("bad bulk length")?;
                if len > 64 << 20 {
                    bail!("reply of {len} bytes is too large");
                }
                let mut buf = vec![0u8; len + 2];
                self.reader.read_exact(&mut buf)?;
                buf.truncate(len);
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
            _ => bail!("unexpected reply {line:?}"),
        }
    }
}

/// INFO text as section -> key -> value.
fn parse_info(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::from("info");
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("# ") {
            section = name.to_ascii_lowercase();
        } else if let Some((k, v)) = line.split_once(':') {
            out.entry(section.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// `standbyN:name=a,state=b,...` lines as objects.
fn standbys(repl: &BTreeMap<String, String>) -> Vec<BTreeMap<String, String>> {
    let mut list: Vec<(usize, BTreeMap<String, String>)> = repl
        .iter()
        .filter_map(|(k, v)| {
            let n: usize = k.strip_prefix("standby")?.parse().ok()?;
            let fields = v
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(a, b)| (a.to_string(), b.to_string()));
            Some((n, fields.collect()))
        })
        .collect();
    list.sort_by_key(|(n, _)| *n);
    list.into_iter().map(|(_, m)| m).collect()
}

fn query(host: &str, password: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut conn = Conn::open(host, password)?;
    let info = parse_info(&conn.call(&["INFO", "server", "persistence", "replication"])?);
    let empty = BTreeMap::new();
    let repl = info.get("replication").unwrap_or(&empty);
    let server = info.get("server").unwrap_or(&empty);
    let persistence = info.get("persistence").unwrap_or(&empty);
    let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    let list = standbys(repl);
    if json {
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
        node.insert("standbys".into(), serde_json::to_value(&list)?);
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(node))?
        );
        return Ok(());
    }
    println!(
        " node             : {} ({})",
        get(server, "node_name"),
        host
    );
    println!(" role             : {}", get(repl, "role"));
    println!(" timeline         : {}", get(repl, "timeline"));
    println!(" system id        : {}", get(server, "system_id"));
    println!(" flush lsn        : {}", get(repl, "flush_lsn"));
    println!(" applied lsn      : {}", get(repl, "applied_lsn"));
    println!(
        " sync commit      : {}",
        get(persistence, "synchronous_commit")
    );
    println!(
        " sync standbys    : {}",
        get(repl, "synchronous_standby_names")
    );
    if let Some(up) = repl.get("upstream") {
        println!(" upstream         : {up} ({})", get(repl, "upstream_state"));
        println!(" primary          : {}", get(repl, "primary"));
        println!(" received lsn     : {}", get(repl, "received_lsn"));
    }
    println!(" standbys         : {}", list.len());
    for s in &list {
        println!(
            "   {:<12} {:<10} flush {:>14} replay {:>14} lag {:>10} B  {}",
            s.get("name").map(String::as_str).unwrap_or("?"),
            s.get("state").map(String::as_str).unwrap_or("?"),
            s.get("flush_lsn").map(String::as_str).unwrap_or("?"),
            s.get("replay_lsn").map(String::as_str).unwrap_or("?"),
            s.get("lag_bytes").map(String::as_str).unwrap_or("?"),
            s.get("sync_state").map(String::as_str).unwrap_or("?"),
        );
    }
    Ok(())
}

fn digest(host: &str, password: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut conn = Conn::open(host, password)?;
    let info = parse_info(&conn.call(&["INFO", "digest"])?);
    let d = info
        .get("digest")
        .context("the node sent no digest section")?;
    if let Some(e) = d.get("digest_error") {
        bail!("digest failed: {e}");
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

fn stop(host: &str, password: Option<&str>) -> anyhow::Result<()> {
    let mut conn = Conn::open(host, password)?;
    conn.send(&["SHUTDOWN"])?;
    // The node closes the connection when it stops; an error reply means it did not.
    let mut line = String::new();
    match conn.reader.read_line(&mut line) {
        Ok(0) | Err(_) => {
            // Wait (bounded) until the node no longer accepts connections.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while TcpStream::connect(host).is_ok() {
                if std::time::Instant::now() > deadline {
                    bail!("{host} closed the connection but still accepts new ones after 60 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("{host}: stopped");
            Ok(())
        }
        Ok(_) => bail!("{host} refused to stop: {}", line.trim()),
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Query {
            host,
            password,
            json,
        } => query(&host, password.as_deref(), json),
        Cmd::Digest {
            host,
            password,
            json,
        } => digest(&host, password.as_deref(), json),
        Cmd::Stop { host, password } => stop(&host, password.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandemctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

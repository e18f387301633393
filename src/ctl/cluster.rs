//! A local cluster in one directory: `tandemctl cluster up|down|status`.
//!
//! Layout of `DIR` (made by `up`):
//! ```text
//! DIR/cluster.json     {"nodes":[{name, data_dir, config, client, repl, metrics, pid}, ...]}
//! DIR/nodeI.toml       node I's config (flags of `tandem node` as TOML keys)
//! DIR/nodeI/data/      node I's data directory (node.log in it)
//! ```
//! node0 is made the primary, node1..N standbys built from it with
//! `tandem build`. Ports: with `--base-port P`, node I has client P+I,
//! replication P+100+I, metrics P+200+I; without, free loopback ports are
//! picked at run time.
//!
//! Invariants:
//! - `cluster.json` is written (atomically, by rename) only once every node
//!   runs, so a directory with it describes a whole cluster; its `pid` is
//!   the pid at `up` time; the live pid is in each `DATA_DIR/lock`;
//! - `up` never starts a second node on a data directory (refuses while any
//!   node of `cluster.json` holds its lock) and leaves nothing running when
//!   it fails: it kills every process it started;
//! - `down` signals only the process holding a node's data-directory lock.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{standbys, Conn};
use super::process::{self, DirLock, StartOptions, StopMode};
use super::query::node_json;
use super::CtlError;
use crate::config::{StandbyNames, SyncLevel};

/// The cluster's description in its directory.
pub const CLUSTER_FILE: &str = "cluster.json";
/// Replication ports start this far above client ports (`--base-port`).
pub const REPL_PORT_OFFSET: u16 = 100;
/// Metrics ports start this far above client ports (`--base-port`).
pub const METRICS_PORT_OFFSET: u16 = 200;
/// Standbys of one `up`: below [`REPL_PORT_OFFSET`], so a base port's
/// ranges never overlap.
pub const STANDBYS_MAX: usize = REPL_PORT_OFFSET as usize - 1;
/// How long a status probe waits for a node to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

/// Options of `tandemctl cluster up`.
#[derive(Clone, Debug, clap::Args)]
pub struct UpOptions {
    /// The cluster's directory (created; must be new or empty).
    #[arg(long)]
    pub dir: PathBuf,
    /// How many standbys of node0 to build.
    #[arg(long)]
    pub standbys: usize,
    /// Client ports from P, replication from P+100, metrics from P+200
    /// (default: free loopback ports).
    #[arg(long)]
    pub base_port: Option<u16>,
    /// cluster_secret of all nodes (default: a random one).
    #[arg(long)]
    pub secret: Option<String>,
    #[arg(long)]
    pub synchronous_commit: Option<String>,
    /// '', '*', 'FIRST n (a, b)', 'ANY n (a, b)'
    #[arg(long)]
    pub synchronous_standby_names: Option<String>,
    /// How long each node may take to answer, and the standbys to stream.
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
}

/// One node of `cluster.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub name: String,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    /// Client address (HOST:PORT).
    pub client: String,
    /// Replication address (HOST:PORT).
    pub repl: String,
    /// Metrics address (HOST:PORT).
    pub metrics: String,
    /// The pid at `up` time (0 before the node started).
    pub pid: u32,
}

/// The contents of `cluster.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    pub nodes: Vec<ClusterNode>,
}

/// A node's config file (the keys of `crate::config::FileConfig`).
#[derive(Serialize)]
struct NodeToml<'a> {
    data_dir: &'a Path,
    listen: &'a str,
    repl_listen: &'a str,
    metrics_listen: &'a str,
    name: &'a str,
    cluster_secret: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    synchronous_commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    synchronous_standby_names: Option<&'a str>,
    peers: Vec<&'a str>,
}

/// `(client, repl, metrics)` ports of `count` nodes.
fn ports(count: usize, base: Option<u16>) -> Result<Vec<(u16, u16, u16)>, CtlError> {
    if let Some(base) = base {
        let last = usize::from(base) + usize::from(METRICS_PORT_OFFSET) + count;
        if base == 0 || count == 0 || last > usize::from(u16::MAX) + 1 {
            return Err(CtlError::PortRange {
                base,
                standbys: count.saturating_sub(1),
            });
        }
        // In range (checked above), so the casts do not truncate.
        return Ok((0..count as u16)
            .map(|i| {
                (
                    base + i,
                    base + REPL_PORT_OFFSET + i,
                    base + METRICS_PORT_OFFSET + i,
                )
            })
            .collect());
    }
    // Hold every listener until all are bound, so no port comes twice.
    let listeners = (0..count * 3)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CtlError::FreePort { source })?;
    let found = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CtlError::FreePort { source })?;
    Ok(found.chunks_exact(3).map(|c| (c[0], c[1], c[2])).collect())
}

/// The nodes of a new cluster in `dir`: node0 and `standbys` more.
pub fn plan(dir: &Path, standbys: usize, base: Option<u16>) -> Result<ClusterFile, CtlError> {
    if standbys > STANDBYS_MAX {
        return Err(CtlError::TooManyStandbys {
            standbys,
            max: STANDBYS_MAX,
        });
    }
    let nodes = ports(standbys + 1, base)?
        .into_iter()
        .enumerate()
        .map(|(i, (client, repl, metrics))| ClusterNode {
            name: format!("node{i}"),
            data_dir: dir.join(format!("node{i}")).join("data"),
            config: dir.join(format!("node{i}.toml")),
            client: format!("127.0.0.1:{client}"),
            repl: format!("127.0.0.1:{repl}"),
            metrics: format!("127.0.0.1:{metrics}"),
            pid: 0,
        })
        .collect();
    Ok(ClusterFile { nodes })
}

/// The config text of `file.nodes[index]`: its addresses, the shared
/// secret, and the replication addresses of all other nodes as `peers`.
fn node_toml(
    file: &ClusterFile,
    index: usize,
    opts: &UpOptions,
    secret: &str,
) -> Result<String, CtlError> {
    let Some(node) = file.nodes.get(index) else {
        return Ok(String::new());
    };
    let doc = NodeToml {
        data_dir: &node.data_dir,
        listen: &node.client,
        repl_listen: &node.repl,
        metrics_listen: &node.metrics,
        name: &node.name,
        cluster_secret: secret,
        synchronous_commit: opts.synchronous_commit.as_deref(),
        synchronous_standby_names: opts.synchronous_standby_names.as_deref(),
        peers: file
            .nodes
            .iter()
            .filter(|n| n.name != node.name)
            .map(|n| n.repl.as_str())
            .collect(),
    };
    toml::to_string(&doc).map_err(|source| CtlError::Toml { source })
}

/// 128 random bits as hex.
fn random_secret() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rejects settings the nodes would reject, before anything starts.
fn validate(opts: &UpOptions) -> Result<(), CtlError> {
    if let Some(level) = &opts.synchronous_commit {
        SyncLevel::parse(level).map_err(|_| CtlError::InvalidSetting {
            key: "--synchronous-commit",
            value: level.clone(),
            reason: "expected off, local, remote_receive, remote_write, on, remote_flush or remote_apply",
        })?;
    }
    if let Some(names) = &opts.synchronous_standby_names {
        StandbyNames::parse(names).map_err(|_| CtlError::InvalidSetting {
            key: "--synchronous-standby-names",
            value: names.clone(),
            reason: "expected '', '*', 'FIRST n (a, b)' or 'ANY n (a, b)'",
        })?;
    }
    if opts.secret.as_deref() == Some("") {
        return Err(CtlError::InvalidSetting {
            key: "--secret",
            value: String::new(),
            reason: "an empty secret lets anyone replicate",
        });
    }
    Ok(())
}

/// Reads `DIR/cluster.json`.
pub fn read_cluster_file(dir: &Path) -> Result<ClusterFile, CtlError> {
    let path = dir.join(CLUSTER_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => CtlError::NoCluster {
            dir: dir.to_path_buf(),
        },
        _ => CtlError::File {
            path: path.clone(),
            source,
        },
    })?;
    serde_json::from_str(&text).map_err(|source| CtlError::ClusterFile { path, source })
}

/// Writes `DIR/cluster.json` whole (a temporary file renamed over it).
fn write_cluster_file(dir: &Path, file: &ClusterFile) -> Result<(), CtlError> {
    let path = dir.join(CLUSTER_FILE);
    let tmp = dir.join(format!("{CLUSTER_FILE}.tmp"));
    let text = serde_json::to_string_pretty(file).map_err(|source| CtlError::Json { source })?;
    std::fs::write(&tmp, text + "\n").map_err(|source| CtlError::File {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| CtlError::File { path, source })
}

/// The nodes of `file` that hold their data directory's lock, as text
/// ("node0 (pid 12), node2"); empty when none runs.
fn running(file: &ClusterFile) -> Result<String, CtlError> {
    let mut names = Vec::new();
    for node in &file.nodes {
        if let DirLock::Held { pid } = process::dir_lock(&node.data_dir)? {
            names.push(match pid {
                Some(p) => format!("{} (pid {p})", node.name),
                None => node.name.clone(),
            });
        }
    }
    Ok(names.join(", "))
}

/// Starts a cluster in `opts.dir`: a new one, or, when `cluster.json`
/// describes a stopped one, that one again from its configs. Progress goes
/// to stderr; on failure every process started here is killed.
pub fn up(opts: &UpOptions) -> Result<ClusterFile, CtlError> {
    validate(opts)?;
    let dir = &opts.dir;
    match read_cluster_file(dir) {
        Ok(existing) => {
            let nodes = running(&existing)?;
            if !nodes.is_empty() {
                return Err(CtlError::ClusterRunning {
                    dir: dir.clone(),
                    nodes,
                });
            }
            return restart(dir, existing, opts);
        }
        Err(CtlError::NoCluster { .. }) => {}
        Err(e) => return Err(e),
    }
    let not_empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if not_empty {
        return Err(CtlError::DirNotEmpty { dir: dir.clone() });
    }
    let dir_err = |source| CtlError::File {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_err)?;
    // Configs and cluster.json name absolute paths: they work from any cwd.
    let dir = &dir.canonicalize().map_err(dir_err)?;
    let mut file = plan(dir, opts.standbys, opts.base_port)?;
    let secret = opts.secret.clone().unwrap_or_else(random_secret);
    for (i, node) in file.nodes.iter().enumerate() {
        let text = node_toml(&file, i, opts, &secret)?;
        std::fs::write(&node.config, text).map_err(|source| CtlError::File {
            path: node.config.clone(),
            source,
        })?;
    }
    let mut children = Vec::new();
    let launched =
        launch(&mut file, opts, &mut children).and_then(|()| write_cluster_file(dir, &file));
    if let Err(e) = launched {
        kill_all(children);
        return Err(e);
    }
    Ok(file)
}

/// Starts node0, builds and starts each standby, waits until node0 lists
/// them all as streaming. Every started process goes into `children`.
fn launch(
    file: &mut ClusterFile,
    opts: &UpOptions,
    children: &mut Vec<Child>,
) -> Result<(), CtlError> {
    let primary_repl = file
        .nodes
        .first()
        .map(|n| n.repl.clone())
        .unwrap_or_default();
    for (i, node) in file.nodes.iter_mut().enumerate() {
        if i > 0 {
            build(node, &primary_repl)?;
        }
        start_node(node, opts.wait_secs, children)?;
    }
    let (Some(primary), Some(names)) = (
        file.nodes.first(),
        file.nodes
            .get(1..)
            .map(|s| s.iter().map(|n| n.name.as_str()).collect::<Vec<_>>()),
    ) else {
        return Ok(());
    };
    wait_streaming(&primary.client, &names, Duration::from_secs(opts.wait_secs))
}

/// Starts `node` from its config; records its pid.
fn start_node(
    node: &mut ClusterNode,
    wait_secs: u64,
    children: &mut Vec<Child>,
) -> Result<(), CtlError> {
    let started = process::start(&StartOptions {
        data_dir: node.data_dir.clone(),
        config: Some(node.config.clone()),
        wait_secs,
        ..StartOptions::default()
    })?;
    node.pid = started.pid;
    children.push(started.child);
    eprintln!(
        "{}: started pid {}, client {}",
        node.name, node.pid, node.client
    );
    Ok(())
}

/// `tandem build` of `node` from the replication address `from`.
fn build(node: &ClusterNode, from: &str) -> Result<(), CtlError> {
    let out = Command::new(process::tandem_bin())
        .arg("build")
        .arg("--from")
        .arg(from)
        .arg("--data-dir")
        .arg(&node.data_dir)
        .arg("--config")
        .arg(&node.config)
        .arg("--quiet")
        .output()
        .map_err(|source| CtlError::Spawn {
            program: process::tandem_bin().display().to_string(),
            source,
        })?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(CtlError::BuildFailed {
            name: node.name.clone(),
            status: out.status,
            output: output.trim_end().to_string(),
        });
    }
    eprintln!("{}: built from {from}", node.name);
    Ok(())
}

/// Waits until the primary at `client` lists every one of `names` with
/// `state=streaming`.
pub fn wait_streaming(client: &str, names: &[&str], wait: Duration) -> Result<(), CtlError> {
    let deadline = Instant::now() + wait;
    loop {
        let streaming: Vec<String> = Conn::open_timeout(client, None, PROBE_TIMEOUT)
            .and_then(|mut c| c.info(&["replication"]))
            .map(|info| {
                info.get("replication")
                    .map(standbys)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| s.get("state").map(String::as_str) == Some("streaming"))
                    .filter_map(|s| s.get("name").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !streaming.iter().any(|s| s == n))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CtlError::NotStreaming {
                primary: client.to_string(),
                names: missing.join(", "),
                secs: wait.as_secs(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Starts every node of a stopped cluster from its config, in order.
fn restart(dir: &Path, mut file: ClusterFile, opts: &UpOptions) -> Result<ClusterFile, CtlError> {
    eprintln!(
        "{} holds a stopped cluster of {} nodes: starting it again from its configs",
        dir.display(),
        file.nodes.len()
    );
    if file.nodes.len() != opts.standbys + 1 {
        eprintln!(
            "note: it has {} standbys, not the {} asked for",
            file.nodes.len().saturating_sub(1),
            opts.standbys
        );
    }
    let mut children = Vec::new();
    let started = file
        .nodes
        .iter_mut()
        .try_for_each(|node| start_node(node, opts.wait_secs, &mut children))
        .and_then(|()| write_cluster_file(dir, &file));
    if let Err(e) = started {
        kill_all(children);
        return Err(e);
    }
    Ok(file)
}

/// Kills and reaps processes this run started (newest first).
fn kill_all(children: Vec<Child>) {
    for mut child in children.into_iter().rev() {
        eprintln!("stopping pid {} (cluster up failed)", child.id());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The role each node reports (`None`: not answering).
pub fn roles(file: &ClusterFile) -> Vec<Option<String>> {
    file.nodes
        .iter()
        .map(|n| {
            let mut conn = Conn::open_timeout(&n.client, None, PROBE_TIMEOUT).ok()?;
            conn.set_timeout(PROBE_TIMEOUT).ok()?;
            let info = conn.info(&["replication"]).ok()?;
            info.get("replication")?.get("role").cloned()
        })
        .collect()
}

/// Prints name, role, addresses and pid of each node.
pub fn print_table(file: &ClusterFile) {
    println!(
        "{:<8} {:<12} {:<22} {:<22} {:<22} {:>8}",
        "name", "role", "client", "repl", "metrics", "pid"
    );
    for (node, role) in file.nodes.iter().zip(roles(file)) {
        println!(
            "{:<8} {:<12} {:<22} {:<22} {:<22} {:>8}",
            node.name,
            role.as_deref().unwrap_or("down"),
            node.client,
            node.repl,
            node.metrics,
            node.pid
        );
    }
}

/// Prints role, LSNs and replication state of each node of the cluster in
/// `dir` (the `query` view; `--json`: `{"nodes":[...]}`, each node's
/// `query --json` object plus its name and addresses and `up`).
pub fn status(dir: &Path, json: bool) -> Result<(), CtlError> {
    let file = read_cluster_file(dir)?;
    let mut out = Vec::new();
    for node in &file.nodes {
        let mut entry = match node_json(&node.client, None) {
            Ok(map) => map,
            Err(e) => {
                let mut m = serde_json::Map::new();
                m.insert("error".into(), e.to_string().into());
                m
            }
        };
        let up = !entry.contains_key("error");
        entry.insert("up".into(), up.into());
        for (k, v) in [
            ("name", node.name.as_str()),
            ("client", node.client.as_str()),
            ("repl", node.repl.as_str()),
            ("metrics", node.metrics.as_str()),
        ] {
            entry.insert(k.into(), v.into());
        }
        entry.insert(
            "data_dir".into(),
            node.data_dir.display().to_string().into(),
        );
        entry.insert("config".into(), node.config.display().to_string().into());
        out.push(serde_json::Value::Object(entry));
    }
    if json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "nodes": out }))
            .map_err(|source| CtlError::Json { source })?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<8} {:<12} {:<22} {:>4} {:>14} {:>14} {:<34} {:>8}",
        "name", "role", "client", "tl", "flush_lsn", "applied_lsn", "replication", "pid"
    );
    for e in &out {
        let f = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let replication = match e.get("standbys").and_then(|v| v.as_array()) {
            _ if !f("upstream_state").is_empty() => {
                format!("{} from {}", f("upstream_state"), f("upstream"))
            }
            Some(list) if !list.is_empty() => {
                let streaming = list
                    .iter()
                    .filter(|s| s.get("state").and_then(|v| v.as_str()) == Some("streaming"))
                    .count();
                format!("{streaming}/{} standbys streaming", list.len())
            }
            _ => String::new(),
        };
        let role = if e.get("up") == Some(&serde_json::Value::Bool(true)) {
            f("role")
        } else {
            "down"
        };
        println!(
            "{:<8} {:<12} {:<22} {:>4} {:>14} {:>14} {:<34} {:>8}",
            f("name"),
            role,
            f("client"),
            f("timeline"),
            f("flush_lsn"),
            f("applied_lsn"),
            replication,
            f("process_id")
        );
    }
    Ok(())
}

/// Stops every node of the cluster in `dir`, primaries first. `Fast`:
/// SHUTDOWN, then SIGKILL whatever still runs after `wait`; `Immediate`:
/// SIGKILL. A node already gone is fine. Prints what it did per node;
/// fails unless every node is gone at the end.
pub fn down(dir: &Path, mode: StopMode, wait: Duration) -> Result<(), CtlError> {
    let file = read_cluster_file(dir)?;
    let roles = roles(&file);
    let mut order: Vec<usize> = (0..file.nodes.len()).collect();
    order.sort_by_key(|&i| roles.get(i).and_then(|r| r.as_deref()) != Some("primary"));
    let mut failed = Vec::new();
    for i in order {
        let Some(node) = file.nodes.get(i) else {
            continue;
        };
        match stop_node(node, mode, wait) {
            Ok(done) => println!("{}: {done}", node.name),
            Err(e) => {
                println!("{}: {e}", node.name);
                failed.push(node.name.clone());
            }
        }
    }
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut still = running(&file)?;
    while !still.is_empty() && Instant::now() < deadline {
        std::thread::sleep(POLL);
        still = running(&file)?;
    }
    if !still.is_empty() {
        return Err(CtlError::NotAllStopped { names: still });
    }
    if !failed.is_empty() {
        return Err(CtlError::NotAllStopped {
            names: failed.join(", "),
        });
    }
    println!("{}: all {} nodes stopped", dir.display(), file.nodes.len());
    Ok(())
}

/// The pid holding `data_dir`'s lock (`None`: no node runs there). A
/// holder that has not written its pid yet gets a moment to do so.
fn lock_holder(data_dir: &Path) -> Result<Option<u32>, CtlError> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match process::dir_lock(data_dir)? {
            DirLock::Free => return Ok(None),
            DirLock::Held { pid: Some(p) } => return Ok(Some(p)),
            DirLock::Held { pid: None } if Instant::now() > deadline => {
                return Err(CtlError::NoPid {
                    host: data_dir.join(process::LOCK_FILE).display().to_string(),
                })
            }
            DirLock::Held { pid: None } => std::thread::sleep(POLL),
        }
    }
}

/// Stops one node; says what it did.
fn stop_node(node: &ClusterNode, mode: StopMode, wait: Duration) -> Result<String, CtlError> {
    let Some(pid) = lock_holder(&node.data_dir)? else {
        return Ok("not running".into());
    };
    if mode == StopMode::Immediate {
        process::kill_tandem(pid, wait)?;
        return Ok(format!("killed pid {pid}"));
    }
    let sent = Conn::open_timeout(&node.client, None, PROBE_TIMEOUT).and_then(process::shutdown);
    match sent {
        Ok(()) if process::wait_gone(pid, Instant::now() + wait) => {
            Ok(format!("stopped (pid {pid})"))
        }
        Ok(()) => {
            process::kill_tandem(pid, wait)?;
            Ok(format!(
                "still running {} s after SHUTDOWN: killed pid {pid}",
                wait.as_secs()
            ))
        }
        Err(e) => {
            process::kill_tandem(pid, wait)?;
            Ok(format!("SHUTDOWN failed ({e}): killed pid {pid}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> UpOptions {
        UpOptions {
            dir: dir.to_path_buf(),
            standbys: 2,
            base_port: Some(7000),
            secret: Some("s3cret".into()),
            synchronous_commit: Some("remote_apply".into()),
            synchronous_standby_names: None,
            wait_secs: 30,
        }
    }

    #[test]
    fn base_port_layout() {
        let file = plan(Path::new("/c"), 2, Some(7000)).unwrap();
        let n2 = &file.nodes[2];
        assert_eq!(n2.name, "node2");
        assert_eq!(n2.client, "127.0.0.1:7002");
        assert_eq!(n2.repl, "127.0.0.1:7102");
        assert_eq!(n2.metrics, "127.0.0.1:7202");
        assert_eq!(n2.data_dir, Path::new("/c/node2/data"));
        assert_eq!(n2.config, Path::new("/c/node2.toml"));
        assert!(plan(Path::new("/c"), 2, Some(65_400)).is_err());
        assert!(plan(Path::new("/c"), 2, Some(0)).is_err());
        assert!(plan(Path::new("/c"), STANDBYS_MAX + 1, Some(7000)).is_err());
    }

    #[test]
    fn free_ports_are_distinct() {
        let file = plan(Path::new("/c"), 3, None).unwrap();
        let mut all: Vec<&str> = file
            .nodes
            .iter()
            .flat_map(|n| [n.client.as_str(), n.repl.as_str(), n.metrics.as_str()])
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12);
    }

    #[test]
    fn config_parses_back_with_peers_of_the_others() {
        let file = plan(Path::new("/c"), 2, Some(7000)).unwrap();
        let o = opts(Path::new("/c"));
        let text = node_toml(&file, 1, &o, "s3cret").unwrap();
        let cfg: crate::config::FileConfig = toml::from_str(&text).unwrap();
        assert_eq!(cfg.name.as_deref(), Some("node1"));
        assert_eq!(cfg.listen.unwrap().to_string(), "127.0.0.1:7001");
        assert_eq!(cfg.repl_listen.unwrap().to_string(), "127.0.0.1:7101");
        assert_eq!(cfg.metrics_listen.unwrap().to_string(), "127.0.0.1:7201");
        assert_eq!(cfg.cluster_secret.as_deref(), Some("s3cret"));
        assert_eq!(cfg.synchronous_commit.as_deref(), Some("remote_apply"));
        assert_eq!(cfg.synchronous_standby_names, None);
        assert_eq!(
            cfg.peers.unwrap(),
            vec!["127.0.0.1:7100".to_string(), "127.0.0.1:7102".to_string()]
        );
        assert_eq!(cfg.data_dir.unwrap(), Path::new("/c/node1/data"));
    }

    #[test]
    fn bad_settings_are_refused_before_anything_starts() {
        let mut o = opts(Path::new("/nonexistent/c"));
        o.synchronous_commit = Some("sometimes".into());
        assert!(matches!(
            up(&o),
            Err(CtlError::InvalidSetting {
                key: "--synchronous-commit",
                ..
            })
        ));
        let mut o = opts(Path::new("/nonexistent/c"));
        o.synchronous_standby_names = Some("FIRST x (".into());
        assert!(matches!(up(&o), Err(CtlError::InvalidSetting { .. })));
    }

    #[test]
    fn a_non_empty_directory_without_cluster_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "").unwrap();
        assert!(matches!(
            up(&opts(dir.path())),
            Err(CtlError::DirNotEmpty { .. })
        ));
    }

    #[test]
    fn cluster_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = plan(dir.path(), 1, Some(7000)).unwrap();
        write_cluster_file(dir.path(), &file).unwrap();
        assert_eq!(read_cluster_file(dir.path()).unwrap(), file);
        assert_eq!(running(&file).unwrap(), "");
        std::fs::write(dir.path().join(CLUSTER_FILE), "{").unwrap();
        assert!(matches!(
            read_cluster_file(dir.path()),
            Err(CtlError::ClusterFile { .. })
        ));
    }

    #[test]
    fn random_secrets_are_hex_and_differ() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

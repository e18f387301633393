//! Clusters of real nodes for role-change tests: n0 the primary, n1..
//! standbys built from it, every node knowing the others as `--peers`;
//! which node is the primary now; waiting until one primary and streaming
//! standbys share a timeline; `tandemctl` with JSON output.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::repl::{build, field, output_text, SECRET};
use super::{wait_until, NodeProc};

pub const CTL: &str = env!("CARGO_BIN_EXE_tandemctl");
pub const BENCH: &str = env!("CARGO_BIN_EXE_tandem-bench");

/// Nodes n0 (primary), n1.. (standbys built from n0), each knowing the
/// others as `--peers`.
pub fn cluster(dir: &Path, n: usize, extra: &[&str]) -> Vec<NodeProc> {
    let mut nodes: Vec<NodeProc> = (0..n)
        .map(|i| {
            let name = format!("n{i}");
            let mut args = vec!["--name", &name, "--cluster-secret", SECRET];
            args.extend_from_slice(extra);
            NodeProc::new(&dir.join(&name), &args)
        })
        .collect();
    let repls: Vec<String> = nodes.iter().map(NodeProc::repl_addr).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        let peers: Vec<&str> = repls
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, r)| r.as_str())
            .collect();
        node.extra.push("--peers".into());
        node.extra.push(peers.join(","));
    }
    nodes[0].spawn();
    for i in 1..n {
        let out = build(
            nodes[0].repl_port,
            &nodes[i].data_dir,
            &format!("n{i}"),
            SECRET,
        );
        assert!(out.status.success(), "build n{i}: {}", output_text(&out));
        nodes[i].spawn();
    }
    wait_healthy(&nodes, Duration::from_secs(20));
    nodes
}

pub fn hosts(nodes: &[NodeProc]) -> String {
    nodes
        .iter()
        .map(NodeProc::addr)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn repl_info(n: &NodeProc) -> String {
    n.info("replication")
}

/// Index of the node whose role is primary (panics if not exactly one).
pub fn primary_of(nodes: &[NodeProc]) -> usize {
    let primaries: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.child.is_some() && field(&repl_info(n), "role") == Some("primary"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(primaries.len(), 1, "exactly one primary: {primaries:?}");
    primaries[0]
}

/// Every running node on one timeline, one primary, the standbys
/// streaming.
pub fn wait_healthy(nodes: &[NodeProc], within: Duration) {
    wait_until(
        within,
        "one primary, all standbys streaming on its timeline",
        || {
            let infos: Vec<String> = nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(repl_info)
                .collect();
            let primaries: Vec<&String> = infos
                .iter()
                .filter(|i| field(i, "role") == Some("primary"))
                .collect();
            if primaries.len() != 1 {
                return false;
            }
            let tli = field(primaries[0], "timeline");
            infos.iter().all(|i| {
                field(i, "timeline") == tli
                    && (field(i, "role") == Some("primary")
                        || (field(i, "role") == Some("standby")
                            && field(i, "upstream_state") == Some("streaming")))
            })
        },
    );
}

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

pub fn ctl_json(args: &[&str]) -> serde_json::Value {
    let out = run(CTL, args);
    assert!(
        out.status.success(),
        "tandemctl {args:?}: {}",
        output_text(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("tandemctl {args:?} --json: {e}: {}", output_text(&out)))
}

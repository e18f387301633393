//! `tandemctl`: operator's view of a node (DESIGN.md section 5).
//!
//! A thin dispatcher: the commands live in `tandem::ctl`. `query` prints
//! what a node says about itself and its replication peers (the
//! `gs_ctl query` view, from `INFO`), human-readable or `--json`; `digest`
//! prints the applied LSN and the page digest (equal on nodes that hold
//! the same data); `stop` shuts a node down cleanly (SHUTDOWN).
//! Exit status: 0 on success, 1 on any failure, with the reason on stderr.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem::ctl;

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
    /// Planned handover: the primary stops taking writes, the standby at
    /// --host catches up and promotes, the old primary follows it.
    Switchover {
        /// The standby to promote (client address).
        #[arg(long)]
        host: String,
        /// Other nodes (client addresses) to point at the new primary.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Give up (and let the primary take writes again) if the target
        /// has not caught up within this time.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The primary is gone: promote --host (or, with --auto-pick, the
    /// reachable standby of --hosts with the most WAL); others follow it.
    Failover {
        #[arg(long)]
        host: Option<String>,
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        #[arg(long)]
        auto_pick: bool,
        /// Promote even a standby behind another, or whose primary answers.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A standby (or a pending primary) becomes a primary.
    Promote {
        #[arg(long)]
        host: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A primary becomes a standby of --upstream (a replication address).
    Demote {
        #[arg(long)]
        host: String,
        #[arg(long)]
        upstream: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn run(command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::Query {
            host,
            password,
            json,
        } => ctl::query::query(&host, password.as_deref(), json)?,
        Cmd::Digest {
            host,
            password,
            json,
        } => ctl::query::digest(&host, password.as_deref(), json)?,
        Cmd::Stop { host, password } => {
            ctl::process::stop(&host, password.as_deref(), ctl::process::STOP_WAIT_DEFAULT)?;
            println!("{host}: stopped");
        }
        Cmd::Switchover {
            host,
            hosts,
            timeout_ms,
            password,
            json,
        } => {
            let opt = ctl::roles::RoleOptions {
                password: password.as_deref(),
                hosts: &hosts,
                json,
            };
            ctl::roles::switchover(&host, timeout_ms, &opt)?
        }
        Cmd::Failover {
            host,
            hosts,
            auto_pick,
            force,
            password,
            json,
        } => {
            let opt = ctl::roles::RoleOptions {
                password: password.as_deref(),
                hosts: &hosts,
                json,
            };
            ctl::roles::failover(host.as_deref(), auto_pick, force, &opt)?
        }
        Cmd::Promote {
            host,
            password,
            json,
        } => ctl::roles::promote(&host, password.as_deref(), json)?,
        Cmd::Demote {
            host,
            upstream,
            password,
            json,
        } => ctl::roles::demote(&host, &upstream, password.as_deref(), json)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandemctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

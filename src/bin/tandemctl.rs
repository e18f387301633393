//! `tandemctl`: operator's view of a node (DESIGN.md section 5).
//!
//! A thin dispatcher: the commands live in `tandem::ctl`. `query` prints
//! what a node says about itself and its replication peers (the
//! `gs_ctl query` view, from `INFO`), human-readable or `--json`; `digest`
//! prints the applied LSN and the page digest (equal on nodes that hold
//! the same data); `start` and `stop` run and end node processes on this
//! machine; `build` runs `tandem build`; `cluster up|down|status` manage a
//! local primary with standbys in one directory.
//! Exit status: 0 on success, 1 on any failure, with the reason on stderr
//! (`build`: the exit status of `tandem build`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tandem::ctl;
use tandem::ctl::process::StopMode;

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
    /// Stop a node: fast = SHUTDOWN (in-flight commits finish, checkpoint,
    /// exit 0); immediate = SIGKILL of the pid it reports (recovery on start).
    Stop {
        #[arg(long)]
        host: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long, value_enum, default_value_t = StopMode::Fast)]
        mode: StopMode,
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Start `tandem node` in the background (log: DATA_DIR/node.log) and
    /// wait until it answers.
    Start {
        #[command(flatten)]
        opts: ctl::process::StartOptions,
        #[arg(long)]
        json: bool,
    },
    /// Build a new standby from a running node (runs `tandem build`).
    Build(ctl::process::BuildOptions),
    /// A local cluster (a primary and standbys) in one directory.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
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

#[derive(Subcommand)]
enum ClusterCmd {
    /// Create and start node0 (primary) and N standbys built from it.
    Up {
        #[command(flatten)]
        opts: ctl::cluster::UpOptions,
        #[arg(long)]
        json: bool,
    },
    /// Stop every node of the cluster.
    Down {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = StopMode::Fast)]
        mode: StopMode,
        /// fast: how long SHUTDOWN may take before SIGKILL.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Role and LSNs of each node.
    Status {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn run(command: Cmd) -> anyhow::Result<ExitCode> {
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
        Cmd::Stop {
            host,
            password,
            mode,
            wait_secs,
        } => {
            let wait = Duration::from_secs(wait_secs);
            match ctl::process::stop(&host, password.as_deref(), mode, wait)? {
                Some(pid) if mode == StopMode::Immediate => println!("{host}: killed pid {pid}"),
                Some(pid) => println!("{host}: stopped (pid {pid})"),
                None => println!("{host}: stopped"),
            }
        }
        Cmd::Start { opts, json } => {
            let started = ctl::process::start(&opts)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"pid": started.pid, "client": started.client})
                );
            } else {
                println!("started pid {}, client {}", started.pid, started.client);
            }
        }
        Cmd::Build(opts) => {
            let status = ctl::process::build(&opts)?;
            if !status.success() {
                eprintln!("tandemctl: tandem build exited with {status}");
                let code = status.code().and_then(|c| u8::try_from(c).ok());
                return Ok(ExitCode::from(code.filter(|c| *c != 0).unwrap_or(1)));
            }
        }
        Cmd::Cluster { command } => cluster(command)?,
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
    Ok(ExitCode::SUCCESS)
}

fn cluster(command: ClusterCmd) -> anyhow::Result<()> {
    match command {
        ClusterCmd::Up { opts, json } => {
            let file = ctl::cluster::up(&opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&file)?);
            } else {
                ctl::cluster::print_table(&file);
            }
        }
        ClusterCmd::Down {
            dir,
            mode,
            wait_secs,
        } => ctl::cluster::down(&dir, mode, Duration::from_secs(wait_secs))?,
        ClusterCmd::Status { dir, json } => ctl::cluster::status(&dir, json)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            // The library's errors name their cause in their own text.
            eprintln!("tandemctl: {e}");
            ExitCode::FAILURE
        }
    }
}

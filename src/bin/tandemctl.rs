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

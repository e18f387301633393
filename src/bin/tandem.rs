//! `tandem`: the node binary (DESIGN.md section 5, command-line contract).
//!
//! `tandem node` runs a node; `tandem verify-pages` checks every page
//! checksum of a stopped node's data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tandem::config::{Config, FileConfig};

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "A replicated primary/standby storage node on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node (a new empty data directory becomes a new cluster's primary).
    Node(Box<NodeArgs>),
    /// Verify every page checksum of a stopped node's data directory.
    VerifyPages {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
struct NodeArgs {
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML config file; flags override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    repl_listen: Option<SocketAddr>,
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    requirepass: Option<String>,
    /// off | local
    #[arg(long)]
    synchronous_commit: Option<String>,
    #[arg(long)]
    buffer_pool_bytes: Option<u64>,
    #[arg(long)]
    wal_segment_bytes: Option<u64>,
    #[arg(long)]
    checkpoint_interval_secs: Option<u64>,
    #[arg(long)]
    session_cores: Option<usize>,
    #[arg(long)]
    connections_max: Option<usize>,
}

fn node(args: NodeArgs) -> anyhow::Result<()> {
    let mut f = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => FileConfig::default(),
    };
    macro_rules! over {
        ($($field:ident),*) => { $( if args.$field.is_some() { f.$field = args.$field; } )* };
    }
    over!(
        data_dir,
        listen,
        repl_listen,
        metrics_listen,
        name,
        requirepass,
        synchronous_commit,
        buffer_pool_bytes,
        wal_segment_bytes,
        checkpoint_interval_secs,
        session_cores,
        connections_max
    );
    let config = Config::resolve(f)?;
    tandem::node::run(config)?;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Cmd::Node(args) => node(*args),
        Cmd::VerifyPages { data_dir } => verify(data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn verify(data_dir: PathBuf) -> anyhow::Result<()> {
    let (pages, bad) = tandem::engine::verify_pages(&data_dir)?;
    for (page, err) in &bad {
        println!("bad page {page}: {err}");
    }
    println!("{pages} pages checked, {} bad", bad.len());
    if bad.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} page(s) failed verification", bad.len())
    }
}

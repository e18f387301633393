//! `tandem`: the node binary (DESIGN.md section 5, command-line contract).
//!
//! `tandem node` runs a node; `tandem verify-pages` checks every page
//! checksum of a stopped node's data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc instead of glibc malloc: a transaction copies each page it
/// changes (8 KiB) and frees the copies at commit, and glibc spent ~5 % of
/// a session core in malloc/free/consolidate. Side by side on 2 cores,
/// tandem-bench local TPC-B c=64: 53.7-59.8k vs 49.0-57.2k tps (4 pairs,
/// each in mimalloc's favour, +9 % on the mean); redis-benchmark SET/GET
/// c=64 unchanged within noise.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
    /// Build a new standby in an empty directory from a running node.
    Build(BuildArgs),
    /// Verify every page checksum of a stopped node's data directory.
    VerifyPages {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Redo throughput: crash recovery of a stopped node's data directory
    /// (copied for each run) with each worker count.
    RedoBench {
        /// A stopped node's data directory with WAL past its checkpoint.
        #[arg(long)]
        data_dir: PathBuf,
        /// Worker counts to run (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        workers: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 1 << 30)]
        buffer_pool_bytes: u64,
        /// Print one JSON object per run instead of a line of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// The source's replication address (its --repl-listen).
    #[arg(long)]
    from: String,
    #[arg(long)]
    data_dir: PathBuf,
    /// full (the default and, for now, the only mode; incremental comes later)
    #[arg(long, default_value = "full")]
    mode: String,
    /// This standby's name (as the primary lists it).
    #[arg(long)]
    name: Option<String>,
    /// TOML config to read cluster_secret (and name) from.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    cluster_secret: Option<String>,
    /// Bytes per second; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    max_rate: u64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
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
    #[arg(long)]
    cluster_secret: Option<String>,
    /// '', '*', 'FIRST n (a, b)', 'ANY n (a, b)'
    #[arg(long)]
    synchronous_standby_names: Option<String>,
    #[arg(long)]
    most_available_sync: Option<bool>,
    #[arg(long)]
    synchronous_commit_timeout_ms: Option<u64>,
    #[arg(long)]
    max_wal_retention: Option<u64>,
    #[arg(long)]
    wal_sender_timeout_ms: Option<u64>,
    /// Replication addresses of the other nodes (HOST:PORT,HOST:PORT).
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<String>>,
    /// Redo workers (1 = serial); default one per core, at most 8.
    #[arg(long)]
    recovery_redo_workers: Option<usize>,
    /// Seconds; the primary slows commits to keep its synchronous
    /// standbys' estimated recovery time under it. 0 = off.
    #[arg(long)]
    recovery_time_target: Option<u64>,
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
        connections_max,
        cluster_secret,
        synchronous_standby_names,
        most_available_sync,
        synchronous_commit_timeout_ms,
        max_wal_retention,
        wal_sender_timeout_ms,
        peers,
        recovery_redo_workers,
        recovery_time_target
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
        Cmd::Build(args) => build(args),
        Cmd::VerifyPages { data_dir } => verify(data_dir),
        Cmd::RedoBench {
            data_dir,
            workers,
            runs,
            buffer_pool_bytes,
            json,
        } => redo_bench(data_dir, workers, runs, buffer_pool_bytes, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    if args.mode != "full" {
        anyhow::bail!(
            "build mode {:?} is not available yet: use --mode full",
            args.mode
        );
    }
    let file = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => FileConfig::default(),
    };
    let name = args
        .name
        .or(file.name)
        .unwrap_or_else(|| format!("standby-{}", std::process::id()));
    let secret = args
        .cluster_secret
        .or(file.cluster_secret)
        .unwrap_or_default();
    let summary = tandem::replication::build::run(&tandem::replication::build::BuildOptions {
        from: args.from.clone(),
        data_dir: args.data_dir.clone(),
        name,
        secret: secret.into_bytes(),
        max_rate: args.max_rate,
        progress: !args.quiet,
    })?;
    println!(
        "build done: {} pages, {:.1} MiB in {:.2} s ({:.1} MiB/s), redo from {} to {}; start it with: tandem node --data-dir {}",
        summary.pages,
        summary.bytes as f64 / (1 << 20) as f64,
        summary.seconds,
        summary.bytes as f64 / (1 << 20) as f64 / summary.seconds.max(1e-6),
        summary.redo,
        summary.end,
        args.data_dir.display()
    );
    Ok(())
}

fn redo_bench(
    data_dir: PathBuf,
    workers: Vec<usize>,
    runs: usize,
    buffer_pool_bytes: u64,
    json: bool,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let core_list: Vec<usize> = (0..cores).collect();
    tandem::redo::bench::run(
        &data_dir,
        &workers,
        runs,
        buffer_pool_bytes,
        &core_list,
        |r| {
            let rep = &r.report;
            let mb = rep.to.bytes_since(rep.from) as f64 / 1e6;
            let secs = rep.seconds.max(1e-9);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "workers": r.workers, "run": r.run, "wal_mb": mb, "seconds": rep.seconds,
                        "mb_per_s": mb / secs, "records_per_s": rep.records as f64 / secs,
                        "groups_per_s": rep.groups as f64 / secs, "records": rep.records,
                        "groups": rep.groups, "worker_records": rep.worker_records,
                        "worker_busy_seconds": rep.worker_busy_seconds,
                    })
                );
            } else {
                let busy: Vec<String> = rep
                    .worker_busy_seconds
                    .iter()
                    .zip(&rep.worker_records)
                    .map(|(b, n)| format!("{n} rec {:.0}%", 100.0 * b / secs))
                    .collect();
                println!(
                "workers={} run={} wal={mb:.1} MB in {:.3} s: {:.1} MB/s, {:.0} records/s, {:.0} transactions/s; per worker: {}",
                r.workers,
                r.run,
                rep.seconds,
                mb / secs,
                rep.records as f64 / secs,
                rep.groups as f64 / secs,
                busy.join(", ")
            );
            }
        },
    )?;
    Ok(())
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

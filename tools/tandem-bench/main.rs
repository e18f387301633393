//! `tandem-bench`: a pgbench-like load tool that speaks RESP.
//!
//! Owns the command line (`init`, `run`, `check`), argument validation and exit
//! codes: 0 success, 1 `check` found an inconsistency or `run
//! --read-your-writes` a stale read, 2 any error (bad
//! arguments, unreachable server, aborted run, a run in which every
//! transaction failed). Errors are printed as one clear
//! line; nothing from the network, files or arguments is unwrapped.
//!
//! Modules, by data flow: `resp` (wire codec) -> `conn` (one connection) ->
//! `cluster` (hosts, finding the primary, retry with backoff) -> `script`
//! (transaction templates and the built-in mixes) -> `run` (threads, clients,
//! schedule) -> `stats` (per-second buckets, aggregation) -> `report` (text,
//! JSON) and `plot` (SVG). `dataset` owns the TPC-B key layout, `init` and
//! `check`; `pause` the windows without acks (`--pause-threshold-ms`); `ryw`
//! the read-back of every write on a standby (`run --read-your-writes`, which
//! exits 1 when a read was stale). The
//! tool does not use the `tandem` library: it must be able to
//! measure any RESP server, including Redis as a peer.

mod cluster;
mod conn;
mod dataset;
mod pause;
mod plot;
mod report;
mod resp;
mod run;
mod ryw;
mod script;
mod stats;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::cluster::Target;
use crate::script::{Mix, Script};
use crate::stats::{Event, EventKind};

/// Default client port of a tandem node (`tandem node --listen 127.0.0.1:6380`).
const DEFAULT_PORT: u16 = 6380;
/// Bounds on arguments: far above anything a 2-core machine can drive.
const CLIENTS_MAX: usize = 10_000;
const THREADS_MAX: usize = 256;
const PIPELINE_MAX: usize = 1024;
/// Hosts in `--hosts`: pause records keep a host as a u16 index.
const HOSTS_MAX: usize = 256;
/// Bound on `--pause-threshold-ms` (one hour).
const PAUSE_THRESHOLD_MS_MAX: u64 = 3_600_000;
/// Lines read from `--events-file`; a harness writes a handful.
const EVENT_LINES_MAX: usize = 10_000;

#[derive(Parser)]
#[command(
    name = "tandem-bench",
    version,
    about = "pgbench-like load tool for RESP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create (or with --drop, delete) the TPC-B-shaped data set.
    #[command(disable_help_flag = true)]
    Init(InitArgs),
    /// Run transactions and report throughput and latency.
    #[command(disable_help_flag = true)]
    Run(Box<RunArgs>),
    /// Verify that account, teller, branch and history sums agree.
    #[command(disable_help_flag = true)]
    Check(CheckArgs),
}

/// Where to connect. `-h` is the host, as in pgbench; help is `--help`.
#[derive(Args, Clone)]
struct ConnArgs {
    /// Server host.
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(short = 'p', long = "port", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Cluster members HOST:PORT,...; the tool follows whichever is primary.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["host", "port"])]
    hosts: Vec<String>,
    /// Password sent with AUTH.
    #[arg(short = 'a', long)]
    password: Option<String>,
    /// Seconds to wait for a TCP connection.
    #[arg(long = "connect-timeout", default_value_t = 2.0)]
    connect_timeout_s: f64,
    /// Seconds to wait for a reply before the connection counts as broken.
    #[arg(long = "timeout", default_value_t = 5.0)]
    io_timeout_s: f64,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Args)]
struct InitArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Scale: 1 branch, 10 tellers and 100,000 accounts per unit.
    #[arg(short = 's', long, default_value_t = 1)]
    scale: i64,
    /// Only delete the data set (and all history), do not load.
    #[arg(long)]
    drop: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Scale (default: read from the tpcb:scale key).
    #[arg(short = 's', long)]
    scale: Option<i64>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Number of clients (connections).
    #[arg(short = 'c', long, default_value_t = 1)]
    clients: usize,
    /// Number of threads; clients are spread over them.
    #[arg(short = 'j', long, default_value_t = 1)]
    jobs: usize,
    /// Run for this many seconds.
    #[arg(short = 'T', long = "time", conflicts_with = "transactions")]
    time_s: Option<u64>,
    /// Transactions per client (default 10 when -T is not given).
    #[arg(short = 't', long)]
    transactions: Option<u64>,
    /// Target rate in transactions per second over all clients (Poisson schedule).
    #[arg(short = 'R', long = "rate")]
    rate_tps: Option<f64>,
    /// Print progress every N seconds.
    #[arg(short = 'P', long = "progress")]
    progress_s: Option<u64>,
    /// Built-in transaction mix.
    #[arg(long, value_enum, default_value_t = Mix::Tpcb)]
    mix: Mix,
    /// Custom script file (replaces --mix).
    #[arg(short = 'f', long = "file", conflicts_with = "mix")]
    file: Option<PathBuf>,
    /// Transactions in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Scale for key ranges (default: read from the tpcb:scale key).
    #[arg(short = 's', long)]
    scale: Option<i64>,
    /// Attempts per transaction after connection errors or READONLY replies.
    #[arg(long, default_value_t = 10)]
    max_tries: u32,
    /// Seconds a client keeps looking for a primary before the run aborts.
    #[arg(long = "reconnect-timeout", default_value_t = 30.0)]
    reconnect_timeout_s: f64,
    /// Longest wait between rounds over the hosts while looking for a primary
    /// (the wait starts at 10 ms, or at this if lower, and doubles).
    #[arg(long = "reconnect-backoff-max-ms", default_value_t = 500)]
    reconnect_backoff_max_ms: u64,
    /// Write the report and the per-second series as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput and p99 latency per second as SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Mark an event on the plot, e.g. `10s:kill` (repeatable).
    #[arg(long = "mark")]
    marks: Vec<String>,
    /// Report windows longer than this in which no client got an ack (pauses).
    #[arg(long = "pause-threshold-ms", default_value_t = 20)]
    pause_threshold_ms: u64,
    /// At the end, read event marks from this file: lines `UNIX_MS LABEL`
    /// (e.g. written by a harness when it issues a switchover).
    #[arg(long = "events-file")]
    events_file: Option<PathBuf>,
    /// After each acknowledged transaction: LASTLSN on the primary, WAITLSN on
    /// a standby of --hosts, then read the transaction's own write back there
    /// and count a stale read if it is missing (--mix tpcb only).
    #[arg(long = "read-your-writes")]
    read_your_writes: bool,
    /// WAITLSN's timeout with --read-your-writes; a timeout is counted, not judged.
    #[arg(long = "ryw-timeout-ms", default_value_t = 5000)]
    ryw_timeout_ms: u64,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Prints help/version to stdout and usage errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match cli.command {
        Command::Init(args) => cmd_init(args),
        Command::Run(args) => cmd_run(*args),
        Command::Check(args) => cmd_check(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tandem-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs `future` on a compio runtime on the calling thread.
fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = compio::runtime::Runtime::new().context("cannot create an io_uring runtime")?;
    Ok(runtime.block_on(future))
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        bail!("{name} must be a number of seconds in (0, 86400], got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

fn target(args: &ConnArgs) -> anyhow::Result<Target> {
    let require_primary = !args.hosts.is_empty();
    if args.hosts.len() > HOSTS_MAX {
        bail!("--hosts: at most {HOSTS_MAX} hosts");
    }
    let hosts = if require_primary {
        for h in &args.hosts {
            let port = h
                .rsplit_once(':')
                .map(|(host, port)| (host.is_empty(), port.parse::<u16>()));
            if !matches!(port, Some((false, Ok(p))) if p > 0) {
                bail!("--hosts: {h:?} is not HOST:PORT");
            }
        }
        args.hosts.clone()
    } else {
        if args.port == 0 {
            bail!("-p/--port must be in 1..=65535");
        }
        vec![format!("{}:{}", args.host, args.port)]
    };
    Ok(Target {
        hosts,
        require_primary,
        password: args.password.clone(),
        connect_timeout: seconds("--connect-timeout", args.connect_timeout_s)?,
        io_timeout: seconds("--timeout", args.io_timeout_s)?,
        backoff_max: cluster::BACKOFF_MAX,
    })
}

fn check_scale(scale: i64) -> anyhow::Result<i64> {
    if !(1..=dataset::SCALE_MAX).contains(&scale) {
        bail!(
            "-s/--scale must be in 1..={}, got {scale}",
            dataset::SCALE_MAX
        );
    }
    Ok(scale)
}

fn cmd_init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let target = target(&args.conn)?;
    let scale = check_scale(args.scale)?;
    block_on(dataset::init(&target, scale, args.drop))??;
    Ok(ExitCode::SUCCESS)
}

fn cmd_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let target = target(&args.conn)?;
    let scale = args.scale.map(check_scale).transpose()?;
    let pass = block_on(dataset::check(&target, scale))??;
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Parses `--mark 10s:kill` (also `10:kill`, `2.5s:label`).
fn parse_mark(text: &str) -> anyhow::Result<Event> {
    let (at, label) = text
        .split_once(':')
        .with_context(|| format!("--mark {text:?}: expected TIME:LABEL such as 10s:kill"))?;
    let at = at.trim().trim_end_matches('s');
    let t_s: f64 = at
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite() && *t >= 0.0)
        .with_context(|| format!("--mark {text:?}: {at:?} is not a time in seconds"))?;
    Ok(Event {
        t_s,
        kind: EventKind::Mark,
        detail: label.to_string(),
    })
}

/// Reads `--events-file`: lines `UNIX_MS LABEL` become marks at their time since
/// the run's start. Read after the run, so the results are never lost to this
/// file: a missing file, a bad line or a time before the start is a warning.
fn read_events_file(path: &std::path::Path, start_unix_ms: f64) -> Vec<Event> {
    let warn = |what: String| eprintln!("tandem-bench: warning: --events-file {what}");
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            warn(format!("{}: {e}; no events marked", path.display()));
            return Vec::new();
        }
    };
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate().take(EVENT_LINES_MAX) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (at, label) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let t_s = match at.parse::<f64>() {
            Ok(unix_ms) if unix_ms.is_finite() => (unix_ms - start_unix_ms) / 1000.0,
            _ => {
                warn(format!("line {}: {line:?} is not `UNIX_MS LABEL`", i + 1));
                continue;
            }
        };
        if t_s < 0.0 {
            warn(format!(
                "line {}: {line:?} is before the run's start",
                i + 1
            ));
            continue;
        }
        events.push(Event {
            t_s,
            kind: EventKind::Mark,
            detail: label.trim().to_string(),
        });
    }
    events
}

fn load_script(args: &RunArgs) -> anyhow::Result<(Script, bool)> {
    match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read script {}", path.display()))?;
            Ok((Script::parse(&path.display().to_string(), &text)?, false))
        }
        None => {
            let builtin_needs_data = args.mix != Mix::SetGet;
            Ok((
                Script::parse(args.mix.name(), &args.mix.text())?,
                builtin_needs_data,
            ))
        }
    }
}

fn validate_run(args: &RunArgs) -> anyhow::Result<()> {
    if !(1..=CLIENTS_MAX).contains(&args.clients) {
        bail!("-c/--clients must be in 1..={CLIENTS_MAX}");
    }
    if !(1..=THREADS_MAX).contains(&args.jobs) || args.jobs > args.clients {
        bail!(
            "-j/--jobs must be in 1..={THREADS_MAX} and not more than -c ({})",
            args.clients
        );
    }
    if !(1..=PIPELINE_MAX).contains(&args.pipeline) {
        bail!("--pipeline must be in 1..={PIPELINE_MAX}");
    }
    if args.time_s == Some(0) || args.transactions == Some(0) {
        bail!("-T and -t must be at least 1");
    }
    if args.rate_tps.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("-R/--rate must be a positive number of transactions per second");
    }
    if args.progress_s == Some(0) {
        bail!("-P/--progress must be at least 1 second");
    }
    if args.max_tries == 0 {
        bail!("--max-tries must be at least 1");
    }
    if !(1..=60_000).contains(&args.reconnect_backoff_max_ms) {
        bail!("--reconnect-backoff-max-ms must be in 1..=60000");
    }
    if !(1..=PAUSE_THRESHOLD_MS_MAX).contains(&args.pause_threshold_ms) {
        bail!("--pause-threshold-ms must be in 1..={PAUSE_THRESHOLD_MS_MAX}");
    }
    if !(1..=ryw::TIMEOUT_MS_MAX).contains(&args.ryw_timeout_ms) {
        bail!("--ryw-timeout-ms must be in 1..={}", ryw::TIMEOUT_MS_MAX);
    }
    Ok(())
}

/// The command of the script whose write `--read-your-writes` reads back,
/// or why the run cannot check read-your-writes.
fn read_back_command(args: &RunArgs) -> anyhow::Result<usize> {
    let supported = Mix::with_read_back().join(", ");
    if args.conn.hosts.is_empty() {
        bail!(
            "--read-your-writes needs --hosts with the primary and at least one standby \
             (each write is read back on a standby)"
        );
    }
    if let Some(path) = &args.file {
        bail!(
            "--read-your-writes cannot check a custom script ({}): it must know a key that \
             each transaction alone writes; mixes that have one: {supported}",
            path.display()
        );
    }
    match args.mix.read_back_command() {
        Some(index) => Ok(index),
        None => bail!(
            "--read-your-writes cannot check --mix {}: no key that each transaction alone \
             writes, so a stale read would be ambiguous; mixes that have one: {supported}",
            args.mix.name()
        ),
    }
}

fn cmd_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    validate_run(&args)?;
    let read_back = args
        .read_your_writes
        .then(|| read_back_command(&args))
        .transpose()?;
    let target = Target {
        backoff_max: Duration::from_millis(args.reconnect_backoff_max_ms),
        ..target(&args.conn)?
    };
    let ryw = match read_back {
        Some(read_back_command) => Some(ryw::RywConfig {
            standbys: block_on(ryw::discover_standbys(&target))??,
            timeout_ms: args.ryw_timeout_ms,
            read_back_command,
        }),
        None => None,
    };
    let mut marks = args
        .marks
        .iter()
        .map(|m| parse_mark(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (script, builtin_needs_data) = load_script(&args)?;
    let scale = match args.scale {
        Some(s) => check_scale(s)?,
        None => match block_on(dataset::discover_scale(&target))?? {
            Some(s) => s,
            None if builtin_needs_data => {
                bail!(
                    "no {} key: run `tandem-bench init` first or pass -s",
                    dataset::SCALE_KEY
                )
            }
            None => {
                if script.uses_scale {
                    eprintln!("tandem-bench: no {} key, using scale 1", dataset::SCALE_KEY);
                }
                1
            }
        },
    };
    let transactions_per_client = match args.time_s {
        Some(_) => None,
        None => Some(args.transactions.unwrap_or(10)),
    };
    let shape = report::RunShape {
        transaction_type: script.name.clone(),
        scaling_factor: scale,
        clients: args.clients,
        threads: args.jobs,
        pipeline: args.pipeline,
        rate_limit_tps: args.rate_tps,
        pause_threshold_ms: args.pause_threshold_ms as f64,
        ryw: ryw.clone(),
    };
    let cfg = run::RunConfig {
        target,
        script,
        clients: args.clients,
        threads: args.jobs,
        duration: args.time_s.map(Duration::from_secs),
        transactions_per_client,
        rate_tps: args.rate_tps,
        pipeline: args.pipeline,
        scale,
        max_tries: args.max_tries,
        reconnect_timeout: seconds("--reconnect-timeout", args.reconnect_timeout_s)?,
        progress_s: args.progress_s,
        run_id: i64::from(rand::random::<u32>()),
        pause_threshold: Duration::from_millis(args.pause_threshold_ms),
        ryw,
    };
    let result = run::run(cfg)?;
    if let Some(path) = &args.events_file {
        marks.extend(read_events_file(path, result.start_unix_us as f64 / 1000.0));
    }
    let report = report::Report::new(shape, result, marks);
    print!("{}", report.text());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.plot {
        plot::write_svg(&report, path)?;
    }
    if report.transactions == 0 && report.failed > 0 {
        bail!("every transaction failed (first errors are printed above)");
    }
    if report.aborted.is_some() {
        return Ok(ExitCode::from(2));
    }
    if let Some(stale) = report
        .ryw
        .as_ref()
        .map(|r| r.stale_reads)
        .filter(|n| *n > 0)
    {
        eprintln!("tandem-bench: read-your-writes violated: {stale} stale reads");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

//! The subcommands: each turns parsed CLI arguments into calls on the library and prints results.

use std::io::IsTerminal;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{Cli, Command, MaintainArgs, ProduceArgs, RunArgs, TopicCommand, TopicCreateArgs};
use crate::kafka::admin::{create_topic, TopicOutcome};
use crate::kafka::producer::{produce, ProduceConfig, Rate};
use crate::options::RunOptions;
use crate::signals::Shutdown;

/// The exit code for a command that failed: [`crate::error::EXIT_PERMANENT`] when waiting or
/// retrying cannot help (a permanent Kafka error, a run folder that belongs to another job), 1
/// otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    use crate::sink::identity::IdentityError;
    for cause in err.chain() {
        if let Some(stopped) = cause.downcast_ref::<crate::error::RunStopped>() {
            return if stopped.permanent { crate::error::EXIT_PERMANENT } else { 1 };
        }
        if cause.is::<crate::sink::aggregates::OwnerConflict>() {
            return crate::error::EXIT_PERMANENT;
        }
        if let Some(e) = cause.downcast_ref::<IdentityError>() {
            return if matches!(e, IdentityError::Sink(_)) { 1 } else { crate::error::EXIT_PERMANENT };
        }
        if let Some(e) = cause.downcast_ref::<crate::error::SourceError>() {
            return if e.is_permanent() { crate::error::EXIT_PERMANENT } else { 1 };
        }
    }
    1
}

/// Runs the chosen command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Topic(TopicCommand::Create(args)) => topic_create(args),
        Command::Produce(args) => produce_cmd(args),
        Command::Run(args) => run_cmd(args),
        Command::Validate(args) => validate_cmd(args),
        Command::Compact(args) => compact_cmd(args),
        Command::Vacuum(args) => vacuum_cmd(args),
    }
}

fn topic_create(args: TopicCreateArgs) -> anyhow::Result<i32> {
    let settings = args.kafka.client_settings()?;
    let brokers = &settings.brokers;
    let topic = &args.kafka.topic;
    let outcome = create_topic(&settings, topic, args.partitions, args.replication_factor, args.timeout)?;
    match outcome {
        TopicOutcome::Created => {
            println!("created topic {topic} with {} partitions on {brokers}", args.partitions)
        }
        TopicOutcome::AlreadyExists => {
            println!("topic {topic} already exists with {} partitions on {brokers}", args.partitions)
        }
    }
    Ok(0)
}

fn produce_cmd(args: ProduceArgs) -> anyhow::Result<i32> {
    let shutdown = Shutdown::install().context("installing the SIGINT/SIGTERM handler")?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let config = ProduceConfig {
        client: args.kafka.client_settings()?,
        topic: args.kafka.topic.clone(),
        rate: args.rate,
        tick: args.tick,
        count: args.count,
        ids: args.ids,
        seed,
        timeout: args.timeout,
        compression: args.compression,
    };
    let rate = match config.rate {
        Rate::Max => "max".to_string(),
        Rate::PerSecond(n) => format!("{n}/s"),
    };
    eprintln!(
        "producing to topic {} on {} at rate {rate}{} (seed {seed}, {} compression); Ctrl-C stops after a flush",
        config.topic,
        config.client.brokers,
        config.count.map(|c| format!(", {c} events")).unwrap_or_default(),
        config.compression.as_str()
    );

    let bar = match config.count {
        Some(count) if std::io::stderr().is_terminal() => {
            let bar = ProgressBar::new(count);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Some(bar)
        }
        _ => None,
    };
    let started = std::time::Instant::now();
    let summary = produce(&config, &shutdown, |sent, delivered| match &bar {
        Some(bar) => bar.set_position(sent),
        None => eprintln!(
            "progress: sent={sent} delivered={delivered} elapsed_s={:.1} rate_per_s={:.0}",
            started.elapsed().as_secs_f64(),
            sent as f64 / started.elapsed().as_secs_f64().max(1e-9)
        ),
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let secs = summary.elapsed_ms as f64 / 1000.0;
    println!(
        "produced {} events to {} in {secs:.2} s ({:.0} events/s), all {} acknowledged",
        summary.sent,
        config.topic,
        summary.sent as f64 / secs.max(1e-9),
        summary.delivered
    );
    Ok(0)
}

fn run_cmd(args: RunArgs) -> anyhow::Result<i32> {
    let options = RunOptions::new(args.into())?;
    let shutdown = Shutdown::install().context("installing the SIGINT/SIGTERM handler")?;
    let s = crate::job::run(options, shutdown)?;
    let secs = s.elapsed.as_secs_f64();
    println!(
        "run finished: messages={} rows={} quarantined={} late={} files={} commits={} window_rows={} \
         closed_through_ms={} elapsed_s={secs:.2} events_per_s={:.0}",
        s.messages,
        s.rows,
        s.quarantined,
        s.late,
        s.files,
        s.commits,
        s.window_rows,
        s.closed_through_ms,
        s.messages as f64 / secs.max(1e-9)
    );
    if let Some((raw, aggs)) = s.delta_commits {
        // One Delta commit per process per roll, `ranges` the partition ranges they moved: what
        // they cost (docs/format.md, "Delta Lake").
        println!(
            "delta commits: raw={} raw_ranges={} aggregates={} retries={} mean_ms={:.1} max_ms={:.1}",
            raw.commits,
            raw.ranges,
            aggs.commits,
            raw.retries + aggs.retries,
            (raw.total_ms + aggs.total_ms) / (raw.commits + aggs.commits).max(1) as f64,
            raw.max_ms.max(aggs.max_ms)
        );
    }
    if let Some(r) = s.object_requests {
        // What the commits cost on a store billed per request (lease renewals included).
        println!(
            "object store requests: get={} put={} create={} list={} delete={} per_commit={:.2}",
            r.get,
            r.put,
            r.create,
            r.list,
            r.delete,
            (r.get + r.put + r.create + r.list + r.delete) as f64 / s.commits.max(1) as f64
        );
    }
    Ok(0)
}

fn validate_cmd(args: crate::validate::ValidateArgs) -> anyhow::Result<i32> {
    // Only the --every loop checks the flag; a single run keeps the default Ctrl-C behaviour.
    let shutdown = if args.every.is_some() {
        Shutdown::install().context("installing the SIGINT/SIGTERM handler")?
    } else {
        Shutdown::never()
    };
    crate::validate::run(&args, &|| shutdown.requested())
}

fn compact_cmd(args: MaintainArgs) -> anyhow::Result<i32> {
    let target = args.target_size_mib << 20;
    for table in crate::sink::delta::run_tables(&args.output, &args.run_id)? {
        let done = crate::sink::delta::maintain::compact(&table, target)?;
        match done.version {
            Some(v) => println!(
                "compacted {}: {} files -> {} ({} small files merged into {}, {} -> {} bytes), version {v}",
                table.shown(),
                done.files_before,
                done.files_after,
                done.replaced,
                done.written,
                done.bytes_in,
                done.bytes_out
            ),
            None => println!("compacted {}: {} files, none to merge", table.shown(), done.files_before),
        }
    }
    Ok(0)
}

fn vacuum_cmd(args: MaintainArgs) -> anyhow::Result<i32> {
    for table in crate::sink::delta::run_tables(&args.output, &args.run_id)? {
        let done = crate::sink::delta::maintain::vacuum(&table, args.retain, args.dry_run)?;
        let verb = if done.dry_run { "would delete" } else { "deleted" };
        println!("vacuumed {}: {verb} {} files", table.shown(), done.deleted.len());
        for f in &done.deleted {
            println!("  {f}");
        }
    }
    Ok(0)
}

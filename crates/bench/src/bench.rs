//! One benchmark from start to report: start the stack, warm up, run the scenario while
//! watching CPU, collect peak RSS, clean up (also on Ctrl-C) and print.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

use crate::client::{self, Api};
use crate::procfs;
use crate::report::{ConcurrentReport, LoadReport, Report};
use crate::scenarios;
use crate::stack::{Stack, StackOptions};
use crate::{Common, Scenario};

/// Clients of the warm-up closed loop.
const WARMUP_CLIENTS: usize = 8;
/// The bar the `rate` scenario is checked against.
const RATE_P99_TARGET_MS: f64 = 50.0;
/// Above this CPU share of one core, the client may be what limits the numbers.
const CLIENT_BOUND_PCT: f64 = 80.0;

/// Runs `scenario` on a fresh stack and prints its report.
///
/// # Errors
/// When the stack cannot start, the warm-up fails, the scenario cannot be measured, or Ctrl-C
/// interrupts it. The stack is cleaned up in every case.
pub(crate) async fn run(scenario: Scenario, common: Common) -> anyhow::Result<()> {
    if let Scenario::Spans { iterations } = scenario {
        return spans(iterations, &common);
    }
    if let Scenario::Streams { streams, .. } = scenario {
        // Before the stack starts: its processes inherit the limit.
        crate::streams::raise_fd_limit(streams)?;
    }
    // One rustls crypto provider for the process, as in the `agentyard` binary.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut stack = Stack::new(stack_options(&scenario, &common)?)?;
    let http = client::http_client(common.fresh_connections)?;
    let outcome = tokio::select! {
        r = measure(&mut stack, &http, &scenario, &common) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    if outcome.is_err() {
        for log in stack.log_files() {
            eprintln!("log: {}", log.display());
        }
    }
    stack.shutdown().await;
    let report = outcome?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.markdown());
    }
    Ok(())
}

/// `spans`: the cost of a trace span, measured in this process.
fn spans(iterations: usize, common: &Common) -> anyhow::Result<()> {
    let c = agentyard_otel::cost::measure(iterations);
    if common.json {
        println!(
            "{}",
            json!({"scenario": "spans", "spans": c.spans, "recorded_ns": c.recorded_ns,
                "registry_alone_ns": c.registry_alone_ns, "encoded": c.encoded,
                "encoded_ns": c.encoded_ns, "bytes_per_span": c.bytes_per_span})
        );
    } else {
        println!("## agentyard-bench: spans\n");
        println!("| per span ({} spans) | value |\n|---|---:|", c.spans);
        println!("| recorded by the trace layer (ns) | {} |", c.recorded_ns);
        println!("| the same with the registry alone (ns) | {} |", c.registry_alone_ns);
        println!("| encoded as OTLP protobuf (ns, {} spans) | {} |", c.encoded, c.encoded_ns);
        println!("| bytes | {} |", c.bytes_per_span);
    }
    Ok(())
}

fn stack_options(scenario: &Scenario, c: &Common) -> anyhow::Result<StackOptions> {
    let bin = match &c.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .context("cannot locate the bench executable")?
            .with_file_name("agentyard"),
    };
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p agentyard-cli` or pass --bin",
            bin.display()
        );
    }
    let (workers, first_token_ms, concurrency) = match scenario {
        Scenario::Spans { .. } => bail!("`spans` measures in this process and starts no stack"),
        Scenario::Throughput { clients, duration, workers } => {
            if *clients == 0 || *duration == 0 {
                bail!("--clients and --duration must be positive");
            }
            (*workers, 0, c.agent_concurrency)
        }
        Scenario::Poll { clients, duration, workers, .. } => {
            if *clients == 0 || *duration == 0 {
                bail!("--clients and --duration must be positive");
            }
            (*workers, 0, c.agent_concurrency)
        }
        Scenario::Rate { rate, duration, workers } => {
            if !(rate.is_finite() && *rate > 0.0) || *duration == 0 {
                bail!("--rate and --duration must be positive");
            }
            (*workers, 0, c.agent_concurrency)
        }
        Scenario::Tools { clients, duration, workers, .. } => {
            if *clients == 0 || *duration == 0 {
                bail!("--clients and --duration must be positive");
            }
            (*workers, 0, c.agent_concurrency)
        }
        Scenario::Workflow { rate, clients, duration, workers, .. } => {
            if !(rate.is_finite() && *rate > 0.0) || *clients == 0 || *duration == 0 {
                bail!("--rate, --clients and --duration must be positive");
            }
            (*workers, 0, c.agent_concurrency)
        }
        Scenario::Streams {
            streams, users, rate, duration, workers, connect_concurrency, ..
        } => {
            if *streams == 0 || *users == 0 || *duration == 0 || *connect_concurrency == 0 {
                bail!("--streams, --users, --duration and --connect-concurrency must be positive");
            }
            if !(rate.is_finite() && *rate > 0.0) {
                bail!("--rate must be positive");
            }
            (*workers, 0, c.agent_concurrency)
        }
        Scenario::History { sizes, runs, workers, .. } => {
            if *runs == 0 || sizes.is_empty() || !sizes.is_sorted() {
                bail!("--runs must be positive and --sizes ascending");
            }
            (*workers, 0, c.agent_concurrency)
        }
        Scenario::Priority { runs, answer_ms, workers } => {
            if *runs == 0 {
                bail!("--runs must be positive");
            }
            (*workers, *answer_ms, Some(c.agent_concurrency.unwrap_or(8)))
        }
        Scenario::Concurrent { runs, answer_ms, workers, post_concurrency, .. } => {
            if *post_concurrency == 0 {
                bail!("--post-concurrency must be positive");
            }
            (*workers, *answer_ms, Some(c.agent_concurrency.unwrap_or((*runs).max(512))))
        }
    };
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let mut env = Vec::new();
    if let Scenario::Streams { streams, .. } = scenario {
        // Every stream on one token would be allowed; the connection cap above the streams.
        // `--env` given by the caller comes later and wins.
        env.push(("AY_MAX_STREAMS_PER_TOKEN".to_owned(), streams.to_string()));
        let connections = (*streams + 1024).max(20_000);
        env.push(("AY_HTTP_MAX_CONNECTIONS".to_owned(), connections.to_string()));
    }
    env.extend(c.env.iter().cloned());
    Ok(StackOptions {
        bin,
        postgres_url: c.postgres_url.clone(),
        nats_url: c.nats_url.clone(),
        api_port: c.api_port,
        workers,
        first_token_ms,
        agent_concurrency: concurrency,
        db_pool_size: c.db_pool_size,
        keep: c.keep,
        tools: matches!(
            scenario,
            Scenario::Tools { .. }
                | Scenario::Workflow { .. }
                | Scenario::History { tools: true, .. }
        ),
        orchestrator: matches!(scenario, Scenario::Workflow { .. }),
        monitor: c.monitor,
        env,
    })
}

async fn measure(
    stack: &mut Stack,
    http: &reqwest::Client,
    scenario: &Scenario,
    common: &Common,
) -> anyhow::Result<Report> {
    let token = stack.start(http).await?;
    let api = Api::new(http.clone(), &stack.api_url(), &token);
    if common.warmup > 0 {
        let warmup = Duration::from_secs(common.warmup);
        scenarios::warm_up(&api, WARMUP_CLIENTS, warmup).await?;
    }
    let watched = stack.watched();
    let before = procfs::snapshot(&watched);
    let mut report = Report {
        scenario: "",
        params: json!({}),
        load: None,
        poll: None,
        concurrent: None,
        streams: None,
        processes: Vec::new(),
        machine_cpu_pct: None,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        notes: Vec::new(),
    };
    let mut concurrent = None;
    let mut streams_usage = None;
    match scenario.clone() {
        Scenario::Spans { .. } => bail!("`spans` measures in this process and starts no stack"),
        Scenario::Throughput { clients, duration, workers } => {
            eprintln!("throughput: {clients} clients for {duration}s, {workers} worker(s)");
            let secs = Duration::from_secs(duration);
            let load = scenarios::closed_loop(&api, clients, secs, "benchmark").await?;
            report.scenario = "throughput";
            report.params = json!({"clients": clients, "duration_s": duration, "workers": workers});
            report.load = Some(LoadReport::from_load(&load));
        }
        Scenario::Poll { clients, duration, workers, wait } => {
            eprintln!(
                "poll: {clients} clients, {duration}s streaming then {duration}s long-polling, {workers} worker(s)"
            );
            let secs = Duration::from_secs(duration);
            let stream = scenarios::closed_loop(&api, clients, secs, "benchmark").await?;
            let (poll, long_waits) =
                scenarios::poll_loop(&api, clients, secs, wait, "polled").await?;
            report.scenario = "poll";
            report.params = json!({"clients": clients, "duration_s": duration, "workers": workers,
                "wait_s": wait});
            report.load = Some(LoadReport::from_load(&stream));
            let poll = LoadReport::from_load(&poll);
            report.notes.push(format!(
                "long-poll runs/s = {:.1} % of streaming; {long_waits} polls came back before \
                 their run ended (their ?wait= ran out)",
                100.0 * poll.completed_per_s
                    / report.load.as_ref().map_or(1.0, |l| l.completed_per_s),
            ));
            report.poll = Some(poll);
        }
        Scenario::Rate { rate, duration, workers } => {
            eprintln!("rate: {rate} runs/s for {duration}s, {workers} worker(s)");
            let load = scenarios::open_loop(&api, rate, Duration::from_secs(duration)).await?;
            report.scenario = "rate";
            report.params = json!({"rate": rate, "duration_s": duration, "workers": workers});
            report.load = Some(LoadReport::from_load(&load));
        }
        Scenario::Concurrent { runs, answer_ms, workers, post_concurrency, timeout, backlog } => {
            eprintln!(
                "concurrent: {runs} runs of ~{answer_ms} ms, {workers} worker(s){}",
                if backlog { ", posted as a backlog while the workers are paused" } else { "" }
            );
            let paused: Vec<u32> = if backlog {
                (1..=workers).filter_map(|i| stack.pid(&format!("worker-{i}"))).collect()
            } else {
                Vec::new()
            };
            let db = PgPoolOptions::new()
                .max_connections(2)
                .connect(&stack.database_url())
                .await
                .context("cannot connect to the bench database")?;
            let timeout = Duration::from_secs(timeout);
            concurrent = Some(
                scenarios::concurrent(&api, &db, runs, post_concurrency, timeout, &paused).await?,
            );
            report.scenario = "concurrent";
            report.params = json!({"runs": runs, "answer_ms": answer_ms, "workers": workers,
                "post_concurrency": post_concurrency, "backlog": backlog});
        }
        Scenario::Tools { clients, duration, workers, poll } => {
            let how = poll.map_or("streamed".to_owned(), |w| format!("long-polled (?wait={w})"));
            eprintln!(
                "tools: {clients} clients for {duration}s, runs {how}, {workers} agent worker(s), \
                 1 tool worker"
            );
            let secs = Duration::from_secs(duration);
            const INPUT: &str = "show ticket stats";
            report.scenario = "tools";
            report.params = json!({"clients": clients, "duration_s": duration, "workers": workers,
                "tool_workers": 1, "tool": "get_ticket_stats", "poll_wait_s": poll});
            if let Some(wait) = poll {
                let (load, long_waits) =
                    scenarios::poll_loop(&api, clients, secs, wait, INPUT).await?;
                report.poll = Some(LoadReport::from_load(&load));
                report.notes.push(format!(
                    "{long_waits} polls came back before their run ended (their ?wait= ran out)"
                ));
            } else {
                let load = scenarios::closed_loop(&api, clients, secs, INPUT).await?;
                report.load = Some(LoadReport::from_load(&load));
            }
            let db = PgPoolOptions::new()
                .max_connections(2)
                .connect(&stack.database_url())
                .await
                .context("cannot connect to the bench database")?;
            report.notes.extend(scenarios::tool_round_trips(&db).await?);
        }
        Scenario::Workflow { rate, clients, duration, workers, tool_steps } => {
            let db = PgPoolOptions::new()
                .max_connections(2)
                .connect(&stack.database_url())
                .await
                .context("cannot connect to the bench database")?;
            let wf = crate::workflow::Client::new(http.clone(), &stack.api_url(), &token);
            let secs = Duration::from_secs(duration);
            let lines = crate::workflow::run(&wf, &db, rate, clients, secs, tool_steps).await?;
            report.scenario = "workflow";
            report.params = json!({"rate": rate, "clients": clients, "duration_s": duration,
                "workers": workers, "tool_workers": 1, "orchestrators": 1, "tool_steps": tool_steps});
            report.notes.extend(lines);
        }
        Scenario::Streams {
            streams,
            users,
            rate,
            duration,
            workers,
            connect_concurrency,
            grace,
        } => {
            eprintln!(
                "streams: {streams} streams over {users} users, {rate} runs/s for {duration}s, \
                 {workers} worker(s)"
            );
            let api_pid = stack.pid("api").context("the API is not running")?;
            let opts = crate::streams::Options {
                streams,
                users,
                rate,
                duration: Duration::from_secs(duration),
                connect_concurrency,
                grace: Duration::from_secs(grace),
            };
            let (s, processes, cpu) =
                crate::streams::run(http, &stack.api_url(), &token, api_pid, &watched, &opts)
                    .await?;
            report.scenario = "streams";
            report.params = json!({"streams": streams, "users": users, "rate": rate,
                "duration_s": duration, "workers": workers,
                "connect_concurrency": connect_concurrency, "grace_s": grace});
            report.streams = Some(s);
            streams_usage = Some((processes, cpu));
        }
        Scenario::History { sizes, runs, workers, tools } => {
            let kind = if tools { "tool runs" } else { "runs" };
            eprintln!("history: one thread grown to {sizes:?} messages, {runs} {kind} at each");
            let opts = crate::history::Options { sizes: sizes.clone(), runs, tools };
            report.notes.extend(crate::history::run(&api, &watched, &opts).await?);
            report.scenario = "history";
            report.params =
                json!({"sizes": sizes, "runs": runs, "workers": workers, "tools": tools});
        }
        Scenario::Priority { runs, answer_ms, workers } => {
            let slots = common.agent_concurrency.unwrap_or(8);
            eprintln!(
                "priority: {runs} low then {runs} high runs of ~{answer_ms} ms, {workers} worker(s) x {slots} slots"
            );
            let db = PgPoolOptions::new()
                .max_connections(2)
                .connect(&stack.database_url())
                .await
                .context("cannot connect to the bench database")?;
            let lines = scenarios::priority(&api, &db, runs).await?;
            report.scenario = "priority";
            report.params = json!({"runs_per_priority": runs, "answer_ms": answer_ms,
                "workers": workers, "agent_concurrency": slots});
            report.notes.extend(lines);
        }
    }
    let after = procfs::snapshot(&watched);
    (report.processes, report.machine_cpu_pct) = procfs::usage(&watched, &before, &after);
    if let Some(load_phase) = streams_usage {
        // CPU of the load phase only, not of making users and opening streams.
        (report.processes, report.machine_cpu_pct) = load_phase;
    }
    if let (Some(c), Scenario::Concurrent { runs, .. }) = (concurrent, scenario) {
        let rss = report
            .processes
            .iter()
            .filter(|p| p.name.starts_with("worker"))
            .filter_map(|p| p.peak_rss_mib)
            .reduce(f64::max);
        report.concurrent = Some(ConcurrentReport::new(*runs, c, rss));
    }
    let mut notes = notes(stack, &report, scenario);
    report.notes.append(&mut notes);
    Ok(report)
}

/// Children that died, a missed `rate` bar, a client that may have been the bottleneck.
fn notes(stack: &mut Stack, report: &Report, scenario: &Scenario) -> Vec<String> {
    let mut notes = stack.exited();
    if let (Scenario::Rate { rate, .. }, Some(load)) = (scenario, &report.load) {
        let p99 = load.run_completed.as_ref().map_or(f64::INFINITY, |s| s.p99_ms);
        let met = p99 <= RATE_P99_TARGET_MS && load.failed == 0;
        notes.push(format!(
            "target p99 post → run.completed ≤ {RATE_P99_TARGET_MS} ms at {rate} runs/s: {} \
             (p99 {p99:.1} ms, {} failed, {:.1} runs/s completed)",
            if met { "MET" } else { "NOT MET" },
            load.failed,
            load.completed_per_s,
        ));
        if load.offered_per_s.is_some_and(|r| r < rate * 0.95) {
            notes.push(format!(
                "the client did not hold the arrival rate ({:.1} of {rate} runs/s)",
                load.offered_per_s.unwrap_or_default()
            ));
        }
    }
    let client = report.processes.iter().find(|p| p.name.starts_with("bench"));
    if let Some(cpu) = client.and_then(|p| p.cpu_pct).filter(|c| *c > CLIENT_BOUND_PCT) {
        notes.push(format!(
            "the bench client itself used {cpu:.0} % of a core: on this machine it competes \
             with the system under test for CPU"
        ));
    }
    notes
}

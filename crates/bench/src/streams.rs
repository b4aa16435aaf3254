//! The `streams` scenario: many concurrent `GET /v1/events` streams on one API process, kept
//! live by real runs. `users` users are made in the bench org, each with a token limited to that
//! user (not an admin), so each stream sees only its user's runs. The streams are opened
//! gradually (a bounded number of connects at once), the API's RSS is read before and with all
//! of them open and idle, then non-streamed runs are posted (202) at `rate` per second from
//! random users. For every run, every open stream of its user must deliver its
//! `run.completed`: the delay from the POST to that arrival is one delivery latency.
//!
//! Reading 10,000 streams must stay cheap in the client: one task per stream, scanning its
//! bytes for `event:` and `data:` lines just enough to get the kind and, for `run.completed`,
//! the `run_id` ([`Scan`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use crate::client::{Api, http_error, transport_error};
use crate::procfs::{self, ProcessUsage, Target, Watched};
use crate::stats::Summary;

/// How long opening one stream (connect, request, response head) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the API is left alone with every stream open before its idle RSS and CPU are read.
const IDLE_SETTLE: Duration = Duration::from_secs(5);
/// File descriptors kept beyond one per stream (posts, Postgres, NATS, logs) in the bench and,
/// since it inherits the bench's limit, in the API.
const FD_MARGIN: u64 = 1024;

/// What to do.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) streams: usize,
    pub(crate) users: usize,
    /// Runs posted per second.
    pub(crate) rate: f64,
    /// How long runs are posted.
    pub(crate) duration: Duration,
    /// Streams being opened at once.
    pub(crate) connect_concurrency: usize,
    /// After the last POST, how long every expected `run.completed` may take to arrive.
    pub(crate) grace: Duration,
}

/// What the scenario measured.
#[derive(Debug, Serialize)]
pub(crate) struct StreamsReport {
    pub(crate) users: usize,
    pub(crate) streams_requested: usize,
    /// Streams that answered 200.
    pub(crate) streams_opened: usize,
    /// Streams that could not be opened, by reason.
    pub(crate) open_failures: BTreeMap<String, usize>,
    /// First connect → last stream open.
    pub(crate) open_s: f64,
    /// Streams still open at the end.
    pub(crate) streams_open_at_end: usize,
    /// Streams that ended before the end, by reason.
    pub(crate) streams_ended: BTreeMap<String, usize>,
    /// The API's RSS (`VmRSS`) before any stream was opened.
    pub(crate) api_rss_before_mib: Option<f64>,
    /// The API's RSS with every stream open, idle for a few seconds.
    pub(crate) api_rss_idle_mib: Option<f64>,
    /// (idle − before) / streams opened.
    pub(crate) api_kib_per_stream: Option<f64>,
    /// The API's CPU while every stream was open and idle (100 = one core).
    pub(crate) api_cpu_idle_pct: Option<f64>,
    /// The API's RSS when the load phase ended.
    pub(crate) api_rss_end_mib: Option<f64>,
    /// The API's peak RSS (`VmHWM`) over the whole scenario.
    pub(crate) api_peak_rss_mib: Option<f64>,
    pub(crate) runs_posted: usize,
    pub(crate) post_failures: BTreeMap<String, usize>,
    /// Runs posted per second while posting.
    pub(crate) offered_per_s: f64,
    /// Runs whose `run.completed` reached at least one stream.
    pub(crate) runs_completed: usize,
    /// Completed runs per second, first POST → last delivery.
    pub(crate) completed_per_s: f64,
    /// (run, stream of its user) pairs that should have seen the run's `run.completed`.
    pub(crate) deliveries_expected: usize,
    pub(crate) delivered: usize,
    /// Expected deliveries that never arrived within the grace period (must be 0).
    pub(crate) missed: usize,
    /// Deliveries of a run to a stream of another user, or of a run the bench did not post
    /// (must be 0: a user's token sees only its user's runs).
    pub(crate) foreign: usize,
    /// A run's `run.completed` seen more than once on one stream.
    pub(crate) duplicates: usize,
    /// POST → `run.completed` on each stream of the run's user.
    pub(crate) delivery_latency: Option<Summary>,
    /// Events of every kind the streams received during the load phase, per second.
    pub(crate) events_per_s: f64,
}

/// Runs the scenario on a started stack. `admin` is the org's admin token; `api_pid` the API
/// process; `watched` the processes whose CPU the load phase reports.
///
/// # Returns
/// The report and the processes table of the load phase (POSTs until the last delivery).
///
/// # Errors
/// When the users or tokens cannot be made, or no stream could be opened.
pub(crate) async fn run(
    http: &reqwest::Client,
    base_url: &str,
    admin: &str,
    api_pid: u32,
    watched: &[Watched],
    opts: &Options,
) -> anyhow::Result<(StreamsReport, Vec<ProcessUsage>, Option<f64>)> {
    let api = Target::Pid(api_pid);
    let tokens = make_users(http, base_url, admin, opts.users).await?;
    eprintln!("streams: {} users with their own tokens", tokens.len());

    let rss_before = procfs::rss_mib(&api);
    let shared = Arc::new(Shared::default());
    let stream_client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the streams' HTTP client")?;
    let url = format!("{base_url}/v1/events");
    let open_start = Instant::now();
    let opened: Vec<(usize, Result<reqwest::Response, String>)> =
        futures::stream::iter(0..opts.streams)
            .map(|i| {
                let (client, url) = (&stream_client, &url);
                let token = &tokens[i % tokens.len()];
                async move { (i, open(client, url, token).await) }
            })
            .buffer_unordered(opts.connect_concurrency)
            .collect()
            .await;
    let open_s = open_start.elapsed().as_secs_f64();
    let mut readers = JoinSet::new();
    let mut open_failures = BTreeMap::new();
    // The streams open per user, by stream number.
    let mut streams_of: Vec<Vec<u32>> = vec![Vec::new(); tokens.len()];
    for (i, result) in opened {
        match result {
            Ok(resp) => {
                let stream = u32::try_from(i).context("too many streams")?;
                streams_of[i % tokens.len()].push(stream);
                readers.spawn(read(resp, stream, Arc::clone(&shared)));
            }
            Err(e) => *open_failures.entry(e).or_default() += 1,
        }
    }
    let streams_opened = readers.len();
    eprintln!(
        "streams: {streams_opened} of {} open in {open_s:.1}s ({} failed)",
        opts.streams,
        opts.streams - streams_opened
    );
    if streams_opened == 0 {
        bail!("no stream could be opened: {open_failures:?}");
    }

    // Idle with every stream open: RSS and CPU.
    let idle_watch = [Watched { name: "api".into(), target: Target::Pid(api_pid) }];
    let idle_start = procfs::snapshot(&idle_watch);
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle_end = procfs::snapshot(&idle_watch);
    let api_cpu_idle_pct = procfs::usage(&idle_watch, &idle_start, &idle_end).0[0].cpu_pct;
    let rss_idle = procfs::rss_mib(&api);
    eprintln!(
        "streams: API RSS {} MiB before, {} MiB with {streams_opened} streams open and idle",
        fmt_opt(rss_before),
        fmt_opt(rss_idle)
    );

    // The load: runs posted at `rate` from random users.
    let base_events = shared.events.load(Ordering::Relaxed);
    let before = procfs::snapshot(watched);
    let load_start = Instant::now();
    let apis: Vec<Api> = tokens.iter().map(|t| Api::new(http.clone(), base_url, t)).collect();
    let (posts, posting) = post_runs(&apis, opts.rate, opts.duration).await?;
    let offered_per_s = posts.len().saturating_sub(1) as f64 / posting.as_secs_f64().max(1e-9);
    let mut posted = Vec::new();
    let mut post_failures = BTreeMap::new();
    for (user, at, result) in posts {
        match result {
            Ok(run) => posted.push(Posted { run, user, at }),
            Err(e) => *post_failures.entry(e).or_default() += 1,
        }
    }
    let expected: usize = posted.iter().map(|p| streams_of[p.user].len()).sum();
    eprintln!(
        "streams: {} runs posted in {:.1}s; waiting for {expected} deliveries",
        posted.len(),
        posting.as_secs_f64()
    );
    let deadline = Instant::now() + opts.grace;
    while shared.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load_elapsed = load_start.elapsed();
    let after = procfs::snapshot(watched);
    let (processes, machine_cpu_pct) = procfs::usage(watched, &before, &after);
    let rss_end = procfs::rss_mib(&api);
    let events = shared.events.load(Ordering::Relaxed) - base_events;

    readers.abort_all();
    let ended = std::mem::take(&mut *shared.ended.lock().expect("poisoned"));
    let arrivals = std::mem::take(&mut *shared.arrivals.lock().expect("poisoned"));
    let tally = tally(&posted, &streams_of, &arrivals);
    let completed_per_s = match tally.last_arrival {
        Some(last) => tally.runs_completed as f64 / (last - load_start).as_secs_f64().max(1e-9),
        None => 0.0,
    };
    let api_peak_rss_mib = processes.iter().find(|p| p.name == "api").and_then(|p| p.peak_rss_mib);
    let ended_count: usize = ended.values().sum();
    let report = StreamsReport {
        users: tokens.len(),
        streams_requested: opts.streams,
        streams_opened,
        open_failures,
        open_s,
        streams_open_at_end: streams_opened - ended_count,
        streams_ended: ended,
        api_rss_before_mib: rss_before,
        api_rss_idle_mib: rss_idle,
        api_kib_per_stream: rss_before
            .zip(rss_idle)
            .map(|(b, i)| (i - b) * 1024.0 / streams_opened as f64),
        api_cpu_idle_pct,
        api_rss_end_mib: rss_end,
        api_peak_rss_mib,
        runs_posted: posted.len(),
        post_failures,
        offered_per_s,
        runs_completed: tally.runs_completed,
        completed_per_s,
        deliveries_expected: expected,
        delivered: tally.latencies.len(),
        missed: tally.missed,
        foreign: tally.foreign,
        duplicates: tally.duplicates,
        delivery_latency: Summary::of(tally.latencies),
        events_per_s: events as f64 / load_elapsed.as_secs_f64().max(1e-9),
    };
    Ok((report, processes, machine_cpu_pct))
}

/// Raises this process's soft limit of open files to what `streams` need (up to the hard limit;
/// the API started from here inherits it).
///
/// # Returns
/// The soft limit now in force.
///
/// # Errors
/// When the hard limit is too low for `streams`, with what to do about it.
pub(crate) fn raise_fd_limit(streams: usize) -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let needed = streams as u64 + FD_MARGIN;
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).context("cannot read the open files limit")?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard < needed {
        bail!(
            "--streams {streams} needs about {needed} open files in the bench and in the API, \
             but the hard limit is {hard} (`ulimit -Hn`): raise it (as root: `ulimit -n {needed}` \
             before running the bench) or lower --streams"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        .with_context(|| format!("cannot raise the open files limit from {soft} to {hard}"))?;
    eprintln!("streams: open files limit raised from {soft} to {hard}");
    Ok(hard)
}

/// A run the bench posted: by which user (index) and when the POST was sent.
#[derive(Clone, Debug)]
struct Posted {
    run: Uuid,
    user: usize,
    at: Instant,
}

/// What the readers share: when each run's `run.completed` reached which stream.
#[derive(Debug, Default)]
struct Shared {
    arrivals: Mutex<HashMap<Uuid, Vec<(u32, Instant)>>>,
    /// `run.completed` deliveries so far.
    deliveries: AtomicUsize,
    /// Events of every kind so far.
    events: AtomicU64,
    /// Streams that ended, by reason.
    ended: Mutex<BTreeMap<String, usize>>,
}

/// Makes `n` users, each with a `runs:read runs:write` token limited to it.
async fn make_users(
    http: &reqwest::Client,
    base_url: &str,
    admin: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let tokens: Vec<anyhow::Result<String>> = futures::stream::iter(0..n)
        .map(|i| async move {
            let user = post_json(
                http,
                &format!("{base_url}/v1/users"),
                admin,
                &json!({"name": format!("bench user {i}"),
                    "email": format!("bench-{stamp}-{i}@example.com")}),
            )
            .await?;
            let id = user["id"].as_str().context("no user id in the answer")?;
            let token = post_json(
                http,
                &format!("{base_url}/v1/tokens"),
                admin,
                &json!({"user_id": id, "name": format!("bench user {i}"),
                    "scopes": ["runs:read", "runs:write"]}),
            )
            .await?;
            let secret = token["token"].as_str().context("no token in the answer")?;
            Ok(secret.to_owned())
        })
        .buffered(8)
        .collect()
        .await;
    tokens.into_iter().collect()
}

/// POSTs `body`; the answer's JSON when it is 201.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    if resp.status() != reqwest::StatusCode::CREATED {
        bail!("POST {url}: {}", http_error(resp).await);
    }
    resp.json().await.with_context(|| format!("POST {url}: not JSON"))
}

/// Opens one event stream: Ok once its response head says 200.
async fn open(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<reqwest::Response, String> {
    let send = client.get(url).bearer_auth(token).header("accept", "text/event-stream").send();
    let resp = match tokio::time::timeout(OPEN_TIMEOUT, send).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return Err(transport_error(&e)),
        Err(_) => return Err(format!("timed out after {}s", OPEN_TIMEOUT.as_secs())),
    };
    if resp.status() != reqwest::StatusCode::OK {
        return Err(http_error(resp).await);
    }
    Ok(resp)
}

/// Reads one stream until it ends (or the task is aborted), recording each `run.completed`.
async fn read(mut resp: reqwest::Response, stream: u32, shared: Arc<Shared>) {
    let mut scan = Scan::default();
    let why = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                let now = Instant::now();
                let before = scan.events;
                scan.feed(&bytes, |run| {
                    let mut arrivals = shared.arrivals.lock().expect("poisoned");
                    arrivals.entry(run).or_default().push((stream, now));
                    drop(arrivals);
                    shared.deliveries.fetch_add(1, Ordering::Relaxed);
                });
                shared.events.fetch_add(scan.events - before, Ordering::Relaxed);
            }
            Ok(None) => break "ended by the server".to_owned(),
            Err(e) => break transport_error(&e),
        }
    };
    *shared.ended.lock().expect("poisoned").entry(why).or_default() += 1;
}

/// Posts runs from random users at `rate` per second for `duration` (open loop: a task per
/// POST, however slow the answers). Returns (user, when sent, the run or why not) per POST and
/// how long posting took.
async fn post_runs(
    apis: &[Api],
    rate: f64,
    duration: Duration,
) -> anyhow::Result<(Vec<(usize, Instant, Result<Uuid, String>)>, Duration)> {
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let user = pick(seed, n as u64, apis.len());
        let api = apis[user].clone();
        set.spawn(async move {
            let at = Instant::now();
            (user, at, api.create_run(format!("benchmark message {n}")).await)
        });
    }
    let posting = start.elapsed();
    let mut out = Vec::with_capacity(total);
    while let Some(done) = set.join_next().await {
        out.push(done.context("a POST task failed")?);
    }
    Ok((out, posting))
}

/// A pseudo-random index below `n` for the `i`-th draw (splitmix64: spread evenly, no state).
fn pick(seed: u64, i: u64, n: usize) -> usize {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n.max(1) as u64) as usize
}

/// The deliveries of the posted runs, matched with the streams that should have seen them.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    /// POST → arrival, one per (run, stream of its user) delivered.
    latencies: Vec<Duration>,
    missed: usize,
    foreign: usize,
    duplicates: usize,
    runs_completed: usize,
    last_arrival: Option<Instant>,
}

/// Matches `arrivals` (run → (stream, when)) with `posted` runs and the open streams of each
/// user (`streams_of[user]`).
fn tally(
    posted: &[Posted],
    streams_of: &[Vec<u32>],
    arrivals: &HashMap<Uuid, Vec<(u32, Instant)>>,
) -> Tally {
    let mut t = Tally::default();
    let mut owner_of_stream = HashMap::new();
    for (user, streams) in streams_of.iter().enumerate() {
        for s in streams {
            owner_of_stream.insert(*s, user);
        }
    }
    let mut ours = 0;
    for p in posted {
        let got = arrivals.get(&p.run).map_or(&[][..], Vec::as_slice);
        ours += got.len();
        let mut first: HashMap<u32, Instant> = HashMap::new();
        for (stream, at) in got {
            if owner_of_stream.get(stream) != Some(&p.user) {
                t.foreign += 1;
            } else if first.contains_key(stream) {
                t.duplicates += 1;
            } else {
                first.insert(*stream, *at);
            }
        }
        for stream in &streams_of[p.user] {
            match first.get(stream) {
                Some(at) => {
                    t.latencies.push(at.saturating_duration_since(p.at));
                    t.last_arrival = t.last_arrival.max(Some(*at));
                }
                None => t.missed += 1,
            }
        }
        if !first.is_empty() {
            t.runs_completed += 1;
        }
    }
    // Runs the bench did not post (another user's, or no one's) must not reach these streams.
    let all: usize = arrivals.values().map(Vec::len).sum();
    t.foreign += all - ours;
    t
}

/// Scans SSE bytes for `event:` lines and the `run_id` of `run.completed` events' `data:` (the
/// org stream puts `"run_id":"<uuid>"` first in every event's data). Lines may be split across
/// chunks; nothing but the line in progress is kept.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    line: Vec<u8>,
    /// The event being read is a `run.completed`.
    completed: bool,
    /// `event:` lines seen.
    pub(crate) events: u64,
}

impl Scan {
    /// Reads `chunk`, calling `found` with the run id of each `run.completed` event.
    pub(crate) fn feed(&mut self, chunk: &[u8], mut found: impl FnMut(Uuid)) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = (&rest[..pos], &rest[pos + 1..]);
            rest = tail;
            if self.line.is_empty() {
                self.on_line(head, &mut found);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.on_line(&line, &mut found);
                line.clear();
                self.line = line;
            }
        }
        self.line.extend_from_slice(rest);
    }

    fn on_line(&mut self, line: &[u8], found: &mut impl FnMut(Uuid)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.completed = false;
        } else if let Some(kind) = field(line, b"event") {
            self.events += 1;
            self.completed = kind == b"run.completed";
        } else if self.completed
            && let Some(data) = field(line, b"data")
            && let Some(run) = run_id(data)
        {
            found(run);
        }
    }
}

/// The value of `name: value` (one optional space after the colon).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let value = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// The `"run_id":"<uuid>"` of an org stream event's data.
fn run_id(data: &[u8]) -> Option<Uuid> {
    const KEY: &[u8] = br#""run_id":""#;
    let at = data.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    Uuid::try_parse_ascii(data.get(at..at + 36)?).ok()
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0190a5b2-0000-7000-8000-000000000001";
    const B: &str = "0190a5b2-0000-7000-8000-000000000002";

    fn completed(run: &str) -> String {
        format!(
            "id: 9\nevent: run.completed\ndata: {{\"run_id\":\"{run}\",\"run\":{{\"id\":\"{run}\"}}}}\n\n"
        )
    }

    #[test]
    fn scan_finds_run_completed_ids_across_chunk_boundaries() {
        let delta = format!("id: 8\nevent: message.delta\ndata: {{\"run_id\":\"{B}\"}}\n\n");
        let text = format!("{delta}: keep-alive\n\n{}{}", completed(A), completed(B));
        // Every split point, including inside `event:`, the uuid and the blank line.
        for cut in 0..text.len() {
            let mut scan = Scan::default();
            let mut found = Vec::new();
            scan.feed(&text.as_bytes()[..cut], |r| found.push(r));
            scan.feed(&text.as_bytes()[cut..], |r| found.push(r));
            assert_eq!(found, vec![A.parse::<Uuid>().unwrap(), B.parse().unwrap()], "cut {cut}");
            assert_eq!(scan.events, 3);
        }
    }

    #[test]
    fn scan_ignores_other_kinds_crlf_and_data_without_a_run_id() {
        let mut scan = Scan::default();
        let mut found = Vec::new();
        let text = format!(
            "event: run.started\r\ndata: {{\"run_id\":\"{A}\"}}\r\n\r\n\
             event:run.completed\r\ndata:{{\"run\":{{}}}}\r\n\r\n\
             data: {{\"run_id\":\"{B}\"}}\n\n{}",
            completed(B).replace('\n', "\r\n")
        );
        scan.feed(text.as_bytes(), |r| found.push(r));
        assert_eq!(found, vec![B.parse::<Uuid>().unwrap()]);
        assert_eq!(scan.events, 3);
    }

    #[test]
    fn tally_matches_deliveries_with_the_streams_of_each_runs_user() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        // User 0 has streams 0 and 2, user 1 has stream 1.
        let streams_of = vec![vec![0, 2], vec![1]];
        let posted =
            vec![Posted { run: a, user: 0, at: t0 }, Posted { run: b, user: 1, at: t0 + ms(10) }];
        let mut arrivals = HashMap::new();
        // a: both of user 0's streams, stream 0 twice; also (wrongly) user 1's stream.
        arrivals
            .insert(a, vec![(0, t0 + ms(5)), (2, t0 + ms(7)), (0, t0 + ms(9)), (1, t0 + ms(8))]);
        // b: never arrived. c: not ours.
        arrivals.insert(c, vec![(1, t0 + ms(3))]);
        let t = tally(&posted, &streams_of, &arrivals);
        assert_eq!(t.latencies, vec![ms(5), ms(7)]);
        assert_eq!((t.missed, t.foreign, t.duplicates, t.runs_completed), (1, 2, 1, 1));
        assert_eq!(t.last_arrival, Some(t0 + ms(7)));
    }

    #[test]
    fn pick_spreads_over_all_users() {
        let mut counts = [0_usize; 10];
        for i in 0..10_000 {
            counts[pick(42, i, 10)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(pick(42, 7, 1), 0);
    }
}

//! Group commit: concurrent calls of one transition share a statement and a commit.
//!
//! A transition's calls queue up; a lane takes every call queued when it frees up (at most
//! [`MAX_BATCH`]) and runs them as one statement, one transaction: a lone call runs at once,
//! alone, and under load the calls that arrived while the lane was busy go together, with those
//! of tasks ready to run in the process ([`GATHER_YIELDS`]). No call waits on a timer.
//! Measured on the 2-core box: the create, start and finish statements of 16 runs in one
//! transaction each cost Postgres 0.48 ms of CPU per run, against 1.52 ms one run per
//! transaction (BENCHMARKS.md, "Group commit").
//!
//! A batch that fails as a whole (a raised outcome such as a busy thread, a deadlock) has
//! written nothing: its calls then run one by one, each getting its own outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Result, Store, StoreError};

/// At most this many calls share a statement.
pub(crate) const MAX_BATCH: usize = 64;

/// Statements of one transition in flight at once, per process (the lanes). Calls arriving
/// while all are busy wait for the next free lane, and go with the others that waited. One
/// lane: the next batch gathers while a statement runs. Measured against three with two agent
/// workers, interleaved (BENCHMARKS.md, "One lane"): 24–36 % more chat runs/s in a slow window
/// and 28 % in a fast one, with the same p99 at 300 runs/s.
pub(crate) const LANES: usize = 1;

/// While a transition that gathers ([`Transition::gather`]) is busy (its last batch had
/// several calls), its lane yields to the runtime this many times before it takes a batch, and
/// the calls queued meanwhile go too. Measured with two agent workers, interleaved
/// (BENCHMARKS.md, "Claimed tool calls"): 19 % fewer transition statements per tool run at 32
/// clients, and 9–15 % more chat runs/s.
pub(crate) const GATHER_YIELDS: usize = 4;

type Reply<Out> = oneshot::Sender<Result<Out>>;
type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A batch's outcome: an error (nothing written), or one result per call in order.
type Outcomes<Out> = Result<Vec<Result<Out>>>;

/// A transition that commits in groups: its name (in errors), its statement for a batch and
/// its statement for one call.
pub(crate) struct Transition<Req, Out> {
    pub(crate) op: &'static str,
    /// One statement and one transaction for the batch.
    pub(crate) together: for<'a> fn(&'a Store, &'a [Req]) -> Boxed<'a, Outcomes<Out>>,
    pub(crate) alone: for<'a> fn(&'a Store, &'a Req) -> Boxed<'a, Result<Out>>,
    /// Whether a busy lane yields to gather more calls ([`GATHER_YIELDS`]): each yield lets
    /// every ready task of a busy process run first, which a call whose latency matters more
    /// than its statement's cost should not wait for.
    pub(crate) gather: bool,
}

/// The queue of one transition's calls.
pub(crate) struct Group<Req, Out> {
    calls: mpsc::UnboundedSender<(Req, Reply<Out>)>,
}

impl<Req: Send + Sync + 'static, Out: Send + 'static> Group<Req, Out> {
    /// Starts the loop that hands queued calls to `t` on `store`. The loop ends when the group
    /// is dropped.
    pub(crate) fn spawn(store: Store, t: &'static Transition<Req, Out>) -> Self {
        let (calls, rx) = mpsc::unbounded_channel();
        tokio::spawn(take_batches(store, rx, t));
        Self { calls }
    }

    /// Queues `req` and waits for its outcome.
    pub(crate) async fn call(&self, op: &'static str, req: Req) -> Result<Out> {
        let (tx, rx) = oneshot::channel();
        if self.calls.send((req, tx)).is_err() {
            // The loop is gone: its runtime shut down.
            return Err(StoreError::db(op, sqlx::Error::WorkerCrashed));
        }
        rx.await.unwrap_or(Err(StoreError::db(op, sqlx::Error::WorkerCrashed)))
    }
}

async fn take_batches<Req: Send + Sync + 'static, Out: Send + 'static>(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<(Req, Reply<Out>)>,
    t: &'static Transition<Req, Out>,
) {
    let lanes = Arc::new(Semaphore::new(LANES));
    let mut busy = false;
    loop {
        let Ok(lane) = lanes.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        drain(&mut rx, &mut batch);
        if busy && t.gather {
            // Under load, calls of tasks that are ready to run in this process join the batch
            // (no timer: an idle system never waits here).
            for _ in 0..GATHER_YIELDS {
                tokio::task::yield_now().await;
                drain(&mut rx, &mut batch);
            }
        }
        busy = batch.len() > 1;
        let store = store.clone();
        tokio::spawn(async move {
            let (reqs, replies): (Vec<Req>, Vec<Reply<Out>>) = batch.into_iter().unzip();
            let outs = together_or_alone(&store, t, &reqs).await;
            drop(lane);
            for (reply, out) in replies.into_iter().zip(outs) {
                let _ = reply.send(out);
            }
        });
    }
}

/// Moves the calls queued now into `batch`, up to [`MAX_BATCH`].
fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>, batch: &mut Vec<T>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(call) => batch.push(call),
            Err(_) => break,
        }
    }
}

/// The outcomes of `batch`, one per call in order: a lone call runs alone; several run
/// together (one statement, one transaction) and, when that fails as a whole (it then wrote
/// nothing), each alone.
async fn together_or_alone<Req, Out>(
    store: &Store,
    t: &Transition<Req, Out>,
    batch: &[Req],
) -> Vec<Result<Out>> {
    if let [one] = batch {
        return vec![(t.alone)(store, one).await];
    }
    match (t.together)(store, batch).await {
        Ok(outs) => outs,
        Err(e) => {
            let op = t.op;
            tracing::debug!(error = %e, calls = batch.len(), op, "a batch failed: one by one");
            let mut outs = Vec::with_capacity(batch.len());
            for req in batch {
                outs.push((t.alone)(store, req).await);
            }
            outs
        }
    }
}

/// A batch's rows `(n, value)` (n counts calls from 1, rows in any order) as one slot per
/// call, in call order; a call no row answered has `None`.
pub(crate) fn by_call<T>(rows: impl IntoIterator<Item = (i64, T)>, calls: usize) -> Vec<Option<T>> {
    let mut out: Vec<Option<T>> = (0..calls).map(|_| None).collect();
    for (n, v) in rows {
        if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = Some(v);
        }
    }
    out
}

/// A batch's rows `(n, value)` decoded with `outcome`, one result per call in call order; a
/// call no row answered gets an error.
pub(crate) fn answered<T>(
    rows: Vec<(i64, serde_json::Value)>,
    calls: usize,
    op: &'static str,
    outcome: fn(serde_json::Value) -> Result<T>,
) -> Vec<Result<T>> {
    by_call(rows, calls)
        .into_iter()
        .map(|v| {
            v.ok_or_else(|| StoreError::Decode { op, detail: "no row for a call".into() })
                .and_then(outcome)
        })
        .collect()
}

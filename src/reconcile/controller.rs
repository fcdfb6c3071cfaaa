//! The daemon's reconciler: one thread with its own current-thread tokio runtime (async
//! stays here; the master and the mount stay threads). It lists the `ValuesSync`
//! objects it serves and runs each one that is due:
//! - at once on a new revision ([`Controller::notify`], fed by the master's head
//!   changes; only the latest matters, so a `watch` channel),
//! - when its spec changed (generation) or its `valuesfs.io/requestedAt` annotation got a
//!   value the status has not answered,
//! - at its interval (drift correction: applied again even when nothing changed).
//!
//! Only the holder of the Lease (when one is configured) lists or writes anything.
//! Manifests are read from the [`Source`] on the blocking pool, never through the mount.
//! A run that fails (manifests unreadable, apply refused) prunes nothing and says why in
//! `Ready=False` with Flux's reasons; a spec no retry can fix sets `Stalled`.
//!
//! Lock order: none; the only shared state is the metrics' atomics.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::Instrument;

use super::applyset::{self as set, applyset_id};
use super::crd::{
    Condition, DeletionPolicy, Inventory, InventoryEntry, RunRecord, ValuesSync, ValuesSyncStatus,
    FINALIZER, HISTORY, REQUESTED_AT,
};
use super::health;
use super::lease::{self, LeaseConfig};
use super::run::{self, Kinds, Report};
use super::{Error, Source};

/// Where and how the reconciler runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// API server URL; `None`: the kubeconfig (or in-cluster configuration).
    pub server: Option<String>,
    /// Serve the ValuesSyncs of this namespace only; `None`: of every namespace.
    pub namespace: Option<String>,
    /// How often to look at the ValuesSyncs (spec changes, requests, intervals).
    pub poll: Duration,
    /// Leader election; `None`: always act.
    pub lease: Option<LeaseConfig>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            server: None,
            namespace: None,
            poll: Duration::from_secs(10),
            lease: None,
        }
    }
}

/// Counters of the reconciler (Prometheus text from [`Metrics::render`]).
#[derive(Debug, Default)]
pub struct Metrics {
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub applied: AtomicU64,
    pub pruned: AtomicU64,
    pub duration_ms: AtomicU64,
    pub leader: AtomicBool,
}

impl Metrics {
    /// The Prometheus text exposition of the counters.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE valuesfs_reconcile_runs_total counter\n\
             valuesfs_reconcile_runs_total {}\n\
             # TYPE valuesfs_reconcile_failures_total counter\n\
             valuesfs_reconcile_failures_total {}\n\
             # TYPE valuesfs_reconcile_applied_total counter\n\
             valuesfs_reconcile_applied_total {}\n\
             # TYPE valuesfs_reconcile_pruned_total counter\n\
             valuesfs_reconcile_pruned_total {}\n\
             # TYPE valuesfs_reconcile_duration_seconds_sum counter\n\
             valuesfs_reconcile_duration_seconds_sum {:.3}\n\
             # TYPE valuesfs_reconcile_leader gauge\n\
             valuesfs_reconcile_leader {}\n",
            g(&self.runs),
            g(&self.failures),
            g(&self.applied),
            g(&self.pruned),
            g(&self.duration_ms) as f64 / 1000.0,
            u8::from(self.leader.load(Ordering::Relaxed)),
        )
    }
}

/// A running reconciler; dropping it stops it (and releases the Lease).
pub struct Controller {
    stop: watch::Sender<bool>,
    notify: Arc<watch::Sender<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
}

impl Controller {
    /// A new revision is there: look at once.
    pub fn notify(&self) {
        self.notify.send_modify(|n| *n += 1);
    }

    /// [`Controller::notify`] for another thread (the master's head subscriber).
    pub fn notifier(&self) -> impl Fn() + Send + 'static {
        let tx = self.notify.clone();
        move || tx.send_modify(|n| *n += 1)
    }

    /// Whether this reconciler currently acts (holds the Lease, or has none).
    pub fn is_leader(&self) -> bool {
        self.metrics.leader.load(Ordering::Relaxed)
    }

    /// Stop, release the Lease, and wait for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Start the reconciler on its own thread.
pub fn spawn(source: Arc<dyn Source>, cfg: ControllerConfig) -> Result<Controller, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Api(format!("tokio runtime: {e}")))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (notify_tx, notify_rx) = watch::channel(0u64);
    let metrics = Arc::new(Metrics::default());
    let m = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("reconcile".into())
        .spawn(move || rt.block_on(main_loop(source, cfg, m, stop_rx, notify_rx)))
        .map_err(|e| Error::Api(format!("reconcile thread: {e}")))?;
    Ok(Controller {
        stop: stop_tx,
        notify: Arc::new(notify_tx),
        thread: Some(thread),
        metrics,
    })
}

async fn main_loop(
    source: Arc<dyn Source>,
    cfg: ControllerConfig,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    mut notify: watch::Receiver<u64>,
) {
    let client = loop {
        match run::connect(cfg.server.as_deref(), None, None).await {
            Ok((c, _)) => break c,
            Err(e) => tracing::error!(error = %e, "reconcile: cannot reach the cluster"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(cfg.poll) => {}
        }
    };
    let (held_tx, mut held) = watch::channel(cfg.lease.is_none());
    let lease_task = cfg
        .lease
        .clone()
        .map(|l| tokio::spawn(lease::hold(client.clone(), l, held_tx, stop.clone())));
    let ctx = Ctx {
        client,
        server: cfg.server.clone(),
        source,
        metrics: metrics.clone(),
    };
    let mut memo: HashMap<String, Instant> = HashMap::new();
    loop {
        let leader = *held.borrow_and_update();
        metrics.leader.store(leader, Ordering::Relaxed);
        if leader {
            if let Err(e) = pass(&ctx, &cfg, &mut memo).await {
                tracing::warn!(error = %e, "reconcile: listing ValuesSyncs");
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = notify.changed() => {}
            _ = held.changed() => {}
            _ = tokio::time::sleep(cfg.poll) => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    metrics.leader.store(false, Ordering::Relaxed);
    if let Some(t) = lease_task {
        let _ = t.await;
    }
}

/// One look at every ValuesSync served.
async fn pass(
    ctx: &Ctx,
    cfg: &ControllerConfig,
    memo: &mut HashMap<String, Instant>,
) -> Result<(), Error> {
    let client = &ctx.client;
    let api: Api<ValuesSync> = match &cfg.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| run::api_err("list valuesyncs", e))?;
    let s = ctx.source.clone();
    let revision = tokio::task::spawn_blocking(move || s.revision())
        .await
        .unwrap_or_default();
    for vs in list.items {
        let name = vs.name_any();
        let ns = vs.namespace().unwrap_or_default();
        let span = tracing::info_span!("valuesync", namespace = %ns, name = %name);
        if let Err(e) = handle(ctx, vs, &revision, memo).instrument(span).await {
            tracing::warn!(namespace = %ns, name = %name, error = %e, "reconcile");
        }
    }
    Ok(())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn interval_of(vs: &ValuesSync) -> Result<Duration, String> {
    match &vs.spec.interval {
        None => Ok(Duration::from_secs(180)),
        Some(s) => crate::repo::parse_duration(s)
            .map_err(|e| format!("spec.interval {s:?}: {e}"))
            .and_then(|d| {
                if d.is_zero() {
                    Err(format!("spec.interval {s:?}: must be more than zero"))
                } else {
                    Ok(d)
                }
            }),
    }
}

fn timeout_of(vs: &ValuesSync, interval: Duration) -> Result<Duration, String> {
    match &vs.spec.timeout {
        None => Ok(interval.min(Duration::from_secs(600))),
        Some(s) => crate::repo::parse_duration(s).map_err(|e| format!("spec.timeout {s:?}: {e}")),
    }
}

async fn handle(
    ctx: &Ctx,
    vs: ValuesSync,
    revision: &str,
    memo: &mut HashMap<String, Instant>,
) -> Result<(), Error> {
    let client = &ctx.client;
    let ns = vs.namespace().unwrap_or_default();
    let api: Api<ValuesSync> = Api::namespaced(client.clone(), &ns);
    let finalizers = vs.metadata.finalizers.clone().unwrap_or_default();
    if vs.metadata.deletion_timestamp.is_some() {
        if finalizers.iter().any(|f| f == FINALIZER) {
            finalize(ctx, &api, &vs).await?;
        }
        return Ok(());
    }
    if !finalizers.iter().any(|f| f == FINALIZER) {
        let mut f = finalizers.clone();
        f.push(FINALIZER.to_string());
        set_finalizers(&api, &vs, f, "add the finalizer").await?;
    }
    if vs.spec.suspend {
        return Ok(());
    }
    let status = vs.status.clone().unwrap_or_default();
    let generation = vs.metadata.generation;
    let requested = vs.annotations().get(REQUESTED_AT).cloned();
    let uid = vs
        .uid()
        .unwrap_or_else(|| format!("{ns}/{}", vs.name_any()));
    let (interval, timeout) = match interval_of(&vs).and_then(|i| Ok((i, timeout_of(&vs, i)?))) {
        Ok(t) => t,
        Err(msg) => return stalled(&api, &vs, status, &msg).await,
    };
    let due = memo.get(&uid).is_none_or(|t| t.elapsed() >= interval)
        || status.last_attempted_revision.as_deref() != Some(revision)
        || status.observed_generation != generation
        || (requested.is_some() && requested != status.last_handled_reconcile_at);
    if !due {
        return Ok(());
    }
    memo.insert(uid, Instant::now());
    reconcile(ctx, &api, &vs, status, revision, timeout).await
}

/// A spec no retry can fix: say so once, and wait for the spec to change.
async fn stalled(
    api: &Api<ValuesSync>,
    vs: &ValuesSync,
    mut status: ValuesSyncStatus,
    msg: &str,
) -> Result<(), Error> {
    if status.observed_generation == vs.metadata.generation
        && status.conditions.iter().any(|c| c.type_ == "Stalled")
    {
        return Ok(());
    }
    let g = vs.metadata.generation;
    set_condition(
        &mut status.conditions,
        g,
        "Ready",
        "False",
        "InvalidSpec",
        msg,
    );
    set_condition(
        &mut status.conditions,
        g,
        "Stalled",
        "True",
        "InvalidSpec",
        msg,
    );
    status.conditions.retain(|c| c.type_ != "Reconciling");
    status.observed_generation = g;
    write_status(api, vs, &status).await
}

fn set_condition(
    conds: &mut Vec<Condition>,
    generation: Option<i64>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    let now = now_rfc3339();
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conds.push(Condition {
            type_: type_.into(),
            status: status.into(),
            observed_generation: generation,
            last_transition_time: now,
            reason: reason.into(),
            message: message.into(),
        }),
    }
}

async fn write_status(
    api: &Api<ValuesSync>,
    vs: &ValuesSync,
    status: &ValuesSyncStatus,
) -> Result<(), Error> {
    let patch = json!({"status": status});
    api.patch_status(
        &vs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| run::api_err("write the status", e))?;
    Ok(())
}

/// How a failed run is reported: Flux's reason and a message.
struct Failure {
    reason: &'static str,
    message: String,
}

fn failure(reason: &'static str, e: impl std::fmt::Display) -> Failure {
    Failure {
        reason,
        message: e.to_string(),
    }
}

/// The object an inventory id names: (namespace, name, group, kind).
fn parse_entry(id: &str) -> Option<(&str, &str, &str, &str)> {
    let mut it = id.splitn(4, '_');
    Some((it.next()?, it.next()?, it.next()?, it.next()?))
}

fn entries(done: &run::Applied) -> Vec<InventoryEntry> {
    let mut out: Vec<InventoryEntry> = done
        .iter()
        .map(|((gk, ns, name), v)| {
            let (group, kind) = set::split_group_kind(gk);
            InventoryEntry {
                id: format!("{ns}_{name}_{group}_{kind}"),
                v: v.clone(),
            }
        })
        .collect();
    out.sort();
    out
}

/// Delete the objects of `old` not in `keep` (those that ask to be kept stay).
async fn prune_entries(
    client: &Client,
    kinds: &mut Kinds,
    old: &[InventoryEntry],
    keep: &BTreeSet<String>,
    report: &mut Report,
) -> Result<(), Error> {
    let mut victims = Vec::new();
    for e in old.iter().filter(|e| !keep.contains(&e.id)) {
        let Some((ns, name, group, kind)) = parse_entry(&e.id) else {
            continue;
        };
        let api_version = if group.is_empty() {
            e.v.clone()
        } else {
            format!("{group}/{}", e.v)
        };
        let found = match kinds.find(&api_version, kind, false).await? {
            Some(f) => Some(f),
            None => kinds.find_gk(group, kind).await?,
        };
        let Some((ar, _)) = found else {
            continue;
        };
        match run::api_for(client, &ar, ns).get_opt(name).await {
            Ok(Some(o)) if !run::keeps_itself(&o) => {
                victims.push((ar, ns.to_string(), name.to_string()))
            }
            Ok(_) => {}
            Err(e) => return Err(run::api_err(&format!("get {kind} {ns}/{name}"), e)),
        }
    }
    run::delete_all(client, victims, false, report).await
}

/// The client a ValuesSync's requests go through: impersonating its service account
/// when it names one.
/// Delete the objects slice models mark purged that this ValuesSync applied (they carry
/// its `part-of` label) and this run did not apply again.
async fn prune_purged(
    client: &Client,
    kinds: &mut Kinds,
    purged: Vec<super::Manifest>,
    done: &run::Applied,
    id: &str,
    default_ns: &str,
    report: &mut Report,
) -> Result<(), Error> {
    let mut victims = Vec::new();
    for m in purged {
        let Some((ar, scope)) = kinds.find(&m.api_version, &m.kind, false).await? else {
            continue;
        };
        let ns = match scope {
            kube::discovery::Scope::Cluster => String::new(),
            kube::discovery::Scope::Namespaced => m
                .namespace
                .clone()
                .unwrap_or_else(|| default_ns.to_string()),
        };
        let gk = set::group_kind(&ar.group, &ar.kind);
        if done.contains_key(&(gk, ns.clone(), m.name.clone())) {
            continue;
        }
        let ours = |o: &kube::api::DynamicObject| {
            o.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(set::PART_OF))
                .is_some_and(|v| v == id)
        };
        match run::api_for(client, &ar, &ns).get_opt(&m.name).await {
            Ok(Some(o)) if ours(&o) && !run::keeps_itself(&o) => {
                victims.push((ar, ns, m.name.clone()))
            }
            Ok(_) => {}
            Err(e) => return Err(run::api_err(&format!("get {} {ns}/{}", m.kind, m.name), e)),
        }
    }
    run::delete_all(client, victims, false, report).await
}

async fn client_for(ctx: &Ctx, vs: &ValuesSync, ns: &str) -> Result<Client, Error> {
    match &vs.spec.service_account_name {
        None => Ok(ctx.client.clone()),
        Some(sa) => {
            let user = format!("system:serviceaccount:{ns}:{sa}");
            Ok(run::connect(ctx.server.as_deref(), None, Some(user))
                .await?
                .0)
        }
    }
}

/// What every run needs.
struct Ctx {
    client: Client,
    server: Option<String>,
    source: Arc<dyn Source>,
    metrics: Arc<Metrics>,
}

/// One run of one ValuesSync, its status written at the end (and at the start of a new
/// revision, as `Reconciling`).
async fn reconcile(
    ctx: &Ctx,
    api: &Api<ValuesSync>,
    vs: &ValuesSync,
    mut status: ValuesSyncStatus,
    revision: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let metrics = &ctx.metrics;
    let started = Instant::now();
    let started_at = now_rfc3339();
    let g = vs.metadata.generation;
    let retry = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "False");
    if status.last_attempted_revision.as_deref() != Some(revision) {
        let reason = if retry {
            "ProgressingWithRetry"
        } else {
            "Progressing"
        };
        set_condition(
            &mut status.conditions,
            g,
            "Reconciling",
            "True",
            reason,
            &format!("applying revision {revision}"),
        );
        set_condition(
            &mut status.conditions,
            g,
            "Ready",
            "Unknown",
            reason,
            "reconciliation in progress",
        );
        write_status(api, vs, &status).await?;
    }
    let old = status
        .inventory
        .as_ref()
        .map(|i| i.entries.clone())
        .unwrap_or_default();
    let mut report = Report::default();
    let outcome = match tokio::time::timeout(
        timeout,
        run_one(ctx, vs, &old, timeout.mul_f32(0.8), &mut report),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(failure(
            "ReconciliationFailed",
            format!("the run did not finish within {timeout:?}"),
        )),
    };
    let ran = started.elapsed();
    metrics.runs.fetch_add(1, Ordering::Relaxed);
    metrics
        .duration_ms
        .fetch_add(ran.as_millis() as u64, Ordering::Relaxed);
    metrics
        .applied
        .fetch_add(report.applied as u64, Ordering::Relaxed);
    metrics
        .pruned
        .fetch_add(report.pruned as u64, Ordering::Relaxed);
    let mut record = RunRecord {
        revision: String::new(),
        started_at,
        duration_ms: ran.as_millis() as u64,
        applied: report.applied as u64,
        unchanged: report.unchanged as u64,
        pruned: report.pruned as u64,
        error: None,
    };
    match outcome {
        Ok((rev, inventory)) => {
            record.revision = rev.clone();
            set_condition(
                &mut status.conditions,
                g,
                "Ready",
                "True",
                "ReconciliationSucceeded",
                &format!("applied revision {rev}"),
            );
            status.last_applied_revision = Some(rev.clone());
            status.last_attempted_revision = Some(rev);
            status.inventory = Some(Inventory { entries: inventory });
            tracing::info!(
                applied = report.applied,
                unchanged = report.unchanged,
                pruned = report.pruned,
                "reconciled"
            );
        }
        Err(f) => {
            metrics.failures.fetch_add(1, Ordering::Relaxed);
            record.revision = revision.to_string();
            record.error = Some(f.message.clone());
            set_condition(
                &mut status.conditions,
                g,
                "Ready",
                "False",
                f.reason,
                &f.message,
            );
            status.last_attempted_revision = Some(revision.to_string());
            tracing::warn!(reason = f.reason, error = %f.message, "reconcile failed");
        }
    }
    status
        .conditions
        .retain(|c| c.type_ != "Reconciling" && c.type_ != "Stalled");
    status.observed_generation = g;
    status.last_handled_reconcile_at = vs.annotations().get(REQUESTED_AT).cloned();
    status.history.insert(0, record);
    status.history.truncate(HISTORY);
    write_status(api, vs, &status).await
}

async fn run_one(
    ctx: &Ctx,
    vs: &ValuesSync,
    old: &[InventoryEntry],
    wait_for: Duration,
    report: &mut Report,
) -> Result<(String, Vec<InventoryEntry>), Failure> {
    let started = Instant::now();
    let ns = vs.namespace().unwrap_or_default();
    let name = vs.name_any();
    let s = ctx.source.clone();
    let path = vs.spec.path.clone();
    let prune = vs.spec.prune;
    let ((rev, manifests), purged) = tokio::task::spawn_blocking(move || {
        let loaded = s.load(&path)?;
        let purged = if prune { s.purged()? } else { Vec::new() };
        Ok::<_, Error>((loaded, purged))
    })
    .await
    .map_err(|e| failure("ArtifactFailed", e))?
    .map_err(|e| {
        let msg = e.to_string();
        if msg.ends_with("no such folder") {
            failure("ArtifactFailed", msg)
        } else {
            failure("BuildFailed", msg)
        }
    })?;
    let client = client_for(ctx, vs, &ns)
        .await
        .map_err(|e| failure("ReconciliationFailed", e))?;
    let default_ns = vs.spec.target_namespace.clone().unwrap_or(ns.clone());
    let id = applyset_id(&name, &ns, "ValuesSync", "valuesfs.io");
    let mut kinds = Kinds::new(client.clone());
    let plan = run::plan(&mut kinds, manifests, &default_ns, &id, false)
        .await
        .map_err(|e| match e {
            Error::Manifest(m) => failure("BuildFailed", m),
            other => failure("ReconciliationFailed", other),
        })?;
    let done = run::apply_all(&client, &mut kinds, plan, false, &id, &default_ns, report)
        .await
        .map_err(|e| failure("ReconciliationFailed", e))?;
    let inventory = entries(&done);
    if vs.spec.prune {
        let keep: BTreeSet<String> = inventory.iter().map(|e| e.id.clone()).collect();
        prune_entries(&client, &mut kinds, old, &keep, report)
            .await
            .map_err(|e| failure("PruneFailed", e))?;
        prune_purged(&client, &mut kinds, purged, &done, &id, &default_ns, report)
            .await
            .map_err(|e| failure("PruneFailed", e))?;
    }
    if vs.spec.wait {
        health::wait(
            &client,
            &mut kinds,
            &done,
            wait_for.saturating_sub(started.elapsed()),
        )
        .await
        .map_err(|e| failure("HealthCheckFailed", e))?;
    }
    Ok((rev, inventory))
}

/// The ValuesSync is being deleted: apply its deletion policy, then let it go.
async fn finalize(ctx: &Ctx, api: &Api<ValuesSync>, vs: &ValuesSync) -> Result<(), Error> {
    let policy = vs.spec.deletion_policy.unwrap_or(if vs.spec.prune {
        DeletionPolicy::Delete
    } else {
        DeletionPolicy::Orphan
    });
    if policy == DeletionPolicy::Delete {
        let ns = vs.namespace().unwrap_or_default();
        let client = client_for(ctx, vs, &ns).await?;
        let old = vs
            .status
            .as_ref()
            .and_then(|s| s.inventory.as_ref())
            .map(|i| i.entries.clone())
            .unwrap_or_default();
        let mut kinds = Kinds::new(client.clone());
        let mut report = Report::default();
        prune_entries(&client, &mut kinds, &old, &BTreeSet::new(), &mut report).await?;
        tracing::info!(
            pruned = report.pruned,
            "deleted what the ValuesSync applied"
        );
    }
    let rest: Vec<String> = vs
        .metadata
        .finalizers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    set_finalizers(api, vs, rest, "remove the finalizer").await
}

/// Replace the finalizers, on the version read (a concurrent change makes it a 409).
async fn set_finalizers(
    api: &Api<ValuesSync>,
    vs: &ValuesSync,
    finalizers: Vec<String>,
    what: &str,
) -> Result<(), Error> {
    let patch = json!({"metadata": {"finalizers": finalizers,
        "resourceVersion": vs.metadata.resource_version}});
    api.patch(
        &vs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| run::api_err(what, e))?;
    Ok(())
}

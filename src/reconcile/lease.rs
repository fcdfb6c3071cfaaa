//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection
//! does it: read the Lease; take it when absent, expired (`renewTime +
//! leaseDurationSeconds` passed) or released (no holder); renew it while held. Every
//! write carries the resourceVersion read, so of two candidates one wins (409 for the
//! other). A holder that cannot renew within the lease duration stops counting itself
//! the leader one retry period before anyone else may take over; stopping releases the
//! Lease so a successor takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;

/// Which Lease, who we are, and the timings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per candidate (default in the daemon: node name and pid).
    pub identity: String,
    /// How long a Lease stays ours without renewal (default 15 s).
    pub duration: Duration,
    /// How often to renew or try to take it (default 2 s).
    pub retry: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// One attempt: are we the holder afterwards?
async fn attempt(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let secs = i32::try_from(cfg.duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let current = api.get_opt(&cfg.name).await?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let ours = holder == cfg.identity;
    if !ours && !holder.is_empty() {
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(secs));
        let expires = spec
            .renew_time
            .as_ref()
            .map(|t| t.0 + SignedDuration::from_secs(duration));
        if expires.is_some_and(|e| e > Timestamp::now()) {
            return Ok(false);
        }
    }
    if !ours {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(secs);
    spec.renew_time = Some(now());
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Give the Lease up (if still ours) so another candidate takes it at once.
async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    if let Err(e) = api.replace(&cfg.name, &PostParams::default(), &lease).await {
        tracing::warn!(lease = %cfg.name, error = %e, "could not release the lease");
    }
}

/// Hold the Lease until `stop` turns true; `held` says whether we may act.
pub(super) async fn hold(
    client: Client,
    cfg: LeaseConfig,
    held: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renewed: Option<Instant> = None;
    // Stop acting a retry period before others may take over.
    let deadline = cfg.duration.saturating_sub(cfg.retry);
    loop {
        match attempt(&api, &cfg).await {
            Ok(true) => {
                if last_renewed.is_none() {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "leader");
                }
                last_renewed = Some(Instant::now());
                held.send_if_modified(|h| !std::mem::replace(h, true));
            }
            Ok(false) => {
                if last_renewed.take().is_some() {
                    tracing::info!(lease = %cfg.name, "lost the lease");
                }
                held.send_if_modified(|h| std::mem::replace(h, false));
            }
            Err(e) => {
                tracing::warn!(lease = %cfg.name, error = %e, "lease");
                if last_renewed.is_some_and(|t| t.elapsed() >= deadline) {
                    last_renewed = None;
                    held.send_if_modified(|h| std::mem::replace(h, false));
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(cfg.retry) => {}
        }
        if *stop.borrow() {
            held.send_replace(false);
            if last_renewed.is_some() {
                release(&api, &cfg).await;
            }
            return;
        }
    }
}

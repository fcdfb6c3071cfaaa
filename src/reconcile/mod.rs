//! Reconcile: apply the manifests of a folder to a Kubernetes cluster, the way Flux's
//! kustomize-controller does (server-side apply with field manager `valuesfs`, prune of
//! what a previous run applied and this one does not, a dry-run diff).
//!
//! `run_once` is the command line's `valuesfs reconcile --once`: one run on its own
//! tokio runtime (async stays here, at the edge). The inventory follows kubectl's ApplySet
//! convention (KEP-3659): a parent Secret labelled with the set's id lists the group-kinds
//! and namespaces of its members, and every member carries the `part-of` label, so a
//! later run (or `kubectl apply --prune --applyset`) finds what to prune.
//!
//! Invariants: nothing is applied or pruned unless every manifest loaded and resolved;
//! decrypted manifests stay in memory; an unchanged object gets no write request.

mod applyset;
mod controller;
mod crd;
mod health;
mod lease;
mod manifest;
mod once;
mod run;
mod source;

pub use applyset::applyset_id;
pub use controller::{spawn, Controller, ControllerConfig, Metrics};
pub use crd::{
    crd_yaml, Condition, DeletionPolicy, Inventory, InventoryEntry, RunRecord, ValuesSync,
    ValuesSyncSpec, ValuesSyncStatus, FINALIZER, REQUESTED_AT,
};
pub use lease::LeaseConfig;
pub use manifest::{load, parse_file, to_json, Manifest};
pub use run::{Options, Report};
pub use source::{DirSource, SnapshotSource, Source};

use std::time::Duration;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest could not be read, decrypted or understood (`file#doc: ...`).
    #[error("{0}")]
    Manifest(String),
    /// The kubeconfig (or in-cluster configuration) could not be used.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// The API server refused a request or could not be reached.
    #[error("{0}")]
    Api(String),
    /// The run did not finish in time.
    #[error("no answer from the cluster within {0:?}")]
    Timeout(Duration),
}

/// One run, blocking the calling thread: load the manifests, apply, prune, report.
pub fn run_once(opts: &Options, keys: &crate::crypto::Keyring) -> Result<Report, Error> {
    let manifests = load(&opts.path, keys)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Api(format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        match tokio::time::timeout(opts.timeout, once::run(opts, manifests)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(opts.timeout)),
        }
    })
}

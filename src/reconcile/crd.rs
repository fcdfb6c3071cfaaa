//! The `ValuesSync` custom resource: which path of the values repo to keep applied,
//! and what happened. Conventions follow Flux's Kustomization (conditions `Ready`,
//! `Reconciling`, `Stalled`; `lastAppliedRevision` as `branch@sha1:commit`; an
//! inventory of `namespace_name_group_kind` ids).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that makes a deletion wait for the deletion policy.
pub const FINALIZER: &str = "valuesfs.io/finalizer";
/// Annotation whose new value asks for a run now (Flux: `reconcile.fluxcd.io/requestedAt`).
pub const REQUESTED_AT: &str = "valuesfs.io/requestedAt";
/// Runs kept in `status.history`.
pub const HISTORY: usize = 10;

/// What to keep applied.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "valuesfs.io",
    version = "v1alpha1",
    kind = "ValuesSync",
    namespaced,
    status = "ValuesSyncStatus",
    shortname = "vs",
    plural = "valuesyncs",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ValuesSyncSpec {
    /// Folder of the values repo whose manifests are applied (`*.yaml|yml|json`, SOPS
    /// files decrypted in memory).
    pub path: String,
    /// How often to apply again when nothing changed (drift correction), e.g. `3m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Delete what an earlier run applied and this one no longer has.
    #[serde(default)]
    pub prune: bool,
    /// Stop applying until set back to false.
    #[serde(default)]
    pub suspend: bool,
    /// Namespace of namespaced objects that name none (default: the ValuesSync's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Service account (of the ValuesSync's namespace) to impersonate for every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// What deleting the ValuesSync does to what it applied (default: `Delete` when
    /// `prune` is on, else `Orphan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// After applying, wait until Deployments, StatefulSets and DaemonSets rolled out.
    #[serde(default)]
    pub wait: bool,
    /// Deadline of one run, e.g. `5m` (default: the interval, at most 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Deletion policy of a ValuesSync.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete every object of the inventory (those annotated `valuesfs.io/prune:
    /// disabled` stay).
    Delete,
    /// Leave the objects in the cluster.
    Orphan,
}

/// What the reconciler observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValuesSyncStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Revision of the last run that succeeded (`branch@sha1:commit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// Revision of the last run, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The `valuesfs.io/requestedAt` value the last run answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Objects the last successful run applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    /// The last runs, newest first.
    #[serde(default)]
    pub history: Vec<RunRecord>,
}

/// A condition, as `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub last_transition_time: String,
    pub reason: String,
    pub message: String,
}

/// Applied objects.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct Inventory {
    pub entries: Vec<InventoryEntry>,
}

/// One applied object: `id` is `namespace_name_group_kind` (Flux's format), `v` its
/// version.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
pub struct InventoryEntry {
    pub id: String,
    pub v: String,
}

/// One run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub revision: String,
    pub started_at: String,
    /// Wall time of the run in milliseconds.
    pub duration_ms: u64,
    pub applied: u64,
    pub unchanged: u64,
    pub pruned: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The CRD as one YAML document (what `valuesfs crd` prints).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let json = serde_json::to_string(&ValuesSync::crd()).expect("a CRD serializes");
    let parsed = crate::crypto::json::parse(&json, 256).expect("serde_json output parses");
    crate::crypto::yaml::emit_indented(&[parsed.root], 2)
}

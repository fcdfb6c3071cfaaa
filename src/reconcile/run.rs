//! One run against the API server: kinds through discovery, apply in order (namespaces
//! and CRDs, then other cluster-scoped kinds, then the rest), prune, update the parent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersion;
use kube::discovery::{ApiResource, Scope};
use kube::{Client, Config};
use serde_json::{Map, Value as Json};

use super::applyset::{self as set, group_kind};
use super::{Error, Manifest};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "valuesfs";
/// How long a kind defined by a CRD of the same run may take to be served.
const CRD_WAIT: Duration = Duration::from_secs(30);

/// What `valuesfs reconcile --once` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder of manifests (a plain directory, for example inside a mount).
    pub path: PathBuf,
    /// Delete what the set held and this run no longer has.
    pub prune: bool,
    /// Dry-run only: report what would change.
    pub diff: bool,
    /// Namespace for namespaced objects without one, and of the parent (default: the
    /// kubeconfig's).
    pub namespace: Option<String>,
    /// Name of the ApplySet parent Secret (default: `valuesfs-` + the folder's name).
    pub applyset: Option<String>,
    /// The whole run's deadline.
    pub timeout: Duration,
    /// An API server URL to use instead of the kubeconfig.
    pub server: Option<String>,
    /// After applying, wait (within the run's deadline) until Deployments,
    /// StatefulSets and DaemonSets rolled out.
    pub wait: bool,
}

/// What a run did (or, with `diff`, would do).
#[derive(Debug, Default)]
pub struct Report {
    /// One line per object: `Kind namespace/name: created|configured|unchanged|pruned`.
    pub lines: Vec<String>,
    pub applied: usize,
    pub unchanged: usize,
    pub pruned: usize,
    /// The ApplySet id.
    pub set_id: String,
}

impl Report {
    /// Anything applied or pruned (with `diff`: anything that would be).
    pub fn changed(&self) -> bool {
        self.applied > 0 || self.pruned > 0
    }
}

pub(super) fn api_err(what: &str, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) => Error::Api(format!("{what}: {} ({})", s.message, s.code)),
        other => Error::Api(format!("{what}: {other}")),
    }
}

pub(super) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A client for `server` (else the kubeconfig, like kubectl: `KUBECONFIG`,
/// `~/.kube/config`, in-cluster), optionally impersonating `as_user`; and the namespace
/// to use where none is named.
pub(super) async fn connect(
    server: Option<&str>,
    namespace: Option<&str>,
    as_user: Option<String>,
) -> Result<(Client, String), Error> {
    let mut cfg = match server {
        Some(url) => Config::new(
            url.parse()
                .map_err(|e| Error::Config(format!("{url}: {e}")))?,
        ),
        None => Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    // kube sets no read timeout by default; a silent server must not hang a run.
    cfg.connect_timeout = Some(Duration::from_secs(10));
    cfg.read_timeout = Some(Duration::from_secs(20));
    if as_user.is_some() {
        cfg.auth_info.impersonate = as_user;
    }
    let ns = namespace
        .map(String::from)
        .unwrap_or_else(|| cfg.default_namespace.clone());
    let client = Client::try_from(cfg).map_err(|e| Error::Config(e.to_string()))?;
    Ok((client, ns))
}

/// Kinds as the server serves them, by `apiVersion`.
pub(super) struct Kinds {
    client: Client,
    by_gv: HashMap<String, Vec<(ApiResource, Scope)>>,
}

impl Kinds {
    pub(super) fn new(client: Client) -> Kinds {
        Kinds {
            client,
            by_gv: HashMap::new(),
        }
    }

    pub(super) async fn find(
        &mut self,
        api_version: &str,
        kind: &str,
        refresh: bool,
    ) -> Result<Option<(ApiResource, Scope)>, Error> {
        if refresh || !self.by_gv.contains_key(api_version) {
            let (g, v) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let found =
                match kube::discovery::pinned_group(&self.client, &GroupVersion::gv(g, v)).await {
                    Ok(group) => group
                        .versioned_resources(v)
                        .into_iter()
                        .map(|(ar, caps)| (ar, caps.scope))
                        .collect(),
                    Err(e) if is_not_found(&e) => Vec::new(),
                    Err(e) => return Err(api_err(&format!("discovery of {api_version}"), e)),
                };
            self.by_gv.insert(api_version.to_string(), found);
        }
        Ok(self.by_gv[api_version]
            .iter()
            .find(|(ar, _)| ar.kind == kind)
            .cloned())
    }

    /// The served resource of a group-kind (for kinds only the parent remembers).
    pub(super) async fn find_gk(
        &mut self,
        group: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, Scope)>, Error> {
        match kube::discovery::group(&self.client, group).await {
            Ok(g) => Ok(g.recommended_kind(kind).map(|(ar, caps)| (ar, caps.scope))),
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_err(&format!("discovery of {group}"), e)),
        }
    }
}

/// A manifest ready to apply.
struct Item {
    m: Manifest,
    ar: ApiResource,
    /// Empty for cluster-scoped kinds.
    ns: String,
    body: Json,
}

impl Item {
    fn gk(&self) -> String {
        group_kind(&self.ar.group, &self.ar.kind)
    }

    fn label(&self) -> String {
        if self.ns.is_empty() {
            format!("{} {}", self.ar.kind, self.m.name)
        } else {
            format!("{} {}/{}", self.ar.kind, self.ns, self.m.name)
        }
    }

    /// Namespaces and CRDs, then other cluster-scoped kinds, then namespaced ones.
    fn class(&self) -> u8 {
        match (self.ar.group.as_str(), self.ar.kind.as_str()) {
            ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition") => 0,
            _ if self.ns.is_empty() => 1,
            _ => 2,
        }
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        api_for(client, &self.ar, &self.ns)
    }
}

pub(super) fn api_for(client: &Client, ar: &ApiResource, ns: &str) -> Api<DynamicObject> {
    if ns.is_empty() {
        Api::all_with(client.clone(), ar)
    } else {
        Api::namespaced_with(client.clone(), ns, ar)
    }
}

pub(super) fn secret_resource() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Secret".into(),
        plural: "secrets".into(),
    }
}

/// Set `metadata.namespace` (namespaced kinds) and the set's `part-of` label.
fn body_for(m: &Manifest, ns: &str, id: &str) -> Json {
    let mut body = m.object.clone();
    if let Some(obj) = body.as_object_mut() {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Json::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            if ns.is_empty() {
                meta.remove("namespace");
            } else {
                meta.insert("namespace".into(), Json::String(ns.to_string()));
            }
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Json::Object(Map::new()));
            if let Some(l) = labels.as_object_mut() {
                l.insert(set::PART_OF.into(), Json::String(id.to_string()));
            }
        }
    }
    body
}

/// Does `live` already hold everything `want` says? Maps by key, lists whole, numbers
/// by value; a Secret's `stringData` is compared with the `data` the server made of it.
fn contains(live: &Json, want: &Json) -> bool {
    match (want, live) {
        (Json::Object(w), Json::Object(l)) => w.iter().all(|(k, v)| match l.get(k) {
            Some(lv) => contains(lv, v),
            None => v.is_null(),
        }),
        (Json::Array(w), Json::Array(l)) => {
            w.len() == l.len() && w.iter().zip(l).all(|(a, b)| contains(b, a))
        }
        (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == live,
    }
}

fn comparable(item: &Item) -> Json {
    let mut want = item.body.clone();
    if item.ar.group.is_empty() && item.ar.kind == "Secret" {
        if let Some(obj) = want.as_object_mut() {
            if let Some(Json::Object(sd)) = obj.remove("stringData") {
                let data = obj
                    .entry("data")
                    .or_insert_with(|| Json::Object(Map::new()));
                if let Some(d) = data.as_object_mut() {
                    for (k, v) in sd {
                        let text = v
                            .as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string());
                        d.insert(
                            k,
                            Json::String(base64::engine::general_purpose::STANDARD.encode(text)),
                        );
                    }
                }
            }
        }
    }
    want
}

pub(super) fn to_json(o: &DynamicObject) -> Json {
    serde_json::to_value(o).unwrap_or(Json::Null)
}

/// Fields of `a` and `b` that differ, as `path: old -> new` (Secret values masked).
fn changed_fields(old: &Json, new: &Json, secret: bool) -> Vec<String> {
    fn walk(path: &str, a: &Json, b: &Json, secret: bool, out: &mut Vec<String>) {
        if let (Json::Object(x), Json::Object(y)) = (a, b) {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                if path.is_empty() && ["status"].contains(&k.as_str()) {
                    continue;
                }
                if path == ".metadata"
                    && [
                        "resourceVersion",
                        "managedFields",
                        "generation",
                        "creationTimestamp",
                        "uid",
                    ]
                    .contains(&k.as_str())
                {
                    continue;
                }
                let p = format!("{path}.{k}");
                walk(
                    &p,
                    x.get(k).unwrap_or(&Json::Null),
                    y.get(k).unwrap_or(&Json::Null),
                    secret,
                    out,
                );
            }
            return;
        }
        let same = match (a, b) {
            (Json::Number(m), Json::Number(n)) => m.as_f64() == n.as_f64(),
            _ => a == b,
        };
        if !same {
            let masked = secret && (path.starts_with(".data") || path.starts_with(".stringData"));
            let show = |v: &Json| {
                if masked && !v.is_null() {
                    "***".to_string()
                } else {
                    v.to_string()
                }
            };
            out.push(format!("{path}: {} -> {}", show(a), show(b)));
        }
    }
    let mut out = Vec::new();
    walk("", old, new, secret, &mut out);
    out
}

/// A run's objects: by (group-kind, namespace, name), the version applied.
pub(super) type Applied = BTreeMap<(String, String, String), String>;

/// Manifests resolved to served kinds; those of kinds a CRD of the same run defines
/// wait in `later`.
pub(super) struct Plan {
    items: Vec<Item>,
    later: Vec<Manifest>,
}

impl Plan {
    /// Group-kinds and (non-default) namespaces the plan will write to.
    pub(super) fn extent(&self, default_ns: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut gks: BTreeSet<String> = self.items.iter().map(Item::gk).collect();
        gks.extend(self.later.iter().map(|m| group_kind(m.group(), &m.kind)));
        let nss = self
            .items
            .iter()
            .map(|i| i.ns.clone())
            .filter(|n| !n.is_empty() && *n != default_ns)
            .collect();
        (gks, nss)
    }
}

/// Resolve every kind before anything is written (see [`Plan`]).
pub(super) async fn plan(
    kinds: &mut Kinds,
    manifests: Vec<Manifest>,
    default_ns: &str,
    id: &str,
    diff: bool,
) -> Result<Plan, Error> {
    let defines: BTreeSet<(String, String)> = manifests
        .iter()
        .filter(|m| m.kind == "CustomResourceDefinition")
        .filter_map(|m| {
            let spec = m.object.get("spec")?;
            let group = spec.get("group")?.as_str()?.to_string();
            let kind = spec.get("names")?.get("kind")?.as_str()?.to_string();
            Some((group, kind))
        })
        .collect();
    let mut items = Vec::new();
    let mut later = Vec::new();
    for m in manifests {
        match kinds.find(&m.api_version, &m.kind, false).await? {
            Some((ar, scope)) => items.push(item(m, ar, scope, default_ns, id)),
            None if defines.contains(&(m.group().to_string(), m.kind.clone())) => later.push(m),
            None => {
                return Err(Error::Manifest(format!(
                    "{}: kind {} is not served in {}",
                    m.at(),
                    m.kind,
                    m.api_version
                )))
            }
        }
    }
    if diff && !later.is_empty() {
        return Err(Error::Manifest(format!(
            "{}: kind {} is defined by a CRD of this run; apply once before diffing",
            later[0].at(),
            later[0].kind
        )));
    }
    items.sort_by_key(Item::class);
    Ok(Plan { items, later })
}

/// Apply a plan in order; an object the server already holds as sent gets no write.
/// Members of the set are found by the `part-of` label `id`.
pub(super) async fn apply_all(
    client: &Client,
    kinds: &mut Kinds,
    plan: Plan,
    diff: bool,
    id: &str,
    default_ns: &str,
    report: &mut Report,
) -> Result<Applied, Error> {
    let Plan { items, mut later } = plan;
    let apply_params = if diff {
        PatchParams::apply(FIELD_MANAGER).force().dry_run()
    } else {
        PatchParams::apply(FIELD_MANAGER).force()
    };
    // Live members, listed once per (kind, namespace).
    let mut live: HashMap<(String, String), HashMap<String, Json>> = HashMap::new();
    let selector = format!("{}={id}", set::PART_OF);
    let mut done = Applied::new();
    let mut queue: std::collections::VecDeque<Item> = items.into();
    while let Some(it) = queue.pop_front() {
        let key = (it.gk(), it.ns.clone());
        if !live.contains_key(&key) {
            let list = it
                .api(client)
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| api_err(&format!("list {}", it.gk()), e))?;
            live.insert(
                key.clone(),
                list.items
                    .iter()
                    .map(|o| (o.metadata.name.clone().unwrap_or_default(), to_json(o)))
                    .collect(),
            );
        }
        let current = live[&key].get(&it.m.name).cloned();
        done.insert(
            (it.gk(), it.ns.clone(), it.m.name.clone()),
            it.ar.version.clone(),
        );
        if let Some(cur) = &current {
            if contains(cur, &comparable(&it)) {
                report.unchanged += 1;
                report.lines.push(format!("{}: unchanged", it.label()));
                continue;
            }
        }
        let applied = it
            .api(client)
            .patch(&it.m.name, &apply_params, &Patch::Apply(&it.body))
            .await
            .map_err(|e| api_err(&format!("{} ({})", it.label(), it.m.at()), e))?;
        report.applied += 1;
        let secret = it.ar.group.is_empty() && it.ar.kind == "Secret";
        let verb = match (&current, diff) {
            (None, false) => "created".to_string(),
            (Some(_), false) => "configured".to_string(),
            (None, true) => "would be created".to_string(),
            (Some(cur), true) => {
                let fields = changed_fields(cur, &to_json(&applied), secret);
                if fields.is_empty() {
                    report.applied -= 1;
                    report.unchanged += 1;
                    "unchanged".to_string()
                } else {
                    format!("would change\n    {}", fields.join("\n    "))
                }
            }
        };
        report.lines.push(format!("{}: {verb}", it.label()));
        // Kinds of CRDs this run applied: wait until they are served.
        if it.class() == 0 && queue.front().is_none_or(|n| n.class() > 0) && !later.is_empty() {
            let deadline = Instant::now() + CRD_WAIT;
            for m in std::mem::take(&mut later) {
                loop {
                    if let Some((ar, scope)) = kinds.find(&m.api_version, &m.kind, true).await? {
                        queue.push_back(item(m, ar, scope, default_ns, id));
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(Error::Api(format!(
                            "{}: kind {} still not served {CRD_WAIT:?} after its CRD was applied",
                            m.at(),
                            m.kind
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            queue.make_contiguous().sort_by_key(Item::class);
        }
    }
    Ok(done)
}

/// An object that asked never to be pruned (`valuesfs.io/prune: disabled`).
pub(super) fn keeps_itself(o: &DynamicObject) -> bool {
    o.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(set::PRUNE_ANNOTATION))
        .is_some_and(|v| v == "disabled")
}

/// Delete objects (namespaced ones first, namespaces and CRDs last); gone already is fine.
pub(super) async fn delete_all(
    client: &Client,
    mut victims: Vec<(ApiResource, String, String)>,
    diff: bool,
    report: &mut Report,
) -> Result<(), Error> {
    victims.sort_by_key(|(ar, ns, _)| {
        let core = matches!(
            (ar.group.as_str(), ar.kind.as_str()),
            ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition")
        );
        (core, ns.is_empty())
    });
    for (ar, ns, name) in victims {
        let what = if ns.is_empty() {
            format!("{} {name}", ar.kind)
        } else {
            format!("{} {ns}/{name}", ar.kind)
        };
        if diff {
            report.lines.push(format!("{what}: would be pruned"));
        } else {
            match api_for(client, &ar, &ns)
                .delete(&name, &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_err(&format!("prune {what}"), e)),
            }
            report.lines.push(format!("{what}: pruned"));
        }
        report.pruned += 1;
    }
    Ok(())
}

fn item(m: Manifest, ar: ApiResource, scope: Scope, default_ns: &str, id: &str) -> Item {
    let ns = match scope {
        Scope::Cluster => String::new(),
        Scope::Namespaced => m
            .namespace
            .clone()
            .unwrap_or_else(|| default_ns.to_string()),
    };
    let body = body_for(&m, &ns, id);
    Item { m, ar, ns, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contains_is_a_subset_check_with_whole_lists() {
        let live = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": 2.0});
        assert!(contains(&live, &json!({"b": {"c": [1, 2]}, "e": 2})));
        assert!(!contains(&live, &json!({"b": {"c": [1]}})));
        assert!(!contains(&live, &json!({"b": {"d": "y"}})));
        assert!(!contains(&live, &json!({"z": 1})));
        assert!(contains(&live, &json!({"z": null})));
    }

    #[test]
    fn diffs_mask_secret_values() {
        let a = json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "YQ=="}});
        let b = json!({"metadata": {"resourceVersion": "2"}, "data": {"k": "Yg=="}});
        assert_eq!(changed_fields(&a, &b, true), [".data.k: *** -> ***"]);
        assert_eq!(
            changed_fields(&a, &b, false),
            [".data.k: \"YQ==\" -> \"Yg==\""]
        );
    }
}

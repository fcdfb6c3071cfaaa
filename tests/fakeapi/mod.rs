//! A fake Kubernetes API server on 127.0.0.1 (no real one can be installed here), good
//! enough for kube-rs and the real `kubectl` where valuesfs relies on it: discovery
//! (legacy documents), a minimal OpenAPI v3 document (so kubectl 1.32 validates on the
//! server), get/list (label selectors `k=v`, `k`, `!k`), create, replace (resourceVersion
//! preconditions), merge patches, server-side apply with managed fields, dry-run,
//! delete, and CRDs that register their kind.
//!
//! Where it simplifies (write it down, tests must not rely on more):
//! - Server-side apply: each manager owns leaf paths (maps recurse, lists are atomic, no
//!   merge keys); an apply drops the leaves its manager owned and no longer sends (unless
//!   another manager owns them too) and merges the rest. A leaf owned by another manager
//!   with a different value is a 409 Conflict unless `force=true`. `managedFields` lists
//!   the managers without their field sets.
//! - No defaulting, no schema validation, no watches, one page per list; Secrets turn
//!   `stringData` into `data`. A CRD with `subresources.status` gets a status
//!   subresource (main-resource writes keep `.status`; `/status` writes change only it).
//!   DELETE of an object with finalizers sets `deletionTimestamp`; it goes when a write
//!   empties its finalizers. No admission, no RBAC: `Impersonate-User` is only logged.
//! - Every request is logged (method, path, query) so tests can count writes;
//!   `GET /_fake/requests` answers the counts since the last such request (benchmarks).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Map, Value as Json};

#[derive(Clone, Debug)]
struct Res {
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
    /// Has the status subresource: main-resource writes keep `.status`, `/status`
    /// writes change only it.
    status: bool,
    short_names: Vec<String>,
}

impl Res {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

fn res(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Res {
    Res {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
        status: false,
        short_names: Vec::new(),
    }
}

/// Key of a stored object: group, plural, namespace ("" for cluster-scoped), name.
type ObjKey = (String, String, String, String);

#[derive(Default)]
struct Store {
    resources: Vec<Res>,
    objects: BTreeMap<ObjKey, Json>,
    /// Per object: manager -> (operation, owned leaf paths).
    owners: BTreeMap<ObjKey, BTreeMap<String, (String, BTreeSet<String>)>>,
    rv: u64,
    uid: u64,
    log: Vec<Request>,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    /// The `Impersonate-User` header, if any.
    pub impersonate: Option<String>,
}

impl Request {
    /// A request that changes stored state (dry runs do not).
    pub fn is_write(&self) -> bool {
        self.method != "GET" && !self.query.contains("dryRun=All")
    }
}

/// A running fake; stops with the test process.
pub struct FakeApi {
    pub url: String,
    state: Arc<Mutex<Store>>,
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(Store {
            resources: vec![
                res("", "v1", "Namespace", "namespaces", false),
                res("", "v1", "ConfigMap", "configmaps", true),
                res("", "v1", "Secret", "secrets", true),
                res("", "v1", "Service", "services", true),
                res("apps", "v1", "Deployment", "deployments", true),
                res(
                    "apiextensions.k8s.io",
                    "v1",
                    "CustomResourceDefinition",
                    "customresourcedefinitions",
                    false,
                ),
                res("coordination.k8s.io", "v1", "Lease", "leases", true),
            ],
            ..Default::default()
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let st = st.clone();
                        async move { handle(&st, method, uri, headers, body) }
                    },
                );
                axum::serve(listener, app).await.expect("serve");
            });
        });
        FakeApi { url, state }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("lock").log.clone()
    }

    pub fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_write)
            .collect()
    }

    pub fn clear_log(&self) {
        self.state.lock().expect("lock").log.clear();
    }

    /// A stored object by apiVersion-less coordinates.
    pub fn get(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Json> {
        let st = self.state.lock().expect("lock");
        st.objects
            .get(&(group.into(), plural.into(), ns.into(), name.into()))
            .cloned()
    }

    /// Names stored for a resource in a namespace.
    pub fn names(&self, group: &str, plural: &str, ns: &str) -> Vec<String> {
        let st = self.state.lock().expect("lock");
        st.objects
            .keys()
            .filter(|(g, p, n, _)| g == group && p == plural && n == ns)
            .map(|k| k.3.clone())
            .collect()
    }

    /// The real `kubectl` against this server (kubeconfig and discovery cache in `dir`).
    pub fn kubectl(&self, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: me\n    namespace: default\nusers:\n- name: me\n  user: {{}}\ncurrent-context: fake\n",
                self.url
            ),
        )
        .expect("kubeconfig");
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(args)
            .output()
            .expect("kubectl is installed (.ci/run installs kubernetes-client)")
    }

    /// Store a new object as a client's create would (manager `test`).
    pub fn create(&self, group: &str, plural: &str, ns: &str, obj: Json) -> Json {
        let mut st = self.state.lock().expect("lock");
        let r = served(&st, group, plural);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Json::as_str)
            .expect("a name")
            .to_string();
        let key = (group.to_string(), plural.to_string(), ns.to_string(), name);
        store_new(&mut st, &r, &key, obj, "test", "Update", false)
    }

    /// Delete an object as `kubectl delete` would: one with finalizers only gets its
    /// `deletionTimestamp`.
    pub fn delete(&self, group: &str, plural: &str, ns: &str, name: &str) {
        let mut st = self.state.lock().expect("lock");
        let r = served(&st, group, plural);
        let key = (
            group.to_string(),
            plural.to_string(),
            ns.to_string(),
            name.to_string(),
        );
        let Some(o) = st.objects.get(&key).cloned() else {
            return;
        };
        let finalizers = o
            .pointer("/metadata/finalizers")
            .and_then(Json::as_array)
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            let mut next = o;
            next["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:01Z");
            finish(&mut st, &r, &key, next, false);
        } else {
            st.objects.remove(&key);
            st.owners.remove(&key);
        }
    }

    /// Change an object behind everyone's back, as `kubectl edit` would (manager
    /// `kubectl-edit`).
    pub fn edit(&self, group: &str, plural: &str, ns: &str, name: &str, patch: Json) {
        let mut st = self.state.lock().expect("lock");
        let key = (
            group.to_string(),
            plural.to_string(),
            ns.to_string(),
            name.to_string(),
        );
        let mut obj = st.objects.get(&key).cloned().expect("object to edit");
        merge_patch(&mut obj, &patch);
        take_ownership(&mut st, &key, "kubectl-edit", "Update", &patch);
        bump(&mut st, &key, obj, true);
    }
}

fn served(st: &Store, group: &str, plural: &str) -> Res {
    st.resources
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .cloned()
        .expect("a served resource")
}

fn reply(code: StatusCode, body: Json) -> Response {
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    reply(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(
    st: &Mutex<Store>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut st = st.lock().expect("lock");
    // For benchmarks run against the fake as a program (examples/fakeapi.rs).
    if path == "/_fake/requests" {
        let writes = st.log.iter().filter(|r| r.is_write()).count();
        let body = json!({"total": st.log.len(), "writes": writes});
        st.log.clear();
        return reply(StatusCode::OK, body);
    }
    st.log.push(Request {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        impersonate: headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    });
    let q = query_map(&query);
    match path.as_str() {
        "/version" => {
            return reply(
                StatusCode::OK,
                json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}),
            )
        }
        "/api" => {
            return reply(
                StatusCode::OK,
                json!({"kind": "APIVersions", "versions": ["v1"],
                       "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            )
        }
        "/apis" => {
            let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for r in st.resources.iter().filter(|r| !r.group.is_empty()) {
                groups
                    .entry(r.group.clone())
                    .or_default()
                    .insert(r.version.clone());
            }
            let list: Vec<Json> = groups
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Json> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions.clone(), "preferredVersion": versions[0]})
                })
                .collect();
            return reply(
                StatusCode::OK,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
            );
        }
        "/openapi/v3" => {
            // One document per served group-version, as the real server lists them.
            let mut paths = Map::new();
            for r in &st.resources {
                let gv = if r.group.is_empty() {
                    "api/v1".to_string()
                } else {
                    format!("apis/{}/{}", r.group, r.version)
                };
                let url = format!("/openapi/v3/{gv}?hash=FAKE");
                paths.insert(gv, json!({"serverRelativeURL": url}));
            }
            return reply(StatusCode::OK, json!({"paths": paths}));
        }
        p if p.starts_with("/openapi/v3/") => {
            let gv = &p["/openapi/v3/".len()..];
            let mut paths = Map::new();
            for r in &st.resources {
                let base = if r.group.is_empty() {
                    "api/v1".to_string()
                } else {
                    format!("apis/{}/{}", r.group, r.version)
                };
                if base != gv {
                    continue;
                }
                let p = if r.namespaced {
                    format!("/{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
                } else {
                    format!("/{base}/{}/{{name}}", r.plural)
                };
                paths.insert(
                    p,
                    json!({"patch": {
                        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "parameters": [
                            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                            {"name": "dryRun", "in": "query", "schema": {"type": "string"}}
                        ]
                    }}),
                );
            }
            if paths.is_empty() {
                return status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                );
            }
            return reply(
                StatusCode::OK,
                json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths}),
            );
        }
        _ => {}
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    };
    let served: Vec<Res> = st
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .cloned()
        .collect();
    if served.is_empty() {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    if rest.is_empty() {
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let resources: Vec<Json> = served
            .iter()
            .map(|r| {
                json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                       "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update"],
                       "shortNames": r.short_names})
            })
            .collect();
        return reply(
            StatusCode::OK,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        );
    }
    // [namespaces/NS/]PLURAL[/NAME]
    let find = |plural: &str| served.iter().find(|r| r.plural == plural).cloned();
    let (r, ns, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            (find(plural), ns.to_string(), tail)
        }
        [plural, tail @ ..] => (find(plural), String::new(), tail),
        [] => (None, String::new(), &[][..]),
    };
    let name = tail.first().map(|s| s.to_string());
    let Some(r) = r else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let dry = q.get("dryRun").is_some_and(|v| v == "All");
    match tail.get(1) {
        None => {}
        Some(&"status") if r.status => {
            let n = name.clone().unwrap_or_default();
            return status_subresource(&mut st, &r, &ns, &n, method.as_str(), &body, &q, dry);
        }
        Some(_) => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }
    match (method.as_str(), name) {
        ("GET", None) => list(&st, &r, &ns, q.get("labelSelector").map(String::as_str)),
        ("GET", Some(n)) => {
            match st
                .objects
                .get(&(r.group.clone(), r.plural.clone(), ns.clone(), n.clone()))
            {
                Some(o) => reply(StatusCode::OK, o.clone()),
                None => not_found(&r, &n),
            }
        }
        ("POST", None) => {
            let Ok(obj) = serde_json::from_slice::<Json>(&body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let Some(n) = obj
                .pointer("/metadata/name")
                .and_then(Json::as_str)
                .map(String::from)
            else {
                return status(422, "Invalid", "metadata.name: Required value");
            };
            let key = (r.group.clone(), r.plural.clone(), ns.clone(), n.clone());
            if st.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{} \"{n}\" already exists", r.plural),
                );
            }
            let manager = update_manager(&q);
            let stored = store_new(&mut st, &r, &key, obj, &manager, "Update", dry);
            reply(StatusCode::CREATED, stored)
        }
        ("PUT", Some(n)) => {
            let Ok(obj) = serde_json::from_slice::<Json>(&body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let key = (r.group.clone(), r.plural.clone(), ns.clone(), n.clone());
            let Some(cur) = st.objects.get(&key).cloned() else {
                return not_found(&r, &n);
            };
            if stale(&obj, &cur) {
                return conflict(&r, &n);
            }
            let mut next = obj.clone();
            keep_meta(&mut next, &cur);
            let manager = update_manager(&q);
            if !dry {
                take_ownership(&mut st, &key, &manager, "Update", &obj);
            }
            let stored = finish(&mut st, &r, &key, next, dry);
            reply(StatusCode::OK, stored)
        }
        ("PATCH", Some(n)) => {
            let Ok(patch) = serde_json::from_slice::<Json>(&body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let key = (r.group.clone(), r.plural.clone(), ns.clone(), n.clone());
            if content_type.starts_with("application/apply-patch") {
                let Some(manager) = q.get("fieldManager").cloned() else {
                    return status(400, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
                };
                let force = q.get("force").is_some_and(|v| v == "true");
                apply(&mut st, &r, &key, patch, &manager, force, dry)
            } else if content_type.starts_with("application/merge-patch") {
                let Some(mut cur) = st.objects.get(&key).cloned() else {
                    return not_found(&r, &n);
                };
                if stale(&patch, &cur) {
                    return conflict(&r, &n);
                }
                merge_patch(&mut cur, &patch);
                let manager = update_manager(&q);
                if !dry {
                    take_ownership(&mut st, &key, &manager, "Update", &patch);
                }
                let stored = finish(&mut st, &r, &key, cur, dry);
                reply(StatusCode::OK, stored)
            } else {
                status(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type})"))
            }
        }
        ("DELETE", Some(n)) => {
            let key = (r.group.clone(), r.plural.clone(), ns.clone(), n.clone());
            match st.objects.get(&key).cloned() {
                None => not_found(&r, &n),
                Some(o) => {
                    let finalizers = o
                        .pointer("/metadata/finalizers")
                        .and_then(Json::as_array)
                        .is_some_and(|f| !f.is_empty());
                    if finalizers {
                        // Stays until its finalizers are gone.
                        let mut next = o.clone();
                        if next.pointer("/metadata/deletionTimestamp").is_none() {
                            next["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:01Z");
                        }
                        let stored = finish(&mut st, &r, &key, next, dry);
                        return reply(StatusCode::OK, stored);
                    }
                    if !dry {
                        st.objects.remove(&key);
                        st.owners.remove(&key);
                    }
                    reply(StatusCode::OK, o)
                }
            }
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

/// A `metadata.resourceVersion` sent that is not the stored one: a lost update.
fn stale(sent: &Json, cur: &Json) -> bool {
    let rv = |v: &Json| {
        v.pointer("/metadata/resourceVersion")
            .and_then(Json::as_str)
            .map(String::from)
    };
    rv(sent).is_some_and(|w| Some(w) != rv(cur))
}

fn conflict(r: &Res, name: &str) -> Response {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            r.plural
        ),
    )
}

/// The manager of a non-apply write (`unknown` when the client names none).
fn update_manager(q: &BTreeMap<String, String>) -> String {
    q.get("fieldManager")
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}

fn not_found(r: &Res, name: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", r.plural),
    )
}

fn matches(obj: &Json, selector: Option<&str>) -> bool {
    let labels = obj.pointer("/metadata/labels").and_then(Json::as_object);
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Json::as_str);
    selector
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k) == Some(v)
            } else if let Some(k) = term.strip_prefix('!') {
                get(k).is_none()
            } else {
                get(term).is_some()
            }
        })
}

fn list(st: &Store, r: &Res, ns: &str, selector: Option<&str>) -> Response {
    let items: Vec<Json> = st
        .objects
        .iter()
        .filter(|((g, p, n, _), o)| {
            *g == r.group && *p == r.plural && (ns.is_empty() || n == ns) && matches(o, selector)
        })
        .map(|(_, o)| o.clone())
        .collect();
    reply(
        StatusCode::OK,
        json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(),
               "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
    )
}

/// Leaf paths of a JSON object (`/a/b`), lists and scalars being leaves. Identity fields
/// are nobody's.
fn leaves(v: &Json, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                let p = format!("{path}/{k}");
                if [
                    "/apiVersion",
                    "/kind",
                    "/metadata/name",
                    "/metadata/namespace",
                    "/metadata/uid",
                    "/metadata/resourceVersion",
                    "/metadata/creationTimestamp",
                    "/metadata/generation",
                    "/metadata/managedFields",
                    "/status",
                ]
                .contains(&p.as_str())
                {
                    continue;
                }
                leaves(val, &p, out);
            }
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.to_string());
            }
        }
    }
}

fn take_ownership(st: &mut Store, key: &ObjKey, manager: &str, op: &str, sent: &Json) {
    let mut mine = BTreeSet::new();
    leaves(sent, "", &mut mine);
    let owners = st.owners.entry(key.clone()).or_default();
    for (m, (_, set)) in owners.iter_mut() {
        if m != manager {
            set.retain(|p| !mine.contains(p));
        }
    }
    let entry = owners
        .entry(manager.to_string())
        .or_insert_with(|| (op.to_string(), BTreeSet::new()));
    if op == "Apply" {
        entry.1 = mine;
    } else {
        entry.1.extend(mine);
    }
    entry.0 = op.to_string();
    owners.retain(|_, (_, s)| !s.is_empty());
}

fn remove_path(v: &mut Json, path: &str) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (last, parents) = parts.split_last().expect("non-empty path");
    let mut cur = v;
    for p in parents {
        match cur.get_mut(*p) {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(*last);
    }
}

/// Deep merge of maps; everything else replaced.
fn merge_into(dst: &mut Json, src: &Json) {
    match (dst, src) {
        (Json::Object(d), Json::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(dv) if dv.is_object() && v.is_object() => merge_into(dv, v),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// RFC 7386.
fn merge_patch(dst: &mut Json, patch: &Json) {
    match patch {
        Json::Object(p) => {
            if !dst.is_object() {
                *dst = Json::Object(Map::new());
            }
            let d = dst.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge_patch(d.entry(k.clone()).or_insert(Json::Null), v);
                }
            }
        }
        other => *dst = other.clone(),
    }
}

fn apply(
    st: &mut Store,
    r: &Res,
    key: &ObjKey,
    sent: Json,
    manager: &str,
    force: bool,
    dry: bool,
) -> Response {
    let sent = secret_data(r, sent);
    let Some(cur) = st.objects.get(key).cloned() else {
        let stored = store_new(st, r, key, sent, manager, "Apply", dry);
        return reply(StatusCode::CREATED, stored);
    };
    let mut mine = BTreeSet::new();
    leaves(&sent, "", &mut mine);
    let owners = st.owners.get(key).cloned().unwrap_or_default();
    if !force {
        let mut conflicts = Vec::new();
        for (m, (op, set)) in &owners {
            if m == manager {
                continue;
            }
            for p in set.intersection(&mine) {
                if cur.pointer(p) != sent.pointer(p) {
                    conflicts.push(json!({"type": "FieldManagerConflict",
                        "message": format!("conflict with \"{m}\" using {}", r.api_version()),
                        "field": p.replace('/', ".")}));
                    let _ = op;
                }
            }
        }
        if !conflicts.is_empty() {
            let mut resp = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("Apply failed with {} conflict(s)", conflicts.len()),
                "reason": "Conflict", "code": 409, "details": {"causes": conflicts}});
            resp["details"]["name"] = json!(key.3);
            return reply(StatusCode::CONFLICT, resp);
        }
    }
    let mut next = cur.clone();
    if let Some((_, before)) = owners.get(manager) {
        for p in before.difference(&mine) {
            let others = owners
                .iter()
                .any(|(m, (_, s))| m != manager && s.contains(p));
            if !others {
                remove_path(&mut next, p);
            }
        }
    }
    merge_into(&mut next, &sent);
    if dry {
        let stored = finish(st, r, key, next, true);
        return reply(StatusCode::OK, stored);
    }
    take_ownership(st, key, manager, "Apply", &sent);
    let stored = finish(st, r, key, next, false);
    reply(StatusCode::OK, stored)
}

/// What a Secret's `stringData` becomes on the server.
fn secret_data(r: &Res, mut obj: Json) -> Json {
    if r.group.is_empty() && r.kind == "Secret" {
        if let Some(m) = obj.as_object_mut() {
            if let Some(Json::Object(sd)) = m.remove("stringData") {
                let data = m.entry("data").or_insert_with(|| Json::Object(Map::new()));
                for (k, v) in sd {
                    let text = v
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string());
                    data[k.as_str()] =
                        json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
        }
    }
    obj
}

fn keep_meta(next: &mut Json, cur: &Json) {
    for f in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
        if let Some(v) = cur.pointer(&format!("/metadata/{f}")) {
            next["metadata"][f] = v.clone();
        }
    }
}

fn store_new(
    st: &mut Store,
    r: &Res,
    key: &ObjKey,
    obj: Json,
    manager: &str,
    op: &str,
    dry: bool,
) -> Json {
    let mut obj = secret_data(r, obj);
    let sent = obj.clone();
    st.uid += 1;
    obj["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", st.uid));
    obj["metadata"]["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
    obj["metadata"]["generation"] = json!(1);
    if !key.2.is_empty() {
        obj["metadata"]["namespace"] = json!(key.2);
    }
    if dry {
        return obj;
    }
    take_ownership(st, key, manager, op, &sent);
    bump(st, key, obj, true)
}

/// Store `next` (bumping resourceVersion and generation when something changed) and
/// return it; a dry run returns it unchanged in the store.
fn finish(st: &mut Store, r: &Res, key: &ObjKey, next: Json, dry: bool) -> Json {
    finish_with(st, r, key, next, dry, r.status)
}

/// [`finish`]; `keep_status` keeps the stored `.status` (a main-resource write to a
/// kind with the status subresource). An object being deleted whose last finalizer
/// went is removed.
fn finish_with(
    st: &mut Store,
    r: &Res,
    key: &ObjKey,
    next: Json,
    dry: bool,
    keep_status: bool,
) -> Json {
    let mut next = secret_data(r, next);
    let cur = st.objects.get(key).cloned().unwrap_or(Json::Null);
    if keep_status {
        if let Some(m) = next.as_object_mut() {
            match cur.get("status") {
                Some(s) => m.insert("status".into(), s.clone()),
                None => m.remove("status"),
            };
        }
    }
    let finalized = next.pointer("/metadata/deletionTimestamp").is_some()
        && next
            .pointer("/metadata/finalizers")
            .and_then(Json::as_array)
            .is_none_or(|f| f.is_empty());
    if finalized && !dry {
        st.objects.remove(key);
        st.owners.remove(key);
        return next;
    }
    let strip = |v: &Json| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Json::as_object_mut) {
            for f in ["resourceVersion", "managedFields", "generation"] {
                m.remove(f);
            }
        }
        v
    };
    let changed = strip(&cur) != strip(&next);
    if dry {
        return next;
    }
    if !changed {
        return cur;
    }
    let spec_changed = {
        let body = |v: &Json| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("status");
            }
            v
        };
        body(&cur) != body(&next)
    };
    let mut next = next;
    if spec_changed {
        let g = cur
            .pointer("/metadata/generation")
            .and_then(Json::as_i64)
            .unwrap_or(0);
        next["metadata"]["generation"] = json!(g + 1);
    }
    if r.group == "apiextensions.k8s.io" && r.kind == "CustomResourceDefinition" {
        register_crd(st, &next);
    }
    bump(st, key, next, true)
}

fn bump(st: &mut Store, key: &ObjKey, mut obj: Json, _changed: bool) -> Json {
    st.rv += 1;
    obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    let owners = st.owners.get(key).cloned().unwrap_or_default();
    let api_version = obj.get("apiVersion").cloned().unwrap_or(Json::Null);
    let managed: Vec<Json> = owners
        .iter()
        .map(|(m, (op, _))| {
            json!({"manager": m, "operation": op, "apiVersion": api_version,
                   "time": "2026-12-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}})
        })
        .collect();
    obj["metadata"]["managedFields"] = json!(managed);
    if key.1 == "customresourcedefinitions" {
        register_crd(st, &obj);
    }
    st.objects.insert(key.clone(), obj.clone());
    obj
}

fn register_crd(st: &mut Store, crd: &Json) {
    let spec = &crd["spec"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        spec["names"]["kind"].as_str(),
        spec["names"]["plural"].as_str(),
    ) else {
        return;
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    for v in spec["versions"].as_array().cloned().unwrap_or_default() {
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        if !st
            .resources
            .iter()
            .any(|r| r.group == group && r.version == version && r.plural == plural)
        {
            let mut r = res(group, version, kind, plural, namespaced);
            r.status = v.pointer("/subresources/status").is_some();
            r.short_names = spec["names"]["shortNames"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            st.resources.push(r);
        }
    }
}

/// `GET|PUT|PATCH .../NAME/status`: only `.status` is read or changed.
#[allow(clippy::too_many_arguments)]
fn status_subresource(
    st: &mut Store,
    r: &Res,
    ns: &str,
    name: &str,
    method: &str,
    body: &[u8],
    q: &BTreeMap<String, String>,
    dry: bool,
) -> Response {
    let key = (
        r.group.clone(),
        r.plural.clone(),
        ns.to_string(),
        name.to_string(),
    );
    let Some(cur) = st.objects.get(&key).cloned() else {
        return not_found(r, name);
    };
    if method == "GET" {
        return reply(StatusCode::OK, cur);
    }
    let Ok(sent) = serde_json::from_slice::<Json>(body) else {
        return status(400, "BadRequest", "body is not JSON");
    };
    if stale(&sent, &cur) {
        return conflict(r, name);
    }
    let mut next = cur.clone();
    match method {
        "PUT" => next["status"] = sent.get("status").cloned().unwrap_or(Json::Null),
        "PATCH" => {
            let mut s = cur.get("status").cloned().unwrap_or(json!({}));
            merge_patch(&mut s, sent.get("status").unwrap_or(&Json::Null));
            next["status"] = s;
        }
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        }
    }
    if !dry {
        take_ownership(
            st,
            &key,
            &update_manager(q),
            "Update",
            &json!({"status": sent.get("status")}),
        );
    }
    let stored = finish_with(st, r, &key, next, dry, false);
    reply(StatusCode::OK, stored)
}

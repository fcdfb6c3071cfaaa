//! `valuesfs reconcile --once` against the fake API server (tests/fakeapi), through
//! kube-rs over HTTP, and the fake itself checked with the real `kubectl`.

mod common;
mod fakeapi;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use fakeapi::FakeApi;
use serde_json::json;

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n";
const APP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: apps\ndata:\n  a: \"1\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  b: x\n";
const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: apps\nstringData:\n  password: s3cr3t-Value-42\n";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn reconcile(api: &FakeApi, key: &Path, dir: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .args([
            "reconcile",
            "--once",
            "--server",
            &api.url,
            "--applyset",
            "demo",
        ])
        .arg("--path")
        .arg(dir)
        .args(extra)
        .env("SOPS_AGE_KEY_FILE", key)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run valuesfs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_paths(api: &FakeApi) -> Vec<String> {
    api.writes()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn once_applies_in_order_resyncs_without_writes_prunes_and_corrects_drift() {
    let api = FakeApi::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let dir = tmp.path().join("manifests");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::create_dir_all(dir.join(".valuesfs")).expect("mkdir");
    write(&dir, "app.yaml", APP);
    write(&dir, "sub/ns.yaml", NS);
    write(&dir, ".valuesfs/ignored.yaml", "not: a manifest\n");
    std::fs::write(dir.join("secret.yaml"), yaml_encrypted(SECRET)).expect("write");

    // First apply: the namespace before what lives in it, the Secret decrypted.
    let out = ok(&reconcile(&api, &key, &dir, &["--prune"]));
    assert!(out.contains("ConfigMap apps/web: created"), "{out}");
    let writes = write_paths(&api);
    let ns_at = writes
        .iter()
        .position(|w| w.ends_with("/namespaces/apps"))
        .expect("namespace applied");
    let web_at = writes
        .iter()
        .position(|w| w.ends_with("/configmaps/web"))
        .expect("web applied");
    assert!(ns_at < web_at, "{writes:?}");
    let id = valuesfs::reconcile::applyset_id("demo", "default", "Secret", "");
    let web = api.get("", "configmaps", "apps", "web").expect("web");
    assert_eq!(web["data"]["a"], "1");
    assert_eq!(
        web["metadata"]["labels"]["applyset.kubernetes.io/part-of"],
        id.as_str()
    );
    let extra = api
        .get("", "configmaps", "default", "extra")
        .expect("extra in the default namespace");
    assert_eq!(extra["data"]["b"], "x");
    let db = api.get("", "secrets", "apps", "db").expect("secret");
    assert_eq!(
        db["data"]["password"],
        base64_of("s3cr3t-Value-42"),
        "applied decrypted"
    );
    let parent = api.get("", "secrets", "default", "demo").expect("parent");
    assert_eq!(
        parent["metadata"]["labels"]["applyset.kubernetes.io/id"],
        id.as_str()
    );
    assert_eq!(
        parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"],
        "ConfigMap,Namespace,Secret"
    );
    assert_eq!(
        parent["metadata"]["annotations"]["applyset.kubernetes.io/additional-namespaces"],
        "apps"
    );
    assert_eq!(
        files_containing(tmp.path(), b"s3cr3t-Value-42"),
        Vec::<String>::new(),
        "no decrypted copy on disk"
    );

    // A no-op resync sends no write request.
    api.clear_log();
    let out = ok(&reconcile(&api, &key, &dir, &["--prune"]));
    assert!(out.contains("applied 0, unchanged 4, pruned 0"), "{out}");
    assert_eq!(write_paths(&api), Vec::<String>::new());

    // A changed value: one apply.
    write(&dir, "app.yaml", &APP.replace("a: \"1\"", "a: \"2\""));
    api.clear_log();
    ok(&reconcile(&api, &key, &dir, &["--prune"]));
    assert_eq!(
        write_paths(&api),
        ["PATCH /api/v1/namespaces/apps/configmaps/web"]
    );
    assert_eq!(
        api.get("", "configmaps", "apps", "web").expect("web")["data"]["a"],
        "2"
    );

    // Drift made in the cluster is taken back.
    api.edit(
        "",
        "configmaps",
        "apps",
        "web",
        json!({"data": {"a": "drift"}}),
    );
    ok(&reconcile(&api, &key, &dir, &["--prune"]));
    assert_eq!(
        api.get("", "configmaps", "apps", "web").expect("web")["data"]["a"],
        "2"
    );

    // A removed manifest is pruned; an opted-out object is kept.
    write(
        &dir,
        "app.yaml",
        APP.split("---\n").next().expect("first doc"),
    );
    api.clear_log();
    let out = ok(&reconcile(&api, &key, &dir, &["--prune"]));
    assert!(out.contains("ConfigMap default/extra: pruned"), "{out}");
    assert!(api.get("", "configmaps", "default", "extra").is_none());
    assert!(write_paths(&api)
        .contains(&"DELETE /api/v1/namespaces/default/configmaps/extra".to_string()));

    // An invalid manifest stops the run before any request writes, naming file and document.
    write(&dir, "bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\nkind: ConfigMap\nmetadata:\n  name: x\n");
    write(&dir, "app.yaml", "");
    api.clear_log();
    let out = reconcile(&api, &key, &dir, &["--prune"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml#1: apiVersion is missing"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        api.requests().is_empty(),
        "nothing was sent: {:?}",
        api.requests()
    );
    assert!(
        api.get("", "configmaps", "apps", "web").is_some(),
        "nothing pruned"
    );
}

/// Files under `dir` (recursively) whose bytes contain `marker`.
fn files_containing(dir: &Path, marker: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_containing(&p, marker));
        } else if std::fs::read(&p).is_ok_and(|b| b.windows(marker.len()).any(|w| w == marker)) {
            out.push(p.display().to_string());
        }
    }
    out
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn diff_reports_changes_with_secrets_masked_and_writes_nothing() {
    let api = FakeApi::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write(&dir, "ns.yaml", NS);
    write(&dir, "app.yaml", APP);
    std::fs::write(dir.join("secret.yaml"), yaml_encrypted(SECRET)).expect("write");
    ok(&reconcile(&api, &key, &dir, &["--prune"]));

    let out = reconcile(&api, &key, &dir, &["--prune", "--diff"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let changed = APP.replace("a: \"1\"", "a: \"3\"");
    write(
        &dir,
        "app.yaml",
        changed.split("---\n").next().expect("doc"),
    );
    std::fs::write(
        dir.join("secret.yaml"),
        yaml_encrypted(&SECRET.replace("42", "43")),
    )
    .expect("write");
    api.clear_log();
    let out = reconcile(&api, &key, &dir, &["--prune", "--diff"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(".data.a: \"1\" -> \"3\""), "{text}");
    assert!(text.contains(".data.password: *** -> ***"), "{text}");
    assert!(
        text.contains("ConfigMap default/extra: would be pruned"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    assert_eq!(write_paths(&api), Vec::<String>::new());
}

#[test]
fn an_unreachable_cluster_or_a_bad_kubeconfig_fails_fast_with_one_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write(&dir, "ns.yaml", NS);
    // A closed port, a listener that never answers (short deadline), a missing kubeconfig.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    type Case = (Vec<String>, Vec<(&'static str, String)>);
    let cases: Vec<Case> = vec![
        (vec!["--server".into(), "http://127.0.0.1:1".into()], vec![]),
        (
            vec![
                "--server".into(),
                silent_url,
                "--timeout".into(),
                "3s".into(),
            ],
            vec![],
        ),
        (
            vec![],
            vec![("KUBECONFIG", tmp.path().join("nope").display().to_string())],
        ),
    ];
    for (args, env) in cases {
        let t0 = Instant::now();
        let mut cmd = Command::new(bin());
        cmd.args(["reconcile", "--once", "--path"])
            .arg(&dir)
            .args(&args);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("valuesfs: reconcile: "), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(60), "{args:?}");
    }
    drop(silent);
}

/// The real `kubectl` against `api`, with a kubeconfig and a discovery cache in `dir`.
fn kubectl(api: &FakeApi, dir: &Path, args: &[&str]) -> Output {
    api.kubectl(dir, args)
}

/// kubectl (a client no one here wrote) against the fake: server-side apply, get, diff,
/// a field conflict with valuesfs's manager, delete; what it applied reads back the same
/// through kube-rs.
#[test]
fn the_fake_api_server_serves_the_real_kubectl() {
    let api = FakeApi::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let kubectl = |args: &[&str]| kubectl(&api, tmp.path(), args);
    let cm = tmp.path().join("cm.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k\ndata:\n  x: \"1\"\n  z: plain\n",
    )
    .expect("write");
    let out = kubectl(&["apply", "--server-side", "-f", cm.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("kubectl's apply");
    assert!(
        applied.content_type.starts_with("application/apply-patch"),
        "{applied:?}"
    );
    assert!(
        applied.query.contains("fieldManager=kubectl"),
        "{applied:?}"
    );

    let out = kubectl(&["get", "configmap", "k", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got["data"], json!({"x": "1", "z": "plain"}));

    // The same object through kube-rs.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let through_kube = rt.block_on(async {
        let client = kube::Client::try_from(kube::Config::new(api.url.parse().expect("url")))
            .expect("client");
        let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, "default");
        cms.get("k").await.expect("get through kube-rs")
    });
    let data = through_kube.data.expect("data");
    assert_eq!(data.get("x").map(String::as_str), Some("1"));
    assert_eq!(data.get("z").map(String::as_str), Some("plain"));

    // diff --server-side: exit 1 and the change; 0 when the same.
    let cm2 = tmp.path().join("cm2.yaml");
    std::fs::write(
        &cm2,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k\ndata:\n  x: \"2\"\n  z: plain\n",
    )
    .expect("write");
    let out = kubectl(&["diff", "--server-side", "-f", cm2.to_str().expect("utf8")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("+  x: \"2\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = kubectl(&["diff", "--server-side", "-f", cm.to_str().expect("utf8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // valuesfs takes the field over (forced apply); kubectl's own apply then conflicts.
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("k.yaml"), std::fs::read(&cm2).expect("read")).expect("write");
    ok(&Command::new(bin())
        .args(["reconcile", "--once", "--server", &api.url, "--path"])
        .arg(&dir)
        .output()
        .expect("valuesfs"));
    let out = kubectl(&["apply", "--server-side", "-f", cm.to_str().expect("utf8")]);
    assert!(!out.status.success(), "a conflict with valuesfs");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("conflict"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = kubectl(&["delete", "-f", cm.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(api.get("", "configmaps", "default", "k").is_none());
}

/// Plain scalars become the JSON kubectl makes of them (it reads YAML 1.1): checked
/// against what the real kubectl sends for the same file.
#[test]
fn manifests_become_the_json_kubectl_sends() {
    let api = FakeApi::start();
    let tmp = tempfile::tempdir().expect("tmp");
    // Values kubectl reads otherwise than go-yaml v3 (booleans, timestamps, keys), and
    // some it reads the same (octal, hex, underscores, floats, quoted text, null).
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cases\ndata:\n  b1: yes\n  b2: On\n  b3: n\n  b4: OFF\n  b5: \"yes\"\n  b6: True\n  o1: 0777\n  h1: 0x1F\n  i1: 1_000\n  f1: 1.0\n  f2: 1e3\n  f3: 0.5\n  t1: 2002-12-14\n  t2: 2001-12-14t21:59:43.10-05:00\n  s1: 190:20:30\n  s2: 1.4.2\n  n1: ~\n  keys:\n    yes: 1\n    n: 2\n    1: 3\n    0x10: 4\n    1.5: 5\n    2002-12-14: 6\n";
    let file = tmp.path().join("cases.yaml");
    std::fs::write(&file, text).expect("write");
    let out = kubectl(
        &api,
        tmp.path(),
        &["apply", "--server-side", "-f", file.to_str().expect("utf8")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = api
        .get("", "configmaps", "default", "cases")
        .expect("applied");
    let ours = valuesfs::reconcile::parse_file(
        "cases.yaml",
        text.as_bytes(),
        &valuesfs::crypto::Keyring::default(),
    )
    .expect("parse");
    assert_eq!(ours.len(), 1);
    let want = &sent["data"];
    let got = &ours[0].object["data"];
    let keys: std::collections::BTreeSet<&String> = want
        .as_object()
        .expect("map")
        .keys()
        .chain(got.as_object().expect("map").keys())
        .collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| want.get(k.as_str()) != got.get(k.as_str()))
        .map(|k| {
            format!(
                "{k}: kubectl {:?}, valuesfs {:?}",
                want.get(k.as_str()),
                got.get(k.as_str())
            )
        })
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n        - name: web\n          image: nginx\n";

#[test]
fn wait_names_the_workload_that_did_not_roll_out_and_passes_once_it_did() {
    let api = FakeApi::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let dir = tmp.path().join("manifests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write(&dir, "web.yaml", DEPLOY);
    let t0 = Instant::now();
    let out = reconcile(&api, &key, &dir, &["--wait", "--timeout", "3s"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Deployment default/web not ready: generation 1 not observed yet"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // The controller catches up: one replica, then both.
    api.edit(
        "apps",
        "deployments",
        "default",
        "web",
        json!({"status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1}}),
    );
    let out = reconcile(&api, &key, &dir, &["--wait", "--timeout", "2s"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1/2 replicas updated"),
        "{out:?}"
    );
    api.edit(
        "apps",
        "deployments",
        "default",
        "web",
        json!({"status": {"updatedReplicas": 2, "availableReplicas": 2}}),
    );
    let out = ok(&reconcile(&api, &key, &dir, &["--wait"]));
    assert!(out.contains("rolled out"), "{out}");
}

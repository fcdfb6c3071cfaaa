//! The daemon's reconciler (`ValuesSync` objects) against the fake API server: status
//! with conditions, inventory and history; resync without writes; drift corrected;
//! prune; a bad manifest prunes nothing; deletion policies through the finalizer;
//! requestedAt; impersonation; one Lease, one applier, takeover; and a new head of a
//! real mount applied at once.

mod common;
mod fakeapi;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fakeapi::FakeApi;
use serde_json::{json, Value as Json};
use valuesfs::reconcile::{self, ControllerConfig, DirSource, LeaseConfig};

const GROUP: &str = "valuesfs.io";
const PLURAL: &str = "valuesyncs";
const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n";
const CM2: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  b: x\n";
const SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: s3cr3t-42\n";

fn install_crd(api: &FakeApi) {
    let text =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/crds/valuesync.yaml"))
            .expect("packaging/crds/valuesync.yaml");
    let crd = reconcile::parse_file("valuesync.yaml", &text, &Default::default()).expect("CRD");
    assert_eq!(crd.len(), 1);
    api.create(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
        crd[0].object.clone(),
    );
}

fn valuesync(api: &FakeApi, name: &str, spec: Json) {
    api.create(
        GROUP,
        PLURAL,
        "default",
        json!({"apiVersion": "valuesfs.io/v1alpha1", "kind": "ValuesSync",
               "metadata": {"name": name, "namespace": "default"}, "spec": spec}),
    );
}

fn vs(api: &FakeApi, name: &str) -> Option<Json> {
    api.get(GROUP, PLURAL, "default", name)
}

fn condition(v: &Json, t: &str) -> Option<(String, String, String)> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
}

fn runs(v: &Json) -> usize {
    v.pointer("/status/history")
        .and_then(Json::as_array)
        .map_or(0, Vec::len)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(api: &FakeApi) -> ControllerConfig {
    ControllerConfig {
        server: Some(api.url.clone()),
        namespace: Some("default".into()),
        poll: Duration::from_millis(100),
        lease: None,
    }
}

fn data(api: &FakeApi, name: &str) -> Option<Json> {
    api.get("", "configmaps", "default", name)
        .map(|o| o["data"].clone())
}

/// A temporary folder holding `files` (paths relative to it).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    for (rel, text) in files {
        let p = tmp.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    tmp
}

/// A reconciler over the folder `root`, polling every 100 ms.
fn spawn_dir(api: &FakeApi, root: &Path) -> reconcile::Controller {
    reconcile::spawn(
        Arc::new(DirSource::new(root.to_path_buf(), keyring())),
        config(api),
    )
    .expect("spawn")
}

fn ready(api: &FakeApi, name: &str) -> bool {
    vs(api, name)
        .and_then(|v| condition(&v, "Ready"))
        .is_some_and(|(s, _, _)| s == "True")
}

#[test]
fn a_valuesync_applies_reports_resyncs_without_writes_corrects_drift_and_prunes() {
    let api = FakeApi::start();
    install_crd(&api);
    let tmp = folder(&[("apps/web.yaml", CM), ("apps/extra.yaml", CM2)]);
    let apps = tmp.path().join("apps");
    std::fs::write(apps.join("db.sops.yaml"), yaml_encrypted(SECRET)).expect("write");
    valuesync(
        &api,
        "apps",
        json!({"path": "apps", "prune": true, "interval": "1s", "serviceAccountName": "deployer"}),
    );
    let ctl = spawn_dir(&api, tmp.path());

    wait_for("Ready=True", 30, || ready(&api, "apps"));
    let v = vs(&api, "apps").expect("valuesync");
    assert_eq!(data(&api, "web"), Some(json!({"a": "1"})));
    let secret = api.get("", "secrets", "default", "db").expect("secret");
    assert_eq!(secret["data"]["password"], json!(base64_of("s3cr3t-42")));
    assert_eq!(
        v["metadata"]["finalizers"],
        json!([reconcile::FINALIZER]),
        "{v:#}"
    );
    let st = &v["status"];
    let rev = st["lastAppliedRevision"].as_str().expect("revision");
    assert!(rev.starts_with("dir@sha256:"), "{rev}");
    assert_eq!(st["lastAttemptedRevision"], st["lastAppliedRevision"]);
    assert_eq!(
        st["inventory"]["entries"],
        json!([
            {"id": "default_db__Secret", "v": "v1"},
            {"id": "default_extra__ConfigMap", "v": "v1"},
            {"id": "default_web__ConfigMap", "v": "v1"},
        ])
    );
    let h = &st["history"][0];
    assert_eq!(
        (h["applied"].as_u64(), h["pruned"].as_u64()),
        (Some(3), Some(0))
    );
    assert!(h.get("error").is_none(), "{h}");
    assert!(condition(&v, "Reconciling").is_none(), "{v:#}");
    // Every request went out as the service account.
    let reqs = api.requests();
    let applies: Vec<_> = reqs
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/configmaps/"))
        .collect();
    assert!(!applies.is_empty());
    assert!(
        applies
            .iter()
            .all(|r| r.impersonate.as_deref() == Some("system:serviceaccount:default:deployer")),
        "{applies:?}"
    );
    // The part-of label ties the objects to this ValuesSync.
    let id = reconcile::applyset_id("apps", "default", "ValuesSync", "valuesfs.io");
    let web = api.get("", "configmaps", "default", "web").expect("web");
    assert_eq!(
        web["metadata"]["labels"]["applyset.kubernetes.io/part-of"],
        json!(id)
    );

    // Resyncs at the interval: new history, no write but the status.
    api.clear_log();
    let before = runs(&vs(&api, "apps").expect("vs"));
    wait_for("two resyncs", 30, || {
        runs(&vs(&api, "apps").expect("vs")) >= (before + 2).min(10)
    });
    let writes: Vec<String> = api
        .writes()
        .into_iter()
        .filter(|r| !r.path.ends_with("/status"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "a no-op resync wrote {writes:?}");

    // Drift is taken back at the next interval.
    api.edit(
        "",
        "configmaps",
        "default",
        "web",
        json!({"data": {"a": "drift"}}),
    );
    wait_for("drift corrected", 30, || {
        data(&api, "web") == Some(json!({"a": "1"}))
    });

    // A changed value and a removed manifest: applied and pruned.
    std::fs::write(apps.join("web.yaml"), CM.replace("\"1\"", "\"2\"")).expect("write");
    std::fs::remove_file(apps.join("extra.yaml")).expect("rm");
    ctl.notify();
    wait_for("change applied and extra pruned", 30, || {
        data(&api, "web") == Some(json!({"a": "2"})) && data(&api, "extra").is_none()
    });
    wait_for("inventory shrinks", 30, || {
        vs(&api, "apps").expect("vs")["status"]["inventory"]["entries"]
            .as_array()
            .map_or(0, Vec::len)
            == 2
    });
    let m = ctl.metrics.render();
    assert!(m.contains("valuesfs_reconcile_pruned_total 1"), "{m}");
    assert!(m.contains("valuesfs_reconcile_failures_total 0"), "{m}");
    ctl.stop();
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn a_bad_manifest_stops_the_run_prunes_nothing_and_says_where() {
    let api = FakeApi::start();
    install_crd(&api);
    let tmp = folder(&[("apps/web.yaml", CM), ("apps/extra.yaml", CM2)]);
    let apps = tmp.path().join("apps");
    valuesync(
        &api,
        "apps",
        json!({"path": "apps", "prune": true, "interval": "1h"}),
    );
    // Runs only when told (notify): the file changes below are not atomic.
    let ctl = reconcile::spawn(
        Arc::new(DirSource::new(tmp.path().to_path_buf(), keyring())),
        ControllerConfig {
            poll: Duration::from_secs(3600),
            ..config(&api)
        },
    )
    .expect("spawn");
    wait_for("Ready=True", 30, || ready(&api, "apps"));
    let applied = vs(&api, "apps").expect("vs")["status"]["lastAppliedRevision"].clone();

    std::fs::remove_file(apps.join("extra.yaml")).expect("rm");
    std::fs::write(
        apps.join("bad.yaml"),
        format!("{CM2}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{}}\n"),
    )
    .expect("write");
    ctl.notify();
    wait_for("Ready=False", 30, || {
        vs(&api, "apps")
            .and_then(|v| condition(&v, "Ready"))
            .is_some_and(|(s, _, _)| s == "False")
    });
    let v = vs(&api, "apps").expect("vs");
    let (_, reason, message) = condition(&v, "Ready").expect("Ready");
    assert_eq!(reason, "BuildFailed");
    assert!(message.contains("bad.yaml#1"), "{message}");
    assert_eq!(v["status"]["lastAppliedRevision"], applied);
    assert_ne!(v["status"]["lastAttemptedRevision"], applied);
    assert!(v["status"]["history"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("bad.yaml#1")));
    assert!(data(&api, "extra").is_some(), "a failed run pruned");
    // Counted; the same bad input may fail twice (the watch event of the controller's own
    // status write can start a second run before this reads the counter).
    assert!(
        ctl.metrics.failures.load(Ordering::Relaxed) >= 1,
        "{}",
        ctl.metrics.render()
    );

    // Fixed: the run goes through and prunes.
    std::fs::remove_file(apps.join("bad.yaml")).expect("rm");
    ctl.notify();
    wait_for("pruned after the fix", 30, || {
        ready(&api, "apps") && data(&api, "extra").is_none()
    });

    // An invalid spec stalls until the spec changes.
    api.edit(
        GROUP,
        PLURAL,
        "default",
        "apps",
        json!({"spec": {"interval": "soon"}}),
    );
    wait_for("Stalled", 30, || {
        vs(&api, "apps")
            .and_then(|v| condition(&v, "Stalled"))
            .is_some_and(|(s, r, _)| s == "True" && r == "InvalidSpec")
    });
    ctl.stop();
}

#[test]
fn deleting_a_valuesync_applies_its_deletion_policy() {
    let api = FakeApi::start();
    install_crd(&api);
    let tmp = folder(&[("a/m.yaml", CM), ("b/m.yaml", CM2)]);
    std::fs::write(
        tmp.path().join("a/kept.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  annotations:\n    valuesfs.io/prune: disabled\n",
    )
    .expect("write");
    valuesync(
        &api,
        "deletes",
        json!({"path": "a", "deletionPolicy": "Delete"}),
    );
    valuesync(
        &api,
        "orphans",
        json!({"path": "b", "prune": true, "deletionPolicy": "Orphan"}),
    );
    let ctl = spawn_dir(&api, tmp.path());
    wait_for("both ready", 30, || {
        ready(&api, "deletes") && ready(&api, "orphans")
    });
    assert!(data(&api, "web").is_some() && data(&api, "extra").is_some());

    api.delete(GROUP, PLURAL, "default", "deletes");
    api.delete(GROUP, PLURAL, "default", "orphans");
    wait_for("both finalized", 30, || {
        vs(&api, "deletes").is_none() && vs(&api, "orphans").is_none()
    });
    assert!(data(&api, "web").is_none(), "Delete left its objects");
    assert!(
        data(&api, "kept").is_some(),
        "an opted-out object was deleted"
    );
    assert!(data(&api, "extra").is_some(), "Orphan deleted its objects");
    ctl.stop();
}

#[test]
fn requested_at_runs_at_once_and_suspend_stops_runs() {
    let api = FakeApi::start();
    install_crd(&api);
    let tmp = folder(&[("apps/web.yaml", CM)]);
    valuesync(&api, "apps", json!({"path": "apps", "interval": "1h"}));
    let ctl = spawn_dir(&api, tmp.path());
    wait_for("first run", 30, || ready(&api, "apps"));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        runs(&vs(&api, "apps").expect("vs")),
        1,
        "ran without a reason"
    );

    let ask =
        json!({"metadata": {"annotations": {reconcile::REQUESTED_AT: "2026-12-01T10:00:00Z"}}});
    api.edit(GROUP, PLURAL, "default", "apps", ask);
    wait_for("requested run", 30, || {
        runs(&vs(&api, "apps").expect("vs")) == 2
    });
    let v = vs(&api, "apps").expect("vs");
    assert_eq!(
        v["status"]["lastHandledReconcileAt"],
        json!("2026-12-01T10:00:00Z")
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(runs(&vs(&api, "apps").expect("vs")), 2, "answered twice");

    api.edit(
        GROUP,
        PLURAL,
        "default",
        "apps",
        json!({"spec": {"suspend": true}}),
    );
    // A pass that listed the ValuesSync before the edit may still act on the old spec.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(
        tmp.path().join("apps/web.yaml"),
        CM.replace("\"1\"", "\"9\""),
    )
    .expect("write");
    ctl.notify();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        data(&api, "web"),
        Some(json!({"a": "1"})),
        "a suspended sync applied"
    );
    ctl.stop();
}

#[test]
fn one_lease_one_applier_and_the_other_takes_over_when_it_stops() {
    let api = FakeApi::start();
    install_crd(&api);
    let tmp = folder(&[("apps/web.yaml", CM)]);
    valuesync(&api, "apps", json!({"path": "apps", "interval": "1h"}));
    let with_lease = |who: &str| {
        let mut c = config(&api);
        let mut l = LeaseConfig::new("default", "valuesfs-reconcile", who);
        l.duration = Duration::from_secs(3);
        l.retry = Duration::from_millis(200);
        c.lease = Some(l);
        reconcile::spawn(
            Arc::new(DirSource::new(tmp.path().to_path_buf(), keyring())),
            c,
        )
        .expect("spawn")
    };
    let a = with_lease("node-a");
    wait_for("node-a leads", 30, || a.is_leader());
    let b = with_lease("node-b");
    wait_for("a applied", 30, || ready(&api, "apps"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!b.is_leader());
    assert_eq!(b.metrics.runs.load(Ordering::Relaxed), 0, "two appliers");
    let lease = api
        .get(
            "coordination.k8s.io",
            "leases",
            "default",
            "valuesfs-reconcile",
        )
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], json!("node-a"));

    let t0 = Instant::now();
    a.stop();
    wait_for("node-b takes over", 30, || b.is_leader());
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "takeover waited for expiry although node-a released the lease"
    );
    std::fs::write(
        tmp.path().join("apps/web.yaml"),
        CM.replace("\"1\"", "\"3\""),
    )
    .expect("write");
    b.notify();
    wait_for("node-b applies", 30, || {
        data(&api, "web") == Some(json!({"a": "3"}))
    });
    let lease = api
        .get(
            "coordination.k8s.io",
            "leases",
            "default",
            "valuesfs-reconcile",
        )
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], json!("node-b"));
    assert_eq!(lease["spec"]["leaseTransitions"], json!(1));
    b.stop();
}

#[test]
fn a_new_head_of_the_mount_is_applied_at_once_from_its_snapshot() {
    let api = FakeApi::start();
    install_crd(&api);
    let remote = fs_common::seeded_remote();
    let mnt = fs_common::mount_remote(&remote);
    std::fs::create_dir_all(mnt.p("deploy")).expect("mkdir");
    std::fs::write(mnt.p("deploy/web.yaml"), CM).expect("write");
    mnt.flush();
    valuesync(&api, "deploy", json!({"path": "deploy", "interval": "1h"}));
    let master = mnt.m().master.clone();
    let source = reconcile::SnapshotSource::new(master.clone(), keyring(), "main");
    let ctl = reconcile::spawn(Arc::new(source), {
        let mut c = config(&api);
        c.poll = Duration::from_secs(3600);
        c
    })
    .expect("spawn");
    let heads = master.subscribe().expect("subscribe");
    let notify = ctl.notifier();
    std::thread::spawn(move || {
        for _ in heads {
            notify();
        }
    });
    wait_for("first run", 30, || ready(&api, "deploy"));
    let commit = master.snapshot().commit.expect("a commit");
    assert_eq!(
        vs(&api, "deploy").expect("vs")["status"]["lastAppliedRevision"],
        json!(format!("main@sha1:{commit}"))
    );
    // A write-close through the mount: a new head, applied without waiting for a poll.
    std::fs::write(mnt.p("deploy/web.yaml"), CM.replace("\"1\"", "\"5\"")).expect("write");
    wait_for("new head applied", 30, || {
        data(&api, "web") == Some(json!({"a": "5"}))
    });
    ctl.stop();
}

#[test]
fn the_packaged_crd_is_what_valuesfs_crd_prints() {
    let out = std::process::Command::new(bin())
        .arg("crd")
        .output()
        .expect("valuesfs crd");
    assert!(out.status.success());
    let packaged = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/crds/valuesync.yaml"),
    )
    .expect("packaged CRD");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        packaged,
        "packaging/crds/valuesync.yaml is stale: run `valuesfs crd > packaging/crds/valuesync.yaml`"
    );
    assert_eq!(
        packaged.matches("\n---").count(),
        0,
        "more than one document"
    );
    assert!(packaged.contains("kind: CustomResourceDefinition"));
}

#[test]
fn spec_wait_reports_the_workload_that_is_not_ready() {
    let api = FakeApi::start();
    install_crd(&api);
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(tmp.path().join("apps")).expect("mkdir");
    std::fs::write(
        tmp.path().join("apps/web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n",
    )
    .expect("write");
    valuesync(
        &api,
        "apps",
        json!({"path": "apps", "interval": "1h", "wait": true, "timeout": "2s"}),
    );
    let ctl = spawn_dir(&api, tmp.path());
    wait_for("Ready=False", 30, || {
        vs(&api, "apps")
            .and_then(|v| condition(&v, "Ready"))
            .is_some_and(|(s, _, _)| s == "False")
    });
    let (_, reason, message) = condition(&vs(&api, "apps").expect("vs"), "Ready").expect("Ready");
    assert_eq!(reason, "HealthCheckFailed");
    assert!(
        message.contains("Deployment default/web not ready"),
        "{message}"
    );
    api.edit(
        "apps",
        "deployments",
        "default",
        "web",
        json!({"status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}),
    );
    api.edit(
        GROUP,
        PLURAL,
        "default",
        "apps",
        json!({"metadata": {"annotations": {reconcile::REQUESTED_AT: "now"}}}),
    );
    wait_for("Ready=True", 30, || ready(&api, "apps"));
    ctl.stop();
}

/// The packaged CRD and a ValuesSync applied by the real kubectl; the reconciler's
/// status read back by kubectl.
#[test]
fn kubectl_applies_the_crd_and_a_valuesync_and_reads_its_status() {
    let api = FakeApi::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/crds/valuesync.yaml");
    let run = |args: &[&str]| {
        let out = api.kubectl(tmp.path(), args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["apply", "--server-side", "-f", &crd.display().to_string()]);
    std::fs::create_dir_all(tmp.path().join("repo/apps")).expect("mkdir");
    std::fs::write(tmp.path().join("repo/apps/web.yaml"), CM).expect("write");
    let vs_file = tmp.path().join("vs.yaml");
    std::fs::write(
        &vs_file,
        "apiVersion: valuesfs.io/v1alpha1\nkind: ValuesSync\nmetadata:\n  name: apps\n  namespace: default\nspec:\n  path: apps\n  prune: true\n",
    )
    .expect("write");
    run(&[
        "apply",
        "--server-side",
        "-f",
        &vs_file.display().to_string(),
    ]);
    let ctl = reconcile::spawn(
        Arc::new(DirSource::new(tmp.path().join("repo"), keyring())),
        config(&api),
    )
    .expect("spawn");
    wait_for("Ready=True", 30, || ready(&api, "apps"));
    let got: Json = serde_json::from_str(&run(&["get", "vs", "apps", "-o", "json"])).expect("json");
    assert_eq!(got["spec"]["path"], json!("apps"));
    let (s, reason, _) = condition(&got, "Ready").expect("Ready");
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("True", "ReconciliationSucceeded")
    );
    let typed: reconcile::ValuesSync = serde_json::from_value(got).expect("reads as ValuesSync");
    assert!(typed.spec.prune);
    assert_eq!(
        typed
            .status
            .expect("status")
            .inventory
            .expect("inventory")
            .entries[0]
            .id,
        "default_web__ConfigMap"
    );
    ctl.stop();
}

/// An object a slice model marks purged is deleted when this ValuesSync applied it
/// (its `part-of` label) and no manifest has it any more, even when the inventory lost
/// it (the ValuesSync was deleted with `Orphan` and made again); one it did not apply
/// stays.
#[test]
fn a_purged_slice_element_is_pruned() {
    let api = FakeApi::start();
    install_crd(&api);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    std::fs::create_dir_all(root.join("deploy")).expect("mkdir");
    let cm = |n: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\n");
    std::fs::write(root.join("deploy/web.yaml"), cm("web")).expect("write");
    std::fs::write(root.join("deploy/old.yaml"), cm("old")).expect("write");
    api.create(
        "",
        "configmaps",
        "default",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "foreign", "namespace": "default"}}),
    );
    let spec =
        json!({"path": "deploy", "prune": true, "deletionPolicy": "Orphan", "interval": "1h"});
    valuesync(&api, "apps", spec.clone());
    let ctl = reconcile::spawn(
        Arc::new(DirSource::new(root.to_path_buf(), keyring())),
        config(&api),
    )
    .expect("spawn");
    wait_for("first run", 30, || ready(&api, "apps"));
    api.delete(GROUP, PLURAL, "default", "apps");
    wait_for("orphaned", 30, || vs(&api, "apps").is_none());
    assert!(data(&api, "old").is_some());

    // The slice dropped `old` and `foreign` in v2; the manifest of `old` is gone.
    std::fs::remove_file(root.join("deploy/old.yaml")).expect("rm");
    std::fs::create_dir_all(root.join("slices/objects")).expect("mkdir");
    std::fs::create_dir_all(root.join("slices/.active/objects")).expect("mkdir");
    std::fs::write(
        root.join(".valuesfs.yaml"),
        "slices:\n  - name: objects\n    source: slices/objects\n    active: slices/.active/objects\n",
    )
    .expect("write");
    let element = |n: &str| {
        format!("{n}:\n  apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: {n}\n")
    };
    std::fs::write(
        root.join("slices/.active/objects/objects@v1.yaml"),
        format!("{}{}{}", element("web"), element("old"), element("foreign")),
    )
    .expect("write");
    std::fs::write(
        root.join("slices/.active/objects/objects@v2.yaml"),
        element("web"),
    )
    .expect("write");
    valuesync(&api, "apps", spec);
    ctl.notify();
    wait_for("old pruned", 30, || data(&api, "old").is_none());
    assert!(ready(&api, "apps"));
    assert!(data(&api, "web").is_some(), "an applied object went");
    assert!(
        data(&api, "foreign").is_some(),
        "an object it never applied went"
    );
    ctl.stop();
}

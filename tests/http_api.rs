//! The HTTP API against a real mount and real remote, through a real HTTP client (curl):
//! auth, every endpoint and error status, a write showing up in the mount and encrypted
//! on the remote, and concurrent writes all landing.

mod common;
mod fakeapi;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::process::Command;
use std::time::Duration;

use fs_common::*;
use valuesfs::http::{self, HttpConfig};

const TOKEN: &str = "t0ken-for-tests";

struct Api {
    _server: http::Server,
    base: String,
}

fn serve(mnt: &Mnt, max_body: Option<usize>) -> Api {
    serve_with(mnt, |cfg| {
        if let Some(m) = max_body {
            cfg.max_body = m;
        }
    })
}

fn serve_with(mnt: &Mnt, set: impl FnOnce(&mut HttpConfig)) -> Api {
    let listener = http::bind("127.0.0.1:0").expect("bind");
    let mut cfg = HttpConfig::new(&format!("  {TOKEN}\n"));
    set(&mut cfg);
    let server = http::serve(listener, mnt.m().fs.clone(), cfg).expect("serve");
    let base = format!("http://{}", server.addr);
    Api {
        _server: server,
        base,
    }
}

/// (status, headers, body) of one curl request.
fn curl(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[&str],
    body: Option<&[u8]>,
) -> (u16, String, Vec<u8>) {
    let tmp = tempfile::tempdir().expect("tmp");
    let headers = tmp.path().join("h");
    let mut c = Command::new("curl");
    c.args(["-sS", "-X", method, "-D"])
        .arg(&headers)
        .args(["-o", "-", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        let f = tmp.path().join("body");
        std::fs::write(&f, b).expect("body");
        c.args(["--data-binary", &format!("@{}", f.display())]);
        c.args(["-H", "Content-Type: text/plain"]);
    }
    c.args(extra).arg(format!("{base}{path}"));
    let out = c.output().expect("curl is installed");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stdout = out.stdout;
    let nl = stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("status line");
    let code: u16 = String::from_utf8_lossy(&stdout[nl + 1..])
        .trim()
        .parse()
        .expect("code");
    stdout.truncate(nl);
    let h = std::fs::read_to_string(&headers).unwrap_or_default();
    (code, h, stdout)
}

fn etag(headers: &str) -> String {
    headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .expect("an ETag")
        .trim()
        .to_string()
}

fn commit_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("json");
    v["commit"].as_str().expect("commit").to_string()
}

#[test]
fn files_through_the_api_with_auth_versions_and_errors() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let api = serve(&mnt, Some(1 << 20));

    // Health needs no token; everything else does, also on loopback.
    assert_eq!(curl(&api.base, "GET", "/healthz", None, &[], None).0, 200);
    assert_eq!(
        curl(&api.base, "GET", "/v1/files/secret.yaml", None, &[], None).0,
        401
    );
    assert_eq!(
        curl(
            &api.base,
            "GET",
            "/v1/files/secret.yaml",
            Some("wrong"),
            &[],
            None
        )
        .0,
        401
    );

    // Decrypted content from the snapshot, with its version.
    let (code, h, body) = curl(
        &api.base,
        "GET",
        "/v1/files/secret.yaml",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(body, secret_plaintext());
    let v1 = etag(&h);

    // PUT with a stale version: 412; with the current one: committed, pushed, in the
    // mount, encrypted on the remote.
    let mut edited = String::from_utf8(body.clone()).expect("utf8");
    edited = edited.replacen("replicas: 2", "replicas: 5", 1);
    assert_ne!(edited.as_bytes(), &body[..]);
    let stale = [
        "-H",
        "If-Match: \"0000000000000000000000000000000000000000\"",
    ];
    let (code, _, _) = curl(
        &api.base,
        "PUT",
        "/v1/files/secret.yaml",
        Some(TOKEN),
        &stale,
        Some(edited.as_bytes()),
    );
    assert_eq!(code, 412);
    let current = format!("If-Match: {v1}");
    let (code, _, reply) = curl(
        &api.base,
        "PUT",
        "/v1/files/secret.yaml?wait=pushed",
        Some(TOKEN),
        &["-H", &current],
        Some(edited.as_bytes()),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&reply));
    let commit = commit_of(&reply);
    assert_eq!(remote_head(&remote), commit);
    let raw = remote_raw(&remote, "secret.yaml").expect("on the remote");
    assert!(is_sops("secret.yaml", &raw) && !String::from_utf8_lossy(&raw).contains("replicas: 5"));
    assert_eq!(
        remote_plain(&remote, "secret.yaml").expect("plain"),
        edited.as_bytes()
    );
    assert_eq!(mnt.read_str("secret.yaml"), edited);
    // The old version is stale now.
    let (code, _, _) = curl(
        &api.base,
        "PUT",
        "/v1/files/secret.yaml",
        Some(TOKEN),
        &["-H", &current],
        Some(b"x: 1\n"),
    );
    assert_eq!(code, 412);

    // POST creates (201), and refuses an existing file (409).
    let (code, _, reply) = curl(
        &api.base,
        "POST",
        "/v1/files/new/app.txt",
        Some(TOKEN),
        &[],
        Some(b"hello\n"),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&reply));
    assert_eq!(mnt.read_str("new/app.txt"), "hello\n");
    let (code, _, _) = curl(
        &api.base,
        "POST",
        "/v1/files/new/app.txt",
        Some(TOKEN),
        &[],
        Some(b"again\n"),
    );
    assert_eq!(code, 409);

    // Tree, status, sync, metrics.
    let (code, _, t) = curl(&api.base, "GET", "/v1/tree", Some(TOKEN), &[], None);
    assert_eq!(code, 200);
    let t: serde_json::Value = serde_json::from_slice(&t).expect("json");
    let names: Vec<&str> = t["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"secret.yaml") && names.contains(&"new") && !names.contains(&".valuesfs"),
        "{names:?}"
    );
    let (code, _, t) = curl(&api.base, "GET", "/v1/tree/dir", Some(TOKEN), &[], None);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&t).contains("\"name\":\"sub\",\"type\":\"dir\""));
    assert_eq!(
        curl(&api.base, "GET", "/v1/tree/nowhere", Some(TOKEN), &[], None).0,
        404
    );
    let (code, _, st) = curl(&api.base, "GET", "/v1/status", Some(TOKEN), &[], None);
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&st).contains("head"),
        "{}",
        String::from_utf8_lossy(&st)
    );
    assert_eq!(
        curl(&api.base, "POST", "/v1/sync", Some(TOKEN), &[], None).0,
        202
    );
    let (code, _, m) = curl(&api.base, "GET", "/metrics", Some(TOKEN), &[], None);
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&m).contains("valuesfs_http_writes_total 2"),
        "{}",
        String::from_utf8_lossy(&m)
    );

    // DELETE: gone from the mount and the remote; then 404.
    let (code, _, _) = curl(
        &api.base,
        "DELETE",
        "/v1/files/plain.txt?wait=pushed",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(code, 200);
    mnt.flush();
    assert!(remote_raw(&remote, "plain.txt").is_none());
    assert!(!mnt.p("plain.txt").exists());
    assert_eq!(
        curl(
            &api.base,
            "GET",
            "/v1/files/plain.txt",
            Some(TOKEN),
            &[],
            None
        )
        .0,
        404
    );
    assert_eq!(
        curl(
            &api.base,
            "DELETE",
            "/v1/files/plain.txt",
            Some(TOKEN),
            &[],
            None
        )
        .0,
        404
    );

    // Bad paths (400), a folder (400), content that is not valid for its SOPS file, and a
    // body over the limit (413).
    for p in [
        "/v1/files/a/../secret.yaml",
        "/v1/files/.valuesfs/status",
        "/v1/files/.git/config",
    ] {
        let (code, _, _) = curl(&api.base, "GET", p, Some(TOKEN), &["--path-as-is"], None);
        assert_eq!(code, 400, "{p}");
    }
    assert_eq!(
        curl(&api.base, "GET", "/v1/files/dir", Some(TOKEN), &[], None).0,
        400
    );
    let (code, _, _) = curl(
        &api.base,
        "PUT",
        "/v1/files/secret.yaml",
        Some(TOKEN),
        &[],
        Some(b"a: [unclosed\n"),
    );
    assert!(
        code == 409 || code == 400,
        "invalid YAML for a SOPS file: {code}"
    );
    assert_eq!(
        remote_plain(&remote, "secret.yaml").expect("plain"),
        edited.as_bytes()
    );
    let big = vec![b'x'; (1 << 20) + 1];
    assert_eq!(
        curl(
            &api.base,
            "PUT",
            "/v1/files/big.txt",
            Some(TOKEN),
            &[],
            Some(&big)
        )
        .0,
        413
    );
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// Lines of `a` not in `b`, as a multiset difference (what a diff would show removed).
fn lines_gone(a: &[u8], b: &[u8]) -> Vec<String> {
    let mut rest: Vec<&str> = std::str::from_utf8(b).expect("utf8").lines().collect();
    let mut gone = Vec::new();
    for l in std::str::from_utf8(a).expect("utf8").lines() {
        match rest.iter().position(|r| *r == l) {
            Some(i) => {
                rest.remove(i);
            }
            None => gone.push(l.to_string()),
        }
    }
    gone
}

/// PATCH applies a JSON merge patch to a SOPS file (only the patched values get new
/// ciphertext, `sops -d` reads the result) and to a plain JSON file; `?rev=` reads any
/// commit; push webhooks fetch at once when signed with the secret and are refused
/// otherwise; the OpenAPI document is served; `/metrics` has FUSE latencies and the
/// master's counters.
#[test]
fn patch_revisions_webhooks_and_metrics() {
    use hmac::Mac;
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let api = serve_with(&mnt, |cfg| cfg.webhook_secret = Some("hook-secret".into()));
    let get = |p: &str| curl(&api.base, "GET", p, Some(TOKEN), &[], None);
    let before_raw = remote_raw(&remote, "secret.yaml").expect("secret");
    let first = remote_head(&remote);

    // A merge patch: change one value, remove one, add a nested one.
    let patch = br#"{"replicas": 3, "notes": null, "database": {"pool": {"max": 20}}}"#;
    let (code, _, reply) = curl(
        &api.base,
        "PATCH",
        "/v1/files/secret.yaml?wait=pushed",
        Some(TOKEN),
        &["-H", "Content-Type: application/merge-patch+json"],
        Some(patch),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&reply));
    let after_raw = remote_raw(&remote, "secret.yaml").expect("secret");
    let plain = String::from_utf8(secret_plaintext()).expect("utf8");
    let notes = plain.find("notes:").expect("notes");
    let expected = plain[..notes]
        .replacen("replicas: 2", "replicas: 3", 1)
        .replacen(
            "    timeout_seconds: 2.5\n",
            "    timeout_seconds: 2.5\n    pool:\n        max: 20\n",
            1,
        );
    let tmp = tempfile::tempdir().expect("tmp");
    let f = tmp.path().join("secret.yaml");
    std::fs::write(&f, &after_raw).expect("write");
    assert_eq!(
        String::from_utf8(common::sops_decrypt(&f, &remote.key, &[])).expect("utf8"),
        expected,
        "sops -d of the patched file"
    );
    assert_eq!(mnt.read_str("secret.yaml"), expected);
    // Only the patched values, lastmodified and mac lost their old lines.
    let gone = lines_gone(&before_raw, &after_raw);
    assert!(
        gone.iter().all(|l| l.starts_with("replicas:")
            || l.starts_with("notes:")
            || l.contains("lastmodified:")
            || l.contains("mac:")),
        "{gone:#?}"
    );
    assert_eq!(gone.len(), 4, "{gone:#?}");

    // Plain JSON: patched, printed as sops prints JSON.
    let (code, _, _) = curl(
        &api.base,
        "PUT",
        "/v1/files/conf.json",
        Some(TOKEN),
        &[],
        Some(b"{\n    \"a\": 1,\n    \"b\": {\n        \"c\": true\n    }\n}\n"),
    );
    assert_eq!(code, 200);
    let (code, _, _) = curl(
        &api.base,
        "PATCH",
        "/v1/files/conf.json",
        Some(TOKEN),
        &[],
        Some(br#"{"b": {"c": null, "d": [1, "x"]}}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(
        mnt.read_str("conf.json"),
        // sops prints JSON with tabs (unless `.sops.yaml` sets `stores: json: indent`).
        "{\n\t\"a\": 1,\n\t\"b\": {\n\t\t\"d\": [\n\t\t\t1,\n\t\t\t\"x\"\n\t\t]\n\t}\n}\n"
    );
    // Refused: not JSON (400), not YAML/JSON (400), a YAML document made a scalar (400),
    // an absent file (404), a stale version (412).
    for (path, body, extra, want) in [
        ("secret.yaml", &b"{nope"[..], &[][..], 400),
        ("plain.txt", b"{}", &[], 400),
        ("secret.yaml", b"\"scalar\"", &[], 400),
        ("absent.yaml", b"{}", &[], 404),
        ("secret.yaml", b"{}", &["-H", "If-Match: \"00\""][..], 412),
    ] {
        let (code, _, r) = curl(
            &api.base,
            "PATCH",
            &format!("/v1/files/{path}"),
            Some(TOKEN),
            extra,
            Some(body),
        );
        assert_eq!(code, want, "{path}: {}", String::from_utf8_lossy(&r));
    }

    // Any commit by id, abbreviated id or branch; nonsense is a 400.
    let (code, _, old) = get(&format!("/v1/files/secret.yaml?rev={first}"));
    assert_eq!(code, 200);
    assert_eq!(old, secret_plaintext());
    assert_eq!(
        get(&format!("/v1/files/secret.yaml?rev={}", &first[..10])).2,
        old
    );
    assert_eq!(get("/v1/files/secret.yaml?rev=main").2, expected.as_bytes());
    for bad in ["0000000000", "main:secret.yaml", "--all", "HEAD@%7B1%7D"] {
        assert_eq!(
            get(&format!("/v1/files/secret.yaml?rev={bad}")).0,
            400,
            "{bad}"
        );
    }

    // Webhooks: another machine pushes; a signed push event fetches at once.
    push_files(&remote, &[("dir/a.txt", b"from elsewhere\n")], "elsewhere");
    let event = br#"{"ref":"refs/heads/main","after":"x"}"#;
    let sign = |body: &[u8]| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").expect("key");
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        hex
    };
    let hook = |headers: &[&str], body: &[u8]| {
        let mut extra = vec!["-H", "Content-Type: application/json"];
        extra.extend_from_slice(headers);
        curl(
            &api.base,
            "POST",
            "/v1/hooks/push",
            None,
            &extra,
            Some(body),
        )
    };
    let github = format!("X-Hub-Signature-256: sha256={}", sign(event));
    let (code, _, r) = hook(&["-H", "X-GitHub-Event: push", "-H", &github], event);
    assert_eq!(code, 202, "{}", String::from_utf8_lossy(&r));
    assert_eq!(json(&r)["fetching"], true);
    assert!(
        wait_for(Duration::from_secs(20), || {
            (mnt.read_str("dir/a.txt") == "from elsewhere\n").then_some(())
        })
        .is_some(),
        "the webhook's fetch did not bring the remote change"
    );
    let forged = format!("X-Hub-Signature-256: sha256={}", sign(b"another body"));
    assert_eq!(hook(&["-H", &forged], event).0, 401);
    assert_eq!(hook(&[], event).0, 401);
    assert_eq!(hook(&["-H", "X-Gitlab-Token: nope"], event).0, 401);
    let (code, _, r) = hook(&["-H", "X-Gitlab-Token: hook-secret"], event);
    assert_eq!((code, json(&r)["fetching"].clone()), (202, true.into()));
    let other = br#"{"ref":"refs/heads/feature"}"#;
    let gitea = format!("X-Gitea-Signature: {}", sign(other));
    let (code, _, r) = hook(&["-H", &gitea], other);
    assert_eq!(code, 202);
    assert_eq!(
        json(&r)["fetching"],
        false,
        "another branch fetches nothing"
    );
    let ping = format!("X-Hub-Signature-256: sha256={}", sign(b"{}"));
    let (code, _, r) = hook(&["-H", "X-GitHub-Event: ping", "-H", &ping], b"{}");
    assert_eq!((code, json(&r)["fetching"].clone()), (202, false.into()));
    let junk = format!("X-Hub-Signature-256: sha256={}", sign(b"not json"));
    assert_eq!(hook(&["-H", &junk], b"not json").0, 400);

    // The document served is the one in docs/.
    let (code, _, doc) = get("/v1/openapi.json");
    assert_eq!(code, 200);
    assert_eq!(json(&doc)["info"]["title"], "valuesfs HTTP API");
    assert_eq!(doc, valuesfs::http::OPENAPI.as_bytes());

    // FUSE latencies and the master's counters.
    let _ = mnt.read("plain.txt");
    let (_, _, m) = get("/metrics");
    let m = String::from_utf8_lossy(&m);
    for want in [
        "valuesfs_fuse_seconds_bucket{op=\"read\",le=\"+Inf\"}",
        "valuesfs_fuse_seconds_count{op=\"lookup\"}",
        "valuesfs_push_seconds_count",
        "valuesfs_sessions_total",
        "valuesfs_cache_hits_total",
    ] {
        assert!(m.contains(want), "{want} in\n{m}");
    }
    let count = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(count("valuesfs_sessions_total") >= 2 && count("valuesfs_pushes_total") >= 1);
}

/// A write that loses to a change another machine pushed first (the same key changed
/// two ways) is 409 once the push is waited for, naming the path and the key; the remote
/// keeps the other machine's value and the conflict is listed in the status.
#[test]
fn a_conflicting_write_is_409_naming_the_path_and_key() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let api = serve(&mnt, None);
    let plain = String::from_utf8(secret_plaintext()).expect("utf8");
    // Another machine changes replicas; this mount has not fetched it.
    let theirs = plain.replacen("replicas: 2", "replicas: 7", 1);
    let params = valuesfs::crypto::CreationParams {
        recipients: vec![common::VECTOR_RECIPIENT.to_string()],
        ..Default::default()
    };
    let enc = valuesfs::crypto::encrypt(theirs.as_bytes(), valuesfs::crypto::Format::Yaml, &params)
        .expect("encrypt");
    push_files(&remote, &[("secret.yaml", &enc)], "elsewhere");
    let ours = plain.replacen("replicas: 2", "replicas: 9", 1);
    let (code, _, reply) = curl(
        &api.base,
        "PUT",
        "/v1/files/secret.yaml?wait=pushed",
        Some(TOKEN),
        &[],
        Some(ours.as_bytes()),
    );
    let msg = String::from_utf8_lossy(&reply);
    assert_eq!(code, 409, "{msg}");
    let err = json(&reply)["error"].as_str().expect("error").to_string();
    assert!(
        err.contains("secret.yaml") && err.contains("replicas"),
        "{err}"
    );
    assert_eq!(
        remote_plain(&remote, "secret.yaml").expect("plain"),
        theirs.as_bytes()
    );
    let (_, _, st) = curl(&api.base, "GET", "/v1/status", Some(TOKEN), &[], None);
    assert!(String::from_utf8_lossy(&st).contains("replicas"));
}

/// Webhooks are off unless a secret is configured.
#[test]
fn webhooks_need_a_secret() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let api = serve(&mnt, None);
    let (code, _, _) = curl(&api.base, "POST", "/v1/hooks/push", None, &[], Some(b"{}"));
    assert_eq!(code, 404);
}

/// 8 clients x 100 PUTs to their own files, all at once: every acknowledged write is on
/// the remote afterwards, in the commit its reply named (an ancestor of the remote head),
/// with the content that was sent.
#[test]
fn concurrent_writes_through_the_api_all_land() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let api = serve(&mnt, None);
    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for c in 0..8 {
            let (api, acked) = (&api, &acked);
            s.spawn(move || {
                for i in 0..100 {
                    let path = format!("load/c{c}.txt");
                    let body = format!("client: {c}\nwrite: {i}\n");
                    let (code, _, reply) = curl(
                        &api.base,
                        "PUT",
                        &format!("/v1/files/{path}"),
                        Some(TOKEN),
                        &[],
                        Some(body.as_bytes()),
                    );
                    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&reply));
                    let commit = commit_of(&reply);
                    acked.lock().expect("lock").push((commit, path, body));
                }
            });
        }
    });
    mnt.flush();
    let repo = git2::Repository::open_bare(&remote.path).expect("remote");
    let head = repo.refname_to_id("refs/heads/main").expect("main");
    let acked = acked.into_inner().expect("lock");
    assert_eq!(acked.len(), 800);
    for (commit, path, body) in &acked {
        let id = git2::Oid::from_str(commit).expect("a commit id");
        assert!(
            id == head || repo.graph_descendant_of(head, id).expect("graph"),
            "{commit} is not on the remote"
        );
        let tree = repo.find_commit(id).expect("commit").tree().expect("tree");
        let blob = tree
            .get_path(std::path::Path::new(path))
            .and_then(|e| repo.find_blob(e.id()))
            .expect("the file in its commit");
        assert_eq!(blob.content(), body.as_bytes(), "{path} at {commit}");
    }
    for c in 0..8 {
        let got = remote_plain(&remote, &format!("load/c{c}.txt")).expect("on the remote");
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("client: {c}\nwrite: 99\n")
        );
    }
}

/// `valuesfs mount --http ADDR --http-token-file FILE --reconcile ...`: the daemon serves
/// the API with the token from the file, its reconciler applies a ValuesSync from the
/// mount's snapshot, `/metrics` carries the reconciler's counters too, and everything stops
/// when it unmounts on SIGTERM.
#[test]
fn the_daemon_serves_the_api_it_is_asked_for() {
    let kube = fakeapi::FakeApi::start();
    let crd = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/crds/valuesync.yaml"),
    )
    .expect("crd");
    let crd = valuesfs::reconcile::parse_file("crd.yaml", &crd, &Default::default()).expect("crd");
    kube.create(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
        crd[0].object.clone(),
    );
    kube.create(
        "valuesfs.io",
        "valuesyncs",
        "default",
        serde_json::json!({"apiVersion": "valuesfs.io/v1alpha1", "kind": "ValuesSync",
            "metadata": {"name": "dir", "namespace": "default"}, "spec": {"path": "dir"}}),
    );
    let remote = seeded_remote();
    push_files(
        &remote,
        &[(
            "dir/cm.yaml",
            &b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-the-mount\ndata:\n  a: b\n"
                [..],
        )],
        "a manifest",
    );
    let d = Daemon::start(
        &remote,
        &[
            "--reconcile",
            "--kube-server",
            &kube.url,
            "--reconcile-poll",
            "200ms",
        ],
    );
    let base = d.base.clone();
    let (code, _, body) = curl(
        &base,
        "GET",
        "/v1/files/secret.yaml",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(body, secret_plaintext());
    assert_eq!(curl(&base, "GET", "/v1/status", None, &[], None).0, 401);
    // The reconciler read the manifest from the mount's snapshot and applied it.
    let t0 = std::time::Instant::now();
    while kube
        .get("", "configmaps", "default", "from-the-mount")
        .is_none()
    {
        assert!(
            t0.elapsed().as_secs() < 30,
            "the daemon's reconciler applied nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, _, m) = curl(&base, "GET", "/metrics", Some(TOKEN), &[], None);
    assert_eq!(code, 200);
    let m = String::from_utf8_lossy(&m);
    assert!(m.contains("valuesfs_http_requests_total"), "{m}");
    assert!(m.contains("valuesfs_reconcile_runs_total"), "{m}");
    d.stop();
}

/// `valuesfs mount --foreground --http ...` as a child process.
struct Daemon {
    child: std::process::Child,
    addr: String,
    base: String,
    _tmp: tempfile::TempDir,
}

impl Daemon {
    fn start(remote: &Remote, extra: &[&str]) -> Daemon {
        let tmp = tempfile::tempdir().expect("tmp");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        let token = tmp.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(common::bin())
            .arg("mount")
            .arg(&remote.url)
            .arg(&mnt)
            .arg("--identity")
            .arg(&remote.key)
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .args(["--foreground", "--http", &addr, "--http-token-file"])
            .arg(&token)
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the daemon");
        let t0 = std::time::Instant::now();
        while !mnt.join(".valuesfs/status").exists() {
            assert!(t0.elapsed().as_secs() < 60, "no mount");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            child,
            base: format!("http://{addr}"),
            addr,
            _tmp: tmp,
        }
    }

    /// SIGTERM: it unmounts, exits 0 and stops serving.
    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{status}");
        assert!(
            std::net::TcpStream::connect(&self.addr).is_err(),
            "still serving"
        );
    }
}

/// The live API checked against docs/openapi.json by schemathesis (every operation,
/// generated valid and invalid requests): no server errors, only documented statuses,
/// content types and bodies that match their schemas. Its settings are in
/// tests/schemathesis/schemathesis.toml.
#[test]
fn the_live_api_conforms_to_its_openapi_document() {
    let remote = seeded_remote();
    let tmp = tempfile::tempdir().expect("tmp");
    let secret = tmp.path().join("hook-secret");
    std::fs::write(&secret, "hook-secret\n").expect("secret");
    let secret = secret.display().to_string();
    let d = Daemon::start(&remote, &["--webhook-secret-file", &secret]);
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemathesis/schemathesis.toml");
    let out = Command::new("schemathesis")
        .arg("--config-file")
        .arg(&config)
        .args(["--no-color", "run"])
        .arg(format!("{}/v1/openapi.json", d.base))
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        // Lets generated webhook calls past the signature check (GitLab's token).
        .args(["-H", "X-Gitlab-Token: hook-secret"])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "20261201",
        ])
        .args(["--workers", "1"])
        .current_dir(tmp.path())
        .output()
        .expect("schemathesis is installed (scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Tested: 12"), "{text}");
    d.stop();
}

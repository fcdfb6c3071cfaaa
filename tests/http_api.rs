//! The HTTP API against a real mount and real remote, through a real HTTP client (curl):
//! auth, every endpoint and error status, a write showing up in the mount and encrypted
//! on the remote, and concurrent writes all landing.

mod common;
mod fakeapi;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::process::Command;

use fs_common::*;
use valuesfs::http::{self, HttpConfig};

const TOKEN: &str = "t0ken-for-tests";

struct Api {
    _server: http::Server,
    base: String,
}

fn serve(mnt: &Mnt, max_body: Option<usize>) -> Api {
    let listener = http::bind("127.0.0.1:0").expect("bind");
    let mut cfg = HttpConfig::new(&format!("  {TOKEN}\n"));
    if let Some(m) = max_body {
        cfg.max_body = m;
    }
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

/// 8 clients x 25 PUTs to their own files, all at once: every acknowledged write is on
/// the remote afterwards.
#[test]
fn concurrent_writes_through_the_api_all_land() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let api = serve(&mnt, None);
    std::thread::scope(|s| {
        for c in 0..8 {
            let api = &api;
            s.spawn(move || {
                for i in 0..25 {
                    let body = format!("client: {c}\nwrite: {i}\n");
                    let (code, _, reply) = curl(
                        &api.base,
                        "PUT",
                        &format!("/v1/files/load/c{c}.yaml"),
                        Some(TOKEN),
                        &[],
                        Some(body.as_bytes()),
                    );
                    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&reply));
                }
            });
        }
    });
    mnt.flush();
    for c in 0..8 {
        let got = remote_plain(&remote, &format!("load/c{c}.yaml")).expect("on the remote");
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("client: {c}\nwrite: 24\n")
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
    let mut child = Command::new(common::bin())
        .arg("mount")
        .arg(&remote.url)
        .arg(&mnt)
        .arg("--identity")
        .arg(&remote.key)
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .args(["--foreground", "--http", &addr, "--http-token-file"])
        .arg(&token)
        .args([
            "--reconcile",
            "--kube-server",
            &kube.url,
            "--reconcile-poll",
            "200ms",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the daemon");
    let base = format!("http://{addr}");
    let t0 = std::time::Instant::now();
    while !mnt.join(".valuesfs/status").exists() {
        assert!(t0.elapsed().as_secs() < 60, "no mount");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "still serving"
    );
}

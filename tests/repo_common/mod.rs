//! Shared helpers for the `repo_*` integration tests: real remotes (bare repositories
//! on disk and `git daemon` on 127.0.0.1), the git CLI as the reference, and a small
//! key-by-key merger for `*.kv` files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use valuesfs::repo::{Config, ConflictDetail, SemanticMerge};

/// Runs git and returns stdout; panics with stderr on failure.
pub fn git(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_AUTHOR_NAME", "cli")
        .env("GIT_AUTHOR_EMAIL", "cli@test")
        .env("GIT_COMMITTER_NAME", "cli")
        .env("GIT_COMMITTER_EMAIL", "cli@test")
        .output()
        .expect("spawn git");
    assert!(
        out.status.success(),
        "git {:?} in {}: {}",
        args,
        cwd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`git`] but returns success instead of panicking.
pub fn git_ok(cwd: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_AUTHOR_NAME", "cli")
        .env("GIT_AUTHOR_EMAIL", "cli@test")
        .env("GIT_COMMITTER_NAME", "cli")
        .env("GIT_COMMITTER_EMAIL", "cli@test")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Creates an empty bare repository `dir/name` whose HEAD is `main`.
pub fn bare(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    git(dir, &["init", "-q", "--bare", "-b", "main", name]);
    p
}

/// Pushes one commit with `files` to `remote` (by URL or path) with the git CLI.
pub fn cli_commit(work_parent: &Path, remote: &str, files: &[(&str, &str)], msg: &str) {
    let wt = tempfile::tempdir_in(work_parent).expect("tmp");
    let w = wt.path();
    git(w, &["init", "-q", "-b", "main"]);
    git(w, &["remote", "add", "origin", remote]);
    if git_ok(w, &["fetch", "-q", "origin", "main"]) {
        git(w, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    }
    for (p, c) in files {
        let f = w.join(p);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(&f, c).expect("write");
        git(w, &["add", p]);
    }
    git(w, &["commit", "-q", "-m", msg]);
    git(w, &["push", "-q", "origin", "HEAD:main"]);
}

/// A fresh clone of `remote`; returns the temp dir holding it.
pub fn clone(parent: &Path, remote: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir_in(parent).expect("tmp");
    git(
        parent,
        &["clone", "-q", remote, d.path().to_str().expect("utf8")],
    );
    d
}

/// `git fsck --strict` on a bare repository.
pub fn fsck(repo: &Path) {
    git(repo, &["fsck", "--strict", "--no-progress"]);
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `git daemon` serving `base` on 127.0.0.1, killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub base: PathBuf,
}

impl Daemon {
    pub fn start(base: &Path) -> Daemon {
        Self::start_on(base, free_port())
    }

    pub fn start_on(base: &Path, port: u16) -> Daemon {
        // Run git-daemon itself: `git daemon` would be a wrapper process, and killing
        // the wrapper leaves the daemon serving.
        let exec_path = git(base, &["--exec-path"]).trim().to_string();
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                &base.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn git daemon");
        let d = Daemon {
            child: Some(child),
            port,
            base: base.to_path_buf(),
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "git daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{}", self.port, name)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Children of the daemon serving a connection die with their connection.
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test configuration: fast retries, no background fetch unless asked.
pub fn config(url: &str, state: &Path) -> Config {
    let mut c = Config::new(url, state);
    c.fetch_interval = Duration::from_secs(3600);
    c.push_backoff_min = Duration::from_millis(20);
    c.push_backoff_max = Duration::from_millis(200);
    c.merger = Arc::new(KvMerge);
    c
}

/// Merges `*.kv` files (`key=value` lines) key by key; declines other files.
pub struct KvMerge;

fn parse_kv(b: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(b)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn render_kv(m: &BTreeMap<String, String>) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in m {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('\n');
    }
    s.into_bytes()
}

impl SemanticMerge for KvMerge {
    fn merge(
        &self,
        path: &str,
        base: Option<&[u8]>,
        ours: &[u8],
        theirs: &[u8],
        _rules: &valuesfs::crypto::merge::MergeRules,
    ) -> Option<Result<Vec<u8>, ConflictDetail>> {
        if !path.ends_with(".kv") {
            return None;
        }
        let b = base.map(parse_kv).unwrap_or_default();
        let o = parse_kv(ours);
        let t = parse_kv(theirs);
        let mut keys: Vec<&String> = b.keys().chain(o.keys()).chain(t.keys()).collect();
        keys.sort();
        keys.dedup();
        let mut out = BTreeMap::new();
        for k in keys {
            let (bv, ov, tv) = (b.get(k), o.get(k), t.get(k));
            let v = if ov == tv || tv == bv {
                ov
            } else if ov == bv {
                tv
            } else {
                return Some(Err(ConflictDetail {
                    key: Some(k.clone()),
                    message: format!("key changed both ways: {ov:?} vs {tv:?}"),
                }));
            };
            if let Some(v) = v {
                out.insert(k.clone(), v.clone());
            }
        }
        Some(Ok(render_kv(&out)))
    }
}

/// Reads every file of a checkout (excluding .git) into a map.
pub fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(d).expect("readdir") {
            let e = e.expect("entry");
            let p = e.path();
            if e.file_name() == ".git" {
                continue;
            }
            let ft = e.file_type().expect("ft");
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(root)
                    .expect("rel")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read_to_string(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Number of sessions per master for the heavy tests (issue asks 200).
pub fn sessions_per_master() -> usize {
    std::env::var("VALUESFS_TEST_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

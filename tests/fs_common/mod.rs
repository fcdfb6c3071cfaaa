//! Helpers shared by the `fs_*` integration tests of the mount: seeding a bare remote
//! with the shared vectors, mounting it in-process on temp dirs, counting commits and
//! reading what landed on the remote (raw and decrypted).
//!
//! Test files use it as
//! `mod common; #[path = "repo_common/mod.rs"] mod repo_common; mod fs_common;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use valuesfs::crypto::{self, Format};
use valuesfs::fs::mount::{mount, MountOptions, Mounted};

use crate::common::{keyring, private_key, vectors};
use crate::repo_common::{bare, git};

/// How long tests wait for pushes.
pub const PUSH_WAIT: Duration = Duration::from_secs(30);

/// The plain file seeded into every remote.
pub const PLAIN: &str = "hello\nworld\n";

/// A bare remote on disk with a temp dir around it (and the vector identity, mode 0600).
pub struct Remote {
    pub tmp: tempfile::TempDir,
    pub path: PathBuf,
    pub url: String,
    pub key: PathBuf,
}

impl Remote {
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

/// An empty bare remote (branch main, no commits).
pub fn empty_remote() -> Remote {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let path = bare(tmp.path(), "remote.git");
    let url = path.to_str().expect("utf8").to_string();
    Remote {
        tmp,
        path,
        url,
        key,
    }
}

/// Pushes one commit with `files` (path, bytes) to the remote with the git CLI.
pub fn push_files(remote: &Remote, files: &[(&str, &[u8])], msg: &str) {
    let wt = tempfile::tempdir_in(remote.dir()).expect("tmp");
    let w = wt.path();
    git(w, &["init", "-q", "-b", "main"]);
    git(w, &["remote", "add", "origin", &remote.url]);
    if crate::repo_common::git_ok(w, &["fetch", "-q", "origin", "main"]) {
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

/// The encrypted vector `enc/values.yaml` (the seeded `secret.yaml`).
pub fn secret_ciphertext() -> Vec<u8> {
    std::fs::read(vectors().join("enc/values.yaml")).expect("read vector")
}

/// What the codec shows for the seeded secret.
pub fn secret_plaintext() -> Vec<u8> {
    crypto::decrypt(&secret_ciphertext(), Format::Yaml, &keyring())
        .expect("decrypt vector")
        .plaintext
        .to_vec()
}

pub fn sops_yaml() -> Vec<u8> {
    std::fs::read(vectors().join(".sops.yaml")).expect("read .sops.yaml")
}

/// A remote seeded with the vectors' `.sops.yaml`, `enc/values.yaml` as `secret.yaml`,
/// a plain file and a directory with two files.
pub fn seeded_remote() -> Remote {
    let r = empty_remote();
    let sops = sops_yaml();
    let secret = secret_ciphertext();
    push_files(
        &r,
        &[
            (".sops.yaml", &sops),
            ("secret.yaml", &secret),
            ("plain.txt", PLAIN.as_bytes()),
            ("dir/a.txt", b"alpha\n"),
            ("dir/sub/b.txt", b"beta\n"),
        ],
        "seed",
    );
    r
}

/// A remote with only the vectors' `.sops.yaml`.
pub fn sops_only_remote() -> Remote {
    let r = empty_remote();
    let sops = sops_yaml();
    push_files(&r, &[(".sops.yaml", &sops)], "seed");
    r
}

/// A mount of a remote on a temp dir; unmounted on drop.
pub struct Mnt {
    pub mounted: Option<Mounted>,
    pub mnt: PathBuf,
    pub state: PathBuf,
    _dirs: tempfile::TempDir,
}

/// Options used by the tests: no background fetch, a short push timeout.
pub fn test_options(remote: &Remote, mnt: &Path, state: &Path) -> MountOptions {
    let mut o = MountOptions::new(remote.url.clone(), mnt);
    o.identity = Some(remote.key.clone());
    o.state_dir = Some(state.to_path_buf());
    o.fetch_interval = Duration::from_secs(3600);
    o.push_timeout = Duration::from_secs(10);
    o
}

/// Mount `remote` with the vector identity on a fresh mountpoint; `state` defaults to a
/// fresh state dir. `tweak` may change the options.
pub fn mount_with(
    remote: &Remote,
    state: Option<&Path>,
    tweak: impl FnOnce(&mut MountOptions),
) -> Mnt {
    let dirs = tempfile::tempdir_in(remote.dir()).expect("tmp");
    let mnt = dirs.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir mnt");
    let state = state
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dirs.path().join("state"));
    let mut o = test_options(remote, &mnt, &state);
    tweak(&mut o);
    let mounted = mount(&o).unwrap_or_else(|e| panic!("mount {}: {e}", mnt.display()));
    Mnt {
        mounted: Some(mounted),
        mnt,
        state,
        _dirs: dirs,
    }
}

pub fn mount_remote(remote: &Remote) -> Mnt {
    mount_with(remote, None, |_| {})
}

impl Mnt {
    /// A path inside the mount.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn m(&self) -> &Mounted {
        self.mounted.as_ref().expect("mounted")
    }

    /// Commits new files still in their grace period, then waits until everything
    /// committed is on the remote.
    pub fn flush(&self) {
        self.m().fs.commit_deferred(true);
        self.m().fs.reap_whiteouts(true);
        self.m()
            .master
            .flush(PUSH_WAIT)
            .unwrap_or_else(|e| panic!("flush: {e}"));
    }

    /// Waits until everything committed is on the remote, leaving files in their grace
    /// period (deferred new files, pending deletions) alone.
    pub fn push(&self) {
        self.m()
            .master
            .flush(PUSH_WAIT)
            .unwrap_or_else(|e| panic!("flush: {e}"));
    }

    pub fn fetch(&self) {
        self.m()
            .master
            .fetch_now()
            .unwrap_or_else(|e| panic!("fetch_now: {e}"));
    }

    /// `.valuesfs/status` read through the mount.
    pub fn status(&self) -> String {
        std::fs::read_to_string(self.p(".valuesfs/status")).expect("read status")
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.p(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn read_str(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel)).expect("utf8")
    }

    /// Clean unmount (pushes what is pending first).
    pub fn unmount(mut self) {
        if let Some(m) = self.mounted.take() {
            m.unmount();
        }
    }
}

impl Drop for Mnt {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            drop(m);
        }
        // A mount left behind by a panic must not wedge later tests.
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Number of commits on the remote's `main`.
pub fn commits(remote: &Remote) -> usize {
    git(&remote.path, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .expect("count")
}

/// `main`'s commit id on the remote.
pub fn remote_head(remote: &Remote) -> String {
    git(&remote.path, &["rev-parse", "main"]).trim().to_string()
}

/// Commit subjects on the remote's `main`, newest first.
pub fn subjects(remote: &Remote) -> Vec<String> {
    git(&remote.path, &["log", "--format=%s", "main"])
        .lines()
        .map(String::from)
        .collect()
}

/// (mode, path) of every blob on the remote's `main`.
pub fn ls_tree(remote: &Remote) -> BTreeMap<String, String> {
    git(&remote.path, &["ls-tree", "-r", "--full-tree", "main"])
        .lines()
        .map(|l| {
            let (meta, path) = l.split_once('\t').expect("tab");
            let mode = meta.split(' ').next().expect("mode").to_string();
            (path.to_string(), mode)
        })
        .collect()
}

/// Paths on the remote's `main`.
pub fn remote_paths(remote: &Remote) -> Vec<String> {
    ls_tree(remote).into_keys().collect()
}

/// Raw bytes of `rev:path` in a repository, or None if it is absent.
pub fn show(repo: &Path, rev: &str, path: &str) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .args(["cat-file", "blob", &format!("{rev}:{path}")])
        .current_dir(repo)
        .output()
        .expect("git cat-file");
    out.status.success().then_some(out.stdout)
}

/// Raw bytes of `path` on the remote's `main`.
pub fn remote_raw(remote: &Remote, path: &str) -> Option<Vec<u8>> {
    show(&remote.path, "main", path)
}

/// Whether bytes are a SOPS document of the store of `path`.
pub fn is_sops(path: &str, bytes: &[u8]) -> bool {
    crypto::is_sops(bytes, Format::from_path(path))
}

/// Plaintext of `path` on the remote: decrypted if it is a SOPS file.
pub fn remote_plain(remote: &Remote, path: &str) -> Option<Vec<u8>> {
    remote_raw(remote, path).map(|raw| decrypt_if_sops(path, &raw))
}

pub fn decrypt_if_sops(path: &str, raw: &[u8]) -> Vec<u8> {
    if is_sops(path, raw) {
        crypto::decrypt(raw, Format::from_path(path), &keyring())
            .unwrap_or_else(|e| panic!("decrypt {path}: {e}"))
            .plaintext
            .to_vec()
    } else {
        raw.to_vec()
    }
}

/// Every file on the remote's `main` (symlinks as their target), decrypted.
pub fn remote_tree_plain(remote: &Remote) -> BTreeMap<String, Vec<u8>> {
    ls_tree(remote)
        .into_keys()
        .map(|p| {
            let b = remote_plain(remote, &p).expect("listed path");
            (p, b)
        })
        .collect()
}

/// The raw errno of an I/O result's error (panics if it succeeded).
pub fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("no errno in {e:?}")),
    }
}

/// The errno of the last libc call.
pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn cstr(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).expect("cstring")
}

/// Runs a command; panics with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A value from `.valuesfs/status` text: the first `key: value` line at top level.
pub fn status_field(status: &str, key: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(": "))
            .map(|v| v.trim().to_string())
    })
}

/// Paths listed under a top-level list (`drafts`, `unreadable`, `errors`) of the status.
pub fn status_paths(status: &str, list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in status.lines() {
        if !l.starts_with(' ') {
            inside = l == format!("{list}:");
            continue;
        }
        if inside {
            if let Some(p) = l.trim_start().strip_prefix("- path: ") {
                out.push(p.trim().trim_matches('"').to_string());
            }
            if let Some(p) = l.trim_start().strip_prefix("path: ") {
                out.push(p.trim().trim_matches('"').to_string());
            }
        }
    }
    out
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A random hex string (for markers and unique content).
pub fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
        .collect()
}

/// Writes a whole file (create, truncate) and closes it with `close(2)`, so that an
/// error of the write-close (the commit) is not lost as `File`'s drop would lose it.
pub fn write_checked(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)?;
    close_checked(f)
}

/// `close(2)` of a file, returning its error.
pub fn close_checked(f: std::fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = f.into_raw_fd();
    // SAFETY: we own fd (taken out of the File) and close it exactly once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// [`write_checked`] that panics on error.
pub fn put(path: &Path, data: &[u8]) {
    write_checked(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `valuesfs SUBCOMMAND --mount MNT ARGS...`; (success, stdout, stderr).
pub fn valuesfs_at(m: &Mnt, sub: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(crate::common::bin())
        .arg(sub)
        .arg("--mount")
        .arg(&m.mnt)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("valuesfs {sub}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

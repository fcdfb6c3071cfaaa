//! Faults: content that cannot be encrypted becomes a draft (EIO on fsync and on close,
//! still readable, listed in the status, kept age-encrypted across a remount, never in
//! plaintext on disk) until a corrected write commits it; without a matching identity a
//! secret shows as read-only ciphertext; an identity readable by others is refused; a
//! daemon killed with SIGKILL while offline loses nothing and pushes each commit once
//! after a restart on the same state dir.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fs_common::*;
use repo_common::clone;

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let ft = match e.file_type() {
            Ok(ft) => ft,
            Err(_) => continue,
        };
        if ft.is_dir() {
            files_under(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// All objects of a repository, uncompressed.
fn all_objects(repo: &Path) -> Vec<u8> {
    let out = Command::new("git")
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .current_dir(repo)
        .output()
        .expect("git cat-file");
    assert!(
        out.status.success(),
        "cat-file in {}: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty(), "no objects in {}", repo.display());
    out.stdout
}

/// Panics if any marker appears in a file under `dir` or in a git object of `repos`.
fn assert_no_plaintext(dir: &Path, repos: &[&Path], markers: &[&str]) {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    assert!(!files.is_empty());
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        for m in markers {
            assert!(
                !contains(&bytes, m),
                "plaintext {m} found in {}",
                f.display()
            );
        }
    }
    for repo in repos {
        let objects = all_objects(repo);
        for m in markers {
            assert!(
                !contains(&objects, m),
                "plaintext {m} found in a git object of {}",
                repo.display()
            );
        }
    }
}

fn drafts_on_disk(state: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    files_under(&state.join("drafts"), &mut v);
    v.retain(|p| p.extension().is_some_and(|e| e == "age"));
    v
}

#[test]
fn bad_content_becomes_a_draft() {
    let r = seeded_remote();
    let state = r.dir().join("state");
    let bad_marker = format!("MARKER-{}", random_hex(24));
    let bad_marker2 = format!("MARKER-{}", random_hex(24));
    let new_marker = format!("MARKER-{}", random_hex(24));
    let good_marker = format!("MARKER-{}", random_hex(24));
    let m = mount_with(&r, Some(&state), |_| {});
    m.flush();
    let n = commits(&r);

    // fsync reports the refusal.
    let bad1 = format!("a: [unclosed {bad_marker}\n");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.p("secret.yaml"))
            .expect("open");
        f.write_all(bad1.as_bytes()).expect("write");
        let e = f.sync_all().expect_err("fsync of invalid YAML succeeded");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        let _ = close_checked(f);
    }
    assert_eq!(
        m.read_str("secret.yaml"),
        bad1,
        "the draft is not readable at its path"
    );
    let st = m.status();
    assert_eq!(status_paths(&st, "drafts"), ["secret.yaml"], "{st}");

    // close(2) reports it too.
    let bad2 = format!("b: {{unclosed {bad_marker2}\n");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.p("secret.yaml"))
            .expect("open the draft");
        f.write_all(bad2.as_bytes()).expect("write");
        let e = close_checked(f).expect_err("close of invalid YAML succeeded");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    }
    assert_eq!(m.read_str("secret.yaml"), bad2);
    assert_eq!(
        std::fs::metadata(m.p("secret.yaml")).expect("stat").len(),
        bad2.len() as u64
    );

    // A new file matching a creation rule, with bad content: a draft as well.
    let bad_new = format!("x: [{new_marker}\n");
    let e = write_checked(&m.p("new.yaml"), bad_new.as_bytes())
        .expect_err("close of a new invalid YAML file succeeded");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert_eq!(m.read_str("new.yaml"), bad_new);
    let st = m.status();
    let mut drafts = status_paths(&st, "drafts");
    drafts.sort();
    assert_eq!(drafts, ["new.yaml", "secret.yaml"], "{st}");

    m.flush();
    assert_eq!(
        commits(&r),
        n,
        "bad content was committed: {:?}",
        subjects(&r)
    );
    assert_eq!(
        remote_raw(&r, "secret.yaml").expect("secret"),
        secret_ciphertext()
    );
    assert_eq!(remote_raw(&r, "new.yaml"), None);
    assert_eq!(
        drafts_on_disk(&state).len(),
        2,
        "drafts are not kept in the state dir"
    );

    // Drafts survive a remount (restored from their encrypted copies).
    m.unmount();
    let m = mount_with(&r, Some(&state), |_| {});
    assert_eq!(m.read_str("secret.yaml"), bad2, "draft lost by a remount");
    assert_eq!(m.read_str("new.yaml"), bad_new, "draft lost by a remount");
    let mut drafts = status_paths(&m.status(), "drafts");
    drafts.sort();
    assert_eq!(drafts, ["new.yaml", "secret.yaml"]);

    // Corrected writes commit and clear the drafts.
    let good = String::from_utf8(secret_plaintext())
        .expect("utf8")
        .replace("correct-horse-battery-staple", &good_marker);
    put(&m.p("secret.yaml"), good.as_bytes());
    put(&m.p("new.yaml"), format!("x: [{new_marker}]\n").as_bytes());
    assert_eq!(m.read_str("secret.yaml"), good);
    let st = m.status();
    assert!(
        status_paths(&st, "drafts").is_empty(),
        "drafts still listed:\n{st}"
    );
    assert!(
        drafts_on_disk(&state).is_empty(),
        "draft files left in the state dir"
    );
    m.flush();
    assert_eq!(commits(&r), n + 2, "{:?}", subjects(&r));
    let out = String::from_utf8(remote_plain(&r, "secret.yaml").expect("secret")).expect("utf8");
    assert_eq!(out, good);
    let raw_new = remote_raw(&r, "new.yaml").expect("new.yaml");
    assert!(is_sops("new.yaml", &raw_new));
    m.unmount();

    // No marker ever reached the disk in plaintext: state dir files, its repository's
    // objects, the remote's objects.
    assert_no_plaintext(
        &state,
        &[&state.join("repo.git"), &r.path],
        &[&bad_marker, &bad_marker2, &new_marker, &good_marker],
    );
}

#[test]
fn without_a_matching_identity_secrets_are_read_only_ciphertext() {
    let r = seeded_remote();
    let other = r.dir().join("other.txt");
    run(Command::new("age-keygen").arg("-o").arg(&other));
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let m = mount_with(&r, None, |o| o.identity = Some(other.clone()));
    let n = commits(&r);

    let cipher = secret_ciphertext();
    assert_eq!(m.read("secret.yaml"), cipher, "not shown as its ciphertext");
    let meta = std::fs::metadata(m.p("secret.yaml")).expect("stat");
    assert_eq!(meta.len(), cipher.len() as u64);
    assert_eq!(
        meta.mode() & 0o777,
        0o444,
        "an undecryptable secret must be read-only"
    );
    let e = OpenOptions::new().write(true).open(m.p("secret.yaml"));
    assert!(e.is_err(), "opened an undecryptable secret for writing");
    let e = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.p("secret.yaml"));
    assert!(e.is_err(), "opened an undecryptable secret with O_TRUNC");
    let st = m.status();
    assert_eq!(status_paths(&st, "unreadable"), ["secret.yaml"], "{st}");

    // Plain files work as usual.
    put(&m.p("plain.txt"), b"still writable\n");
    m.flush();
    assert_eq!(commits(&r), n + 1);
    assert_eq!(remote_raw(&r, "secret.yaml").expect("secret"), cipher);
}

#[test]
fn identity_readable_by_others_is_refused() {
    let r = seeded_remote();
    let key = r.dir().join("open-key.txt");
    std::fs::copy(&r.key, &key).expect("copy key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mnt = r.dir().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");

    let mut child = Command::new(bin())
        .args(["mount", &r.url])
        .arg(&mnt)
        .arg("--identity")
        .arg(&key)
        .arg("--state-dir")
        .arg(r.dir().join("state"))
        .arg("--foreground")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn valuesfs");
    let status = wait_for(Duration::from_secs(20), || child.try_wait().expect("wait"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&mnt)
            .status();
        panic!("valuesfs mount with a 0644 identity did not exit");
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "mount with a 0644 identity succeeded");
    assert!(
        stderr.contains("readable by group or others")
            || stderr.contains("permission")
            || stderr.contains("chmod"),
        "the error does not mention the key's permissions: {stderr}"
    );
    assert!(!mnt.join(".valuesfs").exists(), "something got mounted");

    // The library refuses it too.
    let mut o = test_options(&r, &mnt, &r.dir().join("state2"));
    o.identity = Some(key.clone());
    match valuesfs::fs::mount::mount(&o) {
        Ok(_) => panic!("library mount with a 0644 identity succeeded"),
        Err(e) => assert!(e.to_string().contains("644"), "{e}"),
    }
}

/// A foreground daemon started with the CLI; killed and lazily unmounted on drop.
struct Daemon {
    child: Option<Child>,
    mnt: PathBuf,
}

impl Daemon {
    fn start(r: &Remote, mnt: &Path, state: &Path, log: &Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log");
        let child = Command::new(bin())
            .args(["mount", &r.url])
            .arg(mnt)
            .arg("--identity")
            .arg(&r.key)
            .arg("--state-dir")
            .arg(state)
            .args([
                "--push-timeout",
                "1s",
                "--fetch-interval",
                "1h",
                "--foreground",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn valuesfs");
        let mut d = Daemon {
            child: Some(child),
            mnt: mnt.to_path_buf(),
        };
        let up = wait_for(Duration::from_secs(30), || {
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("daemon exited: {st}");
            }
            mnt.join(".valuesfs/status").exists().then_some(())
        });
        assert!(up.is_some(), "the mount did not come up");
        d
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            let _ = c.wait();
        }
        lazy_unmount(&self.mnt);
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let done = wait_for(Duration::from_secs(30), || c.try_wait().ok().flatten());
            if done.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        lazy_unmount(&self.mnt);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        lazy_unmount(&self.mnt);
    }
}

fn lazy_unmount(mnt: &Path) {
    let ok = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mnt)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(mnt)
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn kill9_while_offline_then_restart_pushes_each_commit_once() {
    let r = seeded_remote();
    let mnt = r.dir().join("mnt");
    let state = r.dir().join("state");
    let log = r.dir().join("daemon.log");
    std::fs::create_dir(&mnt).expect("mkdir");
    let gone = r.dir().join("remote.gone");

    let mut d = Daemon::start(&r, &mnt, &state, &log);
    std::fs::rename(&r.path, &gone).expect("take the remote away");
    for i in 1..=5 {
        put(
            &mnt.join(format!("f{i}.txt")),
            format!("file {i}\n").as_bytes(),
        );
    }
    // And a draft (content that cannot be encrypted) in flight.
    let bad = b"broken: [yaml\n";
    let e = write_checked(&mnt.join("draft.yaml"), bad).expect_err("bad YAML accepted");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    // New files closed and left alone are committed after the grace period.
    let mut st = String::new();
    let committed = wait_for(Duration::from_secs(20), || {
        st = std::fs::read_to_string(mnt.join(".valuesfs/status")).ok()?;
        (status_field(&st, "pending_pushes").as_deref() == Some("5")).then_some(())
    });
    assert!(committed.is_some(), "{st}");
    d.kill9();
    assert!(
        !mnt.join(".valuesfs/status").exists(),
        "still mounted after kill -9"
    );
    std::fs::rename(&gone, &r.path).expect("bring the remote back");

    let mut d = Daemon::start(&r, &mnt, &state, &log);
    let mut last = String::new();
    let pushed = wait_for(Duration::from_secs(30), || {
        last = std::fs::read_to_string(mnt.join(".valuesfs/status")).ok()?;
        (status_field(&last, "pending_pushes").as_deref() == Some("0")
            && status_field(&last, "head") == status_field(&last, "remote_head"))
        .then_some(())
    });
    assert!(
        pushed.is_some(),
        "pending pushes not drained after the restart:\n{last}\nlog:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        std::fs::read(mnt.join("draft.yaml")).expect("draft after kill -9"),
        bad,
        "the draft did not survive kill -9"
    );
    assert_eq!(status_paths(&last, "drafts"), ["draft.yaml"], "{last}");
    for i in 1..=5 {
        assert_eq!(
            std::fs::read(mnt.join(format!("f{i}.txt"))).expect("read after restart"),
            format!("file {i}\n").as_bytes()
        );
    }
    // The CLI finds the mount from the working directory and reports the same.
    let out = run(Command::new(bin())
        .arg("status")
        .current_dir(mnt.join("dir/sub")));
    assert_eq!(
        status_field(&out, "pending_pushes").as_deref(),
        Some("0"),
        "{out}"
    );
    // A clean unmount through the CLI stops the daemon.
    run(Command::new(bin()).arg("unmount").arg(&mnt));
    let child = d.child.as_mut().expect("daemon");
    let exited = wait_for(Duration::from_secs(30), || child.try_wait().ok().flatten());
    match exited {
        Some(st) => assert!(st.success(), "daemon exit after unmount: {st}"),
        None => panic!("the daemon did not exit after `valuesfs unmount`"),
    }
    d.child = None;
    assert!(
        !mnt.join(".valuesfs").exists(),
        "still mounted after unmount"
    );
    d.terminate();

    let co = clone(r.dir(), &r.url);
    for i in 1..=5 {
        assert_eq!(
            std::fs::read(co.path().join(format!("f{i}.txt"))).expect("file on the remote"),
            format!("file {i}\n").as_bytes()
        );
    }
    let subjects = subjects(&r);
    let mut seen = std::collections::BTreeSet::new();
    for s in &subjects {
        assert!(seen.insert(s.clone()), "{s:?} pushed twice: {subjects:?}");
    }
    assert_eq!(subjects.len(), 6, "{subjects:?}");
    repo_common::fsck(&r.path);
}

/// The CLI without `--foreground`: returns once mounted, `status --mount` reports,
/// `unmount` pushes what is pending and stops the daemon.
#[test]
fn cli_mount_detaches_and_unmount_stops_the_daemon() {
    let r = seeded_remote();
    let mnt = r.dir().join("mnt");
    let state = r.dir().join("state");
    std::fs::create_dir(&mnt).expect("mkdir");
    run(Command::new(bin())
        .args(["mount", &r.url])
        .arg(&mnt)
        .arg("--identity")
        .arg(&r.key)
        .arg("--state-dir")
        .arg(&state));
    // Whatever happens below, do not leave a daemon or a mount behind.
    struct Cleanup(PathBuf, Option<i32>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(pid) = self.1 {
                // SAFETY: signalling the daemon this test started.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            lazy_unmount(&self.0);
        }
    }
    let mut guard = Cleanup(mnt.clone(), None);
    let daemon = std::fs::read_to_string(mnt.join(".valuesfs/daemon"))
        .expect("mounted when `valuesfs mount` returned");
    let pid: i32 = status_field(&daemon, "pid")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in .valuesfs/daemon: {daemon}"));
    guard.1 = Some(pid);

    put(&mnt.join("plain.txt"), b"through the detached daemon\n");
    let out = run(Command::new(bin()).args(["status", "--mount"]).arg(&mnt));
    assert!(
        out.contains("head:") && out.contains("pending_pushes:"),
        "{out}"
    );

    run(Command::new(bin()).arg("unmount").arg(&mnt));
    // SAFETY: kill with signal 0 only checks that the process exists.
    let gone = wait_for(Duration::from_secs(30), || {
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
    assert!(
        gone.is_some(),
        "the daemon {pid} still runs after `valuesfs unmount`"
    );
    guard.1 = None;
    assert!(!mnt.join(".valuesfs").exists(), "still mounted");
    assert_eq!(
        remote_raw(&r, "plain.txt").as_deref(),
        Some(&b"through the detached daemon\n"[..]),
        "unmount did not push"
    );
}

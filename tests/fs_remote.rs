//! Two mounts of one remote: an edit on A shows on B after B fetches (kernel caches
//! invalidated, even after B read the old content); edits of different keys of one
//! encrypted file through both mounts both land; the same key changed two ways gives EIO
//! to the loser's fsync and keeps its version under `.valuesfs/conflicts/`; with the
//! remote down writes still succeed and are pushed once it is back.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use fs_common::*;
use repo_common::clone;

/// After a fetch, the kernel must see new content at once (well inside the 1 s attribute
/// TTL): allow only the invalidation thread's latency.
const INVAL_GRACE: Duration = Duration::from_millis(250);

fn secret_with(from: &str, to: &str) -> String {
    let s = String::from_utf8(secret_plaintext()).expect("utf8");
    assert!(s.contains(from), "{from:?} not in the secret");
    s.replace(from, to)
}

fn sops_d_of_remote(r: &Remote, path: &str) -> String {
    let co = clone(r.dir(), &r.url);
    String::from_utf8(sops_decrypt(&co.path().join(path), &r.key, &[])).expect("utf8")
}

/// The ids of the conflicts listed in a status text.
fn conflict_ids(status: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in status.lines() {
        if !l.starts_with(' ') {
            inside = l == "conflicts:";
            continue;
        }
        if inside {
            if let Some(id) = l.trim_start().strip_prefix("- id: ") {
                out.push(id.trim().trim_matches('"').to_string());
            }
        }
    }
    out
}

fn pending_pushes(status: &str) -> usize {
    status_field(status, "pending_pushes")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no pending_pushes in status:\n{status}"))
}

#[test]
fn edit_on_a_shows_on_b_after_fetch() {
    let r = seeded_remote();
    let seed = remote_head(&r);
    let a = mount_remote(&r);
    let b = mount_remote(&r);

    // B reads (and so caches) the old content.
    assert_eq!(b.read("plain.txt"), PLAIN.as_bytes());
    assert_eq!(b.read("secret.yaml"), secret_plaintext());
    assert_eq!(b.read("dir/a.txt"), b"alpha\n");
    assert!(!b.p("new.txt").exists());

    // A edits: a longer plain file, a same-length secret change, a new file, a deletion.
    let plain2 = b"changed on A, and longer than before\n".to_vec();
    let secret2 = secret_with("replicas: 2", "replicas: 9");
    put(&a.p("plain.txt"), &plain2);
    put(&a.p("secret.yaml"), secret2.as_bytes());
    put(&a.p("new.txt"), b"new\n");
    std::fs::remove_file(a.p("dir/a.txt")).expect("unlink on A");
    a.flush();

    // Before fetching, B still shows its snapshot.
    assert_eq!(b.read("plain.txt"), PLAIN.as_bytes());
    assert_eq!(b.read("secret.yaml"), secret_plaintext());
    assert_eq!(
        std::fs::metadata(b.p("plain.txt")).expect("stat").len(),
        PLAIN.len() as u64
    );

    b.fetch();
    let t0 = Instant::now();
    let seen = wait_for(INVAL_GRACE, || {
        let p = std::fs::read(b.p("plain.txt")).ok()?;
        let s = std::fs::read(b.p("secret.yaml")).ok()?;
        (p == plain2 && s == secret2.as_bytes()).then_some(())
    });
    assert!(
        seen.is_some(),
        "B shows stale content {:?} after fetch_now (waited {:?}); secret has replicas: 9? {}",
        String::from_utf8_lossy(&std::fs::read(b.p("plain.txt")).unwrap_or_default()),
        t0.elapsed(),
        String::from_utf8_lossy(&std::fs::read(b.p("secret.yaml")).unwrap_or_default())
            .contains("replicas: 9")
    );
    assert_eq!(
        std::fs::metadata(b.p("plain.txt")).expect("stat").len(),
        plain2.len() as u64,
        "stale size in B's attribute cache"
    );
    assert!(
        wait_for(INVAL_GRACE, || b.p("new.txt").exists().then_some(())).is_some(),
        "new file not visible on B"
    );
    assert_eq!(b.read("new.txt"), b"new\n");
    assert!(
        wait_for(INVAL_GRACE, || (!b.p("dir/a.txt").exists()).then_some(())).is_some(),
        "file deleted on A still visible on B"
    );
    let names: Vec<String> = std::fs::read_dir(b.p("dir"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["sub"]);
    // History on B follows too.
    assert_eq!(
        b.read(&format!(".valuesfs/history/{seed}/plain.txt")),
        PLAIN.as_bytes()
    );
    assert_eq!(b.read(".valuesfs/history/HEAD/plain.txt"), plain2);
}

#[test]
fn different_keys_of_one_secret_edited_on_both_mounts_both_land() {
    let r = seeded_remote();
    let a = mount_remote(&r);
    let b = mount_remote(&r);
    // Both start from the seed; neither fetches before writing.
    put(
        &a.p("secret.yaml"),
        secret_with("replicas: 2", "replicas: 3").as_bytes(),
    );
    put(
        &b.p("secret.yaml"),
        secret_with("port: 5432", "port: 5433").as_bytes(),
    );
    a.flush();
    b.flush();
    a.flush();

    let out = sops_d_of_remote(&r, "secret.yaml");
    assert!(out.contains("replicas: 3"), "A's edit lost:\n{out}");
    assert!(out.contains("port: 5433"), "B's edit lost:\n{out}");
    let both = secret_with("replicas: 2", "replicas: 3").replace("port: 5432", "port: 5433");
    assert_eq!(
        String::from_utf8(remote_plain(&r, "secret.yaml").expect("secret")).expect("utf8"),
        both,
        "merged plaintext lost the formatting"
    );
    for m in [&a, &b] {
        m.fetch();
        let got = wait_for(INVAL_GRACE, || {
            let s = std::fs::read(m.p("secret.yaml")).ok()?;
            (s == both.as_bytes()).then_some(())
        });
        assert!(
            got.is_some(),
            "a mount does not show the merged secret: {}",
            m.read_str("secret.yaml")
        );
        let st = m.status();
        assert_eq!(pending_pushes(&st), 0, "{st}");
        assert!(conflict_ids(&st).is_empty(), "{st}");
    }
}

#[test]
fn same_key_changed_two_ways_is_a_conflict() {
    let r = seeded_remote();
    let a = mount_remote(&r);
    let b = mount_remote(&r);
    let ours_a = secret_with("replicas: 2", "replicas: 7");
    let ours_b = secret_with("replicas: 2", "replicas: 8");

    {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(a.p("secret.yaml"))
            .expect("open on A");
        f.write_all(ours_a.as_bytes()).expect("write on A");
        f.sync_all().expect("fsync on A (first, wins)");
        close_checked(f).expect("close on A");
    }
    let before = commits(&r);

    // B never fetched: its change of the same key loses.
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(b.p("secret.yaml"))
        .expect("open on B");
    f.write_all(ours_b.as_bytes()).expect("write on B");
    let res = f.sync_all();
    let _ = close_checked(f);
    match res {
        Ok(()) => panic!("fsync of the losing side of a conflict succeeded"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
    }

    // The remote keeps A's value; B's commit never landed.
    b.flush();
    assert_eq!(commits(&r), before, "{:?}", subjects(&r));
    let out = sops_d_of_remote(&r, "secret.yaml");
    assert!(out.contains("replicas: 7"), "{out}");

    // B's status lists the conflict, and its version is readable, decrypted.
    let st = b.status();
    let ids = conflict_ids(&st);
    assert_eq!(ids.len(), 1, "expected one conflict in B's status:\n{st}");
    assert!(
        status_paths(&st, "conflicts").contains(&"secret.yaml".to_string()),
        "{st}"
    );
    let listed: Vec<String> = std::fs::read_dir(b.p(".valuesfs/conflicts"))
        .expect("readdir conflicts")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, ids);
    let kept = b.read_str(&format!(".valuesfs/conflicts/{}/secret.yaml", ids[0]));
    assert_eq!(
        kept, ours_b,
        "the conflict does not hold B's version, decrypted"
    );
    // A is unaffected.
    assert!(conflict_ids(&a.status()).is_empty());

    // After a fetch B shows the remote's version and has nothing left to push.
    b.fetch();
    let got = wait_for(INVAL_GRACE, || {
        (std::fs::read(b.p("secret.yaml")).ok()? == ours_a.as_bytes()).then_some(())
    });
    assert!(
        got.is_some(),
        "B does not show the winning version after the conflict: {}",
        b.read_str("secret.yaml")
    );
    assert_eq!(pending_pushes(&b.status()), 0, "{}", b.status());
}

#[test]
fn remote_down_writes_succeed_and_push_later() {
    let r = seeded_remote();
    let m = mount_with(&r, None, |o| o.push_timeout = Duration::from_secs(2));
    let gone = r.dir().join("remote.gone");
    std::fs::rename(&r.path, &gone).expect("take the remote away");

    put(&m.p("plain.txt"), b"written offline\n");
    put(&m.p("offline.yaml"), b"token: abc\n");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.p("synced.txt"))
            .expect("open");
        f.write_all(b"fsynced offline\n").expect("write");
        let t0 = Instant::now();
        f.sync_all()
            .expect("fsync with the remote down must succeed once committed locally");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "fsync waited {:?}, over the push timeout",
            t0.elapsed()
        );
        close_checked(f).expect("close");
    }
    assert_eq!(m.read("plain.txt"), b"written offline\n");
    assert_eq!(m.read("offline.yaml"), b"token: abc\n");
    // The new file is committed once left alone for the grace period.
    let mut st = String::new();
    let counted = wait_for(Duration::from_secs(20), || {
        st = m.status();
        (pending_pushes(&st) >= 3).then_some(())
    });
    assert!(
        counted.is_some(),
        "pending_pushes should count 3 sessions:\n{st}"
    );

    std::fs::rename(&gone, &r.path).expect("bring the remote back");
    m.m()
        .master
        .flush(PUSH_WAIT)
        .expect("flush after the remote is back");
    assert_eq!(
        remote_raw(&r, "plain.txt").as_deref(),
        Some(&b"written offline\n"[..])
    );
    assert_eq!(
        remote_raw(&r, "synced.txt").as_deref(),
        Some(&b"fsynced offline\n"[..])
    );
    let raw = remote_raw(&r, "offline.yaml").expect("offline.yaml pushed");
    assert!(is_sops("offline.yaml", &raw));
    assert_eq!(decrypt_if_sops("offline.yaml", &raw), b"token: abc\n");
    assert_eq!(commits(&r), 4, "{:?}", subjects(&r));
    let st = m.status();
    assert_eq!(pending_pushes(&st), 0, "{st}");
}

#[test]
fn push_sync_close_returns_after_the_push() {
    let r = seeded_remote();
    let m = mount_with(&r, None, |o| o.push_sync = true);
    for i in 0..3 {
        let c = format!("sync {i}\n");
        put(&m.p("plain.txt"), c.as_bytes());
        // No flush: with --push sync the close itself waited for the push.
        assert_eq!(
            remote_raw(&r, "plain.txt").as_deref(),
            Some(c.as_bytes()),
            "close returned before the push"
        );
    }
    assert_eq!(commits(&r), 4);
}

#[test]
fn periodic_fetch_brings_remote_changes() {
    let r = seeded_remote();
    let m = mount_with(&r, None, |o| o.fetch_interval = Duration::from_secs(1));
    assert_eq!(m.read("plain.txt"), PLAIN.as_bytes());
    // Someone pushes with plain git.
    push_files(
        &r,
        &[("plain.txt", b"pushed by git\n"), ("other.txt", b"o\n")],
        "external",
    );
    let seen = wait_for(Duration::from_secs(8), || {
        (std::fs::read(m.p("plain.txt")).ok()? == b"pushed by git\n").then_some(())
    });
    assert!(
        seen.is_some(),
        "the periodic fetch never showed the remote change"
    );
    assert_eq!(m.read("other.txt"), b"o\n");
    // And a local edit on top of it lands on top of the external commit.
    put(&m.p("other.txt"), b"edited\n");
    m.flush();
    assert_eq!(subjects(&r)[1], "external");
    assert_eq!(
        remote_raw(&r, "other.txt").as_deref(),
        Some(&b"edited\n"[..])
    );
    assert_eq!(
        remote_raw(&r, "plain.txt").as_deref(),
        Some(&b"pushed by git\n"[..])
    );
}

/// A directory emptied on the other mount (its only file deleted) disappears on this one
/// after a fetch, even though this mount had looked it up before.
#[test]
fn directory_emptied_remotely_disappears_after_fetch() {
    let r = seeded_remote();
    let a = mount_remote(&r);
    let b = mount_remote(&r);
    assert!(b.p("dir/sub").is_dir());
    assert_eq!(b.read("dir/sub/b.txt"), b"beta\n");
    std::fs::remove_file(a.p("dir/sub/b.txt")).expect("unlink on A");
    a.flush();
    b.fetch();
    let gone = wait_for(INVAL_GRACE, || {
        (!b.p("dir/sub/b.txt").exists() && !b.p("dir/sub").exists()).then_some(())
    });
    let names: Vec<String> = std::fs::read_dir(b.p("dir"))
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        gone.is_some(),
        "dir/sub still visible on B after fetch (b.txt exists: {}, dir lists {names:?})",
        b.p("dir/sub/b.txt").exists()
    );
    assert_eq!(names, ["a.txt"]);
}

/// An edit that started before a fetch (the file was open while the other mount's change
/// came in) is merged with that change, key by key, instead of overwriting it.
#[test]
fn edit_started_before_a_fetch_merges_with_it() {
    let r = seeded_remote();
    let a = mount_remote(&r);
    let b = mount_remote(&r);
    // B opens the secret (as an editor would) and reads the old content.
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(b.p("secret.yaml"))
        .expect("open on B");
    let mut old = String::new();
    std::io::Read::read_to_string(&mut f, &mut old).expect("read");
    assert_eq!(old.as_bytes(), secret_plaintext());

    // Meanwhile A changes another key, and B fetches it.
    put(
        &a.p("secret.yaml"),
        secret_with("replicas: 2", "replicas: 6").as_bytes(),
    );
    a.flush();
    b.fetch();

    // B saves its edit of the old content through the handle opened before the fetch.
    let mine = old.replace("port: 5432", "port: 7000");
    f.set_len(0).expect("truncate");
    std::os::unix::fs::FileExt::write_all_at(&f, mine.as_bytes(), 0).expect("write");
    close_checked(f).expect("close of an edit that started before the fetch");
    b.flush();

    let both = secret_with("replicas: 2", "replicas: 6").replace("port: 5432", "port: 7000");
    assert_eq!(
        String::from_utf8(remote_plain(&r, "secret.yaml").expect("secret")).expect("utf8"),
        both,
        "B's save overwrote A's change or lost its own"
    );
    assert_eq!(b.read_str("secret.yaml"), both);
    assert!(conflict_ids(&b.status()).is_empty(), "{}", b.status());
}

/// `valuesfs conflicts ...` against a mount; (exit success, stdout, stderr).
fn conflicts_cli(m: &Mnt, args: &[&str]) -> (bool, String, String) {
    valuesfs_at(m, "conflicts", args)
}

/// A and B change `replicas` two ways; B (which never fetched) loses. Returns B's id.
fn lose_on_b(a: &Mnt, b: &Mnt, on_a: &str, on_b: &str) -> String {
    let cur = String::from_utf8(a.read("secret.yaml")).expect("utf8");
    let line = cur
        .lines()
        .find(|l| l.starts_with("replicas: "))
        .expect("replicas line")
        .to_string();
    for (m, v, must_fail) in [(a, on_a, false), (b, on_b, true)] {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.p("secret.yaml"))
            .expect("open");
        f.write_all(cur.replace(&line, &format!("replicas: {v}")).as_bytes())
            .expect("write");
        let res = f.sync_all();
        let _ = close_checked(f);
        assert_eq!(
            res.is_err(),
            must_fail,
            "fsync result on the {} side",
            if must_fail { "losing" } else { "winning" }
        );
    }
    let ids = conflict_ids(&b.status());
    ids.last().expect("a conflict on B").clone()
}

#[test]
fn conflicts_are_listed_shown_and_resolved_from_the_command_line() {
    let r = seeded_remote();
    let a = mount_remote(&r);
    let b = mount_remote(&r);
    let id = lose_on_b(&a, &b, "7", "8");

    let (ok, list, err) = conflicts_cli(&b, &[]);
    assert!(ok, "{err}");
    assert!(list.contains(&id) && list.contains("secret.yaml"), "{list}");
    let (ok, shown, err) = conflicts_cli(&b, &["show", &id]);
    assert!(ok, "{err}");
    assert!(shown.contains("+replicas: 8"), "mine, decrypted: {shown}");
    assert!(shown.contains("+replicas: 7"), "theirs, decrypted: {shown}");
    assert!(shown.contains("-replicas: 2"), "the base: {shown}");
    assert!(!shown.contains("ENC["), "{shown}");
    let (ok, _, err) = conflicts_cli(&b, &["show", "nope"]);
    assert!(!ok && err.contains("no conflict"), "{err}");

    // Take mine: B's value lands on the remote, on top of A's; the conflict is gone.
    let (ok, said, err) = conflicts_cli(&b, &["resolve", &id, "--take", "mine"]);
    assert!(ok, "{err}");
    assert!(said.contains("took mine"), "{said}");
    b.flush();
    assert!(sops_d_of_remote(&r, "secret.yaml").contains("replicas: 8"));
    assert!(conflict_ids(&b.status()).is_empty(), "{}", b.status());
    assert!(b.read_str("secret.yaml").contains("replicas: 8"));

    // Take theirs: the remote keeps A's value. Dismiss: forgotten, nothing changes.
    a.fetch();
    let id2 = lose_on_b(&a, &b, "9", "10");
    let (ok, _, err) = conflicts_cli(&b, &["resolve", &id2, "--take", "theirs"]);
    assert!(ok, "{err}");
    a.fetch();
    let id3 = lose_on_b(&a, &b, "11", "12");
    let before = commits(&r);
    let (ok, _, err) = conflicts_cli(&b, &["dismiss", &id3]);
    assert!(ok, "{err}");
    b.flush();
    assert_eq!(commits(&r), before);
    assert!(sops_d_of_remote(&r, "secret.yaml").contains("replicas: 11"));
    let (ok, list, _) = conflicts_cli(&b, &[]);
    assert!(ok && list.is_empty(), "{list}");
}

/// `valuesfs log PATH` run inside a mount reads the daemon's history: the commit a
/// write-close made, with the SOPS file's change decrypted.
#[test]
fn log_inside_a_mount_shows_decrypted_history() {
    let remote = seeded_remote();
    let a = mount_remote(&remote);
    put(
        &a.p("secret.yaml"),
        secret_with("replicas: 2", "replicas: 9").as_bytes(),
    );
    a.flush();
    let out = std::process::Command::new(bin())
        .args(["log", "-n", "1", "secret.yaml"])
        .current_dir(a.p(""))
        .env("SOPS_AGE_KEY_FILE", &remote.key)
        .output()
        .expect("valuesfs log");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("commit {}\n", remote_head(&remote))),
        "{text}"
    );
    assert!(text.contains("-replicas: 2\n+replicas: 9\n"), "{text}");
    assert!(!text.contains("ENC["), "{text}");
    let (ok, all, _) = valuesfs_at(&a, "log", &[]);
    assert!(ok && all.matches("commit ").count() >= 2, "{all}");
}

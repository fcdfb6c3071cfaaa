//! Two independent masters (two state dirs) against one remote, 8 writer threads each:
//! every change must be on the remote afterwards, none overwritten, no invented conflict.
//! `VALUESFS_TEST_SESSIONS` sets the sessions per master (default 200).
//! The same load on one real SOPS file (the shared vector) with `ValuesMerge`.

mod common;
mod repo_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use repo_common::*;
use valuesfs::repo::{Master, MasterHandle, Session, Ticket};

const THREADS: usize = 8;
const KV_FILES: usize = 3;

/// What one session does: a new key in a shared `.kv` file, or a new file.
fn plan(m: usize, t: usize, i: usize) -> (String, String, String) {
    if i.is_multiple_of(2) {
        (
            format!("shared/{}.kv", (i / 2) % KV_FILES),
            format!("m{m}t{t}i{i}"),
            format!("{m}.{t}.{i}"),
        )
    } else {
        (
            format!("files/m{m}/t{t}/{i}.txt"),
            String::new(),
            format!("{m}/{t}/{i}\n"),
        )
    }
}

fn writer(h: MasterHandle, m: usize, t: usize, n: usize) -> Vec<Ticket> {
    let r = h.reader().expect("reader");
    let mut tickets = Vec::new();
    for i in (t..n).step_by(THREADS) {
        let snap = h.snapshot();
        let (path, key, val) = plan(m, t, i);
        let mut s = Session::new(snap.commit);
        if key.is_empty() {
            s.write(path, val);
        } else {
            let cur = r
                .read(&snap, &path)
                .expect("read")
                .map(|x| x.0)
                .unwrap_or_default();
            let mut kv: BTreeMap<String, String> = String::from_utf8_lossy(&cur)
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            kv.insert(key, val);
            s.write(path, render_kv(&kv));
        }
        let mut tk = h.submit(s).expect("submit");
        // Wait for the commit every few sessions so the writers interleave with pushes.
        if i.is_multiple_of(3) {
            tk.wait_committed().expect("committed");
        }
        tickets.push(tk);
    }
    tickets
}

fn run(url_a: &str, url_b: &str, remote: &Path, tmp: &Path) {
    cli_commit(tmp, url_a, &[("README", "values\n")], "seed");
    let n = sessions_per_master();
    let masters = [
        Master::start(config(url_a, &tmp.join("state-a"))).expect("a"),
        Master::start(config(url_b, &tmp.join("state-b"))).expect("b"),
    ];
    let t0 = Instant::now();
    let mut joins = Vec::new();
    for (m, h) in masters.iter().enumerate() {
        for t in 0..THREADS {
            let h = h.clone();
            joins.push(std::thread::spawn(move || writer(h, m, t, n)));
        }
    }
    let mut tickets = Vec::new();
    for j in joins {
        tickets.extend(j.join().expect("writer"));
    }
    for mut tk in tickets {
        tk.wait_pushed(Duration::from_secs(120))
            .expect("every session pushed");
    }
    let elapsed = t0.elapsed();
    settled(&masters, 2 * n, elapsed, "");

    fsck(remote);
    let co = clone(tmp, url_a);
    let files = read_tree(co.path());
    for m in 0..2 {
        for i in 0..n {
            let t = i % THREADS;
            let (path, key, val) = plan(m, t, i);
            let content = files.get(&path).unwrap_or_else(|| panic!("{path} missing"));
            if key.is_empty() {
                assert_eq!(*content, val, "{path}");
            } else {
                let line = format!("{key}={val}\n");
                assert!(content.contains(&line), "{path} lost {line}");
            }
        }
    }
    // One commit per session plus the seed: nothing duplicated, nothing squashed away.
    let count: usize = git(remote, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .expect("count");
    assert_eq!(count, 2 * n + 1);
    // Both masters end on the remote head.
    let head = git(remote, &["rev-parse", "main"]).trim().to_string();
    for h in &masters {
        assert_eq!(
            h.snapshot().commit.map(|c| c.to_string()),
            Some(head.clone())
        );
    }
}

#[test]
fn two_masters_one_bare_repo_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    run(&url, &url, &remote, tmp.path());
}

#[test]
fn two_masters_one_git_daemon() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("srv");
    std::fs::create_dir(&base).expect("mkdir");
    let remote = bare(&base, "r.git");
    let d = Daemon::start(&base);
    let url = d.url("r.git");
    run(&url, &url, &remote, tmp.path());
}

#[test]
fn one_master_by_path_one_by_daemon() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("srv");
    std::fs::create_dir(&base).expect("mkdir");
    let remote = bare(&base, "r.git");
    let d = Daemon::start(&base);
    run(
        remote.to_str().expect("utf8"),
        &d.url("r.git"),
        &remote,
        tmp.path(),
    );
}

const SECRET: &str = "secrets/values.yaml";

/// The key and value session `i` of thread `t` on master `m` adds to the SOPS file.
fn sops_entry(m: usize, t: usize, i: usize) -> (String, String) {
    (format!("m{m}t{t}i{i}"), format!("v{m}.{t}.{i}"))
}

/// Each session reads the SOPS file at its snapshot, decrypts it, appends its own key
/// and re-encrypts it against that version (as an editor through the mount would).
fn sops_writer(h: MasterHandle, m: usize, t: usize, n: usize) -> Vec<(usize, Ticket)> {
    let keys = common::keyring();
    let r = h.reader().expect("reader");
    let mut tickets = Vec::new();
    for i in (t..n).step_by(THREADS) {
        let snap = h.snapshot();
        let (cur, _) = r.read(&snap, SECRET).expect("read").expect("exists");
        let opened = valuesfs::crypto::decrypt(&cur, valuesfs::crypto::Format::Yaml, &keys)
            .expect("decrypt at the snapshot");
        let mut text = String::from_utf8(opened.plaintext.to_vec()).expect("utf8");
        let (k, v) = sops_entry(m, t, i);
        text.push_str(&format!("{k}: {v}\n"));
        let out = opened.reencrypt(text.as_bytes()).expect("reencrypt");
        let mut s = Session::new(snap.commit);
        s.write(SECRET, out);
        let mut tk = h.submit(s).expect("submit");
        if i.is_multiple_of(3) {
            tk.wait_committed().expect("committed");
        }
        tickets.push((i, tk));
    }
    tickets
}

/// 2 masters x 8 threads x `VALUESFS_TEST_SESSIONS` sessions, every one adding its own
/// key to the shared vector `enc/values.yaml`, merged by `ValuesMerge` with the vector
/// keyring: every acknowledged key lands, nothing else changes, `sops -d` reads it.
#[test]
fn two_masters_sops_merge_on_one_real_sops_file() {
    use std::sync::Arc;
    use valuesfs::repo::ValuesMerge;
    let tmp = tempfile::tempdir().expect("tmp");
    let key = common::private_key(tmp.path());
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    let vector = common::vectors().join("enc/values.yaml");
    let original = std::fs::read_to_string(&vector).expect("vector");
    cli_commit(tmp.path(), &url, &[(SECRET, &original)], "seed");
    let n = sessions_per_master();
    let sops_config = |state: &str| {
        let mut c = config(&url, &tmp.path().join(state));
        c.merger = Arc::new(ValuesMerge::new(Arc::new(common::keyring())));
        c
    };
    let masters = [
        Master::start(sops_config("state-a")).expect("a"),
        Master::start(sops_config("state-b")).expect("b"),
    ];
    let t0 = Instant::now();
    let mut joins = Vec::new();
    for (m, h) in masters.iter().enumerate() {
        for t in 0..THREADS {
            let h = h.clone();
            joins.push(std::thread::spawn(move || (m, t, sops_writer(h, m, t, n))));
        }
    }
    let mut acked = Vec::new();
    for j in joins {
        let (m, t, tickets) = j.join().expect("writer");
        for (i, mut tk) in tickets {
            tk.wait_pushed(Duration::from_secs(300))
                .unwrap_or_else(|e| panic!("session m{m}t{t}i{i} not pushed: {e}"));
            acked.push(sops_entry(m, t, i));
        }
    }
    let elapsed = t0.elapsed();
    assert_eq!(acked.len(), 2 * n);
    settled(&masters, 2 * n, elapsed, "SOPS ");

    fsck(&remote);
    let co = clone(tmp.path(), &url);
    let file = co.path().join(SECRET);
    // The real sops reads the result; every acknowledged key is in it, once.
    let after = String::from_utf8(common::sops_decrypt(&file, &key, &[])).expect("utf8");
    let added: BTreeMap<&str, &str> = after
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.starts_with('m') && k.contains('t') && k.contains('i'))
        .collect();
    for (k, v) in &acked {
        assert_eq!(
            added.get(k.as_str()),
            Some(&v.as_str()),
            "acknowledged {k} lost"
        );
    }
    assert_eq!(added.len(), acked.len(), "keys nobody added");
    // Everything else is the vector as sops prints it.
    let before = String::from_utf8(common::sops_decrypt(&vector, &key, &[])).expect("utf8");
    let rest: String = after
        .lines()
        .filter(|l| {
            l.split_once(": ")
                .is_none_or(|(k, _)| !added.contains_key(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(rest, before, "the vector's own values changed");
    // And our codec opens it with the vector keyring.
    valuesfs::crypto::decrypt(
        &std::fs::read(&file).expect("read"),
        valuesfs::crypto::Format::Yaml,
        &common::keyring(),
    )
    .expect("valuesfs decrypts the merged file");
    // One commit per session plus the seed.
    let count: usize = git(&remote, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .expect("count");
    assert_eq!(count, 2 * n + 1);
}

/// After the run: every master, fetched, has no conflict and nothing unpushed; prints
/// the throughput.
fn settled(
    masters: &[valuesfs::repo::MasterHandle],
    sessions: usize,
    elapsed: Duration,
    what: &str,
) {
    for h in masters {
        h.fetch_now().expect("fetch");
        let st = h.status().expect("status");
        assert!(
            st.conflicts.is_empty(),
            "invented conflict: {:?}",
            st.conflicts
        );
        assert_eq!(st.ahead, 0);
    }
    eprintln!(
        "{sessions} {what}sessions through {} masters in {elapsed:.2?} ({:.0}/s)",
        masters.len(),
        sessions as f64 / elapsed.as_secs_f64()
    );
}

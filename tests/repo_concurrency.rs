//! Two independent masters (two state dirs) against one remote, 8 writer threads each:
//! every change must be on the remote afterwards, none overwritten, no invented conflict.
//! `VALUESFS_TEST_SESSIONS` sets the sessions per master (default 200).

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
    for h in &masters {
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
        "{} sessions through 2 masters in {:.2?} ({:.0}/s)",
        2 * n,
        elapsed,
        (2 * n) as f64 / elapsed.as_secs_f64()
    );

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

//! Faults: unreachable remotes, `kill -9` mid-batch, racing writers, push-time conflicts.

mod repo_common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use repo_common::*;
use valuesfs::repo::{Error, Master, Session, Ticket};

const T: Duration = Duration::from_secs(60);

fn submit_files(m: &valuesfs::repo::MasterHandle, prefix: &str, n: usize) -> Vec<Ticket> {
    (0..n)
        .map(|i| {
            let mut s = Session::new(m.snapshot().commit);
            s.write(format!("{prefix}/{i}.txt"), format!("{prefix} {i}\n"));
            let mut t = m.submit(s).expect("submit");
            t.wait_committed()
                .expect("committed while the remote is down");
            t
        })
        .collect()
}

fn assert_files(tmp: &std::path::Path, url: &str, prefix: &str, n: usize) {
    let co = clone(tmp, url);
    let files = read_tree(co.path());
    for i in 0..n {
        assert_eq!(
            files.get(&format!("{prefix}/{i}.txt")).map(String::as_str),
            Some(format!("{prefix} {i}\n").as_str())
        );
    }
}

#[test]
fn bare_repo_moved_away_then_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    cli_commit(tmp.path(), &url, &[("README", "r\n")], "seed");
    let m = Master::start(config(&url, &tmp.path().join("state"))).expect("start");
    submit_files(&m, "before", 3).iter_mut().for_each(|t| {
        t.wait_pushed(T).expect("pushed");
    });

    let away = tmp.path().join("away.git");
    std::fs::rename(&remote, &away).expect("rename away");
    let mut tickets = submit_files(&m, "during", 20);
    assert!(matches!(
        tickets[0].wait_pushed(Duration::from_millis(500)),
        Err(Error::Timeout)
    ));
    let st = m.status().expect("status");
    assert_eq!(st.pending_pushes, 20, "{}", st.to_yaml());
    assert!(st.last_push_error.is_some(), "{}", st.to_yaml());

    std::fs::rename(&away, &remote).expect("rename back");
    for t in &mut tickets {
        t.wait_pushed(T).expect("pushed after the remote came back");
    }
    let st = m.status().expect("status");
    assert_eq!(st.pending_pushes, 0);
    assert_eq!(st.last_push_error, None);
    fsck(&remote);
    assert_files(tmp.path(), &url, "during", 20);
    assert_eq!(git(&remote, &["rev-list", "--count", "main"]).trim(), "24");
}

#[test]
fn git_daemon_stopped_then_restarted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("srv");
    std::fs::create_dir(&base).expect("mkdir");
    let remote = bare(&base, "r.git");
    let mut d = Daemon::start(&base);
    let url = d.url("r.git");
    cli_commit(tmp.path(), &url, &[("README", "r\n")], "seed");
    let m = Master::start(config(&url, &tmp.path().join("state"))).expect("start");

    d.stop();
    let mut tickets = submit_files(&m, "offline", 15);
    assert!(matches!(
        tickets[14].wait_pushed(Duration::from_millis(500)),
        Err(Error::Timeout)
    ));
    assert!(
        m.fetch_now().is_err(),
        "fetch must fail while the daemon is down"
    );
    let st = m.status().expect("status");
    assert_eq!(st.pending_pushes, 15);
    assert!(st.last_fetch_error.is_some());

    let _d2 = Daemon::start_on(&base, d.port);
    for t in &mut tickets {
        t.wait_pushed(T).expect("pushed after the daemon came back");
    }
    fsck(&remote);
    assert_files(tmp.path(), &url, "offline", 15);
    assert_eq!(git(&remote, &["rev-list", "--count", "main"]).trim(), "16");
}

#[test]
fn push_races_cli_writer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    cli_commit(tmp.path(), &url, &[("README", "r\n")], "seed");
    let m = Master::start(config(&url, &tmp.path().join("state"))).expect("start");

    // A git CLI user pushing to the same bare repository at the same time.
    let cli_url = url.clone();
    let cli_tmp = tmp.path().to_path_buf();
    let cli = std::thread::spawn(move || {
        let w = tempfile::tempdir_in(&cli_tmp).expect("tmp");
        git(
            &cli_tmp,
            &["clone", "-q", &cli_url, w.path().to_str().expect("utf8")],
        );
        for i in 0..30 {
            std::fs::write(w.path().join(format!("cli{i}.txt")), format!("{i}\n")).expect("w");
            git(w.path(), &["add", "."]);
            git(w.path(), &["commit", "-q", "-m", &format!("cli {i}")]);
            // Like any git user: on rejection, pull --rebase and push again.
            let mut ok = false;
            for _ in 0..100 {
                if git_ok(w.path(), &["push", "-q", "origin", "HEAD:main"]) {
                    ok = true;
                    break;
                }
                git(w.path(), &["pull", "-q", "--rebase", "origin", "main"]);
            }
            assert!(ok, "cli push never succeeded");
        }
    });
    let mut tickets = Vec::new();
    for i in 0..60 {
        let mut s = Session::new(m.snapshot().commit);
        s.write(format!("m/{i}.txt"), format!("m {i}\n"));
        tickets.push(m.submit(s).expect("submit"));
        std::thread::sleep(Duration::from_millis(2));
    }
    cli.join().expect("cli writer");
    for t in &mut tickets {
        t.wait_pushed(T).expect("pushed");
    }
    m.fetch_now().expect("fetch");
    fsck(&remote);
    let co = clone(tmp.path(), &url);
    let files = read_tree(co.path());
    for i in 0..30 {
        assert_eq!(files.get(&format!("cli{i}.txt")), Some(&format!("{i}\n")));
    }
    for i in 0..60 {
        assert_eq!(files.get(&format!("m/{i}.txt")), Some(&format!("m {i}\n")));
    }
    assert_eq!(git(&remote, &["rev-list", "--count", "main"]).trim(), "91");
    assert!(m.status().expect("status").conflicts.is_empty());
}

#[test]
fn push_time_conflict_keeps_the_remote_version() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    cli_commit(tmp.path(), &url, &[("v.kv", "a=0\nb=0\n")], "seed");
    let a = Master::start(config(&url, &tmp.path().join("a"))).expect("a");
    let b = Master::start(config(&url, &tmp.path().join("b"))).expect("b");
    b.fetch_now().expect("b has seen the seed");

    // A publishes first.
    let mut s = Session::new(a.snapshot().commit);
    s.write("v.kv", "a=1\nb=0\n");
    a.submit(s)
        .expect("submit")
        .wait_pushed(T)
        .expect("a pushed");

    // B has not fetched: its sessions commit locally, then meet A's push. The
    // conflicting one sits between two that replay cleanly.
    let base = b.snapshot().commit;
    let mut s0 = Session::new(base);
    s0.write("first.txt", "f\n");
    let mut t0 = b.submit(s0).expect("submit");
    let mut s1 = Session::new(base);
    s1.write("v.kv", "a=2\nb=0\n");
    let mut s2 = Session::new(base);
    s2.write("v.kv", "a=0\nb=7\n").write("other.txt", "o\n");
    let mut t1 = b.submit(s1).expect("submit");
    let mut t2 = b.submit(s2).expect("submit");
    t1.wait_committed().expect("committed locally");
    t2.wait_committed().expect("committed locally");
    let err = t1.wait_pushed(T).expect_err("moved to conflicts");
    let info = err.conflict().expect("conflict").clone();
    assert_eq!(info.path, "v.kv");
    assert_eq!(info.key.as_deref(), Some("a"));
    assert_eq!(info.phase, "push");
    t2.wait_pushed(T).expect("the later session is replayed");
    t0.wait_pushed(T).expect("the earlier session is replayed");

    fsck(&remote);
    let co = clone(tmp.path(), &url);
    let files = read_tree(co.path());
    assert_eq!(
        files["v.kv"], "a=1\nb=7\n",
        "remote version stands, B's other key lands"
    );
    assert_eq!(files["other.txt"], "o\n");
    assert_eq!(files["first.txt"], "f\n");
    // Both versions recoverable.
    let kept = git(
        &tmp.path().join("b/repo.git"),
        &["show", &format!("{}:v.kv", info.refname)],
    );
    assert_eq!(kept, "a=2\nb=0\n");
    let st = b.status().expect("status");
    assert_eq!(st.conflicts.len(), 1);
    assert_eq!(st.ahead, 0);
}

/// A power cut loses what only the page cache held; the journal, synced once per batch,
/// does not. Modelled by copying the state dir as it was at a checkpoint, then putting
/// the journal the master had after more acknowledged batches into that copy: a master
/// started on the copy has every acknowledged session, pushes each once, and leaves a
/// repository git fsck accepts, with the journal emptied and the objects packed.
#[test]
fn batches_lost_from_the_page_cache_come_back_from_the_journal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    cli_commit(tmp.path(), &url, &[("README", "r\n")], "seed");
    let state = tmp.path().join("state");
    let mut cfg = config(&url, &state);
    // No checkpoint while the test runs: the acknowledged batches live in the journal.
    cfg.checkpoint_every = usize::MAX;
    cfg.checkpoint_idle = Duration::from_secs(3600);
    Master::start(cfg.clone()).expect("start").shutdown();
    let copy = tmp.path().join("copy");
    let cp = Command::new("cp")
        .args([
            "-a",
            state.to_str().expect("utf8"),
            copy.to_str().expect("utf8"),
        ])
        .status()
        .expect("cp");
    assert!(cp.success());
    let loose_count = |repo: &std::path::Path| {
        git(repo, &["count-objects", "-v"])
            .lines()
            .find_map(|l| l.strip_prefix("count: ").map(str::to_string))
            .expect("count")
    };
    let loose_before = loose_count(&copy.join("repo.git"));

    // The remote is away, so nothing leaves this master: only the journal has them.
    let away = tmp.path().join("away.git");
    std::fs::rename(&remote, &away).expect("rename away");
    let m = Master::start(cfg.clone()).expect("restart");
    let acked = submit_files(&m, "j", 5);
    let journal = std::fs::read(state.join("journal")).expect("journal");
    assert!(
        !journal.is_empty(),
        "acknowledged batches are in the journal"
    );
    drop(acked);
    m.shutdown();
    drop(m);
    std::fs::write(copy.join("journal"), &journal).expect("journal into the copy");
    std::fs::rename(&away, &remote).expect("rename back");

    let m = Master::start(config(&url, &copy)).expect("start on the copy");
    m.flush(T).expect("pushed from the copy");
    m.shutdown();
    assert_files(tmp.path(), &url, "j", 5);
    assert_eq!(git(&remote, &["rev-list", "--count", "main"]).trim(), "6");
    let repo = copy.join("repo.git");
    fsck(&repo);
    assert_eq!(std::fs::metadata(copy.join("journal")).expect("j").len(), 0);
    // The replayed objects went into a pack: no loose object was left behind.
    assert_eq!(loose_count(&repo), loose_before);
}

/// The child process of the kill -9 tests. Each of those tests re-executes this test
/// binary with `--exact <its own name>` and these variables set; the test then sees them
/// and becomes the child (see `child_master_process`) instead of the parent. No test is a
/// child entry point only, so none can pass without doing anything.
const CHILD_STATE: &str = "VALUESFS_CHILD_STATE";
const CHILD_URL: &str = "VALUESFS_CHILD_URL";
const CHILD_N: &str = "VALUESFS_CHILD_N";

/// When started as the child: run it (never returns). Otherwise return to the parent.
fn run_as_child_if_asked() {
    let (state, url, n) = (
        std::env::var(CHILD_STATE),
        std::env::var(CHILD_URL),
        std::env::var(CHILD_N),
    );
    match (state, url, n) {
        (Ok(state), Ok(url), Ok(n)) => child_master_process(&state, &url, &n),
        (Err(_), Err(_), Err(_)) => {}
        other => panic!("child environment half set: {other:?}"),
    }
}

/// Runs a master, submits sessions from 8 threads and prints `ACK <i>` after each commit
/// ack, until the parent kills it. Exits non-zero if a session fails.
fn child_master_process(state: &str, url: &str, n: &str) -> ! {
    let n: usize = n.parse().expect("n");
    let m = Master::start(config(url, std::path::Path::new(state))).expect("start");
    let mut joins = Vec::new();
    for t in 0..8 {
        let m = m.clone();
        joins.push(std::thread::spawn(move || {
            for i in (t..n).step_by(8) {
                let mut s = Session::new(m.snapshot().commit);
                s.write(format!("kill/{i}.txt"), format!("{i}\n"));
                m.submit(s)
                    .expect("submit")
                    .wait_committed()
                    .expect("committed");
                let out = std::io::stdout();
                let mut out = out.lock();
                writeln!(out, "ACK {i}").expect("stdout");
                out.flush().expect("flush");
            }
        }));
    }
    for j in joins {
        if j.join().is_err() {
            std::process::exit(101);
        }
    }
    // All sessions acknowledged before the kill: the parent reports that as a failure.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn kill_9_mid_batch_then_restart() {
    run_as_child_if_asked();
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    kill_9_then_restart("kill_9_mid_batch_then_restart", tmp.path(), &remote, &url);
}

#[test]
fn kill_9_mid_batch_then_restart_git_daemon() {
    run_as_child_if_asked();
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("srv");
    std::fs::create_dir(&base).expect("mkdir");
    let remote = bare(&base, "r.git");
    let d = Daemon::start(&base);
    kill_9_then_restart(
        "kill_9_mid_batch_then_restart_git_daemon",
        tmp.path(),
        &remote,
        &d.url("r.git"),
    );
}

/// `test`: the name of the calling test, which the child runs as (see above).
fn kill_9_then_restart(test: &str, tmp: &std::path::Path, remote: &std::path::Path, url: &str) {
    let url = url.to_string();
    cli_commit(tmp, &url, &[("README", "r\n")], "seed");
    let state = tmp.join("state");
    let n = 400;
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_STATE, &state)
        .env(CHILD_URL, &url)
        .env(CHILD_N, n.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.strip_prefix("ACK ") {
                let _ = tx.send(i.trim().parse::<usize>().expect("ack number"));
            }
        }
    });
    let mut acked = BTreeSet::new();
    let t0 = Instant::now();
    while acked.len() < 150 {
        let i = rx.recv_timeout(T).expect("child acks");
        acked.insert(i);
        assert!(t0.elapsed() < T, "child too slow");
    }
    child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    child.wait().expect("reap");
    reader.join().expect("reader");
    // Acks printed before the kill still count.
    acked.extend(rx.try_iter());
    assert!(acked.len() < n, "the child finished before being killed");

    // Restart on the same state dir: everything acknowledged reaches the remote.
    let m = Master::start(config(&url, &state)).expect("restart");
    m.flush(T).expect("all pushed");
    m.fetch_now().expect("fetch");
    fsck(remote);
    let co = clone(tmp, &url);
    let files = read_tree(co.path());
    for i in &acked {
        assert_eq!(
            files.get(&format!("kill/{i}.txt")),
            Some(&format!("{i}\n")),
            "acknowledged session {i} lost"
        );
    }
    // Exactly once: every session's file is added by exactly one commit.
    let log = git(remote, &["log", "--format=", "--name-only", "main"]);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for l in log.lines().filter(|l| !l.is_empty()) {
        *seen.entry(l).or_default() += 1;
    }
    assert!(
        seen.values().all(|c| *c == 1),
        "duplicated sessions: {seen:?}"
    );
    let commits: usize = git(remote, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .expect("count");
    assert_eq!(commits, seen.len(), "one commit per file (seed included)");
    eprintln!(
        "killed after {} acks; {} sessions on the remote",
        acked.len(),
        commits - 1
    );
}

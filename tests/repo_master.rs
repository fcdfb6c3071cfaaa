//! Single-master behaviour against real remotes, checked with the git CLI.

mod repo_common;

use std::time::Duration;

use repo_common::*;
use valuesfs::repo::{Error, FileMode, HeadChangeCause, Master, Session};

const T: Duration = Duration::from_secs(30);

fn exercise(url: &str, remote_dir: &std::path::Path, tmp: &std::path::Path) {
    cli_commit(
        tmp,
        url,
        &[("seed.txt", "seed\n"), ("dir/old.txt", "old\n")],
        "seed",
    );
    let m = Master::start(config(url, &tmp.join("state"))).expect("start");
    let base = m.snapshot();
    assert!(base.commit.is_some());

    let mut s = Session::new(base.commit);
    s.write("a.txt", "hello\n")
        .write("deep/er/b.txt", "b\n")
        .write_mode("run.sh", "#!/bin/sh\necho hi\n", FileMode::Executable)
        .symlink("link", "a.txt")
        .rename("dir/old.txt", "dir/new.txt");
    let mut t = m.submit(s).expect("submit");
    let c1 = t.wait_committed().expect("committed");
    let pushed = t.wait_pushed(T).expect("pushed");
    assert_eq!(pushed, c1);
    assert_eq!(m.snapshot().commit, Some(c1));

    let mut s = Session::new(Some(c1));
    s.delete("seed.txt")
        .set_executable("run.sh", false)
        .author("Ann", "ann@x");
    s.message("second");
    let mut t = m.submit(s).expect("submit");
    t.wait_pushed(T).expect("pushed");

    // The reader sees what was committed.
    let r = m.reader().expect("reader");
    let snap = m.snapshot();
    assert_eq!(
        r.read(&snap, "deep/er/b.txt").expect("read"),
        Some((b"b\n".to_vec(), FileMode::Regular))
    );
    assert!(r.read(&snap, "seed.txt").expect("read").is_none());
    let names: Vec<String> = r
        .list(&snap, "")
        .expect("list")
        .expect("dir")
        .entries
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a.txt", "deep", "dir", "link", "run.sh"]);

    // The git CLI is the reference.
    fsck(remote_dir);
    let log = git(remote_dir, &["log", "--format=%an|%s", "main"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert_eq!(lines[0], "Ann|second");
    assert!(
        lines[1].starts_with("valuesfs|valuesfs: update 6 files"),
        "{log}"
    );
    let co = clone(tmp, url);
    let files = read_tree(co.path());
    assert_eq!(files.get("a.txt").map(String::as_str), Some("hello\n"));
    assert_eq!(files.get("dir/new.txt").map(String::as_str), Some("old\n"));
    assert!(!files.contains_key("dir/old.txt"));
    assert!(!files.contains_key("seed.txt"));
    let ls = git(co.path(), &["ls-files", "-s"]);
    assert!(ls.contains("120000") && ls.contains("link"), "{ls}");
    assert!(ls.contains("100644") && ls.contains("run.sh"), "{ls}");
    let st = m.status().expect("status");
    assert_eq!(st.ahead, 0);
    assert_eq!(st.pending_pushes, 0);
    assert_eq!(st.head, st.remote_head);
    m.shutdown();
}

#[test]
fn sessions_reach_a_bare_repo_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    exercise(remote.to_str().expect("utf8"), &remote, tmp.path());
}

#[test]
fn sessions_reach_a_file_url() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    exercise(&format!("file://{}", remote.display()), &remote, tmp.path());
}

#[test]
fn sessions_reach_git_daemon() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = tmp.path().join("srv");
    std::fs::create_dir(&base).expect("mkdir");
    let remote = bare(&base, "r.git");
    let d = Daemon::start(&base);
    exercise(&d.url("r.git"), &remote, tmp.path());
}

#[test]
fn empty_remote_gets_a_root_commit_and_state_dir_is_adopted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).expect("existing empty state dir");
    let url = remote.to_str().expect("utf8");
    let m = Master::start(config(url, &state)).expect("start");
    assert_eq!(m.snapshot().commit, None);
    let mut s = Session::new(None);
    s.write("x.kv", "a=1\n");
    let mut t = m.submit(s).expect("submit");
    let c = t.wait_pushed(T).expect("pushed");
    m.shutdown();
    drop(m);

    // A restart on the same state dir picks up where it stopped.
    let m = Master::start(config(url, &state)).expect("restart");
    assert_eq!(m.snapshot().commit, Some(c));
    // One master per state dir.
    match Master::start(config(url, &state)) {
        Err(Error::StateDirBusy(_)) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second master on one state dir"),
    }
    fsck(&remote);
    assert_eq!(git(&remote, &["rev-parse", "main"]).trim(), c.to_string());
    drop(m);
    // A state dir serves one remote for life.
    let other = bare(tmp.path(), "other.git");
    match Master::start(config(other.to_str().expect("utf8"), &state)) {
        Err(Error::StateDirMismatch { .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("state dir reused for another remote"),
    }
}

#[test]
fn stale_bases_merge_text_as_git_does() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8");
    cli_commit(
        tmp.path(),
        url,
        &[("f.txt", "1\n2\n3\n4\n5\n6\n7\n8\n")],
        "seed",
    );
    let m = Master::start(config(url, &tmp.path().join("state"))).expect("start");
    let base = m.snapshot().commit;

    let mut a = Session::new(base);
    a.write("f.txt", "one\n2\n3\n4\n5\n6\n7\n8\n");
    m.commit(a).expect("a");
    // Same base, a non-overlapping edit: merges.
    let mut b = Session::new(base);
    b.write("f.txt", "1\n2\n3\n4\n5\n6\n7\neight\n");
    m.commit(b).expect("b merges");
    // Same base, overlapping edit: conflict naming the path, no key for text.
    let mut c = Session::new(base);
    c.write("f.txt", "uno\n2\n3\n4\n5\n6\n7\n8\n");
    let err = m.commit(c).expect_err("overlap conflicts");
    let info = err.conflict().expect("conflict error").clone();
    assert_eq!(info.path, "f.txt");
    assert_eq!(info.key, None);
    m.flush(T).expect("flush");

    let co = clone(tmp.path(), url);
    assert_eq!(
        std::fs::read_to_string(co.path().join("f.txt")).expect("read"),
        "one\n2\n3\n4\n5\n6\n7\neight\n"
    );
    // The rejected version is recoverable from the conflicts ref of the master's repo.
    let state_repo = tmp.path().join("state/repo.git");
    let kept = git(&state_repo, &["show", &format!("{}:f.txt", info.refname)]);
    assert_eq!(kept, "uno\n2\n3\n4\n5\n6\n7\n8\n");
    // Not pushed: conflicts stay local.
    assert!(!git(&remote, &["for-each-ref"]).contains("conflicts"));
}

#[test]
fn kv_sessions_on_different_keys_both_land_same_key_conflicts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8");
    cli_commit(
        tmp.path(),
        url,
        &[("app/values.kv", "a=0\nb=0\nc=0\n")],
        "seed",
    );
    let m = Master::start(config(url, &tmp.path().join("state"))).expect("start");
    let base = m.snapshot().commit;
    let mut s1 = Session::new(base);
    s1.write("app/values.kv", "a=1\nb=0\nc=0\n");
    let mut s2 = Session::new(base);
    s2.write("app/values.kv", "a=0\nb=2\nc=0\n");
    let mut s3 = Session::new(base);
    s3.write("app/values.kv", "a=3\nb=0\nc=0\n");
    let mut t1 = m.submit(s1).expect("submit");
    let mut t2 = m.submit(s2).expect("submit");
    let mut t3 = m.submit(s3).expect("submit");
    t1.wait_pushed(T).expect("s1");
    t2.wait_pushed(T).expect("s2 lands too");
    let err = t3.wait_committed().expect_err("same key two ways");
    let info = err.conflict().expect("conflict").clone();
    assert_eq!(info.path, "app/values.kv");
    assert_eq!(info.key.as_deref(), Some("a"));
    assert!(err.to_string().contains("app/values.kv") && err.to_string().contains(" a"));
    assert!(matches!(t3.wait_pushed(T), Err(Error::Conflict(_))));

    let st = m.status().expect("status");
    assert_eq!(st.conflicts.len(), 1);
    let y = st.to_yaml();
    assert!(
        y.contains("path: \"app/values.kv\"") && y.contains("key: \"a\""),
        "{y}"
    );
    m.flush(T).expect("flush");
    let co = clone(tmp.path(), url);
    assert_eq!(
        std::fs::read_to_string(co.path().join("app/values.kv")).expect("read"),
        "a=1\nb=2\nc=0\n"
    );
    // Both versions recoverable: the remote has a=1, the conflicts ref a=3.
    let state_repo = tmp.path().join("state/repo.git");
    let kept = git(
        &state_repo,
        &["show", &format!("{}:app/values.kv", info.refname)],
    );
    assert_eq!(kept, "a=3\nb=0\nc=0\n");
    m.dismiss_conflict(&info.id).expect("dismiss");
    assert!(m.status().expect("status").conflicts.is_empty());
}

#[test]
fn a_conflict_inside_a_batch_keeps_the_rest_of_the_batch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8");
    cli_commit(tmp.path(), url, &[("v.kv", "a=0\n")], "seed");
    let m = Master::start(config(url, &tmp.path().join("state"))).expect("start");
    let base = m.snapshot().commit;
    // Queued back to back: they are applied in one batch, one ref write.
    let mut tickets = Vec::new();
    for i in 0..20 {
        let mut s = Session::new(base);
        if i == 10 {
            s.write("v.kv", "a=2\n"); // conflicts with session 5
        } else if i == 5 {
            s.write("v.kv", "a=1\n");
        } else {
            s.write(format!("f{i}.txt"), format!("{i}\n"));
        }
        tickets.push(m.submit(s).expect("submit"));
    }
    for (i, t) in tickets.iter_mut().enumerate() {
        if i == 10 {
            assert!(matches!(t.wait_pushed(T), Err(Error::Conflict(_))));
        } else {
            t.wait_pushed(T).expect("pushed");
        }
    }
    fsck(&remote);
    let co = clone(tmp.path(), url);
    let files = read_tree(co.path());
    assert_eq!(files["v.kv"], "a=1\n");
    for i in (0..20).filter(|i| *i != 5 && *i != 10) {
        assert_eq!(files[&format!("f{i}.txt")], format!("{i}\n"));
    }
    // Restart: the state on disk is complete (nothing referenced only from memory).
    m.shutdown();
    drop(m);
    let m = Master::start(config(url, &tmp.path().join("state"))).expect("restart");
    m.fetch_now().expect("fetch");
    assert!(git_ok(
        &tmp.path().join("state/repo.git"),
        &["fsck", "--strict"]
    ));
}

#[test]
fn readers_survive_pack_merges_and_old_snapshots_stay_readable() {
    readers_survive_pack_merges(None);
}

/// The daemon's way: each merge runs in a child process (`valuesfs merge-packs`).
#[test]
fn readers_survive_pack_merges_made_by_a_child_process() {
    readers_survive_pack_merges(Some(env!("CARGO_BIN_EXE_valuesfs").into()));
}

fn readers_survive_pack_merges(exe: Option<std::path::PathBuf>) {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8");
    cli_commit(tmp.path(), url, &[("keep.txt", "old\n")], "seed");
    let mut cfg = config(url, &tmp.path().join("state"));
    // One checkpoint (= one pack) per batch, merged packs deleted at once.
    cfg.checkpoint_every = 1;
    cfg.pack_merge_exe = exe;
    cfg.merged_pack_grace = Duration::ZERO;
    let m = Master::start(cfg).expect("start");
    let sub = m.subscribe().expect("subscribe");
    let old = m.snapshot();
    let reader = m.reader().expect("reader");
    // One batch per session: enough to merge packs several times.
    for i in 0..120 {
        let mut s = Session::new(m.snapshot().commit);
        s.write("keep.txt", format!("v{i}\n"));
        m.commit(s).expect("commit");
        if i % 10 == 0 {
            assert_eq!(
                reader.read(&old, "keep.txt").expect("read").map(|x| x.0),
                Some(b"old\n".to_vec())
            );
        }
    }
    let ev = sub.recv_timeout(T).expect("event for a local session");
    assert_eq!(ev.cause, HeadChangeCause::Sessions);
    assert_eq!(ev.paths, ["keep.txt"]);
    let packs = std::fs::read_dir(tmp.path().join("state/repo.git/objects/pack"))
        .expect("pack dir")
        .filter(|e| {
            e.as_ref()
                .map(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .unwrap_or(false)
        })
        .count();
    assert!(packs <= 40, "{packs} packs: merging does not keep up");
    // A merged pack holds many sessions' objects (a checkpoint pack holds one's).
    let biggest = std::fs::read_dir(tmp.path().join("state/repo.git/objects/pack"))
        .expect("pack dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "idx"))
        .map(|e| e.metadata().expect("stat").len())
        .max()
        .unwrap_or(0);
    assert!(
        biggest > 8 + 1024 + 16 * 28,
        "no pack was merged ({biggest} bytes of index)"
    );
    let fresh = m.reader().expect("reader");
    for r in [&reader, &fresh] {
        assert_eq!(
            r.read(&old, "keep.txt").expect("read").map(|x| x.0),
            Some(b"old\n".to_vec())
        );
        assert_eq!(
            r.read(&m.snapshot(), "keep.txt")
                .expect("read")
                .map(|x| x.0),
            Some(b"v119\n".to_vec())
        );
    }
    m.flush(T).expect("flush");
    fsck(&tmp.path().join("state/repo.git"));
    fsck(&remote);
}

#[test]
fn fetch_merges_remote_changes_and_tells_subscribers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8");
    cli_commit(tmp.path(), url, &[("a.txt", "a\n")], "seed");
    let mut cfg = config(url, &tmp.path().join("state"));
    cfg.fetch_interval = valuesfs::repo::parse_duration("200ms").expect("duration");
    let m = Master::start(cfg).expect("start");
    let sub = m.subscribe().expect("subscribe");
    cli_commit(tmp.path(), url, &[("b/c.txt", "c\n")], "remote change");
    // On demand...
    m.fetch_now().expect("fetch");
    let ev = sub.recv_timeout(T).expect("event");
    assert_eq!(ev.cause, HeadChangeCause::Remote);
    assert_eq!(ev.paths, ["b/c.txt"]);
    let r = m.reader().expect("reader");
    assert_eq!(
        r.read(&ev.new, "b/c.txt").expect("read").map(|x| x.0),
        Some(b"c\n".to_vec())
    );
    // ...and periodically.
    cli_commit(tmp.path(), url, &[("d.txt", "d\n")], "another");
    let ev = sub.recv_timeout(T).expect("periodic fetch event");
    assert_eq!(ev.paths, ["d.txt"]);
    let st = m.status().expect("status");
    assert!(st.last_fetch.is_some());
    assert_eq!(st.behind, 0);
}

/// A first start from a local remote copies its packs and loose objects as they are (the
/// remote's pack name is in the state dir: nothing was re-packed), the state repository
/// passes git fsck, and the head reads. A remote that borrows objects through alternates
/// is fetched the normal way and reads just as well.
#[test]
fn a_first_start_from_a_local_remote_copies_its_packs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    cli_commit(
        tmp.path(),
        &url,
        &[("a.txt", "a\n"), ("d/b.txt", "b\n")],
        "one",
    );
    git(&remote, &["repack", "-q", "-a", "-d"]);
    cli_commit(tmp.path(), &url, &[("c.txt", "c\n")], "two (loose)");
    let packs = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir.join("objects/pack"))
            .expect("pack dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".pack"))
            .collect()
    };
    let remote_packs = packs(&remote);
    assert_eq!(remote_packs.len(), 1);

    let state = tmp.path().join("state");
    let m = Master::start(config(&url, &state)).expect("start");
    let snap = m.snapshot();
    let reader = m.reader().expect("reader");
    for (path, want) in [("a.txt", "a\n"), ("d/b.txt", "b\n"), ("c.txt", "c\n")] {
        let (bytes, _) = reader.read(&snap, path).expect("read").expect("present");
        assert_eq!(bytes, want.as_bytes(), "{path}");
    }
    m.shutdown();
    let ours = packs(&state.join("repo.git"));
    assert!(
        ours.contains(&remote_packs[0]),
        "{ours:?} lacks {remote_packs:?}"
    );
    fsck(&state.join("repo.git"));

    // Alternates: the objects live elsewhere, so nothing is copied; the fetch brings them.
    let borrower = tmp.path().join("borrower.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            "--shared",
            &url,
            borrower.to_str().expect("utf8"),
        ],
    );
    let state2 = tmp.path().join("state2");
    let m = Master::start(config(borrower.to_str().expect("utf8"), &state2)).expect("start");
    let snap = m.snapshot();
    let (bytes, _) = m
        .reader()
        .expect("reader")
        .read(&snap, "c.txt")
        .expect("read")
        .expect("present");
    assert_eq!(bytes, b"c\n");
    m.shutdown();
    assert!(!packs(&state2.join("repo.git")).contains(&remote_packs[0]));
    fsck(&state2.join("repo.git"));
}

/// Helping (a fleet on one remote): a master whose pushes keep failing publishes its
/// sessions to its inbox ref; another master carries them in its own push. They land
/// once, and their owner sees them landed instead of pushing them again.
#[test]
fn another_master_lands_the_inbox_of_a_master_whose_pushes_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    // The remote refuses a main whose tip was committed by "blocked" (B's own pushes).
    // B's inbox, and A's pushes (A commits what it carries), go through.
    let (remote, d) = hooked_remote(
        tmp.path(),
        "while read old new ref; do\n  if [ \"$ref\" = refs/heads/main ] && \
         [ \"$(git log -1 --format=%cn \"$new\")\" = blocked ]; then\n    \
         echo 'main refused for blocked' >&2; exit 1\n  fi\ndone\n",
    );
    let url = d.url("r.git");
    let mut cb = config(&url, &tmp.path().join("b"));
    cb.author = ("blocked".into(), "b@example.com".into());
    let b = Master::start(cb).expect("start b");
    let a = Master::start(config(&url, &tmp.path().join("a"))).expect("start a");

    let mut s = Session::new(b.snapshot().commit);
    s.write("from-b.txt", "b\n");
    let mut tb = b.submit(s).expect("submit b");
    tb.wait_committed().expect("committed on b");
    let deadline = std::time::Instant::now() + T;
    while git(&remote, &["for-each-ref", "refs/valuesfs/inbox/"]).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "b never published its inbox"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        git(&remote, &["log", "--format=%H", "main"])
            .lines()
            .count(),
        1,
        "b's own push was refused"
    );

    // A learns of the inbox with a fetch, then lands its own session and b's.
    a.fetch_now().expect("fetch");
    let mut s = Session::new(a.snapshot().commit);
    s.write("from-a.txt", "a\n");
    a.submit(s)
        .expect("submit a")
        .wait_pushed(T)
        .expect("a pushed");
    let b_landed = tb.wait_pushed(T).expect("b told its session landed");
    let names = git(&remote, &["log", "--format=", "--name-only", "main"]);
    let count = |f: &str| names.lines().filter(|l| *l == f).count();
    assert_eq!(count("from-b.txt"), 1, "{names}");
    assert_eq!(count("from-a.txt"), 1, "{names}");
    let main = git(&remote, &["rev-parse", "main"]);
    assert!(
        git_ok(
            &remote,
            &[
                "merge-base",
                "--is-ancestor",
                &b_landed.to_string(),
                main.trim()
            ]
        ),
        "b was told a commit that is on main"
    );
    // B has nothing left to push, and pushes nothing more.
    let deadline = std::time::Instant::now() + T;
    loop {
        b.fetch_now().expect("fetch b");
        if b.status().expect("status").pending_pushes == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b still has sessions to push"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let names = git(&remote, &["log", "--format=", "--name-only", "main"]);
    assert_eq!(names.lines().filter(|l| *l == "from-b.txt").count(), 1);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("b").join("id"))
            .expect("b's id")
            .trim()
            .len(),
        24
    );
    fsck(&remote);
}

/// A remote whose hook refuses refs outside the branches (all or nothing, as pre-receive
/// hooks are) still takes a contended master's sessions: the inbox is given up, not
/// retried with every push.
#[test]
fn a_remote_that_refuses_inbox_refs_still_takes_the_branch() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (remote, d) = hooked_remote(
        tmp.path(),
        "while read old new ref; do\n  case \"$ref\" in refs/valuesfs/*) \
         echo \"$ref: branches only\" >&2; exit 1;; esac\ndone\n",
    );
    let path = remote.to_str().expect("utf8").to_string();
    let m = Master::start(config(&d.url("r.git"), &tmp.path().join("state"))).expect("start");
    // The branch moves behind the master's back: its first push is rejected, which makes
    // it publish its inbox (refused) and count as contended.
    cli_commit(tmp.path(), &path, &[("other.txt", "o\n")], "elsewhere");
    let mut s = Session::new(m.snapshot().commit);
    s.write("mine.txt", "m\n");
    m.submit(s).expect("submit").wait_pushed(T).expect("pushed");
    let names = git(&remote, &["log", "--format=", "--name-only", "main"]);
    for f in ["mine.txt", "other.txt", "seed.txt"] {
        assert_eq!(names.lines().filter(|l| *l == f).count(), 1, "{names}");
    }
    assert_eq!(git(&remote, &["for-each-ref", "refs/valuesfs/"]), "");
}

/// A bare remote under `dir/srv` holding one seed commit (`seed.txt`), with `hook_body` as
/// its pre-receive hook, served by `git daemon` (which runs the hooks).
fn hooked_remote(dir: &std::path::Path, hook_body: &str) -> (std::path::PathBuf, Daemon) {
    let base = dir.join("srv");
    std::fs::create_dir(&base).expect("mkdir");
    let remote = bare(&base, "r.git");
    cli_commit(
        dir,
        remote.to_str().expect("utf8"),
        &[("seed.txt", "s\n")],
        "seed",
    );
    let hook = remote.join("hooks/pre-receive");
    std::fs::write(&hook, format!("#!/bin/sh\n{hook_body}")).expect("hook");
    std::process::Command::new("chmod")
        .args(["755", hook.to_str().expect("utf8")])
        .status()
        .expect("chmod");
    let d = Daemon::start(&base);
    (remote, d)
}

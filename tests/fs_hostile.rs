//! Hostile repository content, pushed as an attacker with push access would push it (raw
//! tree objects written with `git hash-object -t tree --literally`, set with
//! `update-ref` on a bare remote that runs no fsck), then browsed through a real mount:
//! a head whose tree fails git fsck's entry checks is refused (view on the last good
//! head, status names the entry and the rule, pushes held until a good head arrives);
//! names the kernel cannot show are skipped and listed, never breaking a listing; corrupt
//! and oversized files stay files that can be removed and replaced; a bad `.sops.yaml`
//! keeps the write as a draft with its reason; `.git` in any case cannot be created.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use fs_common::*;
use repo_common::{git, Daemon};

/// `git` in the bare remote with `input` on stdin; stdout trimmed.
fn git_in(repo: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

fn blob(repo: &Path, data: &[u8]) -> String {
    git_in(repo, &["hash-object", "-w", "--stdin"], data)
}

/// A raw tree object: entries (mode, name bytes, object id) written as given, unchecked.
fn raw_tree(repo: &Path, entries: &[(&str, &[u8], &str)]) -> String {
    let mut raw = Vec::new();
    for (mode, name, oid) in entries {
        raw.extend_from_slice(mode.as_bytes());
        raw.push(b' ');
        raw.extend_from_slice(name);
        raw.push(0);
        let hex = oid.as_bytes();
        for i in (0..hex.len()).step_by(2) {
            let s = std::str::from_utf8(&hex[i..i + 2]).expect("hex");
            raw.push(u8::from_str_radix(s, 16).expect("hex"));
        }
    }
    git_in(
        repo,
        &["hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
        &raw,
    )
}

/// Entries of `rev`'s root tree as (mode, name, id), for building on it.
fn root_entries(repo: &Path, rev: &str) -> Vec<(String, Vec<u8>, String)> {
    let out = Command::new("git")
        .args(["ls-tree", "-z", rev])
        .current_dir(repo)
        .output()
        .expect("ls-tree");
    out.stdout
        .split(|b| *b == 0)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let tab = l.iter().position(|b| *b == b'\t').expect("tab");
            let meta = String::from_utf8_lossy(&l[..tab]).into_owned();
            let mut m = meta.split(' ');
            let mode = m.next().expect("mode").to_string();
            let _kind = m.next();
            let oid = m.next().expect("oid").to_string();
            (mode, l[tab + 1..].to_vec(), oid)
        })
        .collect()
}

/// A tree of `rev`'s root entries plus `extra`, in git's order (names compared as git
/// does: a tree as if its name ended in `/`).
fn tree_with(repo: &Path, rev: &str, extra: &[(&str, &[u8], &str)]) -> String {
    let mut all = root_entries(repo, rev);
    for (m, n, o) in extra {
        all.push((m.to_string(), n.to_vec(), o.to_string()));
    }
    let key = |e: &(String, Vec<u8>, String)| {
        let mut k = e.1.clone();
        if e.0 == "40000" {
            k.push(b'/');
        }
        k
    };
    all.sort_by_key(key);
    let refs: Vec<(&str, &[u8], &str)> = all
        .iter()
        .map(|(m, n, o)| (m.as_str(), n.as_slice(), o.as_str()))
        .collect();
    raw_tree(repo, &refs)
}

/// Moves the remote's main to a new commit of `tree` on top of `parent`.
fn set_main(repo: &Path, tree: &str, parent: &str, msg: &str) -> String {
    let c = git_in(repo, &["commit-tree", tree, "-p", parent, "-m", msg], b"");
    git(repo, &["update-ref", "refs/heads/main", &c]);
    c
}

/// Every path below `dir` (what `find` prints), recursively, with the names as bytes.
fn find(dir: &Path) -> Vec<String> {
    let out = Command::new("find").arg(dir).output().expect("run find");
    assert!(
        out.status.success(),
        "find {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `git status` run inside `dir`; the trap in a shown `.git/config` would create `marker`.
fn git_status_in(dir: &Path) {
    let _ = Command::new("git")
        .arg("status")
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run git status");
}

fn refused(mnt: &Mnt) -> Option<(String, String)> {
    let st = mnt.status();
    let block = st.split("refused_head:").nth(1)?;
    if block.trim_start().starts_with("null") {
        return None;
    }
    let field = |k: &str| {
        block
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{k}: ")))
            .map(|v| v.trim_matches('"').to_string())
    };
    Some((field("path")?, field("rule")?))
}

/// The scenario over one remote URL (a path or `git://`).
fn refuse_hostile_heads(remote: &Remote, url: Option<String>) {
    let repo = remote.path.clone();
    let good = remote_head(remote);
    let marker = remote.dir().join("PWNED");
    let mnt = mount_with(remote, None, |o| {
        if let Some(u) = url {
            o.remote = u;
        }
    });
    assert_eq!(mnt.read("plain.txt"), PLAIN.as_bytes());

    // A `.git` directory whose config runs the attacker's command on `git status`.
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = \"touch {}; false\"\n",
        marker.display()
    );
    let head = blob(&repo, b"ref: refs/heads/main\n");
    let cfg = blob(&repo, config.as_bytes());
    let empty = raw_tree(&repo, &[]);
    let dotgit = raw_tree(
        &repo,
        &[
            ("100644", b"HEAD", &head),
            ("100644", b"config", &cfg),
            ("40000", b"objects", &empty),
            ("40000", b"refs", &empty),
        ],
    );
    let x = blob(&repo, b"x\n");
    let sub = raw_tree(
        &repo,
        &[("40000", b".git", &dotgit), ("100644", b"x.txt", &x)],
    );
    // (mode, root entry name, object, the path the status names, the rule)
    let hostile: Vec<(&str, &[u8], &str, &str, &str)> = vec![
        ("40000", b"sub", &sub, "sub/.git", "hasDotgit"),
        ("40000", b".GIT", &dotgit, ".GIT", "hasDotgit"),
        ("40000", b"git~1", &dotgit, "git~1", "hasDotgit"),
        ("100644", b"a/b", &x, "a/b", "fullPathname"),
        ("100644", b"..", &x, "..", "hasDotdot"),
    ];
    let mut with_dotgit = String::new();
    for (mode, name, oid, path, rule) in &hostile {
        let tree = tree_with(&repo, &good, &[(*mode, *name, *oid)]);
        let c = set_main(&repo, &tree, &good, &format!("hostile {path}"));
        if with_dotgit.is_empty() {
            with_dotgit = c;
        }
        let err = mnt
            .m()
            .master
            .fetch_now()
            .expect_err("hostile head refused");
        assert!(err.to_string().contains(rule), "{path}: {err}");
        let (got_path, got) = refused(&mnt).unwrap_or_else(|| panic!("{path}: {}", mnt.status()));
        assert_eq!((got_path.as_str(), got.as_str()), (*path, *rule), "{path}");
        assert!(!mnt.p("sub").exists(), "{path}: the refused head is shown");
    }
    // A .gitmodules symlink (git's CVE-2018-11235 family) is refused too.
    let target = blob(&repo, b"../../outside");
    let tree = tree_with(&repo, &good, &[("120000", b".gitmodules", &target)]);
    let last = set_main(&repo, &tree, &good, "gitmodules link");
    let err = mnt.m().master.fetch_now().expect_err("refused");
    assert!(err.to_string().contains("gitmodulesSymlink"), "{err}");

    // The view is the last good head: browse it as the owner would.
    let all = find(&mnt.mnt);
    assert!(
        all.iter().all(|p| !p.to_lowercase().contains(".git/")),
        "{all:?}"
    );
    assert!(all.iter().any(|p| p.ends_with("dir/sub/b.txt")), "{all:?}");
    for d in ["", "dir", "dir/sub"] {
        git_status_in(&mnt.p(d));
    }
    // Every file shown reads (cat).
    for p in all.iter().map(Path::new).filter(|p| p.is_file()) {
        if !p.to_string_lossy().contains("/.valuesfs/") {
            std::fs::read(p).unwrap_or_else(|e| panic!("cat {}: {e}", p.display()));
        }
    }
    // The refused objects are in the master's repository: its history view filters too.
    let hist = mnt.p(&format!(".valuesfs/history/{with_dotgit}"));
    let names: Vec<String> = find(&hist);
    assert!(names.iter().any(|p| p.ends_with("sub/x.txt")), "{names:?}");
    assert!(names.iter().all(|p| !p.ends_with("/.git")), "{names:?}");
    git_status_in(&hist.join("sub"));
    assert!(std::fs::read_dir(hist.join("sub/.git")).is_err());
    assert!(!marker.exists(), "the attacker's fsmonitor ran");

    // Local work goes on: committed, but not pushed on top of a refused head.
    put(&mnt.p("local.txt"), b"mine\n");
    mnt.m().fs.commit_deferred(true);
    // Wait for the event (the commit is held as a pending push), not a fixed time.
    let held = wait_for(Duration::from_secs(30), || {
        let st = mnt.status();
        (status_field(&st, "pending_pushes").as_deref() == Some("1")).then_some(st)
    });
    assert!(
        held.is_some(),
        "the local commit never showed as a pending push: {}",
        mnt.status()
    );
    assert!(remote_raw(remote, "local.txt").is_none());

    // A good head on top (the fix) is accepted; held work goes out, replayed on it.
    let fixed_tree = tree_with(&repo, &good, &[("100644", b"fix.txt", &x)]);
    let fix = set_main(&repo, &fixed_tree, &last, "fix");
    mnt.fetch();
    assert_eq!(refused(&mnt), None, "{}", mnt.status());
    assert_eq!(mnt.read("fix.txt"), b"x\n");
    mnt.flush();
    assert_eq!(
        remote_raw(remote, "local.txt").as_deref(),
        Some(&b"mine\n"[..])
    );
    let on_remote = git(&repo, &["rev-parse", "main^"]);
    assert_eq!(on_remote.trim(), fix);
    assert!(!marker.exists());
    mnt.unmount();
}

#[test]
fn hostile_heads_are_refused_over_a_path() {
    let remote = seeded_remote();
    refuse_hostile_heads(&remote, None);
}

#[test]
fn hostile_heads_are_refused_over_git_daemon() {
    let remote = seeded_remote();
    let daemon = Daemon::start(remote.dir());
    refuse_hostile_heads(&remote, Some(daemon.url("remote.git")));
}

#[test]
fn a_hostile_first_clone_shows_nothing_and_loses_nothing() {
    let remote = seeded_remote();
    let repo = remote.path.clone();
    let good = remote_head(&remote);
    let x = blob(&repo, b"x\n");
    let tree = tree_with(&repo, &good, &[("100644", b".Git", &x)]);
    set_main(&repo, &tree, &good, "hostile");
    let mnt = mount_remote(&remote);
    assert_eq!(
        refused(&mnt),
        Some((".Git".to_string(), "hasDotgit".to_string()))
    );
    assert!(!mnt.p("plain.txt").exists());
    put(&mnt.p("local.txt"), b"kept\n");
    assert_eq!(mnt.read("local.txt"), b"kept\n");
    assert!(remote_raw(&remote, "local.txt").is_none());
}

#[test]
fn names_that_cannot_be_shown_are_skipped_and_listed() {
    let remote = seeded_remote();
    let repo = remote.path.clone();
    let good = remote_head(&remote);
    let x = blob(&repo, b"x\n");
    let long = vec![b'l'; 300];
    let ok = blob(&repo, b"ok\n");
    let dir = raw_tree(
        &repo,
        &[("100644", b"ok.txt", &ok), ("100644", b"\xff\xfe.txt", &x)],
    );
    let tree = tree_with(
        &repo,
        &good,
        &[
            ("100644", b"bad-\xc3\x28.yaml", &x),
            ("100644", &long, &x),
            ("40000", b"odd", &dir),
        ],
    );
    set_main(&repo, &tree, &good, "odd names");
    let mnt = mount_remote(&remote);
    assert_eq!(refused(&mnt), None, "git fsck accepts these names");

    let root: Vec<String> = std::fs::read_dir(&mnt.mnt)
        .expect("ls root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for want in ["plain.txt", "secret.yaml", "dir", "odd", ".valuesfs"] {
        assert!(root.iter().any(|n| n == want), "{want} in {root:?}");
    }
    let odd: Vec<Vec<u8>> = std::fs::read_dir(mnt.p("odd"))
        .expect("ls odd")
        .map(|e| e.expect("entry").file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(odd, vec![b"ok.txt".to_vec()]);
    assert_eq!(mnt.read("odd/ok.txt"), b"ok\n");
    let all = find(&mnt.mnt);
    assert!(all.iter().any(|p| p.ends_with("odd/ok.txt")), "{all:?}");
    let hist = std::fs::read_dir(mnt.p(".valuesfs/history/HEAD/odd"))
        .expect("history lists")
        .count();
    assert_eq!(hist, 1);

    let st = mnt.status();
    let unshown = status_paths(&st, "unshown");
    assert!(unshown.iter().any(|p| p.starts_with("bad-")), "{st}");
    assert!(unshown.iter().any(|p| p.starts_with("odd/")), "{st}");
    assert!(unshown.iter().any(|p| p.starts_with("lll")), "{st}");
    assert!(
        st.contains("nonUtf8Name") && st.contains("nameTooLong"),
        "{st}"
    );

    // A later head that changes a non-UTF-8 path still notifies and shows the rest.
    let dir2 = raw_tree(
        &repo,
        &[("100644", b"ok.txt", &x), ("100644", b"\xff\xfe.txt", &ok)],
    );
    let head = remote_head(&remote);
    let tree2 = tree_with(&repo, &good, &[("40000", b"odd", &dir2)]);
    set_main(&repo, &tree2, &head, "touch odd names");
    mnt.fetch();
    assert_eq!(mnt.read("odd/ok.txt"), b"x\n");
}

#[test]
fn corrupt_and_oversized_files_stay_files() {
    let remote = seeded_remote();
    let secret = String::from_utf8(secret_ciphertext()).expect("utf8");
    let mac_line = secret
        .lines()
        .find(|l| l.trim_start().starts_with("mac: ENC["))
        .expect("mac line");
    let at = mac_line.find("data:").expect("data") + 5;
    let mut flipped = mac_line.as_bytes().to_vec();
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let tampered = secret.replace(mac_line, std::str::from_utf8(&flipped).expect("utf8"));
    let pw = secret
        .lines()
        .find(|l| l.contains("password: ENC["))
        .expect("password");
    let truncated = secret.replace(pw, &pw[..pw.len() / 2]);
    // Cut inside the metadata: still claims to be SOPS, cannot be opened.
    let armor = secret
        .find("-----BEGIN AGE ENCRYPTED FILE-----")
        .expect("armor");
    let half = &secret[..armor + 50];
    let big = vec![b'z'; (1 << 20) + 10];
    push_files(
        &remote,
        &[
            ("tampered.yaml", tampered.as_bytes()),
            ("truncated.yaml", truncated.as_bytes()),
            ("half.yaml", half.as_bytes()),
            ("big.bin", &big),
            ("d/tampered.yaml", tampered.as_bytes()),
            ("d/big.bin", &big),
        ],
        "corrupt",
    );
    let mnt = mount_with(&remote, None, |o| o.max_file = 1 << 20);
    for f in [
        "tampered.yaml",
        "truncated.yaml",
        "half.yaml",
        "big.bin",
        "d/tampered.yaml",
    ] {
        let meta = std::fs::metadata(mnt.p(f)).unwrap_or_else(|e| panic!("stat {f}: {e}"));
        assert!(meta.is_file(), "{f}");
        let e = std::fs::read(mnt.p(f)).expect_err(f);
        let want = if f.ends_with(".bin") {
            libc::EFBIG
        } else {
            libc::EIO
        };
        assert_eq!(e.raw_os_error(), Some(want), "{f}: {e}");
        let st = mnt.status();
        assert!(
            status_paths(&st, "unreadable").iter().any(|p| p == f),
            "{f}: {st}"
        );
    }
    assert!(!mnt.status().contains("correct-horse"));
    // Remove, rename, overwrite (O_TRUNC) and rm -rf all work.
    std::fs::remove_file(mnt.p("tampered.yaml")).expect("rm tampered");
    std::fs::rename(mnt.p("half.yaml"), mnt.p("half-moved.yaml")).expect("mv half");
    put(&mnt.p("big.bin"), b"small now\n");
    put(&mnt.p("truncated.yaml"), b"fixed: true\n");
    let rm = Command::new("rm")
        .arg("-rf")
        .arg(mnt.p("d"))
        .status()
        .expect("rm -rf");
    assert!(rm.success());
    assert!(!mnt.p("d").exists());
    assert_eq!(mnt.read("big.bin"), b"small now\n");
    assert_eq!(mnt.read("truncated.yaml"), b"fixed: true\n");
    mnt.flush();
    let paths = remote_paths(&remote);
    assert!(
        !paths
            .iter()
            .any(|p| p == "tampered.yaml" || p.starts_with("d/")),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p == "half-moved.yaml"), "{paths:?}");
    assert_eq!(
        remote_raw(&remote, "big.bin").as_deref(),
        Some(&b"small now\n"[..])
    );
    // A replaced secret is encrypted per the creation rules, like a new file.
    let raw = remote_raw(&remote, "truncated.yaml").expect("on remote");
    assert!(
        is_sops("truncated.yaml", &raw),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(
        remote_plain(&remote, "truncated.yaml").as_deref(),
        Some(&b"fixed: true\n"[..])
    );
    assert!(std::fs::read(mnt.p("half-moved.yaml")).is_err());
    let st = mnt.status();
    let unreadable = status_paths(&st, "unreadable");
    assert_eq!(unreadable, vec!["half-moved.yaml".to_string()], "{st}");
}

#[test]
fn a_bad_sops_yaml_keeps_the_write_as_a_draft() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    push_files(
        &remote,
        &[
            ("bad1/.sops.yaml", b"creation_rules: [unclosed\n"),
            (
                "bad2/.sops.yaml",
                format!(
                    "creation_rules:\n  - path_regex: '((a{{1000}}){{1000}}){{1000}}'\n    age: {VECTOR_RECIPIENT}\n"
                )
                .as_bytes(),
            ),
        ],
        "bad configs",
    );
    mnt.fetch();
    // Reported when the head is published (by the view's head watcher), before any write.
    let both = wait_for(Duration::from_secs(20), || {
        let errors = status_paths(&mnt.status(), "errors");
        (errors.iter().any(|p| p == "bad1/.sops.yaml")
            && errors.iter().any(|p| p == "bad2/.sops.yaml"))
        .then_some(())
    });
    assert!(both.is_some(), "{}", mnt.status());

    for dir in ["bad1", "bad2"] {
        let f = mnt.p(&format!("{dir}/new.yaml"));
        let e = write_checked(&f, b"token: draft-marker-7731\n").expect_err("close fails");
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{dir}");
        assert_eq!(
            std::fs::read(&f).expect("still readable"),
            b"token: draft-marker-7731\n"
        );
        let st = mnt.status();
        let drafts = status_paths(&st, "drafts");
        assert!(
            drafts.iter().any(|p| p == &format!("{dir}/new.yaml")),
            "{st}"
        );
        assert!(
            st.contains(".sops.yaml"),
            "the reason names the config: {st}"
        );
    }
    // Kept on disk, encrypted.
    let drafts: Vec<_> = std::fs::read_dir(mnt.state.join("drafts"))
        .expect("drafts")
        .flatten()
        .collect();
    assert_eq!(drafts.len(), 2);
    for d in drafts {
        let raw = std::fs::read(d.path()).expect("read draft");
        assert!(!String::from_utf8_lossy(&raw).contains("draft-marker"));
    }
    assert!(remote_raw(&remote, "bad1/new.yaml").is_none());
}

#[test]
fn dotgit_in_any_case_cannot_be_created() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    for name in [".git", ".GIT", ".Git", "dir/.gIt", "git~1", ".git."] {
        let p = mnt.p(name);
        let e = std::fs::create_dir(&p).expect_err(name);
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "mkdir {name}");
        let e = std::fs::File::create(&p).expect_err(name);
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "create {name}");
        let e = std::os::unix::fs::symlink("plain.txt", &p).expect_err(name);
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "symlink {name}");
        let e = std::fs::rename(mnt.p("plain.txt"), &p).expect_err(name);
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "rename {name}");
        assert!(!p.exists(), "phantom {name}");
    }
    let st = mnt.status();
    assert_eq!(status_paths(&st, "errors"), Vec::<String>::new(), "{st}");
    assert_eq!(commits(&remote), 1);
}

#[test]
fn an_empty_new_file_under_a_rule_is_held_until_it_has_content() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let touch = Command::new("touch")
        .arg(mnt.p("fresh.yaml"))
        .status()
        .expect("touch");
    assert!(touch.success());
    assert_eq!(
        std::fs::metadata(mnt.p("fresh.yaml")).expect("stat").len(),
        0
    );
    // The kernel sends RELEASE after close returns: the file is held once it is handled.
    let held = wait_for(Duration::from_secs(10), || {
        let st = mnt.status();
        status_paths(&st, "held")
            .iter()
            .any(|p| p == "fresh.yaml")
            .then_some(st)
    });
    let st = held.unwrap_or_else(|| panic!("not held: {}", mnt.status()));
    assert_eq!(status_paths(&st, "drafts"), Vec::<String>::new(), "{st}");
    mnt.flush();
    assert!(remote_raw(&remote, "fresh.yaml").is_none());
    put(&mnt.p("fresh.yaml"), b"key: value\n");
    mnt.flush();
    let raw = remote_raw(&remote, "fresh.yaml").expect("committed");
    assert!(is_sops("fresh.yaml", &raw));
    assert_eq!(
        remote_plain(&remote, "fresh.yaml").as_deref(),
        Some(&b"key: value\n"[..])
    );
    assert_eq!(status_paths(&mnt.status(), "held"), Vec::<String>::new());
}

/// Modes of everything under `dir` that group or others can use.
fn open_to_others(dir: &Path, out: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = std::fs::symlink_metadata(e.path()).expect("stat");
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.permissions().mode() & 0o077 != 0 {
            out.push(format!(
                "{} {:o}",
                e.path().display(),
                meta.permissions().mode()
            ));
        }
        if meta.is_dir() {
            open_to_others(&e.path(), out);
        }
    }
}

#[test]
fn the_state_dir_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let remote = seeded_remote();
    let base = tempfile::tempdir_in(remote.dir()).expect("tmp");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    for (i, foreground) in [false, true, false].into_iter().enumerate() {
        let mnt = base.path().join(format!("mnt{i}"));
        let state = base.path().join(format!("state{i}"));
        std::fs::create_dir(&mnt).expect("mkdir");
        if i == 2 {
            // An existing state dir open to others is fixed, and said so.
            std::fs::create_dir(&state).expect("mkdir");
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let script = format!(
            "umask 022; exec '{}' mount '{}' '{}' --state-dir '{}' --identity '{}' \
             --fetch-interval 1h {}",
            bin().display(),
            remote.url,
            mnt.display(),
            state.display(),
            remote.key.display(),
            if foreground { "--foreground" } else { "" }
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&script).stdin(Stdio::null());
        let child = if foreground {
            let c = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            wait_for(Duration::from_secs(30), || {
                mnt.join(".valuesfs/status").exists().then_some(())
            })
            .expect("foreground mount came up");
            Some(c)
        } else {
            let out = cmd.output().expect("run mount");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if i == 2 {
                let said = String::from_utf8_lossy(&out.stderr);
                assert!(said.contains("readable by others"), "{said}");
            }
            None
        };
        assert_eq!(mode(&state), 0o700, "state dir, run {i}");
        let mut open = Vec::new();
        open_to_others(&state, &mut open);
        assert!(open.is_empty(), "run {i}: {open:?}");
        assert_eq!(
            std::fs::read(mnt.join("plain.txt")).expect("read"),
            PLAIN.as_bytes()
        );
        let out = Command::new(bin())
            .arg("unmount")
            .arg(&mnt)
            .output()
            .expect("unmount");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(mut c) = child {
            let st = c.wait().expect("wait");
            assert!(st.success(), "{st}");
        }
        if !foreground {
            assert_eq!(mode(&state.join("daemon.log")), 0o600);
        }
    }
}

//! The mount under real use (issue 8), through a real mount: no decrypted secret leaves
//! in clear (the leak guard), a failed write commits nothing, a SOPS file renamed to any
//! name stays a SOPS file, and common save patterns make one commit of the final path.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::path::Path;
use std::process::Command;

use fs_common::*;
use repo_common::git;

/// A value of the seeded `secret.yaml` that the leak guard counts as a secret.
const SECRET: &str = "correct-horse-battery-staple";

/// Every version of every file the remote ever held, as text (`git log -p --all`).
fn remote_history(remote: &Remote) -> String {
    git(&remote.path, &["log", "--all", "-p", "--format=%H %s"])
}

/// Files under `dir` (recursively) whose raw bytes contain `marker`.
fn files_containing(dir: &Path, marker: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(files_containing(&p, marker));
        } else if let Ok(b) = std::fs::read(&p) {
            if b.windows(marker.len()).any(|w| w == marker) {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// No plaintext marker in the state dir (drafts, clone), the remote's history, or loose
/// objects of the clone decompressed (`git log -p` over the state clone).
fn assert_no_plaintext(mnt: &Mnt, remote: &Remote, marker: &str) {
    assert!(
        files_containing(&mnt.state, marker.as_bytes()).is_empty(),
        "plaintext in the state dir: {:?}",
        files_containing(&mnt.state, marker.as_bytes())
    );
    assert!(
        !remote_history(remote).contains(marker),
        "plaintext reached the remote"
    );
    let clone = mnt.state.join("repo.git");
    if clone.is_dir() {
        let local = git(&clone, &["log", "--all", "-p", "--format=%H"]);
        assert!(!local.contains(marker), "plaintext in the local clone");
    }
}

#[test]
fn the_leak_guard_keeps_decrypted_secrets_out_of_clear_files() {
    let remote = seeded_remote();
    let mnt = mount_with(&remote, None, |o| {
        o.allow_plaintext = vec!["clear/*".into()]
    });
    let before = commits(&remote);
    assert!(mnt.read_str("secret.yaml").contains(SECRET));

    // `cp` of the whole decrypted file to a name no creation rule covers.
    let out = Command::new("cp")
        .arg(mnt.p("secret.yaml"))
        .arg(mnt.p("notes.txt"))
        .output()
        .expect("cp");
    assert!(!out.status.success(), "cp must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The shell's `>` and a program's own write: EACCES at close.
    let e = write_checked(&mnt.p("leak.txt"), format!("pw={SECRET}\n").as_bytes());
    assert_eq!(errno(e), libc::EACCES);
    let py = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sys\ntry:\n  f = open(sys.argv[1], 'w'); f.write('x {SECRET} y'); f.close()\nexcept PermissionError:\n  sys.exit(13)\n"
        ))
        .arg(mnt.p("dir/py.txt"))
        .status()
        .expect("python3");
    assert_eq!(py.code(), Some(13));

    // Kept as drafts (readable in the mount, encrypted on disk), listed with the source.
    assert!(mnt.read_str("leak.txt").contains(SECRET));
    let st = mnt.status();
    let drafts = status_paths(&st, "drafts");
    for p in ["notes.txt", "leak.txt", "dir/py.txt"] {
        assert!(drafts.iter().any(|d| d == p), "{p} not a draft: {st}");
    }
    assert!(st.contains("secret decrypted from secret.yaml"), "{st}");
    assert!(!st.contains(SECRET), "the status shows the secret");

    // A covered path lands encrypted; an allowed path lands in clear; a plain file
    // without secrets is committed as before.
    run(Command::new("cp")
        .arg(mnt.p("secret.yaml"))
        .arg(mnt.p("copy.yaml")));
    std::fs::create_dir(mnt.p("clear")).expect("mkdir");
    put(&mnt.p("clear/ok.txt"), format!("{SECRET}\n").as_bytes());
    put(&mnt.p("plain.txt"), b"no secret here\n");
    mnt.flush();
    let copy = remote_raw(&remote, "copy.yaml").expect("copy landed");
    assert!(is_sops("copy.yaml", &copy));
    assert_eq!(decrypt_if_sops("copy.yaml", &copy), mnt.read("secret.yaml"));
    assert_eq!(
        remote_raw(&remote, "clear/ok.txt").as_deref(),
        Some(format!("{SECRET}\n").as_bytes())
    );
    assert_eq!(
        remote_raw(&remote, "plain.txt").as_deref(),
        Some(&b"no secret here\n"[..])
    );
    for p in ["notes.txt", "leak.txt", "dir/py.txt"] {
        assert!(remote_raw(&remote, p).is_none(), "{p} reached the remote");
    }
    assert_eq!(commits(&remote), before + 3);

    // Nothing in clear anywhere but the allowed path; the allowed file is removed first.
    std::fs::remove_file(mnt.p("clear/ok.txt")).expect("rm");
    mnt.flush();
    let history_without_allowed: String = remote_history(&remote)
        .lines()
        .filter(|l| !l.starts_with("+correct-horse") && !l.starts_with("-correct-horse"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!history_without_allowed.contains(SECRET));
    // The allowed file's blob sits in the journal and as a loose object until the master
    // checkpoints them into a pack (idle 100 ms); what stays on disk is checked after that.
    let t0 = std::time::Instant::now();
    while std::fs::metadata(mnt.state.join("journal")).map_or(0, |m| m.len()) > 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "no checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let found = files_containing(&mnt.state, SECRET.as_bytes());
    assert!(found.is_empty(), "{found:?}");
    let clone = git(
        &mnt.state.join("repo.git"),
        &["log", "--all", "-p", "--format=%H"],
    );
    assert_eq!(
        clone.matches(SECRET).count(),
        2,
        "only the allowed file, added and removed"
    );

    // Replacing the draft's content with something harmless commits it.
    put(&mnt.p("leak.txt"), b"harmless\n");
    mnt.flush();
    assert_eq!(
        remote_raw(&remote, "leak.txt").as_deref(),
        Some(&b"harmless\n"[..])
    );
    assert!(!status_paths(&mnt.status(), "drafts").contains(&"leak.txt".to_string()));
}

#[test]
fn a_refused_leak_leaves_no_plaintext_on_disk_once_the_mount_is_gone() {
    // The mount goes away right after refusing a leak: the draft on disk is encrypted and
    // nothing else holds the plaintext (state dir, clone history, remote history).
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let _ = mnt.read("secret.yaml");
    let e = write_checked(&mnt.p("dump.txt"), format!("{SECRET}\n").as_bytes());
    assert_eq!(errno(e), libc::EACCES);
    assert_eq!(
        std::fs::read_dir(mnt.state.join("drafts"))
            .expect("drafts")
            .count(),
        1
    );
    assert_no_plaintext(&mnt, &remote, SECRET);
    let state = mnt.state.clone();
    drop(mnt);
    assert!(files_containing(&state, SECRET.as_bytes()).is_empty());
    assert!(files_containing(remote.dir(), SECRET.as_bytes()).is_empty());
    assert!(!remote_history(&remote).contains(SECRET));
}

#[test]
fn a_failed_write_commits_nothing() {
    let remote = seeded_remote();
    let mnt = mount_with(&remote, None, |o| o.max_file = 1 << 20);
    let before = commits(&remote);
    // dd past the limit into a new file and over a tracked one: EFBIG, then nothing.
    for (name, old) in [("big.bin", None), ("plain.txt", Some(PLAIN.as_bytes()))] {
        let out = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", mnt.p(name).display()))
            .args(["bs=64k", "count=40"])
            .output()
            .expect("dd");
        assert!(!out.status.success(), "{name}: dd must fail");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("File too large"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        match old {
            None => assert!(!mnt.p(name).exists(), "{name}: a partial new file stayed"),
            Some(old) => assert_eq!(mnt.read(name), old, "{name}: the previous version stays"),
        }
        let st = mnt.status();
        assert!(
            status_paths(&st, "errors").iter().any(|p| p == name),
            "{name}: {st}"
        );
        assert!(st.contains("nothing of this write is committed"), "{st}");
    }
    mnt.flush();
    assert_eq!(commits(&remote), before, "a failed write made a commit");
    assert!(remote_raw(&remote, "big.bin").is_none());
    // A handle truncated after the failure may write again.
    let py = Command::new("python3")
        .arg("-c")
        .arg(
            "import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\ntry:\n  os.write(fd, b'x' * (2 << 20))\nexcept OSError as e:\n  assert e.errno == 27, e\nos.ftruncate(fd, 0)\nos.lseek(fd, 0, 0)\nos.write(fd, b'small\\n')\nos.close(fd)\n",
        )
        .arg(mnt.p("retry.txt"))
        .status()
        .expect("python3");
    assert!(py.success());
    mnt.flush();
    assert_eq!(
        remote_raw(&remote, "retry.txt").as_deref(),
        Some(&b"small\n"[..])
    );
    assert_eq!(commits(&remote), before + 1);
}

#[test]
fn a_sops_file_renamed_to_any_name_stays_a_sops_file() {
    let remote = seeded_remote();
    let json = std::fs::read(common::vectors().join("enc/config.json")).expect("vector");
    push_files(&remote, &[("secrets.json", &json)], "json secret");
    let mnt = mount_remote(&remote);
    let yaml_plain = mnt.read("secret.yaml");
    let json_plain = mnt.read("secrets.json");
    assert!(!is_sops("x.json", &json_plain), "shown decrypted");
    for (from, to) in [
        ("secret.yaml", "secret.bak"),
        ("secrets.json", "old/secrets"),
    ] {
        if to.contains('/') {
            std::fs::create_dir_all(mnt.p("old")).expect("mkdir");
        }
        std::fs::rename(mnt.p(from), mnt.p(to)).expect("mv");
    }
    assert_eq!(mnt.read("secret.bak"), yaml_plain);
    assert_eq!(mnt.read("old/secrets"), json_plain);
    // An edit under the new name is encrypted with the file's own key and store.
    let edited = String::from_utf8(yaml_plain.clone())
        .expect("utf8")
        .replace("replicas: 2", "replicas: 3");
    put(&mnt.p("secret.bak"), edited.as_bytes());
    mnt.flush();
    let raw = remote_raw(&remote, "secret.bak").expect("landed");
    assert!(String::from_utf8_lossy(&raw).contains("ENC[AES256_GCM,"));
    let tmp = tempfile::tempdir().expect("tmp");
    let f = tmp.path().join("secret.bak");
    std::fs::write(&f, &raw).expect("write");
    let key = common::private_key(tmp.path());
    let out = common::sops_decrypt(&f, &key, &["--input-type", "yaml", "--output-type", "yaml"]);
    assert!(String::from_utf8_lossy(&out).contains("replicas: 3"));
    assert!(!String::from_utf8_lossy(&raw).contains("correct-horse"));
}

/// Every path that any commit of the remote ever touched.
fn paths_in_history(remote: &Remote) -> std::collections::BTreeSet<String> {
    git(&remote.path, &["log", "--all", "--name-only", "--format="])
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A vimrc like many users have: backups, undo files, a swap file in the file's dir.
const VIMRC: &str = "set nocompatible\nsyntax on\nfiletype plugin indent on\nset backup\nset writebackup\nset undofile\nset swapfile\nset directory=.\nset backupdir=.\nset undodir=.\n";

#[test]
fn every_common_save_pattern_is_one_commit_of_the_final_path() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    let src = tempfile::tempdir().expect("src");
    let s = src.path();
    let home = tempfile::tempdir().expect("home");
    std::fs::write(home.path().join(".vimrc"), VIMRC).expect("vimrc");
    std::fs::write(s.join("a.txt"), "rsync a\n").expect("w");
    std::fs::write(s.join("b.txt"), "rsync b\n").expect("w");
    std::fs::write(s.join("tool.sh"), "#!/bin/sh\necho hi\n").expect("w");
    run(Command::new("chmod").arg("755").arg(s.join("tool.sh")));
    let m = |rel: &str| mnt.p(rel).display().to_string();
    let sh = |script: &str| {
        run(Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&mnt.mnt)
            .env("HOME", home.path()))
    };
    let mut expected: std::collections::BTreeSet<String> = paths_in_history(&remote);
    let mut n = commits(&remote);
    let mut step = |what: &str, commits_made: usize, paths: &[&str]| {
        mnt.flush();
        n += commits_made;
        assert_eq!(commits(&remote), n, "{what}: {:?}", subjects(&remote));
        expected.extend(paths.iter().map(|p| p.to_string()));
        assert_eq!(
            paths_in_history(&remote),
            expected,
            "{what}: a temporary name in history"
        );
    };

    // rsync: a temporary `.name.XXXXXX` renamed onto each file.
    std::fs::create_dir(mnt.p("sync")).expect("mkdir");
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", s.display()))
        .arg(m("sync/")));
    step(
        "rsync -a (new files)",
        3,
        &["sync/a.txt", "sync/b.txt", "sync/tool.sh"],
    );
    std::fs::write(s.join("a.txt"), "rsync a, changed\n").expect("w");
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", s.display()))
        .arg(m("sync/")));
    step("rsync -a (one changed)", 1, &[]);
    std::fs::write(s.join("b.txt"), "rsync b, in place\n").expect("w");
    run(Command::new("rsync")
        .args(["-a", "--inplace"])
        .arg(format!("{}/", s.display()))
        .arg(m("sync/")));
    step("rsync --inplace", 1, &[]);
    assert_eq!(mnt.read("sync/b.txt"), b"rsync b, in place\n");
    assert_eq!(
        ls_tree(&remote).get("sync/tool.sh").map(String::as_str),
        Some("100755"),
        "{:?}",
        ls_tree(&remote)
    );

    // install -m: unlink, create, write, fchmod.
    run(Command::new("install")
        .args(["-m", "0755"])
        .arg(s.join("tool.sh"))
        .arg(m("inst.sh")));
    step("install -m 0755 (new)", 1, &["inst.sh"]);
    run(Command::new("install")
        .args(["-m", "0644"])
        .arg(s.join("a.txt"))
        .arg(m("inst.sh")));
    step("install -m 0644 (over)", 1, &[]);
    assert_eq!(
        ls_tree(&remote).get("inst.sh").map(String::as_str),
        Some("100644")
    );

    // cp and cp -a (data, then the attribute calls).
    run(Command::new("cp").arg(s.join("a.txt")).arg(m("cp.txt")));
    step("cp (new)", 1, &["cp.txt"]);
    run(Command::new("cp").arg(s.join("b.txt")).arg(m("cp.txt")));
    step("cp (over)", 1, &[]);
    run(Command::new("cp")
        .arg("-a")
        .arg(s.join("tool.sh"))
        .arg(m("cpa.sh")));
    step("cp -a (new, executable)", 1, &["cpa.sh"]);
    assert_eq!(
        ls_tree(&remote).get("cpa.sh").map(String::as_str),
        Some("100755")
    );

    // Python tempfile + os.replace, without fsync, onto a new and an existing file.
    for (target, what, paths) in [
        ("py.txt", "python replace (new)", &["py.txt"][..]),
        ("py.txt", "python replace (over)", &[][..]),
    ] {
        run(Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import os, tempfile\nfd, tmp = tempfile.mkstemp(dir='.')\nos.write(fd, b'{what}\\n')\nos.close(fd)\nos.replace(tmp, '{target}')\n"
            ))
            .current_dir(&mnt.mnt));
        step(what, 1, paths);
    }
    // Go's os.CreateTemp(dir, "values.yaml*") then os.Rename.
    sh("printf 'go: 1\\n' > plain.txt123456789 && mv plain.txt123456789 plain.txt");
    step("go-style temp + rename", 1, &[]);
    // git checkout-style: unlink, then create the same name.
    sh("rm dir/a.txt && printf 'checked out\\n' > dir/a.txt");
    step("unlink and create", 1, &[]);
    assert_eq!(mnt.read("dir/a.txt"), b"checked out\n");
    // sponge reads everything, then writes the file.
    sh("sed 's/beta/BETA/' dir/sub/b.txt | sponge dir/sub/b.txt");
    step("sponge", 1, &[]);
    assert_eq!(mnt.read("dir/sub/b.txt"), b"BETA\n");

    // vim with a normal vimrc: backups, undo and swap files, backupcopy yes and auto.
    put(&mnt.p("vim.txt"), b"hello\nworld\n");
    step("a file for vim", 1, &["vim.txt"]);
    for (bc, what) in [
        ("yes", "vim backupcopy=yes"),
        ("auto", "vim backupcopy=auto"),
    ] {
        run(Command::new("vim")
            .current_dir(&mnt.mnt)
            .env("HOME", home.path())
            // -es skips initialisations unless -u names the vimrc.
            .arg("-es")
            .arg("-u")
            .arg(home.path().join(".vimrc"))
            .args(["-i", "NONE"])
            .arg(format!("+set backupcopy={bc}"))
            .arg(format!("+%s/world\\|yes/{bc}/"))
            .args(["+wq", "vim.txt"]));
        step(what, 1, &[]);
        assert!(mnt.read_str("vim.txt").contains(bc));
        // The vimrc was in effect: its undo file is there (in memory, never committed).
        assert!(mnt.p(".vim.txt.un~").exists());
    }
    // A file written and closed, then left alone, is committed without fsync.
    put(&mnt.p("alone.txt"), b"left alone\n");
    let pushed = wait_for(std::time::Duration::from_secs(20), || {
        remote_raw(&remote, "alone.txt").filter(|b| b == b"left alone\n")
    });
    assert!(pushed.is_some(), "a closed file was never committed");
}

/// A TCP relay in front of a server that can turn into a black hole: it keeps accepting
/// connections and never answers (a firewall dropping packets, a dead VPN).
struct Relay {
    port: u16,
    black_hole: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn to(target: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let black_hole = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (bh, h) = (black_hole.clone(), held.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if bh.load(Ordering::SeqCst) {
                    h.lock().expect("held").push(conn);
                    continue;
                }
                let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (mut a, mut b) in [
                    (
                        conn.try_clone().expect("clone"),
                        up.try_clone().expect("clone"),
                    ),
                    (up, conn),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay {
            port,
            black_hole,
            held,
        }
    }

    fn set_black_hole(&self, on: bool) {
        self.black_hole
            .store(on, std::sync::atomic::Ordering::SeqCst);
        if !on {
            self.held.lock().expect("held").clear();
        }
    }
}

#[test]
fn a_remote_that_never_answers_is_timed_out_shown_and_retried() {
    use std::time::{Duration, Instant};
    let remote = seeded_remote();
    let daemon = repo_common::Daemon::start(remote.dir());
    let relay = Relay::to(daemon.port);
    let mnt = mount_with(&remote, None, |o| {
        o.remote = format!("git://127.0.0.1:{}/remote.git", relay.port);
        o.net_timeout = Duration::from_secs(2);
        o.push_timeout = Duration::from_secs(10);
    });
    assert_eq!(mnt.read("plain.txt"), PLAIN.as_bytes());
    relay.set_black_hole(true);

    // fsync returns within the push timeout, the change committed locally.
    let t0 = Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(mnt.p("offline.txt")).expect("create");
        f.write_all(b"written while the remote hangs\n")
            .expect("write");
        f.sync_all()
            .expect("fsync succeeds once the change is durable locally");
    }
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "fsync hung: {:?}",
        t0.elapsed()
    );
    // The status shows the attempt in flight, then the timeout and the attempts.
    let in_flight = wait_for(Duration::from_secs(20), || {
        status_field(&mnt.status(), "push_in_flight_since").filter(|v| v != "null")
    });
    assert!(in_flight.is_some(), "{}", mnt.status());
    let failed = wait_for(Duration::from_secs(20), || {
        let st = mnt.status();
        let attempts: u32 = status_field(&st, "push_attempts")?.parse().ok()?;
        let err = status_field(&st, "last_push_error").filter(|e| e != "null")?;
        (attempts >= 1).then_some(err)
    });
    let err = failed.unwrap_or_else(|| panic!("no push error shown: {}", mnt.status()));
    assert!(err.to_lowercase().contains("time"), "{err}");
    assert_ne!(
        status_field(&mnt.status(), "pending_pushes").as_deref(),
        Some("0")
    );
    // Commits and FUSE operations go on meanwhile.
    put(&mnt.p("also.txt"), b"also while the remote hangs\n");
    assert_eq!(mnt.read("also.txt"), b"also while the remote hangs\n");

    // The remote answers again: everything lands, once.
    relay.set_black_hole(false);
    let landed = wait_for(Duration::from_secs(90), || {
        (remote_raw(&remote, "offline.txt").is_some() && remote_raw(&remote, "also.txt").is_some())
            .then_some(())
    });
    assert!(landed.is_some(), "{}", mnt.status());
    mnt.flush();
    assert_eq!(
        remote_raw(&remote, "offline.txt").as_deref(),
        Some(&b"written while the remote hangs\n"[..])
    );
    let st = mnt.status();
    assert_eq!(
        status_field(&st, "pending_pushes").as_deref(),
        Some("0"),
        "{st}"
    );
    assert_eq!(
        status_field(&st, "push_attempts").as_deref(),
        Some("0"),
        "{st}"
    );
    assert_eq!(
        status_field(&st, "last_push_error").as_deref(),
        Some("null"),
        "{st}"
    );
}

/// A second local user for the tests (created once, no home, no password).
fn other_user() -> &'static str {
    const NAME: &str = "valuesfs-other";
    let exists = Command::new("id")
        .arg(NAME)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let out = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/bin/sh", NAME])
            .output()
            .expect("useradd");
        // A parallel test may have created it meanwhile.
        let again = Command::new("id")
            .arg(NAME)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(again, "useradd: {}", String::from_utf8_lossy(&out.stderr));
    }
    NAME
}

/// Runs `sh -c script` as the other user; (success, stderr).
fn as_other(script: &str) -> (bool, String) {
    let out = Command::new("runuser")
        .args(["-u", other_user(), "--", "sh", "-c", script])
        .output()
        .expect("runuser");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn other_users_need_allow_other_and_then_the_mode_bits_apply() {
    use std::os::unix::fs::PermissionsExt;
    let remote = seeded_remote();
    for allow in [false, true] {
        let mnt = mount_with(&remote, None, |o| o.allow_other = allow);
        // Let the other user reach the mountpoint (temp dirs are 0700).
        for d in [remote.dir(), mnt.mnt.parent().expect("parent")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let plain = mnt.p("plain.txt").display().to_string();
        let (ok, err) = as_other(&format!("cat {plain}"));
        if !allow {
            assert!(!ok && err.contains("Permission denied"), "{err}");
            continue;
        }
        assert!(ok, "with --allow-other, reads work: {err}");
        let (ok, err) = as_other(&format!("cat {}", mnt.p("secret.yaml").display()));
        assert!(ok, "{err}");
        // The files are the owner's, 0644: others may not write them or create files.
        let (ok, err) = as_other(&format!("echo x >> {plain}"));
        assert!(!ok && err.contains("Permission denied"), "{err}");
        let (ok, err) = as_other(&format!("echo x > {}", mnt.p("new.txt").display()));
        assert!(!ok && err.contains("Permission denied"), "{err}");
        assert_eq!(mnt.read("plain.txt"), PLAIN.as_bytes());
    }
}

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
    assert!(files_containing(&mnt.state, SECRET.as_bytes()).is_empty());
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

//! The mount against real editors and shell tools: the decrypted view equals what the
//! codec gives; vim (with and without swap files, and with a rename-style backup), `sed -i`,
//! a Python atomic save and shell redirects each make exactly one commit with no scratch
//! file committed; `cp -r`, `mv` and `rm -r` land as expected; the real `sops` reads what
//! was pushed, and a value edit changes only that value's line plus the sops metadata.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::*;
use fs_common::*;
use repo_common::{clone, git};

fn vim(m: &Mnt, args: &[&str], file: &str) {
    run(Command::new("vim")
        .current_dir(&m.mnt)
        .env("HOME", m.mnt.parent().expect("parent"))
        .args(["-es", "-u", "NONE", "-i", "NONE"])
        .args(args)
        .arg(file));
}

/// Names that must never reach git.
fn is_scratch_name(p: &str) -> bool {
    let name = p.rsplit('/').next().unwrap_or(p);
    name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name.ends_with('~')
        || name == "4913"
        || name.starts_with("sed")
        || name.ends_with(".tmp")
}

fn assert_no_scratch(r: &Remote) {
    let bad: Vec<String> = remote_paths(r)
        .into_iter()
        .filter(|p| is_scratch_name(p))
        .collect();
    assert!(bad.is_empty(), "scratch files committed: {bad:?}");
}

/// Changed lines of `path` between two commits (without the `+++`/`---` headers).
fn changed_lines(r: &Remote, a: &str, b: &str, path: &str) -> Vec<String> {
    git(&r.path, &["diff", "-U0", a, b, "--", path])
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .map(String::from)
        .collect()
}

/// A stable re-encryption: besides the sops metadata that must change, exactly one line
/// (the value of `key`) was removed and one added.
fn assert_only_value_changed(r: &Remote, a: &str, b: &str, key: &str) {
    let lines = changed_lines(r, a, b, "secret.yaml");
    let meta = |l: &str| {
        l.contains("lastmodified:") || l.contains("mac:") || l.contains("valuesfs_source")
    };
    let other: Vec<&String> = lines.iter().filter(|l| !meta(l)).collect();
    assert_eq!(
        other.len(),
        2,
        "edit of {key} ({a}..{b}) changed more than its value line: {lines:#?}"
    );
    assert!(
        other[0].starts_with('-') && other[1].starts_with('+'),
        "{lines:#?}"
    );
    for l in &other {
        assert!(
            l[1..].trim_start().starts_with(&format!("{key}:")),
            "edit of {key} changed an unrelated line {l:?}: {lines:#?}"
        );
    }
    // (lastmodified has one-second resolution: edits within a second may keep it.)
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('+') && l.contains("mac:")),
        "mac not updated: {lines:#?}"
    );
}

/// Waits for pushes, then checks the commit count and returns the new remote head.
fn expect_commits(m: &Mnt, r: &Remote, want: usize, what: &str) -> String {
    m.flush();
    assert_eq!(
        commits(r),
        want,
        "{what}: commits on the remote {:?}",
        subjects(r)
    );
    assert_no_scratch(r);
    remote_head(r)
}

#[test]
fn decrypted_view_matches_codec() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let want = secret_plaintext();
    assert_eq!(
        m.read("secret.yaml"),
        want,
        "decrypted view differs from the codec"
    );
    let meta = std::fs::metadata(m.p("secret.yaml")).expect("stat");
    assert_eq!(
        meta.len(),
        want.len() as u64,
        "stat size is not the plaintext size"
    );
    assert_ne!(
        meta.len(),
        secret_ciphertext().len() as u64,
        "stat shows the ciphertext size"
    );
    assert_eq!(meta.mode() & 0o777, 0o644);
    assert_eq!(m.read("plain.txt"), PLAIN.as_bytes());
    assert_eq!(m.read("dir/sub/b.txt"), b"beta\n");
    assert_eq!(m.read(".sops.yaml"), sops_yaml());
    let mut names: Vec<String> = std::fs::read_dir(&m.mnt)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".sops.yaml", ".valuesfs", "dir", "plain.txt", "secret.yaml"]
    );
    // Reading commits nothing.
    m.flush();
    assert_eq!(commits(&r), 1);
}

#[test]
fn editors_each_make_one_commit() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let mut n = commits(&r);
    let mut expected = String::from_utf8(secret_plaintext()).expect("utf8");
    let mut heads = vec![remote_head(&r)];

    // vim with its default swap file.
    vim(
        &m,
        &["-c", "%s/replicas: 2/replicas: 3/", "-c", "wq"],
        "secret.yaml",
    );
    expected = expected.replace("replicas: 2", "replicas: 3");
    n += 1;
    heads.push(expect_commits(&m, &r, n, "vim with swap"));
    assert_eq!(m.read_str("secret.yaml"), expected);

    // vim -n: no swap file.
    vim(
        &m,
        &["-n", "-c", "%s/replicas: 3/replicas: 4/", "-c", "wq"],
        "secret.yaml",
    );
    expected = expected.replace("replicas: 3", "replicas: 4");
    n += 1;
    heads.push(expect_commits(&m, &r, n, "vim -n"));
    assert_eq!(m.read_str("secret.yaml"), expected);

    // vim keeping a backup made by renaming the original aside (backupcopy=no): the
    // tracked file moves onto a scratch name and a new one is written in its place.
    vim(
        &m,
        &[
            "-c",
            "set nocompatible backup writebackup backupcopy=no backupskip=",
            "-c",
            "%s/tag: 1.4.2/tag: 1.4.3/",
            "-c",
            "wq",
        ],
        "secret.yaml",
    );
    expected = expected.replace("tag: 1.4.2", "tag: 1.4.3");
    n += 1;
    heads.push(expect_commits(&m, &r, n, "vim backupcopy=no"));
    assert_eq!(m.read_str("secret.yaml"), expected);
    assert!(
        m.p("secret.yaml~").exists(),
        "vim's backup should be visible in the mount"
    );
    // Whatever the grace period would do for the file moved aside: `flush` forces every
    // pending deletion and deferred file now (no waiting on the 2 s timer), so a deletion
    // left pending by the backup rename would be committed here.
    m.flush();
    assert_eq!(
        commits(&r),
        n,
        "a deletion was committed after the backup rename"
    );
    assert_eq!(m.read_str("secret.yaml"), expected);
    assert!(remote_raw(&r, "secret.yaml").is_some());

    // sed -i: temp file sedXXXXXX renamed onto the file.
    run(Command::new("sed").current_dir(&m.mnt).args([
        "-i",
        "s/host: db.internal/host: db2.internal/",
        "secret.yaml",
    ]));
    expected = expected.replace("host: db.internal", "host: db2.internal");
    n += 1;
    heads.push(expect_commits(&m, &r, n, "sed -i"));
    assert_eq!(m.read_str("secret.yaml"), expected);

    // Python atomic save: write p.tmp, flush, fsync, os.replace.
    let py = "import os, sys\n\
p = sys.argv[1]\n\
s = open(p).read().replace('port: 5432', 'port: 6543')\n\
with open(p + '.tmp', 'w') as f:\n    f.write(s); f.flush(); os.fsync(f.fileno())\n\
os.replace(p + '.tmp', p)\n";
    run(Command::new("python3")
        .current_dir(&m.mnt)
        .args(["-c", py, "secret.yaml"]));
    expected = expected.replace("port: 5432", "port: 6543");
    n += 1;
    heads.push(expect_commits(&m, &r, n, "python atomic save"));
    assert_eq!(m.read_str("secret.yaml"), expected);

    // Shell redirects.
    run(Command::new("sh")
        .current_dir(&m.mnt)
        .args(["-c", "echo x > plain.txt"]));
    n += 1;
    expect_commits(&m, &r, n, "echo >");
    assert_eq!(m.read_str("plain.txt"), "x\n");
    assert_eq!(remote_raw(&r, "plain.txt").as_deref(), Some(&b"x\n"[..]));
    run(Command::new("sh")
        .current_dir(&m.mnt)
        .args(["-c", "echo y >> plain.txt"]));
    n += 1;
    expect_commits(&m, &r, n, "echo >>");
    assert_eq!(m.read_str("plain.txt"), "x\ny\n");
    assert_eq!(remote_raw(&r, "plain.txt").as_deref(), Some(&b"x\ny\n"[..]));
    run(Command::new("sh")
        .current_dir(&m.mnt)
        .args(["-c", "echo new > fresh.txt"]));
    n += 1;
    expect_commits(&m, &r, n, "echo > new file");
    assert_eq!(remote_raw(&r, "fresh.txt").as_deref(), Some(&b"new\n"[..]));

    // What landed: the real sops reads every edit, and our codec gives the exact bytes.
    let co = clone(r.dir(), &r.url);
    let file = co.path().join("secret.yaml");
    let out = String::from_utf8(sops_decrypt(&file, &r.key, &[])).expect("utf8");
    for want in [
        "replicas: 4",
        "tag: 1.4.3",
        "host: db2.internal",
        "port: 6543",
    ] {
        assert!(out.contains(want), "sops -d lacks {want:?}:\n{out}");
    }
    assert_eq!(
        String::from_utf8(decrypt_if_sops(
            "secret.yaml",
            &std::fs::read(&file).expect("read")
        ))
        .expect("utf8"),
        expected
    );
    let paths: BTreeSet<String> = remote_paths(&r).into_iter().collect();
    let want: BTreeSet<String> = [
        ".sops.yaml",
        "secret.yaml",
        "plain.txt",
        "fresh.txt",
        "dir/a.txt",
        "dir/sub/b.txt",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(paths, want);

    // Stable re-encryption: each value edit touched its line and the metadata only.
    for (i, key) in ["replicas", "replicas", "tag", "host", "port"]
        .iter()
        .enumerate()
    {
        assert_only_value_changed(&r, &heads[i], &heads[i + 1], key);
    }
}

#[test]
fn cp_mv_rm_land_as_expected() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let sh = |cmd: &str| {
        run(Command::new("sh").current_dir(&m.mnt).args(["-c", cmd]));
    };
    let tree = |r: &Remote| -> BTreeSet<String> { remote_paths(r).into_iter().collect() };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    let base = [
        ".sops.yaml",
        "secret.yaml",
        "plain.txt",
        "dir/a.txt",
        "dir/sub/b.txt",
    ];

    sh("cp -r dir dir2");
    m.flush();
    let mut want = set(&base);
    want.extend(set(&["dir2/a.txt", "dir2/sub/b.txt"]));
    assert_eq!(tree(&r), want);
    assert_eq!(m.read("dir2/sub/b.txt"), b"beta\n");
    assert_eq!(
        remote_raw(&r, "dir2/a.txt").as_deref(),
        Some(&b"alpha\n"[..])
    );

    let n = commits(&r);
    sh("mv dir2 dir3");
    m.flush();
    assert_eq!(commits(&r), n + 1, "mv of a directory is one commit");
    let mut want = set(&base);
    want.extend(set(&["dir3/a.txt", "dir3/sub/b.txt"]));
    assert_eq!(tree(&r), want);
    assert!(!m.p("dir2").exists());
    assert_eq!(m.read("dir3/sub/b.txt"), b"beta\n");

    // A file across directories, and a secret renamed keeps its ciphertext.
    let n = commits(&r);
    sh("mv dir/a.txt dir3/sub/a2.txt");
    m.flush();
    assert_eq!(commits(&r), n + 1, "mv of a file is one commit");
    assert_eq!(m.read("dir3/sub/a2.txt"), b"alpha\n");
    assert!(!m.p("dir/a.txt").exists());

    sh("cp secret.yaml copy.yaml");
    m.flush();
    let raw = remote_raw(&r, "copy.yaml").expect("copy.yaml pushed");
    assert!(
        is_sops("copy.yaml", &raw),
        "a copy matching a creation rule must be encrypted"
    );
    assert_eq!(decrypt_if_sops("copy.yaml", &raw), secret_plaintext());
    assert_eq!(m.read("copy.yaml"), secret_plaintext());

    // `rm -r` unlinks every file, then removes the (now empty) directories bottom-up.
    let rm = Command::new("sh")
        .current_dir(&m.mnt)
        .args(["-c", "rm -r dir3"])
        .output()
        .expect("spawn rm");
    m.flush();
    assert!(!m.p("dir3").exists());
    let want = set(&[
        ".sops.yaml",
        "secret.yaml",
        "copy.yaml",
        "plain.txt",
        "dir/sub/b.txt",
    ]);
    assert_eq!(tree(&r), want);

    // A fresh clone shows the same tree, decrypted contents as in the mount.
    let co = clone(r.dir(), &r.url);
    let files = repo_common::read_tree(co.path());
    assert_eq!(files.keys().cloned().collect::<BTreeSet<_>>(), want);
    for p in &want {
        let raw = std::fs::read(co.path().join(p)).expect("read");
        assert_eq!(
            decrypt_if_sops(p, &raw),
            m.read(p),
            "{p} differs between clone and mount"
        );
    }
    assert_no_scratch(&r);
    assert!(
        rm.status.success(),
        "rm -r dir3 failed: {}",
        String::from_utf8_lossy(&rm.stderr)
    );
}

#[test]
fn moved_onto_a_scratch_name_is_deleted_after_the_grace_period() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let n = commits(&r);
    // A tracked file moved aside (as an editor's backup) and never replaced.
    std::fs::rename(m.p("plain.txt"), m.p("plain.txt~")).expect("mv to backup name");
    assert!(!m.p("plain.txt").exists());
    assert_eq!(
        m.read("plain.txt~"),
        PLAIN.as_bytes(),
        "the moved-aside copy is readable"
    );
    m.push();
    assert_eq!(commits(&r), n, "deleted before the grace period");
    let deleted = wait_for(std::time::Duration::from_secs(6), || {
        m.push();
        remote_raw(&r, "plain.txt").is_none().then_some(())
    });
    assert!(
        deleted.is_some(),
        "deletion of a file moved aside never committed"
    );
    assert_eq!(commits(&r), n + 1, "{:?}", subjects(&r));
    assert!(m.p("plain.txt~").exists(), "the scratch copy vanished");
    assert_no_scratch(&r);
    // A secret moved aside and moved back within the grace period stays as it was.
    std::fs::rename(m.p("secret.yaml"), m.p("secret.yaml.swp")).expect("mv aside");
    std::fs::rename(m.p("secret.yaml.swp"), m.p("secret.yaml")).expect("mv back");
    // A sleep past the grace period would only show that the timer did nothing; `flush`
    // forces every pending deletion and deferred file now, so a deletion left pending by
    // the move aside (or a re-encrypted rewrite of the secret) would be committed here.
    m.flush();
    assert_eq!(m.read("secret.yaml"), secret_plaintext());
    assert_eq!(
        remote_raw(&r, "secret.yaml").as_deref(),
        Some(&secret_ciphertext()[..]),
        "moving a secret aside and back changed it"
    );
    assert_eq!(commits(&r), n + 1, "{:?}", subjects(&r));
}

#[test]
fn scratch_and_ignored_files_stay_in_memory() {
    let r = seeded_remote();
    push_files(&r, &[(".gitignore", b"*.log\nbuild/\n")], "ignore logs");
    let m = mount_with(&r, None, |o| o.ignore = vec!["*.bak".into()]);
    let n = commits(&r);
    let files: [(&str, &[u8]); 7] = [
        ("x.log", b"log line\n"),
        ("y.bak", b"backup\n"),
        ("dir/.a.txt.swp", b"swap"),
        ("notes.txt~", b"tilde"),
        ("#autosave#", b"emacs"),
        ("4913", b""),
        ("z.tmp", b"tmp"),
    ];
    for (p, c) in files {
        put(&m.p(p), c);
        assert_eq!(m.read(p), c, "{p} not readable");
    }
    std::fs::create_dir(m.p("build")).expect("mkdir build");
    put(&m.p("build/out.bin"), b"artifact");
    // fsync of a scratch file returns at once and commits nothing.
    {
        let f = OpenOptions::new()
            .write(true)
            .open(m.p("x.log"))
            .expect("open");
        f.sync_all().expect("fsync scratch");
    }
    m.flush();
    assert_eq!(
        commits(&r),
        n,
        "scratch files were committed: {:?}",
        subjects(&r)
    );
    // Renaming a scratch file onto a real name commits it once.
    std::fs::rename(m.p("y.bak"), m.p("restored.txt")).expect("rename scratch onto a name");
    m.flush();
    assert_eq!(commits(&r), n + 1);
    assert_eq!(
        remote_raw(&r, "restored.txt").as_deref(),
        Some(&b"backup\n"[..])
    );
    assert!(!m.p("y.bak").exists());
    // Memory only: gone after a remount.
    m.unmount();
    let m = mount_remote(&r);
    assert!(
        !m.p("x.log").exists(),
        "a scratch file survived the remount"
    );
    assert!(m.p("restored.txt").exists());
}

#[test]
fn new_files_follow_creation_rules_and_sops_reads_them() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let k8s = "apiVersion: v1\nkind: Secret\ndata:\n  password: aHVudGVyMg==\nstringData:\n  token: abc\n";
    let json = "{\n  \"db\": {\"user\": \"app\", \"port\": 5432}\n}\n";
    let env = "API_KEY=s3cr3t\nDEBUG=false\n";
    std::fs::create_dir(m.p("secrets")).expect("mkdir");
    put(&m.p("secrets/k.yaml"), k8s.as_bytes());
    put(&m.p("conf.json"), json.as_bytes());
    put(&m.p("app.env"), env.as_bytes());
    put(&m.p("notes.txt"), b"not a secret\n");
    for (p, c) in [
        ("secrets/k.yaml", k8s),
        ("conf.json", json),
        ("app.env", env),
    ] {
        assert_eq!(m.read_str(p), c, "{p} read back");
    }
    m.flush();
    let co = clone(r.dir(), &r.url);
    // The first matching rule (secrets/: only data and stringData encrypted).
    let raw = std::fs::read_to_string(co.path().join("secrets/k.yaml")).expect("read");
    assert!(
        raw.contains("apiVersion: v1") && raw.contains("kind: Secret"),
        "{raw}"
    );
    assert!(
        !raw.contains("aHVudGVyMg==") && !raw.contains("token: abc"),
        "{raw}"
    );
    assert!(raw.contains("encrypted_regex"), "{raw}");
    // The general rule: everything encrypted.
    let raw = std::fs::read_to_string(co.path().join("conf.json")).expect("read");
    assert!(!raw.contains("5432") && !raw.contains("\"app\""), "{raw}");
    let raw = std::fs::read_to_string(co.path().join("app.env")).expect("read");
    assert!(!raw.contains("s3cr3t"), "{raw}");
    // No rule: plain.
    assert_eq!(
        std::fs::read(co.path().join("notes.txt")).expect("read"),
        b"not a secret\n"
    );
    // The real sops decrypts all of them to the same data.
    let out = String::from_utf8(sops_decrypt(&co.path().join("secrets/k.yaml"), &r.key, &[]))
        .expect("utf8");
    assert!(
        out.contains("password: aHVudGVyMg==") && out.contains("token: abc"),
        "{out}"
    );
    let out =
        String::from_utf8(sops_decrypt(&co.path().join("conf.json"), &r.key, &[])).expect("utf8");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["db"]["port"], 5432);
    assert_eq!(v["db"]["user"], "app");
    let out =
        String::from_utf8(sops_decrypt(&co.path().join("app.env"), &r.key, &[])).expect("utf8");
    assert_eq!(out, env);
}

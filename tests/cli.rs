//! The sops-like command line: decrypt, encrypt, edit, identities, errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn run(args: &[&str], envs: &[(&str, &Path)], cwd: &Path) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("XDG_CONFIG_HOME", cwd.join("no-config"));
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run valuesfs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn decrypt_finds_identities_like_sops() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let file = vectors().join("enc/values.yaml");
    let f = file.to_str().expect("utf8");
    let expected = std::fs::read(vectors().join("plain/values.yaml")).expect("plain");

    let by_file = run(&["decrypt", f], &[("SOPS_AGE_KEY_FILE", &key)], tmp.path());
    assert!(by_file.status.success(), "{}", stderr(&by_file));
    // Byte for byte what the real `sops -d` prints for the same file and key.
    let theirs = sops_decrypt(&file, &key, &[]);
    assert!(!theirs.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&by_file.stdout),
        String::from_utf8_lossy(&theirs),
        "valuesfs decrypt differs from sops -d"
    );
    assert_eq!(by_file.stdout, theirs);

    // SOPS_AGE_KEY inline.
    let inline = std::fs::read_to_string(&key).expect("key");
    let out = Command::new(bin())
        .args(["decrypt", f])
        .env("SOPS_AGE_KEY", inline.trim())
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("XDG_CONFIG_HOME", tmp.path().join("none"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, by_file.stdout);

    // $XDG_CONFIG_HOME/sops/age/keys.txt.
    let cfg = tmp.path().join("cfg");
    std::fs::create_dir_all(cfg.join("sops/age")).expect("mkdir");
    std::fs::copy(&key, cfg.join("sops/age/keys.txt")).expect("copy");
    let out = Command::new(bin())
        .args(["decrypt", f])
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("XDG_CONFIG_HOME", &cfg)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, by_file.stdout);
    // sops -d prints the data normalized; the plain vector had flow style etc.
    assert_ne!(out.stdout, expected);
}

#[test]
fn stdin_and_type_overrides() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let blob = std::fs::read(vectors().join("enc/blob.bin")).expect("blob");
    let mut child = Command::new(bin())
        .args([
            "decrypt",
            "--input-type",
            "json",
            "--output-type",
            "binary",
            "-",
        ])
        .env("SOPS_AGE_KEY_FILE", &key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&blob)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        std::fs::read(vectors().join("plain/blob.bin")).expect("plain")
    );
}

#[test]
fn encrypt_uses_the_nearest_creation_rule_and_in_place() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("secrets/deep")).expect("mkdir");
    std::fs::copy(vectors().join(".sops.yaml"), repo.join(".sops.yaml")).expect("config");
    let secret = repo.join("secrets/deep/s.yaml");
    std::fs::write(&secret, "data:\n  token: abc\nname: visible\n").expect("write");
    let out = run(
        &["encrypt", "--in-place", "secrets/deep/s.yaml"],
        &[("SOPS_AGE_KEY_FILE", &key)],
        &repo,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&secret).expect("read");
    assert!(
        text.contains("encrypted_regex: ^(data|stringData)$"),
        "{text}"
    );
    assert!(text.contains("name: visible"));
    assert!(!text.contains("abc"));
    let plain = sops_decrypt(&secret, &key, &[]);
    assert_eq!(
        String::from_utf8_lossy(&plain),
        "data:\n    token: abc\nname: visible\n"
    );

    // Encrypting it again is refused.
    let again = run(
        &["encrypt", "secrets/deep/s.yaml"],
        &[("SOPS_AGE_KEY_FILE", &key)],
        &repo,
    );
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already encrypted"));

    // No rule, no --age: a clear error naming the file.
    let lone = tmp.path().join("lone.yaml");
    std::fs::write(&lone, "a: 1\n").expect("write");
    let out = run(&["encrypt", "lone.yaml"], &[], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.starts_with("valuesfs: lone.yaml: "), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn errors_are_one_line_naming_file_and_cause() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let vector = std::fs::read_to_string(vectors().join("enc/values.yaml")).expect("vec");
    // One edit of the vector, checked to have changed it (a no-op edit would decrypt).
    let tamper = |from: &str, to: &str| -> Vec<u8> {
        assert_eq!(vector.matches(from).count(), 1, "{from} not unique");
        let out = vector.replace(from, to);
        assert_ne!(out, vector);
        out.into_bytes()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"a: 1\n".to_vec(), "not a SOPS file"),
        (b"a: [\n".to_vec(), "invalid YAML"),
        // One value's ciphertext changed: that value fails to authenticate.
        (
            tamper("data:6w==,", "data:7w==,"),
            "value at \"replicas:\" failed to authenticate (tampered, swapped or corrupted)",
        ),
        // Metadata changed without the key: the MAC no longer matches.
        (
            tamper(
                "lastmodified: \"2026-11-22T01:26:58Z\"",
                "lastmodified: \"2026-11-22T01:26:59Z\"",
            ),
            "MAC mismatch: the file was modified without its key",
        ),
        // A value stored in clear where sops encrypts: refused, naming the key.
        (
            {
                let line = vector
                    .lines()
                    .find(|l| l.starts_with("replicas: "))
                    .expect("replicas line");
                tamper(line, "replicas: 3")
            },
            "value at \"replicas:\" should be encrypted but is not",
        ),
    ];
    for (i, (content, needle)) in cases.iter().enumerate() {
        let name = format!("f{i}.yaml");
        std::fs::write(tmp.path().join(&name), content).expect("write");
        let out = run(
            &["decrypt", &name],
            &[("SOPS_AGE_KEY_FILE", &key)],
            tmp.path(),
        );
        assert_eq!(out.status.code(), Some(1), "case {i}");
        assert!(out.stdout.is_empty(), "case {i}: no partial output");
        let msg = stderr(&out);
        assert!(msg.starts_with(&format!("valuesfs: {name}: ")), "{msg}");
        assert!(!needle.is_empty());
        assert!(
            msg.contains(needle),
            "case {i}: expected {needle:?} in {msg:?}"
        );
        assert_eq!(msg.lines().count(), 1, "{msg}");
    }
    let missing = run(
        &["decrypt", "nope.yaml"],
        &[("SOPS_AGE_KEY_FILE", &key)],
        tmp.path(),
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).starts_with("valuesfs: nope.yaml: "));
    let nokey = run(
        &[
            "decrypt",
            vectors().join("enc/values.yaml").to_str().expect("p"),
        ],
        &[],
        tmp.path(),
    );
    assert_eq!(nokey.status.code(), Some(1));
    assert!(
        stderr(&nokey).contains("no age identity"),
        "{}",
        stderr(&nokey)
    );
}

fn editor_script(dir: &Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("editor.sh");
    std::fs::write(&p, format!("#!/bin/sh\nset -e\n{body}\n")).expect("script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

#[test]
fn edit_a_sops_file_minimal_diff_and_sops_reads_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let file = tmp.path().join("values.yaml");
    let orig = std::fs::read_to_string(vectors().join("enc/values.yaml")).expect("vec");
    std::fs::write(&file, &orig).expect("write");
    // The editor replaces the file (like vim's backupcopy=no): write a new file, rename.
    let ed = editor_script(
        tmp.path(),
        "sed 's/replicas: 2/replicas: 5/' \"$1\" > \"$1.new\"\nmv \"$1.new\" \"$1\"\necho \"$1\" > \"$(dirname \"$0\")/seen\"",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run(
        &["edit", "values.yaml"],
        &[("SOPS_AGE_KEY_FILE", &key), ("EDITOR", &ed)],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::read_to_string(&file).expect("read");
    let changed: Vec<&str> = orig
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.trim_start().split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(changed, vec!["replicas", "lastmodified", "mac"]);
    assert!(String::from_utf8_lossy(&sops_decrypt(&file, &key, &[])).contains("replicas: 5"));
    // The temporary lived in memory-backed storage and is gone.
    let seen = std::fs::read_to_string(tmp.path().join("seen")).expect("seen");
    let seen = Path::new(seen.trim());
    assert!(
        seen.starts_with("/dev/shm")
            || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| seen.starts_with(d)),
        "{}",
        seen.display()
    );
    assert!(!seen.exists(), "temporary left behind");

    // No change: no rewrite.
    let noop = editor_script(tmp.path(), "true");
    let before = std::fs::metadata(&file)
        .expect("meta")
        .modified()
        .expect("mtime");
    let out = run(
        &["edit", "values.yaml"],
        &[("SOPS_AGE_KEY_FILE", &key), ("EDITOR", &noop)],
        tmp.path(),
    );
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&file).expect("read"), after);
    assert_eq!(
        std::fs::metadata(&file)
            .expect("meta")
            .modified()
            .expect("mtime"),
        before
    );
}

#[test]
fn edit_with_real_vim() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let file = tmp.path().join("values.yaml");
    std::fs::copy(vectors().join("enc/values.yaml"), &file).expect("copy");
    let vim = Command::new("vim").arg("--version").output();
    assert!(
        vim.map(|o| o.status.success()).unwrap_or(false),
        "vim is required"
    );
    let ed = editor_script(
        tmp.path(),
        "vim -es -u NONE -c '%s/host: db.internal/host: db.example/' -c 'wq' \"$1\" </dev/null",
    );
    let out = run(
        &["edit", "values.yaml"],
        &[("SOPS_AGE_KEY_FILE", &key), ("EDITOR", &ed)],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plain = String::from_utf8(sops_decrypt(&file, &key, &[])).expect("utf8");
    assert!(plain.contains("host: db.example"), "{plain}");
}

/// `valuesfs demo DIR` on a fresh folder: the remote holds the secrets encrypted, the
/// mount shows them decrypted, the key is private; SIGINT unmounts and exits, also when
/// the demo was started with SIGINT ignored (as a background job is).
#[test]
fn the_demo_mounts_a_values_repo_and_stops_on_a_signal() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("demo");
    let mut child = Command::new("sh")
        .args(["-c", "trap '' INT; exec \"$0\" demo \"$1\""])
        .arg(bin())
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    let status = dir.join("mnt/.valuesfs/status");
    let t0 = std::time::Instant::now();
    while !status.exists() {
        if let Ok(Some(s)) = child.try_wait() {
            let out = child.wait_with_output().expect("output");
            panic!(
                "the demo exited ({s}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(t0.elapsed().as_secs() < 60, "the demo did not mount");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let shown = std::fs::read_to_string(dir.join("mnt/apps/web/secrets.yaml")).expect("read");
    assert!(
        shown.contains("clientSecret: demo-oauth-secret-7d2e"),
        "{shown}"
    );
    let stored = Command::new("git")
        .arg("--git-dir")
        .arg(dir.join("remote.git"))
        .args(["show", "main:apps/web/secrets.yaml"])
        .output()
        .expect("git show");
    let stored = String::from_utf8_lossy(&stored.stdout);
    assert!(stored.contains("ENC[AES256_GCM") && !stored.contains("demo-oauth-secret"));
    let mode = std::fs::metadata(dir.join("key.txt"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The real sops reads the remote's file with the demo's key (in its own layout).
    let file = tmp.path().join("secrets.yaml");
    std::fs::write(&file, stored.as_bytes()).expect("write");
    let by_sops = sops_decrypt(&file, &dir.join("key.txt"), &[]);
    assert!(
        String::from_utf8_lossy(&by_sops).contains("clientSecret: demo-oauth-secret-7d2e"),
        "{}",
        String::from_utf8_lossy(&by_sops)
    );
    // SIGINT (the shell ignored it; the demo resets that).
    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let t0 = std::time::Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t0.elapsed().as_secs() < 10,
            "the demo did not stop within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(code.success(), "{code}");
    assert!(!status.exists(), "still mounted");
}

/// A mount that cannot start says why on the terminal, not only in daemon.log.
#[test]
fn a_mount_that_fails_to_start_prints_its_cause() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let out = Command::new(bin())
        .arg("mount")
        .arg(tmp.path().join("no-such-remote.git"))
        .arg(&mnt)
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("the daemon exited"), "{err}");
    assert!(
        err.contains("starting the git master"),
        "the cause is missing: {err}"
    );
}

fn git_in(dir: &Path, args: &[&str], key: Option<&Path>) -> String {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .args(args)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("XDG_CONFIG_HOME", dir.join("no-config"));
    if let Some(k) = key {
        c.env("SOPS_AGE_KEY_FILE", k);
    }
    let out = c.output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `valuesfs decrypt --textconv` as git's textconv driver (README's two lines): diffs of
/// SOPS files show the changed values decrypted, plain files pass through; `valuesfs
/// log PATH` in a clone prints the same history with decrypted diffs, and says so where
/// no key here opens a version.
#[test]
fn git_diffs_and_log_show_decrypted_values() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git_in(&work, &["init", "-q", "-b", "main"], None);
    std::fs::write(work.join(".gitattributes"), "*.yaml diff=sops\n").expect("attrs");
    let textconv = format!("{} decrypt --textconv", bin().display());
    git_in(&work, &["config", "diff.sops.textconv", &textconv], None);
    let enc = std::fs::read(vectors().join("enc/values.yaml")).expect("vector");
    std::fs::write(work.join("secret.yaml"), &enc).expect("write");
    std::fs::write(work.join("plain.yaml"), "a: 1\n").expect("write");
    git_in(&work, &["add", "-A"], None);
    git_in(&work, &["commit", "-qm", "seed"], None);
    let ed = editor_script(
        tmp.path(),
        "sed 's/replicas: 2/replicas: 5/' \"$1\" > \"$1.new\"\nmv \"$1.new\" \"$1\"",
    );
    let out = Command::new(bin())
        .args(["edit", "secret.yaml"])
        .current_dir(&work)
        .env("SOPS_AGE_KEY_FILE", &key)
        .env("EDITOR", &ed)
        .output()
        .expect("edit");
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(work.join("plain.yaml"), "a: 2\n").expect("write");
    git_in(&work, &["commit", "-qam", "more replicas"], None);

    let diff = git_in(&work, &["diff", "HEAD~1", "--", "secret.yaml"], Some(&key));
    assert!(
        diff.contains("-replicas: 2\n") && diff.contains("+replicas: 5\n"),
        "{diff}"
    );
    assert!(!diff.contains("ENC["), "{diff}");
    let plain = git_in(&work, &["diff", "HEAD~1", "--", "plain.yaml"], Some(&key));
    assert!(plain.contains("-a: 1\n+a: 2\n"), "{plain}");

    let log = run(
        &["log", "secret.yaml"],
        &[("SOPS_AGE_KEY_FILE", &key)],
        &work,
    );
    assert!(log.status.success(), "{}", stderr(&log));
    let text = String::from_utf8_lossy(&log.stdout);
    assert_eq!(text.matches("\ncommit ").count() + 1, 2, "{text}");
    assert!(
        text.starts_with("commit ") && text.contains("    more replicas\n"),
        "{text}"
    );
    assert!(text.contains("-replicas: 2\n+replicas: 5\n"), "{text}");
    assert!(
        text.contains("+    password: correct-horse-battery-staple\n"),
        "{text}"
    );
    assert!(!text.contains("ENC["), "{text}");
    assert!(
        !text.contains("plain.yaml"),
        "only the path asked for: {text}"
    );
    let one = run(&["log", "-n", "1"], &[("SOPS_AGE_KEY_FILE", &key)], &work);
    let one = String::from_utf8_lossy(&one.stdout);
    assert_eq!(one.matches("commit ").count(), 1, "{one}");
    assert!(one.contains("+a: 2\n"), "{one}");

    // Without a key: shown as stored, and said so.
    let nokey = run(&["log", "secret.yaml"], &[], &work);
    let nokey = String::from_utf8_lossy(&nokey.stdout);
    assert!(nokey.contains("# valuesfs: not decrypted here"), "{nokey}");
    let gone = run(&["log", "nowhere.yaml"], &[], &work);
    assert!(!gone.status.success() && stderr(&gone).contains("no history"));
}

/// Completions and man pages come from the same definitions as --help.
#[test]
fn completions_and_man_pages_are_generated() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bash = run(&["completions", "bash"], &[], tmp.path());
    assert!(bash.status.success());
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(
        bash.contains("complete -F") && bash.contains("--webhook-secret-file"),
        "{bash}"
    );
    let zsh = run(&["completions", "zsh"], &[], tmp.path());
    assert!(String::from_utf8_lossy(&zsh.stdout).contains("#compdef valuesfs"));
    let man = run(&["man"], &[], tmp.path());
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.contains(".TH valuesfs 1") && man.contains("decrypt"),
        "{man}"
    );
    let dir = tmp.path().join("man");
    let out = run(
        &["man", "--dir", dir.to_str().expect("utf8")],
        &[],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(dir.join("valuesfs-mount.1")).expect("a page per command");
    assert!(page.contains("http\\-token\\-file"), "{page}");
    assert!(run(&["completions", "tcsh"], &[], tmp.path()).status.code() == Some(2));
}

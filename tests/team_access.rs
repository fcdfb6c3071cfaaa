//! Team access against the real `sops` 3.11 as the oracle: `valuesfs updatekeys` leaves
//! every file as `sops updatekeys -y` does (only the `age` list differs, by its random
//! wrapping), `rotate` gives every value new ciphertext, ssh keys work as recipients and
//! identities both ways, and inside a mount one `updatekeys` is one commit.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

/// A fresh age identity: (recipient, key file).
fn identity(dir: &Path, name: &str) -> (String, PathBuf) {
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    let secret = age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string();
    std::fs::write(&path, format!("{secret}\n")).expect("write key");
    (id.to_public().to_string(), path)
}

fn ssh_key(dir: &Path, name: &str, kind: &str, pass: &str) -> (String, PathBuf) {
    let path = dir.join(name);
    let mut args = vec!["-q", "-t", kind, "-N", pass, "-C", "dev@example"];
    if kind == "rsa" {
        args.extend(["-b", "2048"]);
    }
    let ok = Command::new("ssh-keygen")
        .args(&args)
        .arg("-f")
        .arg(&path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok, "ssh-keygen");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    (public.trim().to_string(), path)
}

fn rules(dir: &Path, recipients: &[&str]) {
    std::fs::write(
        dir.join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: ^(app|env)/.*\\.(yaml|json|env|ini)$\n    age: {}\n",
            recipients.join(",")
        ),
    )
    .expect("write .sops.yaml");
}

fn vfs(dir: &Path, args: &[&str], key: Option<&Path>) -> Output {
    let mut c = Command::new(bin());
    c.args(args).current_dir(dir).stdin(Stdio::null());
    c.env_remove("SOPS_AGE_KEY").env("HOME", dir);
    match key {
        Some(k) => c.env("SOPS_AGE_KEY_FILE", k),
        None => c.env_remove("SOPS_AGE_KEY_FILE"),
    };
    c.output().expect("run valuesfs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The file with its age key blocks masked (their wrapping is random); INI's `[sops]`
/// entries sorted, since sops 3.11 writes them in map order.
fn masked(path: &Path) -> String {
    let t = std::fs::read_to_string(path).expect("read");
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(i) = rest.find("-----BEGIN AGE ENCRYPTED FILE-----") {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find("-----END AGE ENCRYPTED FILE-----")
            .expect("armor end");
        out.push_str("AGE");
        rest = &rest[i + end + "-----END AGE ENCRYPTED FILE-----".len()..];
    }
    out.push_str(rest);
    if path.extension().is_some_and(|e| e == "ini") {
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        return lines.join("\n");
    }
    out
}

/// Run sops; its output, or a panic with its stderr.
fn sops_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run sops");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sops_encrypt_in_place(dir: &Path, rel: &str) {
    sops_ok(sops().args(["-e", "-i", rel]).current_dir(dir));
}

fn sops_d(dir: &Path, rel: &str, key: &Path) -> Option<String> {
    let out = sops()
        .env("SOPS_AGE_KEY_FILE", key)
        .env_remove("SOPS_AGE_KEY")
        .env("HOME", dir)
        .args(["-d", rel])
        .current_dir(dir)
        .output()
        .expect("sops -d");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

const FILES: [(&str, &str); 5] = [
    (
        "app/values.yaml",
        "image:\n    tag: \"1.2\" # pinned\nenv:\n    - name: A\n      value: x\n",
    ),
    (
        "app/config.json",
        "{\n\t\"db\": {\n\t\t\"password\": \"p\",\n\t\t\"port\": 5432\n\t}\n}\n",
    ),
    ("env/app.env", "TOKEN=abc\n# comment\nEMPTY=\n"),
    ("env/app.ini", "[db]\npassword = p\n"),
    ("other/free.yaml", "a: 1\n"),
];

#[test]
fn updatekeys_leaves_every_file_as_sops_updatekeys_does() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let key1 = private_key(tmp.path());
    let (r2, key2) = identity(tmp.path(), "k2.txt");
    // Every file made by sops: the first three rules' files for the vector recipient; the
    // file outside the rules under a catch-all rule that is then removed.
    std::fs::write(
        repo.join(".sops.yaml"),
        format!("creation_rules:\n  - age: {VECTOR_RECIPIENT}\n"),
    )
    .expect("rules");
    for (rel, plain) in FILES {
        let p = repo.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, plain).expect("write");
        sops_encrypt_in_place(&repo, rel);
    }
    std::fs::write(repo.join("README.md"), "plain\n").expect("write");
    // The team changes: a second member joins.
    rules(&repo, &[VECTOR_RECIPIENT, &r2]);
    let before: Vec<String> = FILES.iter().map(|(r, _)| masked(&repo.join(r))).collect();

    let dry = vfs(&repo, &["updatekeys", "--dry-run"], Some(&key1));
    assert_eq!(dry.status.code(), Some(1), "{}", text(&dry));
    assert!(text(&dry).contains(&format!("+ {r2}")), "{}", text(&dry));
    assert!(
        text(&dry).contains("other/free.yaml"),
        "listed without a rule: {}",
        text(&dry)
    );
    let after_dry: Vec<String> = FILES.iter().map(|(r, _)| masked(&repo.join(r))).collect();
    assert_eq!(before, after_dry, "--dry-run changed nothing");

    // The oracle: a copy updated by sops itself.
    let twin = tmp.path().join("twin");
    assert!(Command::new("cp")
        .args(["-a"])
        .arg(&repo)
        .arg(&twin)
        .status()
        .expect("cp")
        .success());
    for (rel, _) in &FILES[..4] {
        sops_ok(
            sops()
                .env("SOPS_AGE_KEY_FILE", &key1)
                .args(["updatekeys", "-y", rel])
                .current_dir(&twin),
        );
    }
    let run = vfs(&repo, &["updatekeys"], Some(&key1));
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(
        text(&run).contains("4 updated, 0 up to date, 1 without a rule, 0 failed"),
        "{}",
        text(&run)
    );
    for (rel, _) in &FILES[..4] {
        assert_eq!(masked(&repo.join(rel)), masked(&twin.join(rel)), "{rel}");
        // The new member reads it, with sops, as the old one did.
        let shown =
            sops_d(&repo, rel, &key2).unwrap_or_else(|| panic!("{rel}: the new key opens it"));
        assert_eq!(Some(shown), sops_d(&twin, rel, &key1), "{rel}");
    }
    // Nothing but the recipients changed: no value, no lastmodified, no mac.
    let before_yaml = &before[0];
    let after_yaml = masked(&repo.join("app/values.yaml"));
    let drop_age = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.contains("recipient:") && !l.contains("enc: |") && !l.trim().eq("AGE"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(drop_age(before_yaml), drop_age(&after_yaml));
    let again = vfs(&repo, &["updatekeys", "--dry-run"], Some(&key1));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // The first member leaves: their key no longer opens the files (after this change).
    rules(&repo, &[&r2]);
    let run = vfs(&repo, &["updatekeys", "app"], Some(&key2));
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(
        text(&run).contains(&format!("- {VECTOR_RECIPIENT}")),
        "{}",
        text(&run)
    );
    assert!(
        sops_d(&repo, "app/values.yaml", &key1).is_none(),
        "removed recipient"
    );
    assert!(sops_d(&repo, "app/values.yaml", &key2).is_some());
    assert!(
        sops_d(&repo, "env/app.env", &key1).is_some(),
        "outside PATH: unchanged"
    );
}

#[test]
fn a_file_no_identity_opens_fails_alone_and_bad_rules_are_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("app")).expect("mkdir");
    let key1 = private_key(tmp.path());
    let (r2, _) = identity(tmp.path(), "k2.txt");
    let (r3, _) = identity(tmp.path(), "k3.txt");
    rules(&repo, &[VECTOR_RECIPIENT]);
    std::fs::write(repo.join("app/mine.yaml"), "a: 1\n").expect("w");
    sops_encrypt_in_place(&repo, "app/mine.yaml");
    // Someone else's file: only r3 opens it.
    rules(&repo, &[&r3]);
    std::fs::write(repo.join("app/theirs.yaml"), "b: 2\n").expect("w");
    sops_encrypt_in_place(&repo, "app/theirs.yaml");
    let theirs = std::fs::read(repo.join("app/theirs.yaml")).expect("r");
    rules(&repo, &[VECTOR_RECIPIENT, &r2]);
    let run = vfs(&repo, &["updatekeys"], Some(&key1));
    let said = text(&run);
    assert_eq!(run.status.code(), Some(2), "{said}");
    assert!(said.contains("app/theirs.yaml: FAILED"), "{said}");
    assert!(said.contains("cannot re-wrap its data key"), "{said}");
    assert!(said.contains("1 updated"), "the other file goes on: {said}");
    assert_eq!(
        std::fs::read(repo.join("app/theirs.yaml")).expect("r"),
        theirs
    );

    // A recipient that is not a key, and a .sops.yaml that does not parse.
    rules(&repo, &["not-a-key"]);
    let run = vfs(&repo, &["updatekeys"], Some(&key1));
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(
        text(&run).contains("invalid recipient \"not-a-key\""),
        "{}",
        text(&run)
    );
    std::fs::write(repo.join(".sops.yaml"), "creation_rules: [\n").expect("w");
    let run = vfs(&repo, &["updatekeys"], Some(&key1));
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
    assert!(text(&run).contains(".sops.yaml"), "{}", text(&run));
}

#[test]
fn rotate_gives_every_value_new_ciphertext_and_sops_still_reads_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("app")).expect("mkdir");
    let key1 = private_key(tmp.path());
    rules(&repo, &[VECTOR_RECIPIENT]);
    std::fs::write(repo.join("app/values.yaml"), FILES[0].1).expect("w");
    sops_encrypt_in_place(&repo, "app/values.yaml");
    let old = std::fs::read_to_string(repo.join("app/values.yaml")).expect("r");
    let shown = sops_d(&repo, "app/values.yaml", &key1).expect("opens");
    let run = vfs(&repo, &["rotate"], Some(&key1));
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(text(&run).contains("history still holds"), "{}", text(&run));
    let new = std::fs::read_to_string(repo.join("app/values.yaml")).expect("r");
    let envelopes = |t: &str| -> Vec<String> {
        t.split("ENC[")
            .skip(1)
            .map(|e| e.split(']').next().unwrap_or("").to_string())
            .collect()
    };
    let (a, b) = (envelopes(&old), envelopes(&new));
    assert_eq!(a.len(), b.len());
    assert!(a.len() >= 4, "values and the comment are encrypted");
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x, y, "every value, comment and the mac change");
    }
    assert_eq!(
        sops_d(&repo, "app/values.yaml", &key1).expect("opens"),
        shown
    );
}

#[test]
fn ssh_keys_are_recipients_and_identities_both_ways() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let (ed, ed_key) = ssh_key(d, "id_ed", "ed25519", "");
    let (rsa, rsa_key) = ssh_key(d, "id_rsa_test", "rsa", "");
    let (pw, pw_key) = ssh_key(d, "id_pw", "ed25519", "secret");
    std::fs::write(d.join("p.yml"), "a: 1\nb: two\n").expect("w");
    // sops encrypts for both ssh keys; valuesfs opens it with either.
    let out = sops_ok(
        sops()
            .args([
                "-e",
                "--age",
                &format!("{ed},{rsa}"),
                "--input-type",
                "yaml",
                "--output-type",
                "yaml",
                "p.yml",
            ])
            .current_dir(d),
    );
    std::fs::write(d.join("by-sops.yaml"), &out.stdout).expect("w");
    for k in [&ed_key, &rsa_key] {
        let o = Command::new(bin())
            .args(["decrypt", "by-sops.yaml"])
            .current_dir(d)
            .env_remove("SOPS_AGE_KEY_FILE")
            .env("HOME", d)
            .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", k)
            .output()
            .expect("decrypt");
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "a: 1\nb: two\n");
    }
    // The default ~/.ssh/id_ed25519 is found as sops finds it.
    std::fs::create_dir_all(d.join(".ssh")).expect("mkdir");
    std::fs::copy(&ed_key, d.join(".ssh/id_ed25519")).expect("cp");
    let o = vfs(d, &["decrypt", "by-sops.yaml"], None);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(d.join(".ssh/id_ed25519")).expect("rm");
    // valuesfs encrypts for ssh keys; sops opens it with each.
    let o = vfs(
        d,
        &["encrypt", "--age", &format!("{rsa},{pw}"), "p.yml"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(d.join("by-us.yaml"), &o.stdout).expect("w");
    let out = sops_ok(
        sops()
            .env_remove("SOPS_AGE_KEY_FILE")
            .env("HOME", d)
            .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", &rsa_key)
            .args(["-d", "by-us.yaml"])
            .current_dir(d),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a: 1\nb: two\n");
    // A passphrase-protected key: a clear error at once, never a prompt.
    let o = Command::new(bin())
        .args(["decrypt", "by-us.yaml"])
        .current_dir(d)
        .stdin(Stdio::null())
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("HOME", d)
        .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", &pw_key)
        .output()
        .expect("decrypt");
    assert!(!o.status.success());
    assert!(text(&o).contains("passphrase-protected"), "{}", text(&o));
    // SOPS_AGE_KEY_CMD: the identities a command prints (the file made for the key
    // named by SOPS_AGE_RECIPIENTS, as sops takes it).
    let (r, k) = identity(d, "cmd-key.txt");
    let o = Command::new(bin())
        .args(["encrypt", "p.yml"])
        .current_dir(d)
        .env("SOPS_AGE_RECIPIENTS", &r)
        .output()
        .expect("encrypt");
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(d.join("for-cmd.yaml"), &o.stdout).expect("w");
    // A default ssh key age cannot read (and a passphrase-protected one) is skipped, so
    // the age key still opens the file.
    std::fs::write(
        d.join(".ssh/id_rsa"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .expect("w");
    std::fs::copy(&pw_key, d.join(".ssh/id_ed25519")).expect("cp");
    let o = Command::new(bin())
        .args(["decrypt", "for-cmd.yaml"])
        .current_dir(d)
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("HOME", d)
        .env("SOPS_AGE_KEY_CMD", format!("cat {}", k.display()))
        .output()
        .expect("decrypt");
    assert!(o.status.success(), "{}", text(&o));
}

mod in_a_mount {
    use super::*;
    use fs_common::*;

    /// 500 SOPS files; a member joins; `valuesfs updatekeys` inside the mount is one
    /// commit on the remote, after which the status lists no drift and sops reads every
    /// file with the new key.
    #[test]
    fn updatekeys_over_500_files_is_one_commit_and_the_status_shows_drift() {
        let r = empty_remote();
        let (r2, key2) = identity(r.dir(), "k2.txt");
        let rules_for = |rs: &[&str]| {
            format!(
                "creation_rules:\n  - path_regex: ^apps/.*\\.yaml$\n    age: {}\n",
                rs.join(",")
            )
            .into_bytes()
        };
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for i in 0..500 {
            let plain = format!("app: a{i}\nsecret: s{i}\n");
            files.push((
                format!("apps/a{:03}/values.yaml", i),
                yaml_encrypted(&plain),
            ));
        }
        let sops_v1 = rules_for(&[VECTOR_RECIPIENT]);
        let mut all: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), &b[..])).collect();
        all.push((".sops.yaml", &sops_v1));
        push_files(&r, &all, "seed");
        let m = mount_remote(&r);
        assert!(
            status_paths(&m.status(), "recipients").is_empty(),
            "{}",
            m.status()
        );
        // The rule changes (pushed from elsewhere): the status shows every file at once.
        let sops_v2 = rules_for(&[VECTOR_RECIPIENT, &r2]);
        push_files(&r, &[(".sops.yaml", &sops_v2)], "a member joins");
        m.fetch();
        assert_eq!(status_paths(&m.status(), "recipients").len(), 500);
        let before = commits(&r);
        let (ok, said, err) = valuesfs_at(&m, "updatekeys", &[]);
        assert!(ok, "{said}{err}");
        assert!(said.contains("500 updated"), "{said}");
        m.flush();
        assert_eq!(commits(&r), before + 1, "one commit");
        assert!(
            status_paths(&m.status(), "recipients").is_empty(),
            "{}",
            m.status()
        );
        let co = repo_common::clone(r.dir(), &r.url);
        for i in [0, 249, 499] {
            let out = sops_decrypt(
                &co.path().join(format!("apps/a{i:03}/values.yaml")),
                &key2,
                &[],
            );
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("app: a{i}\nsecret: s{i}\n")
            );
        }
        let (ok, said, _) = valuesfs_at(&m, "updatekeys", &["--dry-run"]);
        assert!(ok && said.contains("0 to update, 500 up to date"), "{said}");
    }

    /// A mount whose identity is an ssh key shows a file sops encrypted for it.
    #[test]
    fn a_mount_opens_files_for_its_ssh_identity() {
        let r = empty_remote();
        let (ed, ed_key) = ssh_key(r.dir(), "id_ed", "ed25519", "");
        let plain = r.dir().join("p.yml");
        std::fs::write(&plain, "token: t0ps3cret\n").expect("w");
        let out = sops_ok(
            sops()
                .args([
                    "-e",
                    "--age",
                    &ed,
                    "--input-type",
                    "yaml",
                    "--output-type",
                    "yaml",
                ])
                .arg(&plain),
        );
        push_files(&r, &[("secret.yaml", &out.stdout)], "ssh secret");
        let m = mount_with(&r, None, |o| o.identity = Some(ed_key.clone()));
        assert_eq!(m.read_str("secret.yaml"), "token: t0ps3cret\n");
    }
}

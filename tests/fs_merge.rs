//! Structural merges through two real mounts of one remote: two people adding an env var
//! to the same container at the same time both land, in a plain YAML file and in a SOPS
//! file (read back with the real `sops -d`), each side's lines as written; the same value
//! changed two ways is still a conflict, EIO to the loser, named by item identities.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::fs::OpenOptions;
use std::io::Write;

use common::*;
use fs_common::*;
use repo_common::clone;
use valuesfs::crypto::{self, CreationParams, Format};

const VALUES: &str = "\
# web app
containers:
  - name: web
    image: shop/web:1.2   # pinned
    env:
      - name: LOG_LEVEL
        value: info
  - name: sidecar
    image: proxy:3
replicas: 2
";

fn with_var(text: &str, name: &str, value: &str) -> String {
    text.replacen(
        "        value: info\n",
        &format!("        value: info\n      - name: {name}\n        value: \"{value}\"\n"),
        1,
    )
}

/// Replace `path` in the mount and fsync it: the fsync's result.
fn save(m: &Mnt, path: &str, text: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.p(path))?;
    f.write_all(text.as_bytes())?;
    let r = f.sync_all();
    let _ = close_checked(f);
    r
}

fn encrypted(plain: &str) -> Vec<u8> {
    let params = CreationParams {
        recipients: vec![VECTOR_RECIPIENT.to_string()],
        ..Default::default()
    };
    crypto::encrypt(plain.as_bytes(), Format::Yaml, &params).expect("encrypt")
}

#[test]
fn env_vars_added_on_two_mounts_at_once_both_land() {
    let r = seeded_remote();
    push_files(
        &r,
        &[
            ("apps/web/values.yml", VALUES.as_bytes()),
            ("apps/web/secrets.yaml", &encrypted(VALUES)),
        ],
        "apps",
    );
    let a = mount_remote(&r);
    let b = mount_remote(&r);
    for path in ["apps/web/values.yml", "apps/web/secrets.yaml"] {
        assert_eq!(a.read_str(path), VALUES);
        save(&a, path, &with_var(VALUES, "A_VAR", "a")).expect("A's fsync");
        // B has not fetched A's change: its fsync merges onto it.
        save(&b, path, &with_var(VALUES, "B_VAR", "b")).expect("B's fsync merges");
        let both = with_var(&with_var(VALUES, "B_VAR", "b"), "A_VAR", "a");
        b.flush();
        assert_eq!(
            remote_plain(&r, path).expect("on the remote"),
            both.as_bytes(),
            "{path}"
        );
        assert!(conflict_free(&b), "{}", b.status());
    }
    // The real sops reads the merged secret as both sides wrote it.
    let co = clone(r.dir(), &r.url);
    let out = sops_decrypt(&co.path().join("apps/web/secrets.yaml"), &r.key, &[]);
    let out = String::from_utf8(out).expect("utf8");
    assert!(
        out.contains("- name: A_VAR") && out.contains("- name: B_VAR"),
        "{out}"
    );
    // Values neither side touched kept their ciphertext.
    let raw =
        String::from_utf8(remote_raw(&r, "apps/web/secrets.yaml").expect("raw")).expect("utf8");
    let first = String::from_utf8(encrypted_first(&r)).expect("utf8");
    let image_line = |t: &str| {
        t.lines()
            .find(|l| l.contains("image: ENC["))
            .map(str::to_string)
            .expect("image line")
    };
    assert_eq!(image_line(&raw), image_line(&first));
    // A fetches and shows the merge.
    a.fetch();
    assert!(a.read_str("apps/web/values.yml").contains("B_VAR"));
}

fn conflict_free(m: &Mnt) -> bool {
    status_paths(&m.status(), "conflicts").is_empty()
}

/// The secret as first pushed (the commit "apps").
fn encrypted_first(r: &Remote) -> Vec<u8> {
    let log = repo_common::git(&r.path, &["log", "--format=%H %s", "main"]);
    let commit = log
        .lines()
        .find_map(|l| l.strip_suffix(" apps"))
        .expect("the apps commit")
        .to_string();
    show(&r.path, &commit, "apps/web/secrets.yaml").expect("first version")
}

#[test]
fn the_same_env_value_changed_two_ways_is_a_conflict_named_by_identities() {
    let r = seeded_remote();
    push_files(&r, &[("apps/web/secrets.yaml", &encrypted(VALUES))], "apps");
    let a = mount_remote(&r);
    let b = mount_remote(&r);
    let path = "apps/web/secrets.yaml";
    save(&a, path, &VALUES.replace("value: info", "value: debug")).expect("A wins");
    let e =
        save(&b, path, &VALUES.replace("value: info", "value: warn")).expect_err("B's fsync loses");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let st = b.status();
    assert!(
        st.contains("containers[web].env[LOG_LEVEL].value"),
        "the conflict names the item path:\n{st}"
    );
    b.flush();
    assert!(sops_decrypt_remote(&r, path).contains("value: debug"));
}

fn sops_decrypt_remote(r: &Remote, path: &str) -> String {
    let co = clone(r.dir(), &r.url);
    String::from_utf8(sops_decrypt(&co.path().join(path), &r.key, &[])).expect("utf8")
}

/// `conflicts resolve ID --take merged` sends the rejected change through the master's
/// merge again. Two appends to a scalar list conflict (order matters), and still do until
/// the head's `.valuesfs.yaml` declares the list a set; then both values land.
#[test]
fn a_conflict_resolved_as_merged_lands_once_the_rules_allow_it() {
    let r = seeded_remote();
    let path = "apps/hosts.yml";
    push_files(&r, &[(path, b"hosts:\n  - a\n")], "hosts");
    let a = mount_remote(&r);
    let b = mount_remote(&r);
    save(&a, path, "hosts:\n  - a\n  - b\n").expect("A's fsync");
    let e = save(&b, path, "hosts:\n  - a\n  - c\n").expect_err("B's appends conflict");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let (ok, list, err) = valuesfs_at(&b, "conflicts", &[]);
    assert!(ok, "{err}");
    let id = list
        .lines()
        .find(|l| l.contains(path))
        .and_then(|l| l.split('\t').next())
        .expect("the conflict is listed")
        .to_string();

    // Without a rule the merge fails again: an error, and the one conflict stays.
    let (ok, _, err) = valuesfs_at(&b, "conflicts", &["resolve", &id, "--take", "merged"]);
    assert!(!ok, "a scalar list append both ways must not merge");
    assert!(err.contains("still does not merge"), "{err}");
    let (_, list, _) = valuesfs_at(&b, "conflicts", &[]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains(&id), "{list}");

    // Someone declares the list a set; B fetches it, and the retry lands both hosts.
    push_files(
        &r,
        &[(".valuesfs.yaml", b"merge:\n  hosts: set\n")],
        "rules",
    );
    b.fetch();
    let (ok, said, err) = valuesfs_at(&b, "conflicts", &["resolve", &id, "--take", "merged"]);
    assert!(ok, "{err}");
    assert!(said.contains("merged (committed)"), "{said}");
    b.flush();
    assert_eq!(
        remote_plain(&r, path).expect("on the remote"),
        b"hosts:\n  - a\n  - b\n  - c\n"
    );
    assert_eq!(b.read_str(path), "hosts:\n  - a\n  - b\n  - c\n");
    assert!(conflict_free(&b), "{}", b.status());
}

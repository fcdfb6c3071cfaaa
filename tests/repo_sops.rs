//! The master with the SOPS merger: two machines editing different keys of one encrypted
//! file both land; the same key changed two ways is a conflict naming the key. The real
//! `sops` binary reads what lands on the remote.

mod common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use repo_common::*;
use valuesfs::crypto::{self, CreationParams, Format};
use valuesfs::repo::{Error, Master, Session, ValuesMerge};

const T: Duration = Duration::from_secs(30);

fn sops_config(url: &str, state: &std::path::Path) -> valuesfs::repo::Config {
    let mut c = config(url, state);
    c.merger = Arc::new(ValuesMerge::new(Arc::new(keyring())));
    c
}

#[test]
fn two_machines_edit_different_keys_of_one_secret_and_both_win() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8");
    let params = CreationParams {
        recipients: vec![VECTOR_RECIPIENT.into()],
        ..Default::default()
    };
    let plain =
        "# database settings\ndb:\n  user: app\n  password: one\napi:\n  token: t1  # rotated\n";
    let enc = crypto::encrypt(plain.as_bytes(), Format::Yaml, &params).expect("encrypt");
    cli_commit(
        tmp.path(),
        url,
        &[("secrets/app.yaml", std::str::from_utf8(&enc).expect("utf8"))],
        "seed",
    );

    let a = Master::start(sops_config(url, &tmp.path().join("a"))).expect("a");
    let b = Master::start(sops_config(url, &tmp.path().join("b"))).expect("b");
    let keys = keyring();
    let edit = |m: &valuesfs::repo::MasterHandle, from: &str, to: &str| {
        let snap = m.snapshot();
        let reader = m.reader().expect("reader");
        let (cur, _) = reader
            .read(&snap, "secrets/app.yaml")
            .expect("read")
            .expect("exists");
        let opened = crypto::decrypt(&cur, Format::Yaml, &keys).expect("decrypt");
        let text = String::from_utf8(opened.plaintext.to_vec()).expect("utf8");
        assert!(text.contains(from));
        let out = opened
            .reencrypt(text.replace(from, to).as_bytes())
            .expect("reencrypt");
        let mut s = Session::new(snap.commit);
        s.write("secrets/app.yaml", out);
        m.submit(s).expect("submit")
    };
    // Both machines start from the same head, then publish one after the other.
    let mut ta = edit(&a, "password: one", "password: two");
    let mut tb = edit(&b, "token: t1", "token: t2");
    ta.wait_pushed(T).expect("a pushed");
    tb.wait_pushed(T)
        .expect("b pushed after merging a's change");
    b.flush(T).expect("flush");

    let co = clone(tmp.path(), url);
    let file = co.path().join("secrets/app.yaml");
    let out = String::from_utf8(sops_decrypt(&file, &key, &[])).expect("utf8");
    assert!(out.contains("password: two"), "{out}");
    assert!(out.contains("token: t2"), "{out}");
    // Through us, the user's formatting and comments survived the merge.
    let ours =
        crypto::decrypt(&std::fs::read(&file).expect("read"), Format::Yaml, &keys).expect("dec");
    assert_eq!(
        String::from_utf8_lossy(&ours.plaintext),
        plain
            .replace("password: one", "password: two")
            .replace("token: t1", "token: t2")
    );
    fsck(&remote);

    // The same key changed two ways: whichever publishes first stands, the other is kept.
    let mut ta = edit(&a, "user: app", "user: alice");
    let mut tb = edit(&b, "user: app", "user: bob");
    let (ra, rb) = (ta.wait_pushed(T), tb.wait_pushed(T));
    let (winner, loser, loser_dir, err) = match (ra, rb) {
        (Ok(_), Err(e)) => ("alice", "bob", "b", e),
        (Err(e), Ok(_)) => ("bob", "alice", "a", e),
        other => panic!("expected exactly one conflict, got {other:?}"),
    };
    let info = match &err {
        Error::Conflict(c) => c.clone(),
        other => panic!("expected a conflict, got {other}"),
    };
    assert_eq!(info.path, "secrets/app.yaml");
    assert_eq!(info.key.as_deref(), Some("db.user"));
    let loser_master = if loser_dir == "a" { &a } else { &b };
    assert_eq!(loser_master.status().expect("status").conflicts.len(), 1);
    // Both versions recoverable: the remote has the winner, the conflicts ref the loser.
    let co2 = clone(tmp.path(), url);
    let remote_now = sops_decrypt(&co2.path().join("secrets/app.yaml"), &key, &[]);
    assert!(String::from_utf8_lossy(&remote_now).contains(&format!("user: {winner}")));
    let kept = git(
        &tmp.path().join(loser_dir).join("repo.git"),
        &["show", &format!("{}:secrets/app.yaml", info.refname)],
    );
    let kept_plain = crypto::decrypt(kept.as_bytes(), Format::Yaml, &keys).expect("dec");
    assert!(String::from_utf8_lossy(&kept_plain.plaintext).contains(&format!("user: {loser}")));
}

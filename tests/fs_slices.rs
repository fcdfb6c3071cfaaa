//! Slices through a real mount and the command line: sync writes versions (encrypted
//! sources stay encrypted), status and diff show element changes, the model keeps
//! purged elements marked, a deleted source gets a final empty version, and a bad
//! `.valuesfs.yaml` is reported with its line.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use fs_common::*;

const CONFIG: &str = "slices:\n  - name: services\n    source: slices/services\n    active: slices/.active/services\n";
const V1: &str =
    "web:\n  replicas: 2\nports:\n  - name: http\n    port: 80\n  - name: admin\n    port: 9000\n";
const V2: &str = "web:\n  replicas: 3\nports:\n  - name: http\n    port: 80\n";

fn slices(m: &Mnt, args: &[&str]) -> (bool, String, String) {
    valuesfs_at(m, "slices", args)
}

fn ok(m: &Mnt, args: &[&str]) -> String {
    let (ok, out, err) = slices(m, args);
    assert!(ok, "slices {args:?}: {err}");
    out
}

#[test]
fn sync_status_show_diff_and_a_deleted_source() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    std::fs::create_dir_all(mnt.p("slices/services")).expect("mkdir");
    put(&mnt.p(".valuesfs.yaml"), CONFIG.as_bytes());
    put(&mnt.p("slices/services/shop.yaml"), V1.as_bytes());
    mnt.flush();

    let out = ok(&mnt, &["sync"]);
    assert!(out.contains("services/shop: v1"), "{out}");
    mnt.flush();
    let v1 = "slices/.active/services/shop@v1.yaml";
    let raw = remote_raw(&remote, v1).expect("v1 on the remote");
    assert!(
        is_sops(v1, &raw),
        "an encrypted source gives an encrypted version"
    );
    assert_eq!(decrypt_if_sops(v1, &raw), V1.as_bytes());
    assert_eq!(mnt.read(v1), V1.as_bytes());
    assert_eq!(ok(&mnt, &["sync"]), "nothing to sync\n");

    put(&mnt.p("slices/services/shop.yaml"), V2.as_bytes());
    let st = ok(&mnt, &["status"]);
    assert!(
        st.contains("services/shop: active v1, source differs"),
        "{st}"
    );
    assert!(st.contains("- ports[admin]"), "{st}");
    mnt.flush();
    let before = commits(&remote);
    let out = ok(&mnt, &["sync"]);
    assert!(out.contains("services/shop: v2"), "{out}");
    mnt.flush();
    assert_eq!(commits(&remote), before + 1, "one sync, one commit");
    let model = ok(&mnt, &["show", "services/shop"]);
    assert!(
        model.contains("purged: true") && model.contains("purged_in: 2"),
        "{model}"
    );
    assert!(
        model.contains("operation: delete") && model.contains("operation: update"),
        "{model}"
    );
    let json = ok(
        &mnt,
        &["show", "services/shop", "--version", "1", "-o", "json"],
    );
    assert!(json.contains("\"admin\""), "{json}");
    let d = ok(&mnt, &["diff", "services/shop"]);
    assert!(
        d.starts_with("v1 -> v2") && d.contains("- ports[admin]"),
        "{d}"
    );

    // The read-only views: versions decrypted, the model, EROFS on writes.
    let view = mnt.p(".valuesfs/slices/services/shop");
    let mut active: Vec<String> = std::fs::read_dir(view.join("active"))
        .expect("active/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    active.sort();
    assert_eq!(active, ["v1.yaml", "v2.yaml"]);
    assert_eq!(
        std::fs::read(view.join("active/v1.yaml")).expect("v1"),
        V1.as_bytes()
    );
    let shown = std::fs::read_to_string(view.join("model.yaml")).expect("model.yaml");
    assert_eq!(shown, model);
    let stores: Vec<String> = std::fs::read_dir(mnt.p(".valuesfs/slices"))
        .expect("slices/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stores, ["services"]);
    for f in ["active/v1.yaml", "model.yaml", "active/v9.yaml"] {
        let e = std::fs::write(view.join(f), b"x: 1\n").expect_err("read-only");
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{f}: {e}");
    }

    std::fs::remove_file(mnt.p("slices/services/shop.yaml")).expect("rm");
    mnt.flush();
    let out = ok(&mnt, &["sync"]);
    assert!(out.contains("v3 (source deleted)"), "{out}");
    mnt.flush();
    let model = ok(&mnt, &["show", "services/shop"]);
    assert!(
        model.contains("web:") && model.contains("purged_in: 3"),
        "{model}"
    );

    // A bad config: the command fails naming the line; the mount keeps working.
    put(
        &mnt.p(".valuesfs.yaml"),
        b"slices:\n  - name: s\n    source: slices/services\n    active: x\n    colour: red\n",
    );
    let (good, _, err) = slices(&mnt, &["status"]);
    assert!(
        !good && err.contains(".valuesfs.yaml:5: unknown key \"colour\""),
        "{err}"
    );
    assert_eq!(mnt.read("plain.txt"), PLAIN.as_bytes());
}

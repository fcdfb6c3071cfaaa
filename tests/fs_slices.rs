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
    // The real sops reads the version.
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("shop@v1.yaml");
    std::fs::write(&file, &raw).expect("write");
    let key = common::private_key(tmp.path());
    let docs = valuesfs::crypto::sops::parse_plain(V1.as_bytes(), valuesfs::crypto::Format::Yaml)
        .expect("parse");
    assert_eq!(
        String::from_utf8_lossy(&common::sops_decrypt(&file, &key, &[])),
        valuesfs::crypto::sops::render_plain(valuesfs::crypto::Format::Yaml, &docs),
        "sops -d shows the version's data, in its own layout"
    );
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

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const TWO_STORES: &str = "slices:\n  - name: services\n    source: slices/services\n    active: slices/.active/services\n  - name: auto\n    source: slices/auto\n    active: slices/.active/auto\n    auto_sync: true\n";

#[test]
fn prune_keeps_versions_readable_under_purged_and_auto_sync_versions_each_save() {
    let remote = seeded_remote();
    let mnt = mount_remote(&remote);
    for d in ["slices/services", "slices/auto"] {
        std::fs::create_dir_all(mnt.p(d)).expect("mkdir");
    }
    put(&mnt.p(".valuesfs.yaml"), TWO_STORES.as_bytes());
    put(&mnt.p("slices/auto/.gitkeep"), b"");
    put(&mnt.p("slices/services/cart.yaml"), b"items: {}\n");
    put(&mnt.p("slices/services/shop.yaml"), V1.as_bytes());
    mnt.flush();
    ok(&mnt, &["sync"]);
    put(&mnt.p("slices/services/shop.yaml"), V2.as_bytes());
    mnt.flush();
    ok(&mnt, &["sync"]);
    mnt.flush();

    // Prune: v1 leaves the active folder in one commit, and stays readable.
    let before = commits(&remote);
    let out = ok(&mnt, &["prune", "--keep", "1"]);
    assert!(out.contains("shop@v1.yaml"), "{out}");
    mnt.flush();
    assert_eq!(commits(&remote), before + 1, "one prune, one commit");
    let paths = remote_paths(&remote);
    assert!(
        !paths.iter().any(|p| p.ends_with("shop@v1.yaml")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("shop@v2.yaml")),
        "{paths:?}"
    );
    let view = mnt.p(".valuesfs/slices/services/shop");
    assert_eq!(names(&view), ["active", "model.yaml", "purged"]);
    assert_eq!(names(&view.join("active")), ["v2.yaml"]);
    assert_eq!(names(&view.join("purged")), ["v1.yaml"]);
    assert_eq!(
        std::fs::read(view.join("purged/v1.yaml")).expect("purged v1"),
        V1.as_bytes()
    );
    let model = std::fs::read_to_string(view.join("model.yaml")).expect("model");
    assert!(
        model.contains("purged_in: 2"),
        "pruning keeps purge markers: {model}"
    );
    assert_eq!(ok(&mnt, &["prune"]), "nothing to prune\n");

    // A deleted slice, once pruned, lives on under purged/ only.
    std::fs::remove_file(mnt.p("slices/services/shop.yaml")).expect("rm");
    mnt.flush();
    ok(&mnt, &["sync"]);
    mnt.flush();
    ok(&mnt, &["prune"]);
    mnt.flush();
    assert!(
        !remote_paths(&remote)
            .iter()
            .any(|p| p.starts_with("slices/.active/services/shop@")),
        "{:?}",
        remote_paths(&remote)
    );
    assert_eq!(names(&mnt.p(".valuesfs/slices/services")), ["cart", "shop"]);
    assert_eq!(names(&view.join("active")), Vec::<String>::new());
    assert_eq!(
        names(&view.join("purged")),
        ["v1.yaml", "v2.yaml", "v3.yaml"]
    );
    let e = std::fs::write(view.join("purged/v1.yaml"), b"x: 1\n").expect_err("read-only");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    // auto_sync: each save of a changed source writes its version in the same commit.
    let before = commits(&remote);
    put(&mnt.p("slices/auto/db.yaml"), b"db:\n  size: 1\n");
    mnt.flush();
    assert_eq!(
        commits(&remote),
        before + 1,
        "source and version in one commit"
    );
    let v1 = "slices/.active/auto/db@v1.yaml";
    let raw = remote_raw(&remote, v1).expect("auto v1");
    assert!(is_sops(v1, &raw));
    assert_eq!(decrypt_if_sops(v1, &raw), b"db:\n  size: 1\n");
    put(&mnt.p("slices/auto/db.yaml"), b"db:\n  size: 2\n");
    mnt.flush();
    assert_eq!(
        remote_plain(&remote, "slices/.active/auto/db@v2.yaml").as_deref(),
        Some(&b"db:\n  size: 2\n"[..])
    );
    assert_eq!(ok(&mnt, &["sync", "--store", "auto"]), "nothing to sync\n");

    // A bad config shows in the status file; the mount keeps working.
    put(
        &mnt.p(".valuesfs.yaml"),
        b"slices:\n  - name: s\n    sauce: x\n",
    );
    mnt.flush();
    let status = mnt.status();
    assert_eq!(
        status_paths(&status, "slices"),
        [".valuesfs.yaml"],
        "{status}"
    );
    assert!(status.contains("unknown key"), "{status}");
    assert_eq!(mnt.read("plain.txt"), PLAIN.as_bytes());
}

fn version_numbers(remote: &Remote) -> Vec<u32> {
    let mut numbers: Vec<u32> = remote_paths(remote)
        .iter()
        .filter(|p| p.starts_with("slices/.active/services/shop@v"))
        .filter_map(|p| p.rsplit_once("@v")?.1.strip_suffix(".yaml")?.parse().ok())
        .collect();
    numbers.sort();
    numbers
}

/// Versions are v1..vN with no gap, and the last one is `source`.
fn assert_consecutive_ending_with(remote: &Remote, source: &[u8]) {
    let numbers = version_numbers(remote);
    let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
    assert_eq!(numbers, expected);
    let last = format!("slices/.active/services/shop@v{}.yaml", numbers.len());
    assert_eq!(
        remote_plain(remote, &last).as_deref(),
        Some(source),
        "{last}"
    );
}

/// Two mounts whose heads disagree sync the same slice: the one that finds its number
/// taken plans again on the new head. Numbers stay consecutive, the last version is the
/// repository's source, and no conflict is left; the same at once.
#[test]
fn two_mounts_syncing_the_same_slice_keep_versions_consecutive() {
    let remote = seeded_remote();
    let a = mount_remote(&remote);
    let b = mount_remote(&remote);
    std::fs::create_dir_all(a.p("slices/services")).expect("mkdir");
    put(&a.p(".valuesfs.yaml"), CONFIG.as_bytes());
    put(&a.p("slices/services/shop.yaml"), V1.as_bytes());
    a.flush();
    ok(&a, &["sync"]);
    put(&a.p("slices/services/shop.yaml"), V2.as_bytes());
    a.flush();
    b.fetch();
    assert_eq!(b.read("slices/services/shop.yaml"), V2.as_bytes());
    // A moves on and syncs; B does not know yet and would write v2 with V2.
    const V3: &str = "web:\n  replicas: 5\n";
    put(&a.p("slices/services/shop.yaml"), V3.as_bytes());
    a.flush();
    assert!(ok(&a, &["sync"]).contains("shop: v2"));
    a.flush();
    let out = ok(&b, &["sync"]);
    assert!(
        out.contains("shop@v2.yaml was written by another sync first: planned again"),
        "{out}"
    );
    b.flush();
    assert_consecutive_ending_with(&remote, V3.as_bytes());

    // At once, from heads that disagree again.
    b.fetch();
    const V4: &str = "web:\n  replicas: 7\n";
    put(&a.p("slices/services/shop.yaml"), V4.as_bytes());
    a.flush();
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| slices(&a, &["sync"]));
        let tb = s.spawn(|| slices(&b, &["sync"]));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    assert!(ra.0 && rb.0, "both syncs succeed: {ra:?} {rb:?}");
    a.flush();
    b.flush();
    assert_consecutive_ending_with(&remote, V4.as_bytes());
    for m in [&a, &b] {
        let st = m.status();
        assert!(st.contains("conflicts: []"), "{st}");
    }
}

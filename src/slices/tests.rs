use std::collections::BTreeMap;

use super::*;

/// An in-memory repository: path -> bytes (shown as stored).
#[derive(Default)]
struct Mem(BTreeMap<String, Vec<u8>>);

fn oid_of(b: &[u8]) -> Oid {
    Oid::hash_object(git2::ObjectType::Blob, b).expect("hash")
}

impl RepoView for Mem {
    fn files(&self, dir: &str) -> Result<Vec<(String, Oid)>, String> {
        Ok(self
            .0
            .iter()
            .filter_map(|(p, b)| {
                let rest = p.strip_prefix(&format!("{dir}/"))?;
                (!rest.contains('/')).then(|| (rest.to_string(), oid_of(b)))
            })
            .collect())
    }
    fn is_dir(&self, dir: &str) -> bool {
        self.0.keys().any(|p| p.starts_with(&format!("{dir}/")))
    }
    fn stored(&self, oid: Oid) -> Result<Vec<u8>, String> {
        self.0
            .values()
            .find(|b| oid_of(b) == oid)
            .cloned()
            .ok_or_else(|| "no such blob".into())
    }
    fn plain(&self, _path: &str, oid: Oid) -> Result<Vec<u8>, String> {
        self.stored(oid)
    }
}

fn store() -> StoreCfg {
    StoreCfg {
        name: "services".into(),
        source: "slices/services".into(),
        active: "slices/.active/services".into(),
        identity: "name".into(),
        auto_sync: false,
    }
}

fn apply(m: &mut Mem, plan: &[Planned]) {
    for p in plan {
        m.0.insert(p.path.clone(), p.content.clone());
    }
}

const V1: &str = "web:\n  replicas: 2\nports:\n  - name: http\n    port: 80\n  - name: admin\n    port: 9000\nowner: team-a\n";
const V2: &str = "web:\n  replicas: 3\nports:\n  - name: http\n    port: 80\nowner: team-a\n";

#[test]
fn sync_versions_and_the_model_mark_purged_elements() {
    let mut m = Mem::default();
    m.0.insert("slices/services/shop.yaml".into(), V1.into());
    let s = [store()];
    let p = plan_sync(&m, &s, &[]).expect("plan");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "slices/.active/services/shop@v1.yaml");
    apply(&mut m, &p);
    assert!(
        plan_sync(&m, &s, &[]).expect("plan").is_empty(),
        "no change, no version"
    );

    m.0.insert("slices/services/shop.yaml".into(), V2.into());
    let st = status(&m, &s).expect("status");
    assert!(
        st.contains("services/shop: active v1, source differs"),
        "{st}"
    );
    assert!(
        st.contains("- ports[admin]") && st.contains("~ web:"),
        "{st}"
    );
    let p = plan_sync(&m, &s, &[]).expect("plan");
    assert_eq!(p[0].n, 2);
    apply(&mut m, &p);

    let vs = parsed_versions(&m, &s[0], "shop", &[]).expect("versions");
    let m2 = super::model(&vs, "name");
    let admin = m2
        .get("ports")
        .and_then(|l| match l {
            Value::Seq(items) => items
                .iter()
                .find(|i| i.get("name").and_then(Value::as_str) == Some("admin"))
                .cloned(),
            _ => None,
        })
        .expect("the purged element stays in the model");
    assert_eq!(admin.get("purged"), Some(&Value::Bool(true)));
    assert_eq!(admin.get("purged_in"), Some(&Value::Int(2)));
    assert_eq!(
        admin.get("operation").and_then(Value::as_str),
        Some("delete")
    );
    assert_eq!(
        m2.get("web")
            .and_then(|w| w.get("operation"))
            .and_then(Value::as_str),
        Some("update")
    );
    let d = diff((vs[0].0, &vs[0].1), (vs[1].0, &vs[1].1), "name");
    assert!(
        d.contains("- ports[admin]")
            && d.contains("~ web: { \"replicas\": 2 } -> { \"replicas\": 3 }"),
        "{d}"
    );

    // Deleted source: a final empty version, every element purged.
    m.0.remove("slices/services/shop.yaml");
    let p = plan_sync(&m, &s, &[]).expect("plan");
    assert!(p[0].deleted && p[0].content.is_empty() && p[0].n == 3);
    apply(&mut m, &p);
    assert!(plan_sync(&m, &s, &[]).expect("plan").is_empty());
    let vs = parsed_versions(&m, &s[0], "shop", &[]).expect("versions");
    let m2 = super::model(&vs, "name");
    assert_eq!(
        m2.get("web").and_then(|w| w.get("purged")),
        Some(&Value::Bool(true))
    );
    assert_eq!(
        m2.get("web").and_then(|w| w.get("purged_in")),
        Some(&Value::Int(3))
    );
}

#[test]
fn a_bad_source_stops_the_whole_sync() {
    let mut m = Mem::default();
    m.0.insert("slices/services/a.yaml".into(), b"x: 1\n".to_vec());
    m.0.insert("slices/services/b.yaml".into(), b"x: [unclosed\n".to_vec());
    m.0.insert("slices/services/c.yaml".into(), b"- a list\n".to_vec());
    let e = plan_sync(&m, &[store()], &[]).expect_err("refused");
    assert!(e.0.starts_with("slices/services/b.yaml: "), "{e}");
    m.0.remove("slices/services/b.yaml");
    let e = plan_sync(&m, &[store()], &[]).expect_err("refused");
    assert!(
        e.0.contains("c.yaml") && e.0.contains("must be a mapping"),
        "{e}"
    );
}

#[test]
fn config_errors_name_the_line_and_cause() {
    let ok = "slices:\n  - name: services\n    source: slices/services\n    active: slices/.active/services\n";
    let cfg = parse_config(ok, None).expect("valid");
    assert_eq!(cfg, vec![store()]);
    let cases = [
        ("slices:\n  - name: s\n    source: a\n    active: b\n    colour: red\n", ".valuesfs.yaml:5: unknown key \"colour\""),
        ("slices:\n  - name: s\n    source: a\n    active: a/v\n", "source and active overlap"),
        ("slices:\n  - name: s\n    source: a\n    active: b\n  - name: t\n    source: b/x\n    active: c\n", "overlap"),
        ("slices:\n  - name: s\n    source: ../a\n    active: b\n", ".valuesfs.yaml:3: store \"s\": source must be a folder"),
        ("slices:\n  - name: s\n    source: a\n    active: b\n    auto_sync: maybe\n", "auto_sync must be true or false"),
        ("other: 1\n", "unknown key \"other\""),
    ];
    for (text, want) in cases {
        let e = parse_config(text, None).expect_err(text);
        assert!(e.0.contains(want), "{text:?}: {e}");
    }
    let e = parse_config(ok, Some(&Mem::default())).expect_err("missing source");
    assert!(
        e.0.contains(".valuesfs.yaml:3:") && e.0.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn prune_keeps_the_latest_versions_and_drops_deleted_slices() {
    let mut m = Mem::default();
    let a = "slices/.active/services";
    for (p, b) in [
        ("slices/services/shop.yaml", "x: 3\n"),
        ("slices/.active/services/shop@v1.yaml", "x: 1\n"),
        ("slices/.active/services/shop@v2.yaml", "x: 2\n"),
        ("slices/.active/services/shop@v3.yaml", "x: 3\n"),
        // Deleted: no source, an empty final version.
        ("slices/.active/services/gone@v1.yaml", "y: 1\n"),
        ("slices/.active/services/gone@v2.yaml", ""),
    ] {
        m.0.insert(p.into(), b.into());
    }
    let mut got = plan_prune(&m, &[store()], 2).expect("prune");
    got.sort();
    assert_eq!(
        got,
        [
            format!("{a}/gone@v1.yaml"),
            format!("{a}/gone@v2.yaml"),
            format!("{a}/shop@v1.yaml"),
        ]
    );
    // --keep 0 still keeps the latest version of a live slice.
    let got = plan_prune(&m, &[store()], 0).expect("prune");
    assert!(!got.contains(&format!("{a}/shop@v3.yaml")), "{got:?}");
    assert!(got.contains(&format!("{a}/shop@v2.yaml")), "{got:?}");
}

#[test]
fn auto_version_follows_the_source_of_auto_sync_stores_only() {
    let mut m = Mem::default();
    m.0.insert(
        "slices/.active/services/shop@v1.yaml".into(),
        b"x: 1\n".to_vec(),
    );
    let manual = [store()];
    let auto = [StoreCfg {
        auto_sync: true,
        ..store()
    }];
    let path = "slices/services/shop.yaml";
    assert!(auto_version(&m, &manual, path, b"x: 2\n", b"x: 2\n").is_none());
    let v = auto_version(&m, &auto, path, b"stored", b"x: 2\n").expect("v2");
    assert_eq!(v.path, "slices/.active/services/shop@v2.yaml");
    assert_eq!(v.content, b"stored", "a byte copy of what git stores");
    assert!(
        auto_version(&m, &auto, path, b"x: 1\n", b"x: 1\n").is_none(),
        "same as the latest version"
    );
    assert!(
        auto_version(&m, &auto, path, b"- a\n", b"- a\n").is_none(),
        "not a mapping: the source alone is committed"
    );
    assert!(auto_version(&m, &auto, "slices/other/shop.yaml", b"x: 2\n", b"x: 2\n").is_none());
}

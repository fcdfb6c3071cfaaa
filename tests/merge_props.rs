//! Property test of the structural merge (`merge_plain`): random values trees, printed in a
//! layout that is not sops's (2-space, block lists), two random sets of edits on disjoint
//! parts (change, add and remove keys; change, add and remove items of named lists; both
//! sides appending items to the same named list and keys to the same mapping). Merged both
//! ways round, the result is exactly the structural merge of the trees printed in that
//! layout (so every line neither side touched is there byte for byte, and nothing is
//! re-rendered), swapping the sides gives the same data, and where the real `git
//! merge-file` merges cleanly the result is git's.

use std::collections::BTreeMap;

use proptest::prelude::*;
use valuesfs::crypto::merge::{merge_documents, MergeRules};
use valuesfs::crypto::value::{Key, Value};
use valuesfs::crypto::{Format, Style};
use valuesfs::repo::values_merge::{merge_plain, same_data};

#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    Map(Vec<(String, String)>),
    /// Items: (name, value).
    List(Vec<(String, String)>),
}

type Doc = Vec<(String, Node)>;

fn emit(doc: &Doc) -> String {
    let mut out = String::from("# generated\n");
    for (k, n) in doc {
        match n {
            Node::Scalar(v) => out.push_str(&format!("{k}: {v}\n")),
            Node::Map(fields) if fields.is_empty() => out.push_str(&format!("{k}: {{}}\n")),
            Node::Map(fields) => {
                out.push_str(&format!("{k}:\n"));
                for (f, v) in fields {
                    out.push_str(&format!("  {f}: {v}\n"));
                }
            }
            Node::List(items) if items.is_empty() => out.push_str(&format!("{k}: []\n")),
            Node::List(items) => {
                out.push_str(&format!("{k}:   # by name\n"));
                for (name, v) in items {
                    out.push_str(&format!("  - name: {name}\n    value: {v}\n"));
                }
            }
        }
    }
    out
}

fn tree(doc: &Doc) -> Value {
    let s = |v: &str| Value::Str(v.to_string());
    Value::Map(
        doc.iter()
            .map(|(k, n)| {
                let v = match n {
                    Node::Scalar(v) => s(v),
                    Node::Map(f) => Value::Map(
                        f.iter()
                            .map(|(k, v)| (Key::Name(k.clone()), s(v)))
                            .collect(),
                    ),
                    Node::List(items) => Value::Seq(
                        items
                            .iter()
                            .map(|(n, v)| {
                                Value::Map(vec![
                                    (Key::Name("name".into()), s(n)),
                                    (Key::Name("value".into()), s(v)),
                                ])
                            })
                            .collect(),
                    ),
                };
                (Key::Name(k.clone()), v)
            })
            .collect(),
    )
}

/// Leaves by path, list items by name: data without the order of concurrent additions.
fn leaves(v: &Value, at: &str, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Map(items) => {
            for (k, v) in items {
                if let Key::Name(n) = k {
                    leaves(v, &format!("{at}.{n}"), out);
                }
            }
        }
        Value::Seq(items) => {
            for it in items {
                let name = it.get("name").and_then(Value::as_str).unwrap_or("?");
                leaves(it, &format!("{at}[{name}]"), out);
            }
        }
        other => {
            out.insert(at.to_string(), format!("{other:?}"));
        }
    }
}

fn word() -> impl Strategy<Value = String> {
    "[a-z]{1,6}".prop_map(|w| format!("v_{w}"))
}

/// Values are unique per place, so a line's count says where it is.
fn node(key: usize) -> impl Strategy<Value = Node> {
    prop_oneof![
        word().prop_map(Node::Scalar),
        prop::collection::vec(word(), 1..4).prop_map(move |vs| Node::Map(
            vs.into_iter()
                .enumerate()
                .map(|(i, v)| (format!("f{i}"), format!("{v}_{key}_{i}")))
                .collect()
        )),
        prop::collection::vec(word(), 1..4).prop_map(move |vs| Node::List(
            vs.into_iter()
                .enumerate()
                .map(|(i, v)| (format!("k{key}i{i}"), format!("{v}_{key}_{i}")))
                .collect()
        )),
    ]
}

fn base_doc() -> impl Strategy<Value = Doc> {
    (2usize..6).prop_flat_map(|n| {
        (0..n)
            .map(|i| node(i).prop_map(move |nd| (format!("key{i}"), nd)))
            .collect::<Vec<_>>()
    })
}

/// One side's edits: `own` says which top-level keys this side may change; every side
/// may append items to any named list, and keys to the end of the document.
fn edit(doc: &Doc, own: &[bool], side: &str, seed: &[u8]) -> Doc {
    let mut out = doc.clone();
    let mut r = seed.iter().copied().cycle();
    let mut next = move || r.next().unwrap_or(0);
    let mut removed = Vec::new();
    for (i, (_, n)) in out.iter_mut().enumerate() {
        let op = next() % 4;
        if !own[i] {
            if let Node::List(items) = n {
                if op == 0 {
                    items.push((format!("{side}{i}"), format!("v_{side}")));
                }
            }
            continue;
        }
        match n {
            Node::Scalar(v) => match op {
                0 => *v = format!("v_{side}s"),
                1 => removed.push(i),
                _ => {}
            },
            Node::Map(fields) => match op {
                0 => fields[0].1 = format!("v_{side}m"),
                1 => fields.push((format!("{side}new"), "v_added".into())),
                2 if fields.len() > 1 => {
                    fields.remove(0);
                }
                3 => removed.push(i),
                _ => {}
            },
            Node::List(items) => match op {
                0 => items[0].1 = format!("v_{side}l"),
                1 => items.push((format!("{side}{i}"), format!("v_{side}"))),
                // Never the last item: the other side may append after it.
                2 if items.len() > 1 => {
                    items.remove(0);
                }
                _ => {}
            },
        }
    }
    for i in removed.into_iter().rev() {
        out.remove(i);
    }
    if next() % 2 == 0 {
        out.push((format!("added_{side}"), Node::Scalar(format!("v_{side}"))));
    }
    out
}

/// `git merge-file -p` (the real git): the merge when it is clean.
fn git_merge_file(base: &str, ours: &str, theirs: &str) -> Option<String> {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = |n: &str, t: &str| {
        let p = tmp.path().join(n);
        std::fs::write(&p, t).expect("write");
        p
    };
    let (o, b, t) = (f("ours", ours), f("base", base), f("theirs", theirs));
    let out = std::process::Command::new("git")
        .args(["merge-file", "-p"])
        .args([&o, &b, &t])
        .output()
        .expect("git");
    (out.status.code() == Some(0)).then(|| String::from_utf8(out.stdout).expect("utf8"))
}

fn merged(base: &str, ours: &str, theirs: &str) -> String {
    let r = merge_plain(
        Format::Yaml,
        Some(base.as_bytes()),
        ours.as_bytes(),
        theirs.as_bytes(),
        &MergeRules::default(),
        Style::default(),
    );
    match r {
        Ok(Some(text)) => String::from_utf8(text.to_vec()).expect("utf8"),
        Ok(None) => panic!("declined:\n{base}---\n{ours}---\n{theirs}"),
        Err(c) => panic!("conflict {c:?}:\n{base}---\n{ours}---\n{theirs}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn disjoint_edits_merge_exactly_both_ways_round(
        base in base_doc(),
        own in prop::collection::vec(any::<bool>(), 6),
        so in prop::collection::vec(any::<u8>(), 8),
        st in prop::collection::vec(any::<u8>(), 8),
    ) {
        let theirs_own: Vec<bool> = own.iter().map(|o| !o).collect();
        let ours = edit(&base, &own, "o", &so);
        let theirs = edit(&base, &theirs_own, "t", &st);
        let (bt, ot, tt) = (emit(&base), emit(&ours), emit(&theirs));
        let expected = merge_documents(&[tree(&base)], &[tree(&ours)], &[tree(&theirs)], &MergeRules::default())
            .expect("disjoint edits never conflict");
        let got = merged(&bt, &ot, &tt);
        // The structural merge, in the files' own layout: every untouched line as it was.
        let as_doc = |v: &Value| -> String {
            let Value::Map(items) = v else { panic!("a mapping") };
            let doc: Doc = items.iter().map(|(k, v)| {
                let Key::Name(k) = k else { panic!("no comments here") };
                let s = |v: &Value| v.as_str().expect("strings").to_string();
                let n = match v {
                    Value::Str(x) => Node::Scalar(x.clone()),
                    Value::Map(f) => Node::Map(f.iter().map(|(k, v)| match k {
                        Key::Name(k) => (k.clone(), s(v)),
                        Key::Comment(_) => panic!("no comments"),
                    }).collect()),
                    Value::Seq(items) => Node::List(items.iter().map(|it| {
                        (s(it.get("name").expect("name")), s(it.get("value").expect("value")))
                    }).collect()),
                    other => panic!("{other:?}"),
                };
                (k.clone(), n)
            }).collect();
            emit(&doc)
        };
        // The structural merge's data; key order aside, in the layout of the sides.
        let parse = |t: &str| valuesfs::crypto::sops::parse_plain(t.as_bytes(), Format::Yaml).expect("parses");
        prop_assert!(same_data(&parse(&got)[0], &expected[0]), "{} vs {}", got, as_doc(&expected[0]));
        // Nothing re-rendered: every line comes from one of the sides.
        for line in got.lines() {
            prop_assert!(bt.contains(line) || ot.contains(line) || tt.contains(line), "{:?} is new", line);
        }
        // A line as often as base and both sides all have it stays that often.
        let count = |t: &str, l: &str| t.lines().filter(|x| *x == l).count();
        for line in bt.lines() {
            let kept = count(&bt, line).min(count(&ot, line)).min(count(&tt, line));
            prop_assert!(count(&got, line) >= kept, "{:?} lost", line);
        }
        // Where git's own line merge is clean, the result is git's.
        if let Some(by_git) = git_merge_file(&bt, &ot, &tt) {
            prop_assert_eq!(&got, &by_git);
        }
        // Swapped: the same data.
        let swapped = merged(&bt, &tt, &ot);
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        leaves(&parse(&got)[0], "", &mut a);
        leaves(&parse(&swapped)[0], "", &mut b);
        prop_assert_eq!(a, b);
    }
}

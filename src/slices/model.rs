//! Elements, the model and element-level diffs of a slice.
//!
//! A slice is a mapping. Its elements are its top-level keys, and the items of its
//! top-level lists that are mappings carrying the identity key (`name` by default),
//! named `key[identity]`. The model is the latest version plus every element an earlier
//! version had and the latest has not, each marked on the element itself.

use crate::crypto::value::{Key, Value};

/// An element: its name, and where it sits (top-level key, or item of a list).
#[derive(Debug, Clone, PartialEq)]
struct Element {
    name: String,
    list: Option<String>,
    value: Value,
}

fn without_comments(v: &Value) -> Value {
    v.without_comments()
}

fn identity_of(item: &Value, identity: &str) -> Option<String> {
    match item.get(identity)? {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn elements(slice: &Value, identity: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let Value::Map(items) = slice else {
        return out;
    };
    for (k, v) in items {
        let Key::Name(key) = k else { continue };
        match v {
            Value::Seq(list) if list.iter().any(|i| identity_of(i, identity).is_some()) => {
                for item in list {
                    if let Some(id) = identity_of(item, identity) {
                        out.push(Element {
                            name: format!("{key}[{id}]"),
                            list: Some(key.clone()),
                            value: without_comments(item),
                        });
                    }
                }
            }
            _ => out.push(Element {
                name: key.clone(),
                list: None,
                value: without_comments(v),
            }),
        }
    }
    out
}

fn compact(v: &Value) -> String {
    crate::crypto::sops::render_plain(crate::crypto::Format::Json, std::slice::from_ref(v))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// What changes from `old` to `new`, one line per element: `+ added`, `~ changed: old ->
/// new`, `- removed`.
pub fn elements_changed(old: &Value, new: &Value, identity: &str) -> Vec<String> {
    let (a, b) = (elements(old, identity), elements(new, identity));
    let mut out = Vec::new();
    for e in &b {
        match a.iter().find(|x| x.name == e.name) {
            None => out.push(format!("+ {}", e.name)),
            Some(x) if x.value != e.value => out.push(format!(
                "~ {}: {} -> {}",
                e.name,
                compact(&x.value),
                compact(&e.value)
            )),
            Some(_) => {}
        }
    }
    for x in &a {
        if !b.iter().any(|e| e.name == x.name) {
            out.push(format!("- {}", x.name));
        }
    }
    out
}

/// `slices diff`: element-level changes between two versions.
pub fn diff(a: (u32, &Value), b: (u32, &Value), identity: &str) -> String {
    let mut out = format!("v{} -> v{}\n", a.0, b.0);
    for l in elements_changed(a.1, b.1, identity) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn mark(v: &mut Value, marks: &[(&str, Value)]) {
    if let Value::Map(items) = v {
        for (k, val) in marks {
            items.retain(|(key, _)| key != &Key::Name(k.to_string()));
            items.push((Key::Name(k.to_string()), val.clone()));
        }
    }
}

/// The model: the latest version, with `operation: create|update` on every mapping
/// element new or changed since the previous version, plus every element of an earlier
/// version that the latest lacks, marked `purged: true`, `purged_in: <version>` and
/// `operation: delete` (on mapping elements; a removed scalar key is shown with its last
/// value, as it has no room for markers).
pub fn model(versions: &[(u32, Value)], identity: &str) -> Value {
    let Some((_, latest)) = versions.last() else {
        return Value::Map(Vec::new());
    };
    let mut out = without_comments(latest);
    let now = elements(latest, identity);
    let prev = versions
        .len()
        .checked_sub(2)
        .map(|i| elements(&versions[i].1, identity))
        .unwrap_or_default();
    // Operations relative to the previous version.
    if let Value::Map(items) = &mut out {
        for (k, v) in items.iter_mut() {
            let Key::Name(key) = k else { continue };
            let op = |e: &Element| match prev.iter().find(|p| p.name == e.name) {
                None => Some("create"),
                Some(p) if p.value != e.value => Some("update"),
                Some(_) => None,
            };
            match v {
                Value::Seq(list) if now.iter().any(|e| e.list.as_deref() == Some(key)) => {
                    for item in list.iter_mut() {
                        if let Some(id) = identity_of(item, identity) {
                            let name = format!("{key}[{id}]");
                            if let Some(e) = now.iter().find(|e| e.name == name) {
                                if let Some(op) = op(e) {
                                    mark(item, &[("operation", Value::Str(op.into()))]);
                                }
                            }
                        }
                    }
                }
                Value::Map(_) => {
                    if let Some(e) = now.iter().find(|e| e.name == *key && e.list.is_none()) {
                        if let Some(op) = op(e) {
                            mark(v, &[("operation", Value::Str(op.into()))]);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // Purged: present in some earlier version, absent now; purged in the version after
    // its last presence.
    let mut purged: Vec<(Element, u32)> = Vec::new();
    for (i, (_, v)) in versions.iter().enumerate().take(versions.len() - 1) {
        for e in elements(v, identity) {
            if now.iter().any(|n| n.name == e.name) {
                continue;
            }
            let gone_in = versions[i + 1].0;
            match purged.iter_mut().find(|(p, _)| p.name == e.name) {
                Some(slot) => *slot = (e, gone_in),
                None => purged.push((e, gone_in)),
            }
        }
    }
    // An element that came back and went again is purged in its last removal: the
    // loop above keeps the latest presence.
    if let Value::Map(items) = &mut out {
        for (e, n) in purged {
            let mut value = e.value.clone();
            mark(
                &mut value,
                &[
                    ("purged", Value::Bool(true)),
                    ("purged_in", Value::Int(i64::from(n))),
                    ("operation", Value::Str("delete".into())),
                ],
            );
            match &e.list {
                Some(list) => {
                    let slot = items
                        .iter_mut()
                        .find(|(k, _)| k == &Key::Name(list.clone()));
                    match slot {
                        Some((_, Value::Seq(l))) => l.push(value),
                        Some(_) => {}
                        None => items.push((Key::Name(list.clone()), Value::Seq(vec![value]))),
                    }
                }
                None => items.push((Key::Name(e.name.clone()), value)),
            }
        }
    }
    out
}

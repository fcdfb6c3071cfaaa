//! JSON merge patches (RFC 7386) on the data tree: what `PATCH /v1/files/...` applies.
//!
//! Invariants: entries the patch does not name are left as they are (value, type,
//! position, and the comments around them), so re-encryption keeps their ciphertext;
//! new keys go after the existing entries, in the patch's order.

use super::value::{Key, Value};

/// Applies `patch` to `target`: an object merges key by key (`null` removes the key),
/// anything else replaces the target.
pub fn merge_patch(target: &mut Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(fields) = patch else {
        *target = from_json(patch);
        return;
    };
    if !matches!(target, Value::Map(_)) {
        *target = Value::Map(Vec::new());
    }
    let Value::Map(items) = target else {
        return;
    };
    for (name, v) in fields {
        let at = items
            .iter()
            .position(|(k, _)| matches!(k, Key::Name(n) if n == name));
        match (at, v.is_null()) {
            (Some(i), true) => {
                items.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge_patch(&mut items[i].1, v),
            (None, false) => items.push((Key::Name(name.clone()), from_json(v))),
        }
    }
}

/// A JSON value as a tree value (objects through [`merge_patch`], so nulls inside a
/// new object are dropped as the RFC says).
fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(items) => Value::Seq(items.iter().map(from_json).collect()),
        J::Object(_) => {
            let mut m = Value::Map(Vec::new());
            merge_patch(&mut m, v);
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Key {
        Key::Name(n.into())
    }

    #[test]
    fn the_rfc_examples_hold() {
        // RFC 7386, section 3 (a few of its cases), on trees.
        let mut t = Value::Map(vec![
            (name("a"), Value::Str("b".into())),
            (
                name("c"),
                Value::Map(vec![(name("d"), Value::Str("e".into()))]),
            ),
        ]);
        let p = serde_json::json!({"a": "z", "c": {"d": null, "f": {"g": null, "h": 1}}});
        merge_patch(&mut t, &p);
        assert_eq!(
            t,
            Value::Map(vec![
                (name("a"), Value::Str("z".into())),
                (
                    name("c"),
                    Value::Map(vec![(
                        name("f"),
                        Value::Map(vec![(name("h"), Value::Int(1))])
                    )])
                ),
            ])
        );
        let mut t = Value::Seq(vec![Value::Int(1)]);
        merge_patch(&mut t, &serde_json::json!({"a": [1.5, true]}));
        assert_eq!(
            t,
            Value::Map(vec![(
                name("a"),
                Value::Seq(vec![Value::Float(1.5), Value::Bool(true)])
            )])
        );
        let mut t = Value::Map(vec![(name("a"), Value::Int(1))]);
        merge_patch(&mut t, &serde_json::json!("x"));
        assert_eq!(t, Value::Str("x".into()));
    }

    #[test]
    fn comments_and_untouched_entries_stay_in_place() {
        let mut t = Value::Map(vec![
            (Key::Comment("head".into()), Value::Null),
            (name("keep"), Value::Str("k".into())),
            (Key::Comment("about gone".into()), Value::Null),
            (name("gone"), Value::Int(2)),
            (name("last"), Value::Bool(false)),
        ]);
        merge_patch(
            &mut t,
            &serde_json::json!({"gone": null, "new": 3, "last": true}),
        );
        assert_eq!(
            t,
            Value::Map(vec![
                (Key::Comment("head".into()), Value::Null),
                (name("keep"), Value::Str("k".into())),
                (Key::Comment("about gone".into()), Value::Null),
                (name("last"), Value::Bool(true)),
                (name("new"), Value::Int(3)),
            ])
        );
    }
}

//! Three-way merge of decrypted documents, key by key and list item by list item.
//!
//! Mappings merge per key: a key changed on one side only takes that side; changed the
//! same way on both, it is taken once; changed two ways, it is a conflict naming its path.
//! Lists whose items are all mappings carrying an identity key (`name` unless
//! [`MergeRules`] names another for that path) merge item by item, as kubectl's strategic
//! merge does: items added on both sides all land (ours first, then theirs, each after the
//! item its side put it after); an item changed on one side takes the change; changed in
//! different fields on both, it takes both; a field changed two ways or an item removed
//! on one side and changed on the other is a conflict (`env[LOG_LEVEL].value`). Scalar
//! lists a rule declares sets merge as sets; any other list merges as one value.
//! Comments before an item travel with it; comments before a key follow the side whose
//! mapping changed them.

use super::value::{Key, Value};

/// Per-path merge settings (`.valuesfs.yaml` `merge:`). A path is the dotted keys down to
/// the list, list levels left out: `spec.template.spec.containers.ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeRules {
    rules: Vec<(String, ListRule)>,
}

/// How one list merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListRule {
    /// Items are mappings identified by this key.
    Key(String),
    /// Items are scalars, order does not matter: additions of both sides land.
    Set,
}

impl MergeRules {
    pub fn new(rules: Vec<(String, ListRule)>) -> MergeRules {
        MergeRules { rules }
    }

    fn rule(&self, path: &str) -> Option<&ListRule> {
        self.rules.iter().find(|(p, _)| p == path).map(|(_, r)| r)
    }

    fn identity(&self, path: &str) -> &str {
        match self.rule(path) {
            Some(ListRule::Key(k)) => k,
            _ => "name",
        }
    }
}

/// The merge could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{why} at {path}")]
pub struct MergeConflict {
    /// Where: `a.b.c`, list items by identity (`env[LOG_LEVEL].value`); the document
    /// index is prefixed when there are several (`1/a.b`).
    pub path: String,
    pub why: String,
}

fn conflict(path: &str, why: &str) -> MergeConflict {
    MergeConflict {
        path: if path.is_empty() {
            "(document)".into()
        } else {
            path.to_string()
        },
        why: why.to_string(),
    }
}

const CHANGED_TWO_WAYS: &str = "both sides changed it differently";

/// Where a node is: the printed path for messages, the rule path for [`MergeRules`].
#[derive(Clone, Copy)]
struct At<'a> {
    shown: &'a str,
    rule: &'a str,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Merge documents (one tree per document).
pub fn merge_documents(
    base: &[Value],
    ours: &[Value],
    theirs: &[Value],
    rules: &MergeRules,
) -> Result<Vec<Value>, MergeConflict> {
    if ours == base {
        return Ok(theirs.to_vec());
    }
    if theirs == base || ours == theirs {
        return Ok(ours.to_vec());
    }
    if base.len() != ours.len() || base.len() != theirs.len() {
        return Err(conflict("(documents)", "documents added or removed"));
    }
    let multi = base.len() > 1;
    let mut out = Vec::with_capacity(base.len());
    for (i, ((b, o), t)) in base.iter().zip(ours).zip(theirs).enumerate() {
        let shown = if multi {
            format!("{i}/")
        } else {
            String::new()
        };
        let at = At {
            shown: &shown,
            rule: "",
        };
        out.push(merge_value(Some(b), Some(o), Some(t), at, rules)?.unwrap_or(Value::Null));
    }
    Ok(out)
}

fn shown_path(at: At<'_>) -> String {
    at.shown.trim_end_matches('/').to_string()
}

/// Merge one node; `None` means absent (deleted).
fn merge_value(
    base: Option<&Value>,
    ours: Option<&Value>,
    theirs: Option<&Value>,
    at: At<'_>,
    rules: &MergeRules,
) -> Result<Option<Value>, MergeConflict> {
    if ours == theirs {
        return Ok(ours.cloned());
    }
    if ours == base {
        return Ok(theirs.cloned());
    }
    if theirs == base {
        return Ok(ours.cloned());
    }
    let empty_map = Vec::new();
    let empty_seq = Vec::new();
    match (base, ours, theirs) {
        (Some(Value::Map(_)) | None, Some(Value::Map(o)), Some(Value::Map(t))) => {
            let b = match base {
                Some(Value::Map(b)) => b,
                _ => &empty_map,
            };
            merge_maps(b, o, t, at, rules).map(|m| Some(Value::Map(m)))
        }
        (Some(Value::Seq(_)) | None, Some(Value::Seq(o)), Some(Value::Seq(t))) => {
            let b = match base {
                Some(Value::Seq(b)) => b,
                _ => &empty_seq,
            };
            merge_seqs(b, o, t, at, rules).map(|s| Some(Value::Seq(s)))
        }
        (_, None, Some(_)) | (_, Some(_), None) => Err(conflict(
            &shown_path(at),
            "removed on one side and changed on the other",
        )),
        _ => Err(conflict(&shown_path(at), CHANGED_TWO_WAYS)),
    }
}

fn get<'a>(items: &'a [(Key, Value)], k: &str) -> Option<&'a Value> {
    items.iter().find_map(|(kk, v)| match kk {
        Key::Name(n) if n == k => Some(v),
        _ => None,
    })
}

fn comments_before(items: &[(Key, Value)], k: &str) -> Vec<String> {
    let mut acc = Vec::new();
    for (kk, _) in items {
        match kk {
            Key::Comment(c) => acc.push(c.clone()),
            Key::Name(n) if n == k => return acc,
            Key::Name(_) => acc.clear(),
        }
    }
    Vec::new()
}

fn merge_maps(
    base: &[(Key, Value)],
    ours: &[(Key, Value)],
    theirs: &[(Key, Value)],
    at: At<'_>,
    rules: &MergeRules,
) -> Result<Vec<(Key, Value)>, MergeConflict> {
    // Order: ours's order, then keys only theirs added, in their order.
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in ours.iter().chain(theirs.iter()) {
        if let Key::Name(n) = k {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let mut out = Vec::new();
    for n in names {
        let (b, o, t) = (get(base, n), get(ours, n), get(theirs, n));
        let shown = if at.shown.ends_with('/') || at.shown.is_empty() {
            format!("{}{n}", at.shown)
        } else {
            format!("{}.{n}", at.shown)
        };
        let rule = join(at.rule, n);
        let sub = At {
            shown: &shown,
            rule: &rule,
        };
        let merged = merge_value(b, o, t, sub, rules)?;
        if let Some(v) = merged {
            let (cb, co, ct) = (
                comments_before(base, n),
                comments_before(ours, n),
                comments_before(theirs, n),
            );
            let comments = if co == cb { ct } else { co };
            out.extend(comments.into_iter().map(|c| (Key::Comment(c), Value::Null)));
            out.push((Key::Name(n.to_string()), v));
        }
    }
    // Trailing comments (after the last key) from ours.
    let trailing = ours
        .iter()
        .rev()
        .take_while(|(k, _)| matches!(k, Key::Comment(_)))
        .count();
    out.extend(ours[ours.len() - trailing..].iter().cloned());
    Ok(out)
}

/// A list item with the comments standing before it.
struct Unit<'a> {
    comments: Vec<&'a Value>,
    item: &'a Value,
}

/// Split a list into items (with their comments) and the comments after the last item.
fn units(items: &[Value]) -> (Vec<Unit<'_>>, Vec<&Value>) {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for v in items {
        match v {
            Value::Comment(_) => pending.push(v),
            _ => out.push(Unit {
                comments: std::mem::take(&mut pending),
                item: v,
            }),
        }
    }
    (out, pending)
}

/// The identity of every item, if every item is a mapping with a distinct scalar `key`.
fn identities(units: &[Unit<'_>], key: &str) -> Option<Vec<String>> {
    let mut ids: Vec<String> = Vec::with_capacity(units.len());
    for u in units {
        let id = match u.item.get(key)? {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Float(f) => f.to_string(),
            _ => return None,
        };
        if ids.contains(&id) {
            return None;
        }
        ids.push(id);
    }
    Some(ids)
}

fn merge_seqs(
    base: &[Value],
    ours: &[Value],
    theirs: &[Value],
    at: At<'_>,
    rules: &MergeRules,
) -> Result<Vec<Value>, MergeConflict> {
    let (bu, _) = units(base);
    let (ou, o_tail) = units(ours);
    let (tu, _) = units(theirs);
    if rules.rule(at.rule) == Some(&ListRule::Set) {
        return merge_sets(&bu, &ou, &tu, &o_tail, at);
    }
    let key = rules.identity(at.rule);
    let all = |u: &[Unit<'_>]| identities(u, key);
    let (Some(bi), Some(oi), Some(ti)) = (all(&bu), all(&ou), all(&tu)) else {
        return Err(conflict(&shown_path(at), CHANGED_TWO_WAYS));
    };
    let find = |ids: &[String], id: &str| ids.iter().position(|x| x == id);
    // (id, merged unit, added by ours)
    let mut out: Vec<(String, Vec<Value>, bool)> = Vec::new();
    for (i, id) in oi.iter().enumerate() {
        let b = find(&bi, id).map(|j| bu[j].item);
        let t = find(&ti, id).map(|j| tu[j].item);
        let shown = format!("{}[{id}]", at.shown);
        let sub = At {
            shown: &shown,
            rule: at.rule,
        };
        let merged = match (b, t) {
            // Theirs removed it: gone unless ours changed it.
            (Some(b), None) if b == ou[i].item => None,
            (Some(_), None) => {
                return Err(conflict(
                    &shown,
                    "removed on one side and changed on the other",
                ))
            }
            _ => merge_value(b, Some(ou[i].item), t, sub, rules)?,
        };
        if let Some(v) = merged {
            let mut unit: Vec<Value> = ou[i].comments.iter().map(|c| (*c).clone()).collect();
            unit.push(v);
            out.push((id.clone(), unit, b.is_none()));
        }
    }
    let mut prev: Option<&str> = None;
    for (j, id) in ti.iter().enumerate() {
        if find(&oi, id).is_some() {
            prev = Some(id);
            continue;
        }
        match find(&bi, id) {
            // Ours removed it: stays removed unless theirs changed it.
            Some(k) if bu[k].item == tu[j].item => {}
            Some(_) => {
                return Err(conflict(
                    &format!("{}[{id}]", at.shown),
                    "removed on one side and changed on the other",
                ))
            }
            None => {
                // Added by theirs: after the item theirs put it after, and after the
                // items ours added there.
                let mut pos = match prev.and_then(|p| out.iter().position(|(x, _, _)| x == p)) {
                    Some(p) => p + 1,
                    None => 0,
                };
                while pos < out.len() && out[pos].2 {
                    pos += 1;
                }
                let mut unit: Vec<Value> = tu[j].comments.iter().map(|c| (*c).clone()).collect();
                unit.push(tu[j].item.clone());
                out.insert(pos, (id.clone(), unit, false));
            }
        }
        prev = Some(id);
    }
    let mut merged: Vec<Value> = out.into_iter().flat_map(|(_, u, _)| u).collect();
    merged.extend(o_tail.into_iter().cloned());
    Ok(merged)
}

fn merge_sets(
    base: &[Unit<'_>],
    ours: &[Unit<'_>],
    theirs: &[Unit<'_>],
    o_tail: &[&Value],
    at: At<'_>,
) -> Result<Vec<Value>, MergeConflict> {
    let scalar = |u: &Unit<'_>| !matches!(u.item, Value::Map(_) | Value::Seq(_));
    if !(base.iter().all(scalar) && ours.iter().all(scalar) && theirs.iter().all(scalar)) {
        return Err(conflict(
            &shown_path(at),
            "a list declared a set holds mappings or lists",
        ));
    }
    let has = |s: &[Unit<'_>], v: &Value| s.iter().any(|u| u.item == v);
    let mut out: Vec<Value> = Vec::new();
    for u in ours {
        // Theirs removed it (and ours did not add it).
        if has(base, u.item) && !has(theirs, u.item) {
            continue;
        }
        out.extend(u.comments.iter().map(|c| (*c).clone()));
        out.push(u.item.clone());
    }
    for u in theirs {
        if !has(ours, u.item) && !has(base, u.item) {
            out.extend(u.comments.iter().map(|c| (*c).clone()));
            out.push(u.item.clone());
        }
    }
    out.extend(o_tail.iter().map(|c| (*c).clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::yaml::{parse, Limits};

    fn y(s: &str) -> Vec<Value> {
        parse(s, Limits::default()).expect("yaml")
    }

    fn m(base: &str, ours: &str, theirs: &str) -> Result<Vec<Value>, MergeConflict> {
        merge_documents(&y(base), &y(ours), &y(theirs), &MergeRules::default())
    }

    #[test]
    fn different_keys_both_land() {
        let got = m(
            "a: 1\nb: 2\nc: {x: 1, y: 2}\n",
            "a: 10\nb: 2\nc: {x: 1, y: 2}\n",
            "a: 1\nb: 2\nc: {x: 1, y: 20}\nd: new\n",
        );
        assert_eq!(
            got.expect("merges"),
            y("a: 10\nb: 2\nc: {x: 1, y: 20}\nd: new\n")
        );
    }

    #[test]
    fn same_key_two_ways_conflicts() {
        let e = m(
            "db:\n  password: a\n",
            "db:\n  password: b\n",
            "db:\n  password: c\n",
        )
        .expect_err("conflict");
        assert_eq!(e.path, "db.password");
    }

    #[test]
    fn delete_vs_untouched_deletes() {
        assert_eq!(
            m("a: 1\nb: 2\n", "a: 1\n", "a: 1\nb: 2\nc: 3\n").expect("merges"),
            y("a: 1\nc: 3\n")
        );
    }

    const ENV: &str = "containers:\n- name: web\n  env:\n  - name: LOG_LEVEL\n    value: info\n";

    #[test]
    fn items_added_on_both_sides_both_land_ours_first() {
        let ours = format!("{ENV}  - name: A_VAR\n    value: a\n");
        let theirs = format!("{ENV}  - name: B_VAR\n    value: b\n");
        let got = m(ENV, &ours, &theirs).expect("merges");
        let want = format!("{ENV}  - name: A_VAR\n    value: a\n  - name: B_VAR\n    value: b\n");
        assert_eq!(got, y(&want));
        // Swapped sides: the same items, theirs first now.
        let got = m(ENV, &theirs, &ours).expect("merges");
        let want = format!("{ENV}  - name: B_VAR\n    value: b\n  - name: A_VAR\n    value: a\n");
        assert_eq!(got, y(&want));
    }

    #[test]
    fn an_item_changed_in_different_fields_takes_both() {
        let base = "env:\n- name: X\n  value: 1\n  note: n\n- name: Y\n  value: 2\n";
        let ours = "env:\n- name: X\n  value: 10\n  note: n\n- name: Y\n  value: 2\n";
        let theirs = "env:\n- name: X\n  value: 1\n  note: m\n- name: Y\n  value: 2\n- name: Z\n  value: 3\n";
        let got = m(base, ours, theirs).expect("merges");
        assert_eq!(
            got,
            y("env:\n- name: X\n  value: 10\n  note: m\n- name: Y\n  value: 2\n- name: Z\n  value: 3\n")
        );
    }

    #[test]
    fn conflicts_name_the_path_with_item_identities() {
        let ours = ENV.replace("info", "debug");
        let theirs = ENV.replace("info", "warn");
        let e = m(ENV, &ours, &theirs).expect_err("conflict");
        assert_eq!(e.path, "containers[web].env[LOG_LEVEL].value");
        // Removed on one side, changed on the other.
        let removed = "containers:\n- name: web\n  env: []\n";
        let e = m(ENV, removed, &ours).expect_err("conflict");
        assert!(e.path.starts_with("containers[web].env"), "{e}");
        let e = m(
            ENV,
            &ours,
            "containers:\n- name: web\n  env:\n  - name: OTHER\n    value: x\n",
        )
        .expect_err("conflict");
        assert_eq!(e.path, "containers[web].env[LOG_LEVEL]");
        assert!(e.why.contains("removed"), "{e}");
    }

    #[test]
    fn removals_merge_with_additions() {
        let base = "l:\n- name: a\n- name: b\n- name: c\n";
        let got = m(
            base,
            "l:\n- name: a\n- name: c\n",
            "l:\n- name: a\n- name: b\n- name: c\n- name: d\n",
        )
        .expect("merges");
        assert_eq!(got, y("l:\n- name: a\n- name: c\n- name: d\n"));
    }

    #[test]
    fn theirs_goes_where_theirs_put_it() {
        let base = "l:\n- name: a\n- name: z\n";
        let got = m(
            base,
            "l:\n- name: a\n- name: o\n- name: z\n",
            "l:\n- name: a\n- name: t\n- name: z\n",
        )
        .expect("merges");
        assert_eq!(got, y("l:\n- name: a\n- name: o\n- name: t\n- name: z\n"));
        let got = m(base, base, "l:\n- name: t\n- name: a\n- name: z\n").expect("merges");
        assert_eq!(got, y("l:\n- name: t\n- name: a\n- name: z\n"));
    }

    #[test]
    fn scalar_lists_conflict_unless_declared_sets() {
        let (b, o, t) = ("hosts: [a]\n", "hosts: [a, b]\n", "hosts: [a, c]\n");
        let e = m(b, o, t).expect_err("order semantics");
        assert_eq!(e.path, "hosts");
        let rules = MergeRules::new(vec![("hosts".into(), ListRule::Set)]);
        let got = merge_documents(&y(b), &y(o), &y(t), &rules).expect("a set");
        assert_eq!(got, y("hosts: [a, b, c]\n"));
        let got = merge_documents(
            &y("hosts: [a, x]\n"),
            &y("hosts: [a]\n"),
            &y("hosts: [a, x, c]\n"),
            &rules,
        )
        .expect("a set");
        assert_eq!(got, y("hosts: [a, c]\n"));
    }

    #[test]
    fn a_rule_names_another_identity_key() {
        let base = "spec:\n  ports:\n  - port: 80\n    protocol: TCP\n";
        let ours = "spec:\n  ports:\n  - port: 80\n    protocol: TCP\n  - port: 443\n";
        let theirs = "spec:\n  ports:\n  - port: 80\n    protocol: TCP\n  - port: 8080\n";
        assert!(m(base, ours, theirs).is_err(), "no `name`: one value");
        let rules = MergeRules::new(vec![("spec.ports".into(), ListRule::Key("port".into()))]);
        let got = merge_documents(&y(base), &y(ours), &y(theirs), &rules).expect("by port");
        assert_eq!(
            got,
            y("spec:\n  ports:\n  - port: 80\n    protocol: TCP\n  - port: 443\n  - port: 8080\n")
        );
    }
}

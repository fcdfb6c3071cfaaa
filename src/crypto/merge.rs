//! Three-way merge of decrypted documents, key by key.
//!
//! Mappings merge per key; a key changed on one side only takes that side; a key changed
//! the same way on both sides is taken once; a key changed two different ways is a
//! conflict naming its path. Sequences and scalars merge as whole values. Comments follow
//! the side whose mapping changed them.

use super::value::{Key, Value};

/// A key changed two different ways.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("conflicting changes to key {path}")]
pub struct MergeConflict {
    /// The key path, `a.b.c` (document index prefixed when there are several: `1/a.b`).
    pub path: String,
}

/// Merge documents (one tree per document).
pub fn merge_documents(
    base: &[Value],
    ours: &[Value],
    theirs: &[Value],
) -> Result<Vec<Value>, MergeConflict> {
    if ours == base {
        return Ok(theirs.to_vec());
    }
    if theirs == base || ours == theirs {
        return Ok(ours.to_vec());
    }
    if base.len() != ours.len() || base.len() != theirs.len() {
        return Err(MergeConflict {
            path: "(documents added or removed)".into(),
        });
    }
    let multi = base.len() > 1;
    let mut out = Vec::with_capacity(base.len());
    for (i, ((b, o), t)) in base.iter().zip(ours).zip(theirs).enumerate() {
        let prefix = if multi {
            format!("{i}/")
        } else {
            String::new()
        };
        out.push(merge_value(Some(b), Some(o), Some(t), &prefix)?.unwrap_or(Value::Null));
    }
    Ok(out)
}

/// Merge one node; `None` means absent (deleted).
fn merge_value(
    base: Option<&Value>,
    ours: Option<&Value>,
    theirs: Option<&Value>,
    path: &str,
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
    match (base, ours, theirs) {
        (Some(Value::Map(_)) | None, Some(Value::Map(o)), Some(Value::Map(t))) => {
            let empty = Vec::new();
            let b = match base {
                Some(Value::Map(b)) => b,
                _ => &empty,
            };
            merge_maps(b, o, t, path).map(|m| Some(Value::Map(m)))
        }
        _ => Err(MergeConflict {
            path: if path.is_empty() {
                "(document)".into()
            } else {
                path.trim_end_matches('.').to_string()
            },
        }),
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
    path: &str,
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
        // A key added by theirs only, or present in ours: merge.
        if o.is_none() && t.is_some() && b.is_some() && t == b {
            continue; // deleted by ours, untouched by theirs
        }
        let sub = format!("{path}{n}.");
        let merged = match (b, o, t) {
            (_, Some(_), None) | (_, None, Some(_)) | (_, Some(_), Some(_)) => {
                merge_value(b, o, t, &sub)?
            }
            _ => None,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::yaml::{parse, Limits};

    fn y(s: &str) -> Vec<Value> {
        parse(s, Limits::default()).expect("yaml")
    }

    #[test]
    fn different_keys_both_land() {
        let base = y("a: 1\nb: 2\nc: {x: 1, y: 2}\n");
        let ours = y("a: 10\nb: 2\nc: {x: 1, y: 2}\n");
        let theirs = y("a: 1\nb: 2\nc: {x: 1, y: 20}\nd: new\n");
        let m = merge_documents(&base, &ours, &theirs).expect("merges");
        assert_eq!(m, y("a: 10\nb: 2\nc: {x: 1, y: 20}\nd: new\n"));
    }

    #[test]
    fn same_key_two_ways_conflicts() {
        let base = y("db:\n  password: a\n");
        let ours = y("db:\n  password: b\n");
        let theirs = y("db:\n  password: c\n");
        let e = merge_documents(&base, &ours, &theirs).expect_err("conflict");
        assert_eq!(e.path, "db.password");
    }

    #[test]
    fn delete_vs_untouched_deletes() {
        let base = y("a: 1\nb: 2\n");
        let ours = y("a: 1\n");
        let theirs = y("a: 1\nb: 2\nc: 3\n");
        assert_eq!(
            merge_documents(&base, &ours, &theirs).expect("merges"),
            y("a: 1\nc: 3\n")
        );
    }
}

//! Comments that a reader finds under another node than the one they were written under.
//!
//! go-yaml's reader attaches a comment that follows a nested block, at the parent's
//! indentation, to the block itself (`a:\n  b:\n    - x\n  # c\n` reads `# c` inside the
//! list). A comment's additional data is the path of the collection it stands in, so sops
//! seals it for one place and its reader looks for it in another: `sops -d` then prints the
//! `#ENC[...]` line as it is, with a warning.
//!
//! Invariants: files we write seal every comment for the place a reader finds it (the
//! written file is read back to know); when reading, a comment that opens for another
//! collection of the same file is passed through as it is, as sops does, and one that
//! opens nowhere is refused as tampered.

use std::collections::HashMap;

use super::super::cipher::{is_envelope, parse_envelope, ValueKey};
use super::super::error::Result;
use super::super::value::{Key, Value};
use super::{aad, parse_encrypted, Format};

/// The additional data of every collection in `docs`: each place a comment may stand.
pub(super) fn collection_aads(docs: &[Value]) -> Vec<String> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<String>) {
        match v {
            Value::Map(items) => {
                out.push(aad(path));
                for (k, val) in items {
                    if let Key::Name(n) = k {
                        path.push(n.clone());
                        walk(val, path, out);
                        path.pop();
                    }
                }
            }
            Value::Seq(items) => {
                out.push(aad(path));
                for item in items {
                    walk(item, path, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for d in docs {
        walk(d, &mut Vec::new(), &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// Read `file` (YAML we are about to write) as a reader will, and seal again every comment
/// found under another collection than the one it was sealed for (`sealed`: envelope to
/// additional data). Returns the documents as read, with those comments re-sealed, when
/// any was; None when every comment stands where it was written.
pub(super) fn reseal_where_read(
    vk: &ValueKey,
    file: &str,
    sealed: &HashMap<String, String>,
) -> Result<Option<Vec<Value>>> {
    if sealed.is_empty() {
        return Ok(None);
    }
    let (mut docs, _, _) = parse_encrypted(file.as_bytes(), Format::Yaml)?;
    let mut changed = false;
    let mut fix = |c: &mut String, path: &[String]| {
        let here = aad(path);
        let Some(was) = sealed.get(c.as_str()) else {
            return;
        };
        if *was == here {
            return;
        }
        let Ok(env) = parse_envelope(c) else {
            return;
        };
        if env.kind != "comment" {
            return;
        }
        // An envelope kept from a sops-made file may not open for `was` either (sops put
        // it there): it stays as sops wrote it.
        if let Some(plain) = vk.open(&env, was) {
            *c = vk.seal(&plain, &here, "comment");
            changed = true;
        }
    };
    for d in docs.iter_mut() {
        walk_comments(d, &mut Vec::new(), &mut fix);
    }
    Ok(changed.then_some(docs))
}

/// Every comment envelope of a tree with the path of the collection it stands in: comment
/// keys of mappings, and comments or `ENC[...]` strings that stand in sequences.
fn walk_comments(
    v: &mut Value,
    path: &mut Vec<String>,
    f: &mut impl FnMut(&mut String, &[String]),
) {
    match v {
        Value::Map(items) => {
            for (k, val) in items.iter_mut() {
                match k {
                    Key::Comment(c) if is_envelope(c) => f(c, path),
                    Key::Comment(_) => {}
                    Key::Name(n) => {
                        path.push(n.clone());
                        walk_comments(val, path, f);
                        path.pop();
                    }
                }
            }
        }
        Value::Seq(items) => {
            for item in items.iter_mut() {
                match item {
                    Value::Comment(c) | Value::Str(c) if is_envelope(c) => f(c, path),
                    other => walk_comments(other, path, f),
                }
            }
        }
        _ => {}
    }
}

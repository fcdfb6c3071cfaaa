//! `.valuesfs.yaml`: the slice stores of a repository, validated with errors that name
//! the file, the line and the cause.

use super::{err, RepoView, SliceError};
use crate::crypto::merge::{ListRule, MergeRules};
use crate::crypto::value::{Key, Value};
use crate::crypto::yaml;

/// Where the stores are declared, at the repository root.
pub const CONFIG_FILE: &str = ".valuesfs.yaml";

/// One slice store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCfg {
    pub name: String,
    /// Folder the user edits: `<slice>.yaml|yml|json`, plain or SOPS.
    pub source: String,
    /// Folder of the immutable versions `<slice>@v<N>.<ext>`.
    pub active: String,
    /// Key naming list elements (default `name`).
    pub identity: String,
    pub auto_sync: bool,
}

const KEYS: &[&str] = &["name", "source", "active", "identity", "auto_sync"];

/// The line (1-based) of the first `key:` after line `from`, for error messages.
fn line_of(text: &str, key: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{key}:"))
        })
        .map_or(from.max(1), |(i, _)| i + 1)
}

fn folder(v: &Value) -> Option<String> {
    let s = v.as_str()?.trim_matches('/');
    (!s.is_empty() && !s.split('/').any(|c| c == ".." || c == "." || c.is_empty()))
        .then(|| s.to_string())
}

/// The `merge:` mapping: list path -> identity key, or `set` for a scalar set.
fn rules_of(root: &Value, text: &str) -> Result<MergeRules, SliceError> {
    let Some(m) = root.get("merge") else {
        return Ok(MergeRules::default());
    };
    let line = line_of(text, "merge", 1);
    let bad = |msg: String| err(format!("{CONFIG_FILE}:{line}: {msg}"));
    let Value::Map(entries) = m else {
        return Err(bad(
            "merge: must map list paths to an identity key or `set`".into(),
        ));
    };
    let mut rules = Vec::new();
    for (k, v) in entries {
        let Key::Name(path) = k else { continue };
        let rule = match v.as_str() {
            Some("set") => ListRule::Set,
            Some(key) if !key.is_empty() => ListRule::Key(key.to_string()),
            _ => {
                return Err(bad(format!(
                    "merge: {path:?} must name an identity key or `set`"
                )))
            }
        };
        rules.push((path.clone(), rule));
    }
    Ok(MergeRules::new(rules))
}

/// The merge rules of `.valuesfs.yaml` (its `merge:` mapping), for the master's merges.
pub fn merge_rules(text: &str) -> Result<MergeRules, SliceError> {
    let docs = yaml::parse_mappings(text, yaml::Limits::default())
        .map_err(|e| err(format!("{CONFIG_FILE}: {e}")))?;
    match docs.into_iter().next() {
        Some(root) => rules_of(&root, text),
        None => Ok(MergeRules::default()),
    }
}

/// Parse and validate `.valuesfs.yaml`; with `view`, also check that every source
/// folder exists (or, for a store synced before, its active folder).
pub fn parse_config(text: &str, view: Option<&dyn RepoView>) -> Result<Vec<StoreCfg>, SliceError> {
    let at = |line: usize, msg: String| err(format!("{CONFIG_FILE}:{line}: {msg}"));
    let docs = yaml::parse_mappings(text, yaml::Limits::default())
        .map_err(|e| err(format!("{CONFIG_FILE}: {e}")))?;
    let Some(root) = docs.into_iter().next() else {
        return Ok(Vec::new());
    };
    let Value::Map(items) = &root else {
        return Err(at(1, "must be a mapping".into()));
    };
    for (k, _) in items {
        if let Key::Name(n) = k {
            if n != "slices" && n != "merge" {
                return Err(at(line_of(text, n, 1), format!("unknown key {n:?}")));
            }
        }
    }
    rules_of(&root, text)?;
    let Some(list) = root.get("slices") else {
        return Ok(Vec::new());
    };
    let Value::Seq(entries) = list else {
        return Err(at(
            line_of(text, "slices", 1),
            "slices: must be a list".into(),
        ));
    };
    let mut out: Vec<StoreCfg> = Vec::new();
    let mut cursor = line_of(text, "slices", 1);
    for e in entries.iter().filter(|e| !matches!(e, Value::Comment(_))) {
        let Value::Map(fields) = e else {
            return Err(at(cursor, "each store must be a mapping".into()));
        };
        let start = line_of(text, "name", cursor);
        for (k, _) in fields {
            if let Key::Name(n) = k {
                if !KEYS.contains(&n.as_str()) {
                    return Err(at(line_of(text, n, cursor), format!("unknown key {n:?}")));
                }
            }
        }
        let get = |k: &str| e.get(k);
        let name = get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| at(start, "a store needs a name (no '/')".into()))?
            .to_string();
        let dir = |k: &str| -> Result<String, SliceError> {
            get(k).and_then(folder).ok_or_else(|| {
                at(
                    line_of(text, k, cursor),
                    format!("store {name:?}: {k} must be a folder path inside the repository"),
                )
            })
        };
        let source = dir("source")?;
        let active = dir("active")?;
        let identity = match get("identity") {
            None => "name".to_string(),
            Some(v) => v
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    at(
                        line_of(text, "identity", cursor),
                        "identity must be a key name".into(),
                    )
                })?
                .to_string(),
        };
        let auto_sync = match get("auto_sync") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(at(
                    line_of(text, "auto_sync", cursor),
                    "auto_sync must be true or false".into(),
                ))
            }
        };
        let store = StoreCfg {
            name,
            source,
            active,
            identity,
            auto_sync,
        };
        let overlaps = |a: &str, b: &str| {
            a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
        };
        if overlaps(&store.source, &store.active) {
            return Err(at(
                start,
                format!("store {:?}: source and active overlap", store.name),
            ));
        }
        for o in &out {
            if o.name == store.name {
                return Err(at(
                    start,
                    format!("store {:?} is declared twice", store.name),
                ));
            }
            for (a, b) in [
                (&store.source, &o.source),
                (&store.source, &o.active),
                (&store.active, &o.source),
                (&store.active, &o.active),
            ] {
                if overlaps(a, b) {
                    return Err(at(
                        start,
                        format!(
                            "stores {:?} and {:?} overlap ({a} and {b})",
                            o.name, store.name
                        ),
                    ));
                }
            }
        }
        if let Some(v) = view {
            // Once synced, an emptied source folder (git keeps no empty folders) means
            // its slices were deleted, not a mistake.
            if !v.is_dir(&store.source) && !v.is_dir(&store.active) {
                return Err(at(
                    line_of(text, "source", cursor),
                    format!(
                        "store {:?}: source folder {} does not exist",
                        store.name, store.source
                    ),
                ));
            }
        }
        cursor = start + 1;
        out.push(store);
    }
    Ok(out)
}

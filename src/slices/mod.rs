//! Slices: configuration fragments a user edits in a source folder and activates as
//! immutable numbered versions (`<slice>@v<N>.<ext>` in the store's active folder), after
//! the Inmanta gitops module.
//!
//! Plain functions over a read-only [`RepoView`] of one snapshot: the mount's control
//! socket, the CLI and later the reconciler call the same ones. Invariants: versions are
//! never rewritten (a sync only adds N+1); a version is a byte copy of its source (so an
//! encrypted source gives an encrypted version with the same key and recipients); a sync
//! plans every store before anything is written, and fails whole.

mod config;
mod model;

pub use config::{merge_rules, parse_config, StoreCfg, CONFIG_FILE};
pub use model::{diff, elements_changed, model};

use crate::crypto::value::Value;
use crate::crypto::{self, Format};
use crate::repo::Oid;

/// What the slice functions need from a snapshot.
pub trait RepoView {
    /// Files directly in `dir` (name, blob); empty when the folder does not exist.
    fn files(&self, dir: &str) -> Result<Vec<(String, Oid)>, String>;
    /// Does the folder exist?
    fn is_dir(&self, dir: &str) -> bool;
    /// The stored bytes of a blob.
    fn stored(&self, oid: Oid) -> Result<Vec<u8>, String>;
    /// The bytes as shown (SOPS files decrypted) of the blob at `path`.
    fn plain(&self, path: &str, oid: Oid) -> Result<Vec<u8>, String>;
}

/// A slice error, naming the file (and line when known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SliceError(pub String);

fn err(msg: impl Into<String>) -> SliceError {
    SliceError(msg.into())
}

/// One version in a store's active folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub n: u32,
    pub path: String,
    pub oid: Oid,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// `name.ext` -> (name, ext) for the extensions a slice may have.
fn slice_name(file: &str) -> Option<(&str, &str)> {
    let (stem, ext) = file.rsplit_once('.')?;
    matches!(ext, "yaml" | "yml" | "json")
        .then_some((stem, ext))
        .filter(|(s, _)| !s.is_empty() && !s.starts_with('.'))
}

/// The versions of every slice of a store, oldest first, by slice name.
pub fn versions(
    view: &dyn RepoView,
    store: &StoreCfg,
) -> Result<std::collections::BTreeMap<String, Vec<Version>>, SliceError> {
    let mut out: std::collections::BTreeMap<String, Vec<Version>> = Default::default();
    for (file, oid) in view.files(&store.active).map_err(err)? {
        let Some((slice, n)) = parse_version_name(&file) else {
            continue;
        };
        out.entry(slice.to_string()).or_default().push(Version {
            n,
            path: join(&store.active, &file),
            oid,
        });
    }
    for v in out.values_mut() {
        v.sort_by_key(|v| v.n);
    }
    Ok(out)
}

/// The sources of a store: slice name -> (path, blob).
pub fn sources(
    view: &dyn RepoView,
    store: &StoreCfg,
) -> Result<std::collections::BTreeMap<String, (String, Oid)>, SliceError> {
    let mut out = std::collections::BTreeMap::new();
    for (file, oid) in view.files(&store.source).map_err(err)? {
        if let Some((slice, _)) = slice_name(&file) {
            out.insert(slice.to_string(), (join(&store.source, &file), oid));
        }
    }
    Ok(out)
}

/// The content of a slice file as a mapping (empty content: an empty mapping).
pub fn parse_slice(path: &str, plain: &[u8]) -> Result<Value, SliceError> {
    if plain.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Map(Vec::new()));
    }
    let docs = crypto::sops::parse_plain(plain, Format::from_path(path))
        .map_err(|e| err(format!("{path}: {e}")))?;
    match docs.into_iter().next() {
        Some(v @ Value::Map(_)) => Ok(v),
        Some(_) => Err(err(format!("{path}: a slice must be a mapping"))),
        None => Ok(Value::Map(Vec::new())),
    }
}

/// A version a sync will write.
#[derive(Debug, Clone)]
pub struct Planned {
    pub store: String,
    pub slice: String,
    pub n: u32,
    pub path: String,
    /// Stored bytes: a copy of the source's (ciphertext for SOPS), or empty for a
    /// deleted source.
    pub content: Vec<u8>,
    pub deleted: bool,
}

/// Plan a sync of `stores` (only the named slices when `only` is not empty): every
/// source that differs from its latest version gets the next one; a slice whose source
/// is gone gets a final empty version. Fails before anything is written when a source
/// does not parse or is not a mapping.
pub fn plan_sync(
    view: &dyn RepoView,
    stores: &[StoreCfg],
    only: &[String],
) -> Result<Vec<Planned>, SliceError> {
    let mut plan = Vec::new();
    for store in stores {
        let srcs = sources(view, store)?;
        let vers = versions(view, store)?;
        let wanted = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
        for (slice, (path, oid)) in &srcs {
            if !wanted(slice) {
                continue;
            }
            let plain = view.plain(path, *oid).map_err(err)?;
            parse_slice(path, &plain)?;
            let latest = vers.get(slice).and_then(|v| v.last());
            if let Some(l) = latest {
                if l.oid == *oid || view.plain(&l.path, l.oid).map_err(err)? == plain {
                    continue;
                }
            }
            let n = latest.map_or(1, |l| l.n + 1);
            let ext = path.rsplit('.').next().unwrap_or("yaml");
            plan.push(Planned {
                store: store.name.clone(),
                slice: slice.clone(),
                n,
                path: version_path(store, slice, n, ext),
                content: view.stored(*oid).map_err(err)?,
                deleted: false,
            });
        }
        for (slice, vs) in &vers {
            if srcs.contains_key(slice) || !wanted(slice) {
                continue;
            }
            let Some(l) = vs.last() else { continue };
            if view.plain(&l.path, l.oid).map_err(err)?.is_empty() {
                continue; // already final
            }
            let ext = l.path.rsplit('.').next().unwrap_or("yaml");
            plan.push(Planned {
                store: store.name.clone(),
                slice: slice.clone(),
                n: l.n + 1,
                path: version_path(store, slice, l.n + 1, ext),
                content: Vec::new(),
                deleted: true,
            });
        }
    }
    Ok(plan)
}

/// The parsed versions of one slice, oldest first: those in the active folder and
/// `pruned` ones (found in history), so pruning never loses a purge marker.
pub fn parsed_versions(
    view: &dyn RepoView,
    store: &StoreCfg,
    slice: &str,
    pruned: &[Version],
) -> Result<Vec<(u32, Value)>, SliceError> {
    let mut vs = versions(view, store)?.remove(slice).unwrap_or_default();
    vs.extend(pruned.iter().cloned());
    vs.sort_by_key(|v| v.n);
    vs.dedup_by_key(|v| v.n);
    if vs.is_empty() {
        return Err(err(format!("{}/{slice}: no versions", store.name)));
    }
    vs.iter()
        .map(|v| {
            let plain = view.plain(&v.path, v.oid).map_err(err)?;
            Ok((v.n, parse_slice(&v.path, &plain)?))
        })
        .collect()
}

/// The version file name of a slice: `<slice>@v<N>.<ext>` in the active folder.
pub fn version_path(store: &StoreCfg, slice: &str, n: u32, ext: &str) -> String {
    join(&store.active, &format!("{slice}@v{n}.{ext}"))
}

/// The version file names of one active folder's listing: (slice, version).
pub fn parse_version_name(file: &str) -> Option<(&str, u32)> {
    let (stem, _) = slice_name(file)?;
    let (slice, n) = stem.rsplit_once("@v")?;
    Some((slice, n.parse().ok()?))
}

/// With `auto_sync`, the version a session writing `content` (stored bytes; `plain` as
/// shown) to `path` also writes: None when the path is no source of such a store, the
/// content equals the latest version, or it does not parse (then only the source is
/// committed, and `slices status` shows why).
pub fn auto_version(
    view: &dyn RepoView,
    stores: &[StoreCfg],
    path: &str,
    content: &[u8],
    plain: &[u8],
) -> Option<Planned> {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let store = stores.iter().find(|s| s.auto_sync && s.source == dir)?;
    let (slice, ext) = slice_name(file)?;
    parse_slice(path, plain).ok()?;
    let vers = versions(view, store).ok()?;
    let latest = vers.get(slice).and_then(|v| v.last());
    if let Some(l) = latest {
        if view.plain(&l.path, l.oid).ok()? == plain {
            return None;
        }
    }
    let n = latest.map_or(1, |l| l.n + 1);
    Some(Planned {
        store: store.name.clone(),
        slice: slice.to_string(),
        n,
        path: version_path(store, slice, n, ext),
        content: content.to_vec(),
        deleted: false,
    })
}

/// `slices prune --keep N`: the version files to remove from the active folders. Each
/// slice keeps its latest `keep` versions (at least one); a deleted slice (no source, an
/// empty final version) loses them all. Removed versions stay readable from history.
pub fn plan_prune(
    view: &dyn RepoView,
    stores: &[StoreCfg],
    keep: usize,
) -> Result<Vec<String>, SliceError> {
    let keep = keep.max(1);
    let mut out = Vec::new();
    for store in stores {
        let srcs = sources(view, store)?;
        for (slice, vs) in versions(view, store)? {
            let Some(last) = vs.last() else { continue };
            let deleted = !srcs.contains_key(&slice)
                && view.plain(&last.path, last.oid).map_err(err)?.is_empty();
            let cut = if deleted {
                vs.len()
            } else {
                vs.len().saturating_sub(keep)
            };
            out.extend(vs[..cut].iter().map(|v| v.path.clone()));
        }
    }
    Ok(out)
}

/// `slices status`: per slice, its active version and what a sync would do.
pub fn status(view: &dyn RepoView, stores: &[StoreCfg]) -> Result<String, SliceError> {
    let mut out = String::new();
    for store in stores {
        let srcs = sources(view, store)?;
        let vers = versions(view, store)?;
        let mut names: Vec<&String> = srcs.keys().chain(vers.keys()).collect();
        names.sort();
        names.dedup();
        for slice in names {
            let active = vers.get(slice).and_then(|v| v.last()).map(|v| v.n);
            let current = match srcs.get(slice) {
                Some((p, o)) => {
                    let plain = view.plain(p, *o).map_err(err)?;
                    Some(parse_slice(p, &plain)?)
                }
                None => None,
            };
            let previous = match vers.get(slice).and_then(|v| v.last()) {
                Some(v) => parse_slice(&v.path, &view.plain(&v.path, v.oid).map_err(err)?)?,
                None => Value::Map(Vec::new()),
            };
            let next = current.clone().unwrap_or(Value::Map(Vec::new()));
            let changes = elements_changed(&previous, &next, &store.identity);
            let state = match (&current, active) {
                (None, _) => "source deleted".to_string(),
                (Some(_), None) => "new".to_string(),
                (Some(_), Some(_)) if changes.is_empty() => "in sync".to_string(),
                (Some(_), Some(_)) => "source differs".to_string(),
            };
            out.push_str(&format!(
                "{}/{slice}: active {}, {state}\n",
                store.name,
                active.map_or("none".to_string(), |n| format!("v{n}"))
            ));
            for c in changes {
                out.push_str(&format!("  {c}\n"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

/// The elements every slice model marks purged (gone from the latest version of their
/// slice), without the markers: what the reconciler deletes when they are objects it
/// applied. Versions pruned from the active folder are not looked at (their history is
/// the mount's; see `fs::control`). No `.valuesfs.yaml`: none.
pub fn purged_elements(view: &dyn RepoView) -> Result<Vec<Value>, SliceError> {
    use crate::crypto::value::Key;
    let Some((_, oid)) = view
        .files("")
        .map_err(err)?
        .into_iter()
        .find(|(n, _)| n == CONFIG_FILE)
    else {
        return Ok(Vec::new());
    };
    let text = view.plain(CONFIG_FILE, oid).map_err(err)?;
    let text = String::from_utf8(text).map_err(|_| err(format!("{CONFIG_FILE}: not UTF-8")))?;
    let strip = |v: &Value| {
        match v {
        Value::Map(items) => Value::Map(
            items
                .iter()
                .filter(|(k, _)| {
                    !matches!(k, Key::Name(n) if n == "purged" || n == "purged_in" || n == "operation")
                })
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
    };
    let purged = |v: &Value| v.get("purged") == Some(&Value::Bool(true));
    let mut out = Vec::new();
    for store in parse_config(&text, None)? {
        for slice in versions(view, &store)?.keys() {
            let m = model(&parsed_versions(view, &store, slice, &[])?, &store.identity);
            let Value::Map(items) = m else { continue };
            for (_, v) in items {
                match v {
                    Value::Seq(list) => out.extend(list.iter().filter(|i| purged(i)).map(strip)),
                    v if purged(&v) => out.push(strip(&v)),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

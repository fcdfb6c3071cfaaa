//! In-memory tree editing: no working tree, no index file.
//!
//! An *overlay* is a map `path -> Some(entry) | None (deleted)` of changes relative to
//! some tree. [`apply_overlay`] writes the new nested trees bottom-up with
//! `TreeBuilder`s, touching only the directories on changed paths.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Oid, Repository, Tree};

use super::{Error, Result};

/// Raw git file modes we produce or accept.
pub(crate) const MODE_BLOB: i32 = 0o100644;
pub(crate) const MODE_EXEC: i32 = 0o100755;
pub(crate) const MODE_LINK: i32 = 0o120000;
pub(crate) const MODE_TREE: i32 = 0o040000;

/// One tree entry: object id and raw git mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub oid: Oid,
    pub mode: i32,
}

impl Entry {
    pub fn is_tree(&self) -> bool {
        self.mode == MODE_TREE
    }
    pub fn is_file(&self) -> bool {
        self.mode == MODE_BLOB || self.mode == MODE_EXEC
    }
}

/// Changes relative to a tree, keyed by full path (`a/b/c`).
pub(crate) type Overlay = BTreeMap<String, Option<Entry>>;

/// The entry at `path` in `tree`, if any.
pub(crate) fn lookup(tree: &Tree<'_>, path: &str) -> Result<Option<Entry>> {
    match tree.get_path(Path::new(path)) {
        Ok(e) => Ok(Some(Entry {
            oid: e.id(),
            mode: e.filemode(),
        })),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Checks that `path` is a clean relative repository path.
pub(crate) fn validate_path(path: &str) -> Result<()> {
    if path
        .split('/')
        .all(|c| super::names::check(c.as_bytes()).is_ok())
    {
        Ok(())
    } else {
        Err(Error::InvalidPath(path.to_string()))
    }
}

#[derive(Default)]
struct Node {
    /// A change of this very path (`Some(None)` = delete).
    direct: Option<Option<Entry>>,
    children: BTreeMap<String, Node>,
}

/// Raised when an overlay asks for something a tree cannot hold (a file below a file).
#[derive(Debug)]
pub(crate) struct PathClash(pub String);

/// Writes the tree `base` + `overlay` and returns its id. Empty directories vanish.
pub(crate) fn apply_overlay(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    overlay: &Overlay,
) -> Result<std::result::Result<Oid, PathClash>> {
    let mut root = Node::default();
    for (path, change) in overlay {
        let mut node = &mut root;
        for comp in path.split('/') {
            node = node.children.entry(comp.to_string()).or_default();
        }
        node.direct = Some(*change);
    }
    match write_node(repo, base, &root, "")? {
        Ok(Some(oid)) => Ok(Ok(oid)),
        Ok(None) => Ok(Ok(empty_tree(repo)?)),
        Err(c) => Ok(Err(c)),
    }
}

/// The id of the empty tree (written so that it exists in the odb).
pub(crate) fn empty_tree(repo: &Repository) -> Result<Oid> {
    Ok(repo.treebuilder(None)?.write()?)
}

fn write_node(
    repo: &Repository,
    tree: Option<&Tree<'_>>,
    node: &Node,
    prefix: &str,
) -> Result<std::result::Result<Option<Oid>, PathClash>> {
    let mut builder = repo.treebuilder(tree)?;
    for (name, child) in &node.children {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if child.children.is_empty() {
            match child.direct {
                Some(Some(e)) => {
                    builder.insert(name, e.oid, e.mode)?;
                }
                Some(None) => remove_entry(&mut builder, name)?,
                None => {}
            }
            continue;
        }
        // Changes below `name`: find the directory to start from.
        let start: Option<Oid> = match child.direct {
            Some(Some(e)) if e.is_tree() => Some(e.oid),
            Some(Some(_)) => return Ok(Err(PathClash(path))),
            Some(None) => None,
            None => match builder.get(name)? {
                Some(e) if e.filemode() == MODE_TREE => Some(e.id()),
                Some(_) => return Ok(Err(PathClash(path))),
                None => None,
            },
        };
        let sub = match start {
            Some(oid) => Some(repo.find_tree(oid)?),
            None => None,
        };
        match write_node(repo, sub.as_ref(), child, &path)? {
            Ok(Some(oid)) => {
                builder.insert(name, oid, MODE_TREE)?;
            }
            Ok(None) => remove_entry(&mut builder, name)?,
            Err(c) => return Ok(Err(c)),
        }
    }
    if builder.is_empty() {
        return Ok(Ok(None));
    }
    Ok(Ok(Some(builder.write()?)))
}

fn remove_entry(builder: &mut git2::TreeBuilder<'_>, name: &str) -> Result<()> {
    if builder.get(name)?.is_some() {
        builder.remove(name)?;
    }
    Ok(())
}

/// The changes from tree `old` to tree `new` as an overlay (files only; recursive).
pub(crate) fn diff_overlay(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: &Tree<'_>,
) -> Result<Overlay> {
    let mut opts = git2::DiffOptions::new();
    opts.include_typechange(true).ignore_submodules(false);
    let diff = repo.diff_tree_to_tree(old, Some(new), Some(&mut opts))?;
    let mut out = Overlay::new();
    for d in diff.deltas() {
        let path = d
            .new_file()
            .path()
            .or_else(|| d.old_file().path())
            .and_then(|p| p.to_str())
            .ok_or_else(|| Error::InvalidPath("non-UTF-8 path in diff".to_string()))?
            .to_string();
        let change = match d.status() {
            git2::Delta::Deleted => None,
            _ => Some(Entry {
                oid: d.new_file().id(),
                mode: u32::from(d.new_file().mode()) as i32,
            }),
        };
        out.insert(path, change);
    }
    Ok(out)
}

/// Paths that differ between two trees (for subscribers). Paths the view cannot
/// show (not UTF-8) are left out: nothing can have them cached.
pub(crate) fn changed_paths(repo: &Repository, old: Oid, new: Oid) -> Result<Vec<String>> {
    if old == new {
        return Ok(Vec::new());
    }
    let old = repo.find_tree(old)?;
    let new = repo.find_tree(new)?;
    let mut opts = git2::DiffOptions::new();
    opts.include_typechange(true).ignore_submodules(false);
    let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), Some(&mut opts))?;
    let mut out: Vec<String> = diff
        .deltas()
        .filter_map(|d| {
            let p = d.new_file().path().or_else(|| d.old_file().path())?;
            p.to_str().map(str::to_string)
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(repo: &Repository, s: &str) -> Entry {
        Entry {
            oid: repo.blob(s.as_bytes()).expect("blob"),
            mode: MODE_BLOB,
        }
    }

    #[test]
    fn nested_edits_and_empty_dirs() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let mut ov = Overlay::new();
        ov.insert("a/b/c.txt".into(), Some(blob(&repo, "c")));
        ov.insert("a/d.txt".into(), Some(blob(&repo, "d")));
        ov.insert("e".into(), Some(blob(&repo, "e")));
        let t1 = apply_overlay(&repo, None, &ov).expect("io").expect("clash");
        let t1 = repo.find_tree(t1).expect("tree");
        assert!(lookup(&t1, "a/b/c.txt").expect("lookup").is_some());
        let mut ov2 = Overlay::new();
        ov2.insert("a/b/c.txt".into(), None);
        let t2 = apply_overlay(&repo, Some(&t1), &ov2)
            .expect("io")
            .expect("clash");
        let t2 = repo.find_tree(t2).expect("tree");
        assert!(
            lookup(&t2, "a/b").expect("lookup").is_none(),
            "empty dir removed"
        );
        assert!(lookup(&t2, "a/d.txt").expect("lookup").is_some());
        let back = diff_overlay(&repo, Some(&t1), &t2).expect("diff");
        assert_eq!(back.keys().collect::<Vec<_>>(), vec!["a/b/c.txt"]);
        // A file below a file is a clash.
        let mut ov3 = Overlay::new();
        ov3.insert("e/x".into(), Some(blob(&repo, "x")));
        assert!(apply_overlay(&repo, Some(&t2), &ov3).expect("io").is_err());
    }

    #[test]
    fn paths_are_validated() {
        for p in ["a", "a/b", "a.b/c-d_e"] {
            assert!(validate_path(p).is_ok(), "{p}");
        }
        for p in [
            "",
            "/a",
            "a/",
            "a//b",
            "../a",
            "a/./b",
            ".git/config",
            "a/.GIT",
        ] {
            assert!(validate_path(p).is_err(), "{p}");
        }
    }
}

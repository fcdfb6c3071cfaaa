//! `history/<rev>/...`: any commit's tree, decrypted (full or abbreviated ids, `HEAD`,
//! `HEAD~N`, `HEAD^`; the last 20 commits listed), and `conflicts/<id>/...`: the tree
//! of each rejected session. Full ids and conflicts never change: their pages are kept.

use git2::{ObjectType, Oid, Repository};

use super::{git_err, Caching, Cx, Leaf, Provider};
use crate::fs::error::{Error, Kind, Result};
use crate::fs::view::FileKind;
use crate::repo::{EntryKind, FileMode};

pub(crate) struct History;
pub(crate) struct Conflicts;

/// Resolve a commit-ish: full or abbreviated id, `HEAD`, `HEAD~N`, `HEAD^`.
fn resolve_rev(cx: &Cx, repo: &Repository, rev: &str) -> Option<Oid> {
    let spec = match (rev.strip_prefix("HEAD"), cx.trees.head()) {
        (Some(rest), Some(h)) => format!("{h}{rest}"),
        (Some(_), None) => return None,
        (None, _) => rev.to_string(),
    };
    if spec.contains(':') || spec.contains("..") {
        return None;
    }
    let obj = repo.revparse_single(&spec).ok()?;
    obj.peel_to_commit().ok().map(|c| c.id())
}

/// The entry at `inner` of a commit's tree.
fn in_tree(repo: &Repository, commit: Oid, inner: &[&str], fixed: bool) -> Result<Option<Leaf>> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git_err)?;
    if inner.is_empty() {
        return Ok(Some(Leaf::Dir { fixed }));
    }
    let inner = inner.join("/");
    if !crate::repo::names::path_shown(&inner) {
        return Ok(None);
    }
    let Ok(e) = tree.get_path(std::path::Path::new(&inner)) else {
        return Ok(None);
    };
    Ok(Some(if e.kind() == Some(ObjectType::Tree) {
        Leaf::Dir { fixed }
    } else if e.filemode() == 0o120000 {
        Leaf::Link { oid: e.id(), fixed }
    } else {
        Leaf::Blob {
            path: inner,
            oid: e.id(),
            caching: if fixed { Caching::Keep } else { Caching::Fresh },
        }
    }))
}

/// The entries of the folder `inner` of a commit's tree.
fn list_tree(
    cx: &Cx,
    repo: &Repository,
    commit: Oid,
    inner: &[&str],
    path: &str,
) -> Result<Vec<(String, FileKind)>> {
    let root = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git_err)?;
    let tree = if inner.is_empty() {
        root
    } else {
        let e = root
            .get_path(std::path::Path::new(&inner.join("/")))
            .map_err(git_err)?;
        repo.find_tree(e.id()).map_err(git_err)?
    };
    let listed = crate::repo::listing(&tree);
    cx.trees.note_unshown(path, &listed.skipped);
    Ok(listed
        .entries
        .into_iter()
        .filter_map(|e| {
            let k = match e.kind {
                EntryKind::Dir => FileKind::Dir,
                EntryKind::File(FileMode::Symlink) => FileKind::Symlink,
                EntryKind::File(_) => FileKind::File,
                EntryKind::Other => return None,
            };
            Some((e.name, k))
        })
        .collect())
}

fn is_full_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Provider for History {
    fn name(&self) -> &'static str {
        "history"
    }

    fn resolve(&self, cx: &Cx, parts: &[&str]) -> Result<Option<Leaf>> {
        let Some((rev, inner)) = parts.split_first() else {
            return Ok(Some(Leaf::Dir { fixed: false }));
        };
        let repo = cx.trees.open_repo()?;
        match resolve_rev(cx, &repo, rev) {
            Some(c) => in_tree(&repo, c, inner, is_full_id(rev)),
            None => Ok(None),
        }
    }

    fn list(&self, cx: &Cx, parts: &[&str], path: &str) -> Result<Vec<(String, FileKind)>> {
        let repo = cx.trees.open_repo()?;
        let Some((rev, inner)) = parts.split_first() else {
            let mut names = Vec::new();
            if let Some(head) = cx.trees.head() {
                let mut walk = repo.revwalk().map_err(git_err)?;
                walk.push(head).map_err(git_err)?;
                for oid in walk.take(20).flatten() {
                    names.push((oid.to_string(), FileKind::Dir));
                }
            }
            return Ok(names);
        };
        let c = resolve_rev(cx, &repo, rev)
            .ok_or_else(|| Error::new(Kind::NotFound, format!("{path}: no such commit")))?;
        list_tree(cx, &repo, c, inner, path)
    }
}

fn conflict_commit(cx: &Cx, id: &str) -> Result<Option<Oid>> {
    Ok(cx
        .mount
        .conflicts()?
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| Oid::from_str(&c.commit).ok()))
}

impl Provider for Conflicts {
    fn name(&self) -> &'static str {
        "conflicts"
    }

    fn resolve(&self, cx: &Cx, parts: &[&str]) -> Result<Option<Leaf>> {
        let Some((id, inner)) = parts.split_first() else {
            return Ok(Some(Leaf::Dir { fixed: false }));
        };
        match conflict_commit(cx, id)? {
            Some(c) => in_tree(&cx.trees.open_repo()?, c, inner, true),
            None => Ok(None),
        }
    }

    fn list(&self, cx: &Cx, parts: &[&str], path: &str) -> Result<Vec<(String, FileKind)>> {
        let Some((id, inner)) = parts.split_first() else {
            return Ok(cx
                .mount
                .conflicts()?
                .into_iter()
                .map(|c| (c.id, FileKind::Dir))
                .collect());
        };
        let c = conflict_commit(cx, id)?
            .ok_or_else(|| Error::new(Kind::NotFound, format!("{path}: no such conflict")))?;
        list_tree(cx, &cx.trees.open_repo()?, c, inner, path)
    }
}

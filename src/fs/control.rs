//! The read-only control directory `.valuesfs/` (never committed):
//! `status` (YAML), `daemon` (how to reach the running daemon), `history/<commit>/...`
//! (any commit's tree, decrypted; full or abbreviated ids or `HEAD~N`) and
//! `conflicts/<id>/...` (the tree of each rejected session, decrypted) and
//! `slices/<store>/<slice>/{active/v<N>.<ext>, model.<ext>}` (versions, decrypted, and
//! the model with purged elements marked).

use std::sync::Arc;

use git2::{ObjectType, Oid, Repository};
use zeroize::Zeroizing;

use super::error::{not_found, Error, Kind, Result};
use super::view::{join, Attr, Decoded, FileKind, Fs};
use crate::repo::{EntryKind, FileMode};

#[derive(Clone, Debug)]
pub(crate) enum CNode {
    Root,
    Status,
    Daemon,
    History,
    Conflicts,
    /// `slices/`, a store, a slice, its `active/` folder.
    SliceDir(Vec<String>),
    /// A version of a slice: its repository path and blob.
    SliceVersion {
        path: String,
        oid: Oid,
    },
    /// The model of a slice (generated).
    SliceModel {
        store: String,
        slice: String,
    },
    /// Inside a commit's tree: the entry (tree or blob). `fixed` when the name pins the
    /// commit (a full id or a conflict); `HEAD~N` and abbreviations may move.
    Tree {
        fixed: bool,
        oid: Oid,
        dir: bool,
        link: bool,
        /// Path inside the tree (decides the SOPS store).
        inner: String,
    },
}

fn repo(fs: &Fs) -> Result<Repository> {
    fs.with_reader(|r| {
        Repository::open_bare(r.repo_path()).map_err(|e| Error::new(Kind::Io, e.to_string()))
    })
}

fn git_err(e: git2::Error) -> Error {
    Error::new(Kind::Io, e.message().to_string())
}

/// Resolve a commit-ish: full or abbreviated id, `HEAD`, `HEAD~N`, `HEAD^`.
fn resolve_rev(fs: &Fs, repo: &Repository, rev: &str) -> Option<Oid> {
    let head = fs.snapshot().commit;
    let spec = match (rev.strip_prefix("HEAD"), head) {
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

fn in_tree(repo: &Repository, commit: Oid, inner: &str, fixed: bool) -> Result<Option<CNode>> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git_err)?;
    if inner.is_empty() {
        return Ok(Some(CNode::Tree {
            fixed,
            oid: tree.id(),
            dir: true,
            link: false,
            inner: String::new(),
        }));
    }
    if !crate::repo::names::path_shown(inner) {
        return Ok(None);
    }
    match tree.get_path(std::path::Path::new(inner)) {
        Ok(e) => Ok(Some(CNode::Tree {
            fixed,
            oid: e.id(),
            dir: e.kind() == Some(ObjectType::Tree),
            link: e.filemode() == 0o120000,
            inner: inner.to_string(),
        })),
        Err(_) => Ok(None),
    }
}

pub(crate) fn resolve(fs: &Fs, path: &str) -> Result<Option<CNode>> {
    let rest = path.strip_prefix(".valuesfs").unwrap_or(path);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let mut parts = rest.splitn(3, '/');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    let inner = parts.next().unwrap_or("");
    Ok(match (first, second) {
        ("", None) => Some(CNode::Root),
        ("status", None) => Some(CNode::Status),
        ("daemon", None) => Some(CNode::Daemon),
        ("history", None) => Some(CNode::History),
        ("conflicts", None) => Some(CNode::Conflicts),
        ("slices", None) => Some(CNode::SliceDir(Vec::new())),
        ("slices", Some(store)) => slice_node(fs, store, inner),
        ("history", Some(rev)) => {
            let repo = repo(fs)?;
            let fixed = rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
            match resolve_rev(fs, &repo, rev) {
                Some(c) => in_tree(&repo, c, inner, fixed)?,
                None => None,
            }
        }
        ("conflicts", Some(id)) => {
            let st = fs.master.status()?;
            let found = st.conflicts.iter().find(|c| c.id == id).cloned();
            match found.and_then(|c| Oid::from_str(&c.commit).ok()) {
                Some(c) => in_tree(&repo(fs)?, c, inner, true)?,
                None => None,
            }
        }
        _ => None,
    })
}

fn slice_node(fs: &Fs, store: &str, inner: &str) -> Option<CNode> {
    if !fs.slice_store_names().iter().any(|s| s == store) {
        return None;
    }
    let parts: Vec<&str> = inner.split('/').filter(|p| !p.is_empty()).collect();
    let dir = |v: &[&str]| {
        Some(CNode::SliceDir(
            std::iter::once(store)
                .chain(v.iter().copied())
                .map(String::from)
                .collect(),
        ))
    };
    match parts.as_slice() {
        [] => dir(&[]),
        [slice, rest @ ..] => {
            if !fs.slice_names(store).iter().any(|s| s == slice) {
                return None;
            }
            match rest {
                [] => dir(&[slice]),
                ["active"] => dir(&[slice, "active"]),
                ["active", file] => fs
                    .slice_version_files(store, slice)
                    .into_iter()
                    .find(|(n, _, _)| n == file)
                    .map(|(_, path, oid)| CNode::SliceVersion { path, oid }),
                [file] if file.starts_with("model.") => {
                    let (name, _) = fs.slice_model_text(store, slice).ok()?;
                    (name == *file).then(|| CNode::SliceModel {
                        store: store.to_string(),
                        slice: slice.to_string(),
                    })
                }
                _ => None,
            }
        }
    }
}

pub(crate) fn status_text(fs: &Fs) -> Result<String> {
    let mut out = fs.master.status()?.to_yaml();
    let x = fs.status_extras();
    let list = |out: &mut String, name: &str, items: &[(String, String)]| {
        if items.is_empty() {
            out.push_str(&format!("{name}: []\n"));
        } else {
            out.push_str(&format!("{name}:\n"));
            for (p, why) in items {
                out.push_str(&format!(
                    "  - path: {}\n    reason: {}\n",
                    crate::crypto::json::quote(p),
                    crate::crypto::json::quote(why)
                ));
            }
        }
    };
    list(&mut out, "drafts", &x.drafts);
    list(&mut out, "held", &x.held);
    list(&mut out, "unreadable", &x.unreadable);
    list(&mut out, "unshown", &x.unshown);
    list(&mut out, "errors", &x.errors);
    out.push_str(&format!("cache_bytes: {}\n", fs.cache_bytes()));
    Ok(out)
}

pub(crate) fn daemon_text(fs: &Fs) -> String {
    format!(
        "pid: {}\nsocket: {}\nstate_dir: {}\n",
        std::process::id(),
        crate::crypto::json::quote(&fs.cfg.state_dir.join("daemon.sock").display().to_string()),
        crate::crypto::json::quote(&fs.cfg.state_dir.display().to_string()),
    )
}

pub(crate) fn attr(fs: &Fs, path: &str, node: &CNode) -> Result<Attr> {
    let ino = fs.ino_of(path);
    let mk = |size: u64, kind: FileKind, perm: u16, immutable: bool| Attr {
        ino,
        size,
        kind,
        perm,
        mtime: fs.started,
        uid: fs.cfg.uid,
        gid: fs.cfg.gid,
        immutable,
    };
    Ok(match node {
        CNode::Root | CNode::History | CNode::Conflicts | CNode::SliceDir(_) => {
            mk(4096, FileKind::Dir, 0o555, false)
        }
        CNode::SliceVersion { path, oid } => mk(
            fs.decode(path, *oid)?.data.len() as u64,
            FileKind::File,
            0o444,
            false,
        ),
        CNode::SliceModel { store, slice } => {
            let (_, text) = fs.slice_model_text(store, slice)?;
            mk(text.len() as u64, FileKind::File, 0o444, false)
        }
        CNode::Status => mk(status_text(fs)?.len() as u64, FileKind::File, 0o444, false),
        CNode::Daemon => mk(daemon_text(fs).len() as u64, FileKind::File, 0o444, false),
        CNode::Tree {
            dir: true, fixed, ..
        } => mk(4096, FileKind::Dir, 0o555, *fixed),
        CNode::Tree {
            link: true,
            oid,
            fixed,
            ..
        } => {
            let size = fs.with_reader(|r| Ok(r.blob_size(*oid)?))? as u64;
            mk(size, FileKind::Symlink, 0o777, *fixed)
        }
        CNode::Tree {
            oid, inner, fixed, ..
        } => {
            let d = fs.decode(inner, *oid)?;
            mk(d.data.len() as u64, FileKind::File, 0o444, *fixed)
        }
    })
}

pub(crate) fn readdir(fs: &Fs, path: &str, node: &CNode) -> Result<Vec<(u64, FileKind, String)>> {
    let mut names: Vec<(String, FileKind)> = Vec::new();
    match node {
        CNode::Root => {
            for (n, k) in [
                ("status", FileKind::File),
                ("daemon", FileKind::File),
                ("history", FileKind::Dir),
                ("conflicts", FileKind::Dir),
                ("slices", FileKind::Dir),
            ] {
                names.push((n.to_string(), k));
            }
        }
        CNode::History => {
            if let Some(head) = fs.snapshot().commit {
                let repo = repo(fs)?;
                let mut walk = repo.revwalk().map_err(git_err)?;
                walk.push(head).map_err(git_err)?;
                for oid in walk.take(20).flatten() {
                    names.push((oid.to_string(), FileKind::Dir));
                }
            }
        }
        CNode::Conflicts => {
            for c in fs.master.status()?.conflicts {
                names.push((c.id, FileKind::Dir));
            }
        }
        CNode::SliceDir(parts) => match parts.as_slice() {
            [] => {
                for s in fs.slice_store_names() {
                    names.push((s, FileKind::Dir));
                }
            }
            [store] => {
                for s in fs.slice_names(store) {
                    names.push((s, FileKind::Dir));
                }
            }
            [store, slice] => {
                names.push(("active".into(), FileKind::Dir));
                if let Ok((model, _)) = fs.slice_model_text(store, slice) {
                    names.push((model, FileKind::File));
                }
            }
            [store, slice, _active] => {
                for (n, _, _) in fs.slice_version_files(store, slice) {
                    names.push((n, FileKind::File));
                }
            }
            _ => {}
        },
        CNode::Tree { oid, dir: true, .. } => {
            let repo = repo(fs)?;
            let tree = repo.find_tree(*oid).map_err(git_err)?;
            let listed = crate::repo::listing(&tree);
            fs.note_unshown(path, &listed.skipped);
            for e in listed.entries {
                let k = match e.kind {
                    EntryKind::Dir => FileKind::Dir,
                    EntryKind::File(FileMode::Symlink) => FileKind::Symlink,
                    EntryKind::File(_) => FileKind::File,
                    EntryKind::Other => continue,
                };
                names.push((e.name, k));
            }
        }
        _ => return Err(Error::new(Kind::NotDir, format!("{path}: not a directory"))),
    }
    Ok(names
        .into_iter()
        .map(|(n, k)| (fs.ino_of(&join(path, &n)), k, n))
        .collect())
}

/// How the kernel may cache a control file's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caching {
    /// Generated on every open (status): direct I/O.
    Direct,
    /// Pinned content (a full commit id, a conflict): keep the page cache.
    Keep,
    /// May change between opens (`HEAD~N`): drop the page cache on open.
    Fresh,
}

/// Content of a control file and how it may be cached.
pub(crate) fn content(fs: &Fs, path: &str, node: &CNode) -> Result<(Arc<Decoded>, Caching)> {
    let mk = |b: Vec<u8>| {
        Arc::new(Decoded {
            data: Zeroizing::new(b),
            sops: None,
            locked: None,
        })
    };
    match node {
        CNode::Status => Ok((mk(status_text(fs)?.into_bytes()), Caching::Direct)),
        CNode::Daemon => Ok((mk(daemon_text(fs).into_bytes()), Caching::Direct)),
        CNode::SliceVersion { path, oid } => Ok((fs.decode(path, *oid)?, Caching::Fresh)),
        CNode::SliceModel { store, slice } => Ok((
            mk(fs.slice_model_text(store, slice)?.1.into_bytes()),
            Caching::Direct,
        )),
        CNode::Tree {
            dir: false,
            link: false,
            oid,
            inner,
            fixed,
        } => Ok((
            fs.decode(inner, *oid)?,
            if *fixed {
                Caching::Keep
            } else {
                Caching::Fresh
            },
        )),
        CNode::Tree { link: true, .. } => Err(Error::new(Kind::Invalid, "a symlink")),
        _ => Err(Error::new(Kind::IsDir, format!("{path}: a directory"))),
    }
}

pub(crate) fn readlink(fs: &Fs, node: &CNode) -> Result<Vec<u8>> {
    match node {
        CNode::Tree {
            link: true, oid, ..
        } => fs.with_reader(|r| Ok(r.read_blob(*oid)?)),
        _ => Err(not_found("symlink")),
    }
}

//! The read-only control directory `.valuesfs/` (never committed): a set of providers,
//! one per top-level name. `status` and `daemon` (generated text), `history/<commit>/...`
//! (any commit's tree, decrypted), `conflicts/<id>/...` (each rejected session's tree,
//! decrypted) and `slices/<store>/<slice>/...` (versions and models).
//!
//! Invariants: nothing here writes (the view answers EROFS to every write below
//! `.valuesfs/`); a provider reaches the mount only through the narrow traits of [`Cx`],
//! and describes each name as a [`Leaf`], which this module turns into attributes,
//! content and links the same way for every provider. Nodes are resolved again at
//! every lookup, so generated text is never stale.

mod history;
mod slices;
mod status;

pub(crate) use status::status_text;

use std::sync::Arc;

use git2::{Oid, Repository};
use zeroize::Zeroizing;

use super::error::{not_found, Error, Kind, Result};
use super::view::{join, Attr, Decoded, FileKind, Fs};
use crate::repo::names::NameRule;
use crate::repo::ConflictInfo;

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

/// What a name under `.valuesfs/` is.
#[derive(Clone)]
pub(crate) enum Leaf {
    /// A folder its provider lists; `fixed` when its content can never change.
    Dir { fixed: bool },
    /// Generated content (status, a slice model).
    Text(Arc<Decoded>),
    /// A file of a commit's tree, shown as its path in the repository says (decrypted).
    Blob {
        path: String,
        oid: Oid,
        caching: Caching,
    },
    /// A symlink of a commit's tree.
    Link { oid: Oid, fixed: bool },
}

/// A resolved name: its provider (None for `.valuesfs/` itself), the path below the
/// provider's name, and what it is.
#[derive(Clone)]
pub(crate) struct CNode {
    provider: Option<usize>,
    parts: Vec<String>,
    leaf: Leaf,
}

/// Commits and trees, for providers that show them.
pub(crate) trait Trees {
    fn head(&self) -> Option<Oid>;
    fn open_repo(&self) -> Result<Repository>;
    /// Names of a listed tree that cannot be shown, for the status file.
    fn note_unshown(&self, dir: &str, skipped: &[(String, NameRule)]);
}

/// The mount's own state, for `status`, `daemon` and `conflicts`.
pub(crate) trait MountState {
    fn status_text(&self) -> Result<String>;
    fn daemon_text(&self) -> String;
    fn conflicts(&self) -> Result<Vec<ConflictInfo>>;
}

/// The slices of the head (see `view/slices.rs`).
pub(crate) trait SliceViews {
    fn store_names(&self) -> Vec<String>;
    /// Slices of a store: with a source, versions, or versions only in history.
    fn slice_names(&self, store: &str) -> Vec<String>;
    /// Versions in the active folder: (file name `vN.ext`, repository path, blob).
    fn active_files(&self, store: &str, slice: &str) -> Vec<(String, String, Oid)>;
    /// Versions gone from the active folder (pruned, or of a pruned slice), from history.
    fn purged_files(&self, store: &str, slice: &str) -> Vec<(String, String, Oid)>;
    /// The model: (file name `model.ext`, text).
    fn model(&self, store: &str, slice: &str) -> Result<(String, Zeroizing<Vec<u8>>)>;
}

/// What providers may use of the mount.
pub(crate) struct Cx<'a> {
    pub trees: &'a dyn Trees,
    pub mount: &'a dyn MountState,
    pub slices: &'a dyn SliceViews,
}

/// One top-level name of `.valuesfs/`.
pub(crate) trait Provider: Sync {
    fn name(&self) -> &'static str;
    /// The node at `parts` below the name (empty: the name itself), if any.
    fn resolve(&self, cx: &Cx, parts: &[&str]) -> Result<Option<Leaf>>;
    /// The entries of the folder at `parts` (`path`: its path in the mount).
    fn list(&self, cx: &Cx, parts: &[&str], path: &str) -> Result<Vec<(String, FileKind)>>;
}

static PROVIDERS: &[&dyn Provider] = &[
    &status::StatusFile,
    &status::DaemonFile,
    &history::History,
    &history::Conflicts,
    &slices::Slices,
];

fn cx(fs: &Fs) -> Cx<'_> {
    Cx {
        trees: fs,
        mount: fs,
        slices: fs,
    }
}

pub(crate) fn text(b: Vec<u8>) -> Leaf {
    Leaf::Text(Arc::new(Decoded {
        data: Zeroizing::new(b),
        sops: None,
        locked: None,
    }))
}

pub(crate) fn resolve(fs: &Fs, path: &str) -> Result<Option<CNode>> {
    let rest = path.strip_prefix(".valuesfs").unwrap_or(path);
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let Some((first, below)) = parts.split_first() else {
        return Ok(Some(CNode {
            provider: None,
            parts: Vec::new(),
            leaf: Leaf::Dir { fixed: false },
        }));
    };
    let Some(i) = PROVIDERS.iter().position(|p| p.name() == *first) else {
        return Ok(None);
    };
    Ok(PROVIDERS[i].resolve(&cx(fs), below)?.map(|leaf| CNode {
        provider: Some(i),
        parts: below.iter().map(|s| s.to_string()).collect(),
        leaf,
    }))
}

pub(crate) fn attr(fs: &Fs, path: &str, node: &CNode) -> Result<Attr> {
    let (size, kind, perm, immutable) = match &node.leaf {
        Leaf::Dir { fixed } => (4096, FileKind::Dir, 0o555, *fixed),
        Leaf::Text(d) => (d.data.len() as u64, FileKind::File, 0o444, false),
        Leaf::Blob { path, oid, caching } => (
            fs.decode(path, *oid)?.data.len() as u64,
            FileKind::File,
            0o444,
            *caching == Caching::Keep,
        ),
        Leaf::Link { oid, fixed } => (
            fs.with_reader(|r| Ok(r.blob_size(*oid)?))? as u64,
            FileKind::Symlink,
            0o777,
            *fixed,
        ),
    };
    Ok(Attr {
        ino: fs.ino_of(path),
        size,
        kind,
        perm,
        mtime: fs.started,
        uid: fs.cfg.uid,
        gid: fs.cfg.gid,
        immutable,
    })
}

pub(crate) fn readdir(fs: &Fs, path: &str, node: &CNode) -> Result<Vec<(u64, FileKind, String)>> {
    if !matches!(node.leaf, Leaf::Dir { .. }) {
        return Err(Error::new(Kind::NotDir, format!("{path}: not a directory")));
    }
    let cx = cx(fs);
    let names = match node.provider {
        None => PROVIDERS
            .iter()
            .filter_map(|p| {
                let kind = match p.resolve(&cx, &[]).ok()?? {
                    Leaf::Dir { .. } => FileKind::Dir,
                    Leaf::Link { .. } => FileKind::Symlink,
                    _ => FileKind::File,
                };
                Some((p.name().to_string(), kind))
            })
            .collect(),
        Some(i) => {
            let parts: Vec<&str> = node.parts.iter().map(String::as_str).collect();
            PROVIDERS[i].list(&cx, &parts, path)?
        }
    };
    Ok(names
        .into_iter()
        .map(|(n, k)| (fs.ino_of(&join(path, &n)), k, n))
        .collect())
}

/// Content of a control file and how it may be cached.
pub(crate) fn content(fs: &Fs, path: &str, node: &CNode) -> Result<(Arc<Decoded>, Caching)> {
    match &node.leaf {
        Leaf::Text(d) => Ok((d.clone(), Caching::Direct)),
        Leaf::Blob { path, oid, caching } => Ok((fs.decode(path, *oid)?, *caching)),
        Leaf::Link { .. } => Err(Error::new(Kind::Invalid, "a symlink")),
        Leaf::Dir { .. } => Err(Error::new(Kind::IsDir, format!("{path}: a directory"))),
    }
}

pub(crate) fn readlink(fs: &Fs, node: &CNode) -> Result<Vec<u8>> {
    match &node.leaf {
        Leaf::Link { oid, .. } => fs.with_reader(|r| Ok(r.read_blob(*oid)?)),
        _ => Err(not_found("symlink")),
    }
}

pub(crate) fn git_err(e: git2::Error) -> Error {
    Error::new(Kind::Io, e.message().to_string())
}

impl Trees for Fs {
    fn head(&self) -> Option<Oid> {
        self.snapshot().commit
    }

    fn open_repo(&self) -> Result<Repository> {
        self.with_reader(|r| {
            Repository::open_bare(r.repo_path()).map_err(|e| Error::new(Kind::Io, e.to_string()))
        })
    }

    fn note_unshown(&self, dir: &str, skipped: &[(String, NameRule)]) {
        Fs::note_unshown(self, dir, skipped)
    }
}

impl MountState for Fs {
    fn status_text(&self) -> Result<String> {
        status::status_text(self)
    }

    fn daemon_text(&self) -> String {
        status::daemon_text(self)
    }

    fn conflicts(&self) -> Result<Vec<ConflictInfo>> {
        Ok(self.master.status()?.conflicts)
    }
}

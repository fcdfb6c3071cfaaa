//! Immutable snapshots of the head and a reader that resolves paths in them.
//!
//! The master publishes a new `Arc<Snapshot>` after every head move. A snapshot names
//! only immutable git objects, so any number of [`Reader`]s (each with its own
//! read-only `git2::Repository` on the master's bare directory) can read it while the
//! master keeps committing. Objects are never deleted by the master (no gc), so a
//! snapshot stays readable for the life of the state dir.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};

use super::names::{self, NameRule};
use super::packs::Generation;
use super::tree::{lookup, MODE_EXEC, MODE_LINK, MODE_TREE};
use super::{FileMode, Result};

/// An immutable view of the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The head commit; `None` while the branch has no commit yet.
    pub commit: Option<Oid>,
    /// Its tree (the empty tree for an empty branch).
    pub tree: Oid,
    /// Increases with every publication (per master run).
    pub seq: u64,
}

/// Why the head moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadChangeCause {
    /// Local sessions were committed.
    Sessions,
    /// Remote changes were merged (fetch or rejected push), possibly replaying local work.
    Remote,
}

/// Sent to subscribers on every published head move.
#[derive(Debug, Clone)]
pub struct HeadChange {
    /// The previous snapshot.
    pub old: std::sync::Arc<Snapshot>,
    /// The new snapshot.
    pub new: std::sync::Arc<Snapshot>,
    /// Files whose entry differs between the two trees.
    pub paths: Vec<String>,
    /// What moved the head.
    pub cause: HeadChangeCause,
}

/// Kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A file or symlink.
    File(FileMode),
    /// A submodule or something else git can store; shown as nothing by the fs.
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// Kind.
    pub kind: EntryKind,
    /// Object id (blob or tree).
    pub oid: Oid,
}

fn kind(mode: i32) -> EntryKind {
    match mode {
        MODE_TREE => EntryKind::Dir,
        MODE_EXEC => EntryKind::File(FileMode::Executable),
        MODE_LINK => EntryKind::File(FileMode::Symlink),
        m => match FileMode::from_raw(m) {
            Some(f) => EntryKind::File(f),
            None => EntryKind::Other,
        },
    }
}

/// A directory's entries, and those left out because their names cannot be shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Entries with valid names, in tree order.
    pub entries: Vec<DirEntry>,
    /// (name, lossy UTF-8, and the rule it breaks).
    pub skipped: Vec<(String, NameRule)>,
}

/// The entries of one tree, split by [`names::shown`].
pub fn listing(tree: &git2::Tree<'_>) -> Listing {
    let mut out = Listing {
        entries: Vec::with_capacity(tree.len()),
        skipped: Vec::new(),
    };
    for e in tree.iter() {
        let name = match names::shown(e.name_bytes()) {
            Ok(n) => n.to_string(),
            Err(rule) => {
                let lossy = String::from_utf8_lossy(e.name_bytes()).into_owned();
                out.skipped.push((lossy, rule));
                continue;
            }
        };
        let k = match e.kind() {
            Some(ObjectType::Tree) => EntryKind::Dir,
            _ => kind(e.filemode()),
        };
        out.entries.push(DirEntry {
            name,
            kind: k,
            oid: e.id(),
        });
    }
    out
}

/// Read access to snapshots. `Send` but not `Sync`: keep one per thread or behind a mutex.
///
/// A reader from [`super::MasterHandle::reader`] reopens its repository after the
/// master merged packs (libgit2 never forgets a pack it has seen; see `packs.rs`).
pub struct Reader {
    repo: RefCell<Repository>,
    path: PathBuf,
    generation: Generation,
    seen: Cell<u64>,
}

impl Reader {
    /// Opens a reader on the master's bare repository. Prefer
    /// [`super::MasterHandle::reader`], whose readers follow pack merges.
    pub fn open(repo_path: &Path) -> Result<Reader> {
        Self::with_generation(repo_path, Generation::default())
    }

    pub(crate) fn with_generation(repo_path: &Path, generation: Generation) -> Result<Reader> {
        let seen = Cell::new(generation.get());
        Ok(Reader {
            repo: RefCell::new(Repository::open_bare(repo_path)?),
            path: repo_path.to_path_buf(),
            generation,
            seen,
        })
    }

    /// The repository, reopened first if packs were merged since it was opened.
    fn repo(&self) -> Result<std::cell::Ref<'_, Repository>> {
        let g = self.generation.get();
        if g != self.seen.get() {
            *self.repo.borrow_mut() = Repository::open_bare(&self.path)?;
            self.seen.set(g);
        }
        Ok(self.repo.borrow())
    }

    /// The file at `path`: content and mode. `None` if absent or a directory.
    pub fn read(&self, snap: &Snapshot, path: &str) -> Result<Option<(Vec<u8>, FileMode)>> {
        let repo = self.repo()?;
        let tree = repo.find_tree(snap.tree)?;
        let Some(e) = lookup(&tree, path)? else {
            return Ok(None);
        };
        let Some(mode) = FileMode::from_raw(e.mode) else {
            return Ok(None);
        };
        let blob = repo.find_blob(e.oid)?;
        Ok(Some((blob.content().to_vec(), mode)))
    }

    /// The kind of `path` (`""` is the root directory), `None` if absent.
    pub fn stat(&self, snap: &Snapshot, path: &str) -> Result<Option<(EntryKind, Oid)>> {
        if path.is_empty() {
            return Ok(Some((EntryKind::Dir, snap.tree)));
        }
        let repo = self.repo()?;
        let tree = repo.find_tree(snap.tree)?;
        Ok(lookup(&tree, path)?.map(|e| (kind(e.mode), e.oid)))
    }

    /// The commit `rev` names (an id, full or abbreviated, or a ref), as a snapshot.
    pub fn at_revision(&self, rev: &str) -> Result<Option<Snapshot>> {
        let repo = self.repo()?;
        let Ok(obj) = repo.revparse_single(rev) else {
            return Ok(None);
        };
        let Ok(c) = obj.peel_to_commit() else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            commit: Some(c.id()),
            tree: c.tree_id(),
            seq: 0,
        }))
    }

    /// Content of a blob by id.
    pub fn read_blob(&self, oid: Oid) -> Result<Vec<u8>> {
        let repo = self.repo()?;
        let blob = repo.find_blob(oid)?;
        Ok(blob.content().to_vec())
    }

    /// Size in bytes of a blob, without reading it when the odb can tell.
    pub fn blob_size(&self, oid: Oid) -> Result<usize> {
        let (size, _) = self.repo()?.odb()?.read_header(oid)?;
        Ok(size)
    }

    /// Entries of the directory at `path` (`""` is the root), `None` if not a directory.
    /// Entries whose names the view may not show ([`names::shown`]) are left out and
    /// returned apart, with the rule they break.
    pub fn list(&self, snap: &Snapshot, path: &str) -> Result<Option<Listing>> {
        let repo = self.repo()?;
        let root = repo.find_tree(snap.tree)?;
        let tree = if path.is_empty() {
            root
        } else {
            match lookup(&root, path)? {
                Some(e) if e.mode == MODE_TREE => repo.find_tree(e.oid)?,
                _ => return Ok(None),
            }
        };
        Ok(Some(listing(&tree)))
    }

    /// Path of the repository (for callers that need raw git access, e.g. history).
    pub fn repo_path(&self) -> &Path {
        &self.path
    }
}

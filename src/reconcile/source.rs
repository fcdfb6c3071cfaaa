//! Where the reconciler reads manifests: the master's snapshots in the daemon (never
//! through the FUSE mount, never a second clone), or a plain folder.
//!
//! Invariant: a revision names exactly the content `load` returns with it; decrypted
//! bytes stay in memory (`Zeroizing`).

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use std::path::Path;

use super::manifest::manifest;
use super::{parse_file, to_json, Error, Manifest};
use crate::crypto::{Format, Keyring};
use crate::repo::{EntryKind, MasterHandle, Reader, Snapshot};
use crate::slices::RepoView;

/// Manifests by path, with the revision they come from.
pub trait Source: Send + Sync + 'static {
    /// The current revision (cheap: called on every wake-up).
    fn revision(&self) -> String;
    /// The revision and every manifest below `path` (`*.yaml|yml|json`, names starting
    /// with `.` skipped), in path order.
    fn load(&self, path: &str) -> Result<(String, Vec<Manifest>), Error>;
    /// Objects that slice models mark purged (see [`crate::slices::purged_elements`]);
    /// elements that are not objects are left out.
    fn purged(&self) -> Result<Vec<Manifest>, Error> {
        Ok(Vec::new())
    }
}

/// The purged elements of `view` that are objects (`apiVersion`, `kind`, a name).
fn purged_objects(view: &dyn RepoView) -> Result<Vec<Manifest>, Error> {
    let elements = crate::slices::purged_elements(view)
        .map_err(|e| Error::Manifest(format!("slices: {e}")))?;
    Ok(elements
        .iter()
        .filter_map(|v| to_json(v).ok())
        .filter_map(|j| manifest(crate::slices::CONFIG_FILE, 0, j).ok())
        .collect())
}

/// The bytes as shown: SOPS files decrypted.
fn shown(path: &str, bytes: Vec<u8>, keys: &Keyring) -> Result<Vec<u8>, String> {
    match crate::crypto::sops::sops_format(&bytes, Format::from_path(path)) {
        Some(f) => crate::crypto::decrypt(&bytes, f, keys)
            .map(|o| o.plaintext.to_vec())
            .map_err(|e| format!("{path}: {e}")),
        None => Ok(bytes),
    }
}

/// One snapshot, as the slice functions read it.
struct SnapView<'a> {
    reader: &'a Reader,
    snap: &'a Snapshot,
    keys: &'a Keyring,
}

impl RepoView for SnapView<'_> {
    fn files(&self, dir: &str) -> Result<Vec<(String, git2::Oid)>, String> {
        Ok(self
            .reader
            .list(self.snap, dir)
            .map_err(|e| e.to_string())?
            .map(|l| {
                l.entries
                    .into_iter()
                    .filter(|e| matches!(e.kind, EntryKind::File(_)))
                    .map(|e| (e.name, e.oid))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn is_dir(&self, dir: &str) -> bool {
        matches!(
            self.reader.stat(self.snap, dir),
            Ok(Some((EntryKind::Dir, _)))
        )
    }

    fn stored(&self, oid: git2::Oid) -> Result<Vec<u8>, String> {
        self.reader.read_blob(oid).map_err(|e| e.to_string())
    }

    fn plain(&self, path: &str, oid: git2::Oid) -> Result<Vec<u8>, String> {
        shown(path, self.stored(oid)?, self.keys)
    }
}

/// A folder, as the slice functions read it (blob ids are the files' git hashes; SOPS
/// files shown decrypted).
struct DirView<'a> {
    root: &'a Path,
    keys: &'a Keyring,
}

impl RepoView for DirView<'_> {
    fn files(&self, dir: &str) -> Result<Vec<(String, git2::Oid)>, String> {
        let Ok(rd) = std::fs::read_dir(self.root.join(dir)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let bytes = std::fs::read(e.path()).map_err(|err| err.to_string())?;
                let oid = git2::Oid::hash_object(git2::ObjectType::Blob, &bytes)
                    .map_err(|err| err.to_string())?;
                out.push((e.file_name().to_string_lossy().into_owned(), oid));
            }
        }
        out.sort();
        Ok(out)
    }

    fn is_dir(&self, dir: &str) -> bool {
        self.root.join(dir).is_dir()
    }

    fn stored(&self, oid: git2::Oid) -> Result<Vec<u8>, String> {
        Err(format!("blob {oid}: a folder is read by path"))
    }

    fn plain(&self, path: &str, _oid: git2::Oid) -> Result<Vec<u8>, String> {
        let bytes = std::fs::read(self.root.join(path)).map_err(|e| format!("{path}: {e}"))?;
        shown(path, bytes, self.keys)
    }
}

/// The master's current snapshot.
pub struct SnapshotSource {
    master: MasterHandle,
    keys: Keyring,
    branch: String,
}

impl SnapshotSource {
    pub fn new(master: MasterHandle, keys: Keyring, branch: &str) -> SnapshotSource {
        SnapshotSource {
            master,
            keys,
            branch: branch.to_string(),
        }
    }

    fn name(&self, commit: Option<git2::Oid>) -> String {
        match commit {
            Some(c) => format!("{}@sha1:{c}", self.branch),
            None => format!("{}@sha1:none", self.branch),
        }
    }
}

fn wanted(name: &str) -> bool {
    !name.starts_with('.') && [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x))
}

impl Source for SnapshotSource {
    fn revision(&self) -> String {
        self.name(self.master.snapshot().commit)
    }

    fn load(&self, path: &str) -> Result<(String, Vec<Manifest>), Error> {
        let snap = self.master.snapshot();
        let reader = self
            .master
            .reader()
            .map_err(|e| Error::Manifest(format!("repository: {e}")))?;
        let root = path.trim_matches('/').to_string();
        let git = |e: crate::repo::Error| Error::Manifest(format!("{root}: {e}"));
        match reader.stat(&snap, &root).map_err(git)? {
            Some((EntryKind::Dir, _)) => {}
            _ => return Err(Error::Manifest(format!("{root}: no such folder"))),
        }
        let mut files = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Some(listing) = reader.list(&snap, &dir).map_err(git)? else {
                continue;
            };
            for e in listing.entries {
                if e.name.starts_with('.') {
                    continue;
                }
                let full = if dir.is_empty() {
                    e.name.clone()
                } else {
                    format!("{dir}/{}", e.name)
                };
                match e.kind {
                    EntryKind::Dir => stack.push(full),
                    EntryKind::File(_) if wanted(&e.name) => files.push((full, e.oid)),
                    _ => {}
                }
            }
        }
        files.sort();
        let mut out = Vec::new();
        for (full, oid) in files {
            let bytes = Zeroizing::new(reader.read_blob(oid).map_err(git)?);
            let rel = full
                .strip_prefix(&root)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(&full);
            out.extend(parse_file(rel, &bytes, &self.keys)?);
        }
        Ok((self.name(snap.commit), out))
    }

    fn purged(&self) -> Result<Vec<Manifest>, Error> {
        let snap = self.master.snapshot();
        let reader = self
            .master
            .reader()
            .map_err(|e| Error::Manifest(format!("repository: {e}")))?;
        purged_objects(&SnapView {
            reader: &reader,
            snap: &snap,
            keys: &self.keys,
        })
    }
}

/// A plain folder (for example inside a mount); the revision is a digest of the files.
pub struct DirSource {
    root: PathBuf,
    keys: Keyring,
}

impl DirSource {
    pub fn new(root: PathBuf, keys: Keyring) -> DirSource {
        DirSource { root, keys }
    }

    fn digest(&self, path: &str) -> String {
        let mut h = Sha256::new();
        let mut stack = vec![self.root.join(path)];
        let mut files = Vec::new();
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
        for f in files {
            h.update(f.to_string_lossy().as_bytes());
            h.update(std::fs::read(&f).unwrap_or_default());
        }
        format!("dir@sha256:{:x}", h.finalize())
    }
}

impl Source for DirSource {
    fn revision(&self) -> String {
        self.digest("")
    }

    fn load(&self, path: &str) -> Result<(String, Vec<Manifest>), Error> {
        let dir = self.root.join(path.trim_matches('/'));
        if !dir.is_dir() {
            return Err(Error::Manifest(format!("{path}: no such folder")));
        }
        let rev = self.digest("");
        Ok((rev, super::load(&dir, &self.keys)?))
    }

    fn purged(&self) -> Result<Vec<Manifest>, Error> {
        purged_objects(&DirView {
            root: &self.root,
            keys: &self.keys,
        })
    }
}

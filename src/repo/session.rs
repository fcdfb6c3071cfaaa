//! Sessions: a base commit plus an ordered list of changes, turned into an overlay.

use git2::{Oid, Repository, Tree};

use super::tree::{lookup, validate_path, Entry, Overlay, MODE_BLOB, MODE_EXEC, MODE_LINK};
use super::{Error, Result};

/// Mode of a file in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FileMode {
    /// A regular file (0644).
    Regular,
    /// A file with the executable bit (0755).
    Executable,
    /// A symbolic link; the content is the link target.
    Symlink,
}

impl FileMode {
    pub(crate) fn raw(self) -> i32 {
        match self {
            FileMode::Regular => MODE_BLOB,
            FileMode::Executable => MODE_EXEC,
            FileMode::Symlink => MODE_LINK,
        }
    }

    /// The mode for a raw git mode, `None` for trees and submodules.
    pub fn from_raw(mode: i32) -> Option<FileMode> {
        match mode {
            MODE_BLOB => Some(FileMode::Regular),
            MODE_EXEC => Some(FileMode::Executable),
            MODE_LINK => Some(FileMode::Symlink),
            _ => None,
        }
    }
}

/// One change of a session, applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create or replace a file. `mode: None` keeps the mode of an existing file
    /// (regular for a new one).
    Write {
        /// Repository path.
        path: String,
        /// Full new content.
        bytes: Vec<u8>,
        /// New mode, if it changes.
        mode: Option<FileMode>,
    },
    /// Remove a file or a whole directory.
    Delete {
        /// Repository path.
        path: String,
    },
    /// Move a file or directory.
    Rename {
        /// Old path.
        from: String,
        /// New path (replaced if it exists).
        to: String,
    },
    /// Change the mode of an existing file (exec bit).
    SetMode {
        /// Repository path.
        path: String,
        /// Regular or Executable.
        mode: FileMode,
    },
}

/// A unit of work: changes against `base`, committed as one commit.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub(crate) base: Option<Oid>,
    pub(crate) changes: Vec<Change>,
    pub(crate) author: Option<(String, String)>,
    pub(crate) message: Option<String>,
}

impl Session {
    /// A session on `base` (the commit of the snapshot the writer saw; `None` for an
    /// empty repository).
    pub fn new(base: Option<Oid>) -> Self {
        Session {
            base,
            ..Session::default()
        }
    }

    /// The base commit.
    pub fn base(&self) -> Option<Oid> {
        self.base
    }

    /// The changes so far.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// True when there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Writes a file, keeping the mode of an existing one.
    pub fn write(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.changes.push(Change::Write {
            path: path.into(),
            bytes: bytes.into(),
            mode: None,
        });
        self
    }

    /// Writes a file with an explicit mode.
    pub fn write_mode(
        &mut self,
        path: impl Into<String>,
        bytes: impl Into<Vec<u8>>,
        mode: FileMode,
    ) -> &mut Self {
        self.changes.push(Change::Write {
            path: path.into(),
            bytes: bytes.into(),
            mode: Some(mode),
        });
        self
    }

    /// Creates or replaces a symlink.
    pub fn symlink(&mut self, path: impl Into<String>, target: impl Into<Vec<u8>>) -> &mut Self {
        self.write_mode(path, target, FileMode::Symlink)
    }

    /// Deletes a file or directory.
    pub fn delete(&mut self, path: impl Into<String>) -> &mut Self {
        self.changes.push(Change::Delete { path: path.into() });
        self
    }

    /// Renames a file or directory.
    pub fn rename(&mut self, from: impl Into<String>, to: impl Into<String>) -> &mut Self {
        self.changes.push(Change::Rename {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Sets or clears the executable bit.
    pub fn set_executable(&mut self, path: impl Into<String>, exec: bool) -> &mut Self {
        self.changes.push(Change::SetMode {
            path: path.into(),
            mode: if exec {
                FileMode::Executable
            } else {
                FileMode::Regular
            },
        });
        self
    }

    /// Sets the author (name, email); the default comes from the master's config.
    pub fn author(&mut self, name: impl Into<String>, email: impl Into<String>) -> &mut Self {
        self.author = Some((name.into(), email.into()));
        self
    }

    /// Sets the commit message; the default names the changed paths.
    pub fn message(&mut self, msg: impl Into<String>) -> &mut Self {
        self.message = Some(msg.into());
        self
    }

    /// Resolves the changes against `base` into an overlay, writing blobs.
    pub(crate) fn overlay(&self, repo: &Repository, base: Option<&Tree<'_>>) -> Result<Overlay> {
        let mut ov = Overlay::new();
        for c in &self.changes {
            match c {
                Change::Write { path, bytes, mode } => {
                    validate_path(path)?;
                    let cur = current(repo, base, &ov, path)?;
                    let raw = match (mode, cur) {
                        (Some(m), _) => m.raw(),
                        (None, Some(e)) if e.is_file() => e.mode,
                        (None, _) => MODE_BLOB,
                    };
                    let oid = repo.blob(bytes)?;
                    set(&mut ov, path, Some(Entry { oid, mode: raw }));
                }
                Change::Delete { path } => {
                    validate_path(path)?;
                    set(&mut ov, path, None);
                }
                Change::Rename { from, to } => {
                    validate_path(from)?;
                    validate_path(to)?;
                    if from == to {
                        continue;
                    }
                    let e = current(repo, base, &ov, from)?
                        .ok_or_else(|| Error::NotFound(from.clone()))?;
                    set(&mut ov, from, None);
                    set(&mut ov, to, Some(e));
                }
                Change::SetMode { path, mode } => {
                    validate_path(path)?;
                    let e = current(repo, base, &ov, path)?
                        .filter(|e| e.is_file())
                        .ok_or_else(|| Error::NotFound(path.clone()))?;
                    let mode = match mode {
                        FileMode::Symlink => return Err(Error::InvalidPath(path.clone())),
                        m => m.raw(),
                    };
                    set(&mut ov, path, Some(Entry { oid: e.oid, mode }));
                }
            }
        }
        Ok(ov)
    }

    /// The default commit message: the changed paths.
    pub(crate) fn default_message(paths: &[&str]) -> String {
        const MAX: usize = 10;
        let mut m = match paths.len() {
            0 => "valuesfs: no changes".to_string(),
            1 => format!("valuesfs: update {}", paths[0]),
            n => format!("valuesfs: update {n} files"),
        };
        if paths.len() > 1 {
            m.push_str("\n\n");
            for p in paths.iter().take(MAX) {
                m.push_str(p);
                m.push('\n');
            }
            if paths.len() > MAX {
                m.push_str(&format!("... and {} more\n", paths.len() - MAX));
            }
        }
        m
    }
}

/// Sets `path` in the overlay; anything previously set below it is superseded.
fn set(ov: &mut Overlay, path: &str, e: Option<Entry>) {
    let prefix = format!("{path}/");
    let below: Vec<String> = ov
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in below {
        ov.remove(&k);
    }
    ov.insert(path.to_string(), e);
}

/// The entry at `path` as seen after the changes so far.
fn current(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    ov: &Overlay,
    path: &str,
) -> Result<Option<Entry>> {
    if let Some(e) = ov.get(path) {
        return Ok(*e);
    }
    // The nearest changed ancestor decides, if any.
    let mut idx = path.len();
    while let Some(pos) = path[..idx].rfind('/') {
        idx = pos;
        if let Some(e) = ov.get(&path[..idx]) {
            return match e {
                Some(e) if e.is_tree() => {
                    let t = repo.find_tree(e.oid)?;
                    lookup(&t, &path[idx + 1..])
                }
                _ => Ok(None),
            };
        }
    }
    match base {
        Some(t) => lookup(t, path),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::apply_overlay;

    #[test]
    fn rename_then_write_then_delete() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let mut s = Session::new(None);
        s.write("d/a", "A").write("d/b", "B");
        let ov = s.overlay(&repo, None).expect("ov");
        let t = apply_overlay(&repo, None, &ov).expect("io").expect("clash");
        let t = repo.find_tree(t).expect("tree");

        let mut s = Session::new(None);
        s.rename("d", "e")
            .write("e/c", "C")
            .rename("e/a", "f")
            .set_executable("f", true)
            .symlink("l", "f");
        let ov = s.overlay(&repo, Some(&t)).expect("ov");
        let t2 = apply_overlay(&repo, Some(&t), &ov)
            .expect("io")
            .expect("clash");
        let t2 = repo.find_tree(t2).expect("tree");
        assert!(lookup(&t2, "d").expect("l").is_none());
        assert!(lookup(&t2, "e/b").expect("l").is_some());
        assert!(lookup(&t2, "e/c").expect("l").is_some());
        assert!(lookup(&t2, "e/a").expect("l").is_none());
        assert_eq!(
            lookup(&t2, "f").expect("l").map(|e| e.mode),
            Some(MODE_EXEC)
        );
        assert_eq!(
            lookup(&t2, "l").expect("l").map(|e| e.mode),
            Some(MODE_LINK)
        );

        let mut s = Session::new(None);
        s.write("e/z", "Z").delete("e");
        let ov = s.overlay(&repo, Some(&t2)).expect("ov");
        let t3 = apply_overlay(&repo, Some(&t2), &ov)
            .expect("io")
            .expect("clash");
        let t3 = repo.find_tree(t3).expect("tree");
        assert!(lookup(&t3, "e").expect("l").is_none());
    }
}

//! Conflicts from the command line: the three versions of a conflicted file, decrypted
//! and shown as diffs (never written anywhere), and resolving by taking one side or by
//! merging again.
//!
//! A conflict's rejected commit has the session's base as its parent; "theirs" is the
//! current head. Taking "mine" commits the rejected version's stored bytes (already
//! encrypted with the file's own key) onto the head, then forgets the conflict.

use super::*;
use crate::repo::ConflictInfo;

/// One version of the conflicted path: its blob and mode, if the path exists there.
type Version = Option<(Oid, FileMode)>;

impl Fs {
    fn conflict(&self, id: &str) -> Result<ConflictInfo> {
        self.master
            .status()?
            .conflicts
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::new(Kind::NotFound, format!("no conflict {id:?}")))
    }

    /// (base, mine, theirs) of the conflicted path.
    fn versions(&self, c: &ConflictInfo) -> Result<(Version, Version, Version)> {
        let io = |e: git2::Error| Error::new(Kind::Io, format!("conflict {}: {e}", c.id));
        let repo = git2::Repository::open_bare(self.master.repo_path()).map_err(io)?;
        let mine = repo
            .find_commit(Oid::from_str(&c.commit).map_err(io)?)
            .map_err(io)?;
        let at = |tree: Option<git2::Tree>| -> Result<Version> {
            let Some(tree) = tree else { return Ok(None) };
            match tree.get_path(std::path::Path::new(&c.path)) {
                Ok(e) => {
                    let mode = match e.filemode() {
                        0o100755 => FileMode::Executable,
                        0o120000 => FileMode::Symlink,
                        _ => FileMode::Regular,
                    };
                    Ok((e.kind() == Some(git2::ObjectType::Blob)).then_some((e.id(), mode)))
                }
                Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
                Err(e) => Err(io(e)),
            }
        };
        let base = mine
            .parent(0)
            .ok()
            .map(|p| p.tree())
            .transpose()
            .map_err(io)?;
        let theirs = match self.snapshot().commit {
            Some(h) => Some(repo.find_commit(h).and_then(|c| c.tree()).map_err(io)?),
            None => None,
        };
        let out = (at(base)?, at(Some(mine.tree().map_err(io)?))?, at(theirs)?);
        Ok(out)
    }

    fn shown(&self, path: &str, v: Version) -> Result<Zeroizing<Vec<u8>>> {
        Ok(match v {
            Some((oid, _)) => Zeroizing::new(self.decode(path, oid)?.data.to_vec()),
            None => Zeroizing::new(Vec::new()),
        })
    }

    /// The conflict, and its three versions decrypted as two diffs against the base.
    pub fn conflict_show(&self, id: &str) -> Result<String> {
        let c = self.conflict(id)?;
        let (base, mine, theirs) = self.versions(&c)?;
        let b = self.shown(&c.path, base)?;
        let mut out = format!("{c}\n");
        for (name, v) in [("mine", mine), ("theirs", theirs)] {
            let text = self.shown(&c.path, v)?;
            let patch = git2::Patch::from_buffers(
                &b,
                Some(std::path::Path::new(&format!("base/{}", c.path))),
                &text,
                Some(std::path::Path::new(&format!("{name}/{}", c.path))),
                None,
            )
            .and_then(|mut p| p.to_buf())
            .map_err(|e| Error::new(Kind::Io, format!("diff: {e}")))?;
            out.push_str(&format!("== base -> {name}{}\n", absent(v)));
            out.push_str(&String::from_utf8_lossy(&patch));
        }
        Ok(out)
    }

    /// Resolve a conflict: `Mine` lands the rejected version on the head; `Theirs` keeps
    /// the head; `Merged` sends the rejected change again, from its own base, through the
    /// master's merge (the one the first attempt went through, with the head's current
    /// `.valuesfs.yaml` rules), so a rule added since, or a head that moved, can make it
    /// land. Every choice but a failed `Merged` forgets the conflict.
    pub fn conflict_resolve(&self, id: &str, take: Take) -> Result<String> {
        let c = self.conflict(id)?;
        let outcome = match take {
            Take::Theirs => "kept theirs".to_string(),
            Take::Mine | Take::Merged => {
                let (_, mine, _) = self.versions(&c)?;
                let base = match take {
                    Take::Mine => self.snapshot().commit,
                    _ => Some(self.rejected_base(&c)?),
                };
                let mut s = Session::new(base);
                match mine {
                    Some((oid, mode)) => {
                        let bytes = self.with_reader(|r| Ok(read_blob(r, oid)?))?;
                        s.write_mode(c.path.as_str(), bytes, mode);
                    }
                    None => {
                        s.delete(c.path.as_str());
                    }
                }
                let how = if take == Take::Mine {
                    "take mine"
                } else {
                    "merged"
                };
                s.message(format!(
                    "valuesfs: resolve conflict {} in {}: {how}",
                    c.id, c.path
                ));
                match self.master.submit(s)?.wait_committed() {
                    Ok(_) if take == Take::Mine => "took mine (committed)".to_string(),
                    Ok(_) => "merged (committed)".to_string(),
                    Err(crate::repo::Error::Conflict(again)) if take == Take::Merged => {
                        // The retry's own record would be a duplicate of this one.
                        self.master.dismiss_conflict(&again.id)?;
                        let at = again
                            .key
                            .map(|k| format!(" at key {k}"))
                            .unwrap_or_default();
                        return Err(Error::new(
                            Kind::Io,
                            format!(
                                "conflict {id} in {} still does not merge{at}: {} (kept)",
                                c.path, again.message
                            ),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        self.master.dismiss_conflict(id)?;
        Ok(format!("conflict {id} in {}: {outcome}\n", c.path))
    }

    /// The commit the rejected session was based on (its commit's parent).
    fn rejected_base(&self, c: &ConflictInfo) -> Result<Oid> {
        let io = |e: git2::Error| Error::new(Kind::Io, format!("conflict {}: {e}", c.id));
        let repo = git2::Repository::open_bare(self.master.repo_path()).map_err(io)?;
        let commit = repo
            .find_commit(Oid::from_str(&c.commit).map_err(io)?)
            .map_err(io)?;
        commit.parent_id(0).map_err(io)
    }
}

/// How `conflicts resolve` settles a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Mine,
    Theirs,
    Merged,
}

fn absent(v: Version) -> &'static str {
    if v.is_none() {
        " (absent)"
    } else {
        ""
    }
}

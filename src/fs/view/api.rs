//! The HTTP API's view of the mount: files by path from the current snapshot (SOPS files
//! decrypted, the blob id as the version), and writes that go through the same
//! plaintext-to-session function as a write-close ([`Fs::commit_file`]), one session
//! each. Paths are checked as the mount checks names; `.valuesfs` is not reachable.

use super::commit::committed_at;
use super::*;

/// A file as the API serves it.
pub struct ApiFile {
    pub data: Zeroizing<Vec<u8>>,
    /// The stored blob's id: changes with every committed change of the file.
    pub etag: String,
}

/// What a write did.
pub struct ApiWrite {
    /// The commit holding it (`None`: the content was already there).
    pub commit: Option<Oid>,
    ticket: Option<Arc<Mutex<Ticket>>>,
}

impl ApiWrite {
    /// Wait until the commit is on the remote.
    pub fn wait_pushed(&self, timeout: Duration) -> Result<()> {
        match &self.ticket {
            Some(t) => lock(t)
                .wait_pushed(timeout)
                .map(|_| ())
                .map_err(|e| Error::new(Kind::Io, e.to_string())),
            None => Ok(()),
        }
    }
}

/// How a write treats an existing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// POST: the file must not exist.
    Absent,
    /// PUT: create or replace; with `Some(etag)`, only that version may be replaced.
    Matches(Option<String>),
}

/// A repository path the API accepts: relative, no `.`/`..`/empty parts, names the
/// mount could show, nothing under `.valuesfs`.
pub fn api_path(raw: &str) -> Result<String> {
    let bad = |why: &str| Error::new(Kind::Invalid, format!("{raw:?}: {why}"));
    if raw.starts_with('/') {
        return Err(bad("an absolute path"));
    }
    let path = raw.trim_end_matches('/');
    if path.is_empty() {
        return Ok(String::new());
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(bad("empty, `.` or `..` parts"));
        }
        names::shown(part.as_bytes()).map_err(|r| bad(&format!("{r:?}")))?;
    }
    if path == ".valuesfs" || path.starts_with(".valuesfs/") {
        return Err(bad("the control folder is not part of the repository"));
    }
    Ok(path.to_string())
}

/// `If-Match` semantics: `*` is any existing version, anything else one blob id.
fn version_matches(tag: &str, current: Option<Oid>) -> bool {
    match current {
        Some(oid) => tag == "*" || tag == oid.to_string(),
        None => false,
    }
}

impl Fs {
    fn tracked(&self, snap: &Snapshot, path: &str) -> Result<Option<(EntryKind, Oid)>> {
        self.with_reader(|r| Ok(r.stat(snap, path)?))
    }

    /// The file at `path` in the current snapshot, or at revision `rev` (a commit id,
    /// full or abbreviated, or a branch), decrypted.
    pub fn api_read(&self, path: &str, rev: Option<&str>) -> Result<Option<ApiFile>> {
        let snap = match rev {
            None => self.snapshot(),
            Some(rev) => Arc::new(self.snapshot_at(rev)?),
        };
        match self.tracked(&snap, path)? {
            Some((EntryKind::File(_), oid)) => {
                let d = self.decode(path, oid)?;
                if let Some(why) = &d.locked {
                    return Err(Error::new(Kind::ReadOnly, format!("{path}: {why}")));
                }
                Ok(Some(ApiFile {
                    data: d.data.clone(),
                    etag: oid.to_string(),
                }))
            }
            Some((EntryKind::Dir, _)) => Err(Error::new(Kind::IsDir, format!("{path}: a folder"))),
            _ => Ok(None),
        }
    }

    fn snapshot_at(&self, rev: &str) -> Result<Snapshot> {
        // Names and ids only: no `:path`, reflog or range syntax.
        let plain = !rev.is_empty()
            && rev.len() <= 200
            && !rev.starts_with('-')
            && rev
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
        let bad = || Error::new(Kind::Invalid, format!("rev {rev:?}: no such commit"));
        if !plain {
            return Err(bad());
        }
        self.with_reader(|r| Ok(r.at_revision(rev)?))?
            .ok_or_else(bad)
    }

    /// Applies a JSON merge patch (RFC 7386) to the YAML or JSON file at `path`, as one
    /// session: the file is parsed as sops parses it and printed as sops prints it, so
    /// untouched entries keep their bytes (and, in a SOPS file, their ciphertext).
    pub fn api_patch(
        &self,
        path: &str,
        patch: &serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<ApiWrite> {
        let format = Format::from_path(path);
        if !matches!(format, Format::Yaml | Format::Json) {
            return Err(Error::new(
                Kind::Invalid,
                format!("{path}: a merge patch applies to YAML and JSON files"),
            ));
        }
        let snap = self.snapshot();
        let oid = match self.tracked(&snap, path)? {
            Some((EntryKind::File(_), oid)) => oid,
            Some((EntryKind::Dir, _)) => {
                return Err(Error::new(Kind::IsDir, format!("{path}: a folder")))
            }
            _ => return Err(not_found(path)),
        };
        if if_match.is_some_and(|t| !version_matches(t, Some(oid))) {
            return Err(Error::new(Kind::Stale, format!("{path}: changed")));
        }
        let d = self.decode(path, oid)?;
        if let Some(why) = &d.locked {
            return Err(Error::new(Kind::ReadOnly, format!("{path}: {why}")));
        }
        let style = match &d.sops {
            Some(o) => o.style(),
            None => self.style_for(path),
        };
        let invalid = |why: String| Error::new(Kind::Invalid, format!("{path}: {why}"));
        let mut docs =
            crypto::sops::parse_plain(&d.data, format).map_err(|e| invalid(e.to_string()))?;
        if docs.len() != 1 {
            return Err(invalid(format!(
                "{} documents: a merge patch applies to a file of one",
                docs.len()
            )));
        }
        crypto::patch::merge_patch(&mut docs[0], patch);
        if format == Format::Yaml && !matches!(docs[0], crypto::value::Value::Map(_)) {
            return Err(invalid(
                "the patch leaves the document not a mapping".into(),
            ));
        }
        let text = crypto::sops::render_styled(format, &docs, style);
        let pre = Precondition::Matches(Some(oid.to_string()));
        self.api_write(path, Zeroizing::new(text.into_bytes()), &pre)
    }

    /// The entries of the folder at `path`: (name, `dir` or `file`).
    pub fn api_tree(&self, path: &str) -> Result<Option<Vec<(String, &'static str)>>> {
        let snap = self.snapshot();
        let listing = self.with_reader(|r| Ok(r.list(&snap, path)?))?;
        Ok(listing.map(|l| {
            l.entries
                .into_iter()
                .filter_map(|e| match e.kind {
                    EntryKind::Dir => Some((e.name, "dir")),
                    EntryKind::File(_) => Some((e.name, "file")),
                    EntryKind::Other => None,
                })
                .collect()
        }))
    }

    /// Write `data` at `path` as one session (encrypted as a write-close would be).
    pub fn api_write(
        &self,
        path: &str,
        data: Zeroizing<Vec<u8>>,
        pre: &Precondition,
    ) -> Result<ApiWrite> {
        if path.is_empty() {
            return Err(Error::new(Kind::Invalid, "no path"));
        }
        let snap = self.snapshot();
        let current = self.tracked(&snap, path)?;
        let (mode, exists) = match &current {
            Some((EntryKind::File(m), _)) => (*m, true),
            Some((EntryKind::Dir, _)) => {
                return Err(Error::new(Kind::IsDir, format!("{path}: a folder")))
            }
            _ => (FileMode::Regular, false),
        };
        match pre {
            Precondition::Absent if exists => {
                return Err(Error::new(Kind::Exists, format!("{path}: exists")))
            }
            Precondition::Matches(Some(tag)) if !version_matches(tag, current.map(|c| c.1)) => {
                return Err(Error::new(
                    Kind::Stale,
                    format!("{path}: changed since version {tag}"),
                ))
            }
            _ => {}
        }
        let ticket = self.commit_file(path, data, mode, snap.commit)?;
        let commit = match &ticket {
            Some(t) => committed_at(t),
            None => snap.commit,
        };
        Ok(ApiWrite { commit, ticket })
    }

    /// Delete the file at `path` as one session.
    pub fn api_delete(&self, path: &str, if_match: Option<&str>) -> Result<ApiWrite> {
        let snap = self.snapshot();
        match self.tracked(&snap, path)? {
            Some((EntryKind::File(_), oid)) => {
                if if_match.is_some_and(|t| !version_matches(t, Some(oid))) {
                    return Err(Error::new(Kind::Stale, format!("{path}: changed")));
                }
            }
            Some((EntryKind::Dir, _)) => {
                return Err(Error::new(Kind::IsDir, format!("{path}: a folder")))
            }
            _ => return Err(not_found(path)),
        }
        let mut session = Session::new(snap.commit);
        session.delete(path);
        session.message(format!("valuesfs: delete {path}"));
        let mut ticket = self.master.submit(session)?;
        let commit = ticket
            .wait_committed()
            .map_err(|e| Error::new(Kind::Io, format!("{path}: {e}")))?;
        Ok(ApiWrite {
            commit: Some(commit),
            ticket: Some(Arc::new(Mutex::new(ticket))),
        })
    }

    /// Fetch the remote now (returns once asked; the master merges on its thread).
    pub fn api_sync(&self) -> Result<()> {
        self.master
            .fetch_now()
            .map_err(|e| Error::new(Kind::Io, e.to_string()))
    }

    /// The text of `.valuesfs/status`.
    pub fn api_status(&self) -> Result<String> {
        crate::fs::control::status_text(self)
    }
}

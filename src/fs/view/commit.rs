//! Turning written content into sessions: encryption (stable against the base version,
//! or per the creation rules), drafts of refused content (age-encrypted on disk), held
//! files, and waiting for the commit and the push.
//!
//! No lock is held while encrypting or waiting on the master.

use super::*;

/// A deferred new file to commit: path, content, mode, base.
type DeferredFile = (String, Zeroizing<Vec<u8>>, FileMode, Option<Oid>);

/// The commit that holds a committed session.
pub(super) fn committed_at(t: &Arc<Mutex<Ticket>>) -> Option<Oid> {
    lock(t).wait_committed().ok()
}

/// What [`Fs::encode`] makes of content.
pub(super) enum Encoded {
    /// Equal to the base version: nothing to commit.
    Same,
    /// An empty new file under a creation rule, kept in memory until it has content.
    Held,
    /// The bytes git stores (ciphertext for SOPS files).
    Stored(Vec<u8>),
    /// The content itself, stored in clear (it passed the leak guard).
    Clear,
}

impl Fs {
    /// The `.sops.yaml` creation parameters for a new file, if a rule matches.
    pub(super) fn creation_params(
        &self,
        snap: &Snapshot,
        path: &str,
    ) -> Result<Option<crypto::CreationParams>> {
        let Some((_, cfg)) = self.sops_config(snap, path)? else {
            return Ok(None);
        };
        let dir = cfg.dir.to_string_lossy();
        let rel = if dir.is_empty() {
            path
        } else {
            &path[dir.len() + 1..]
        };
        cfg.params_for(rel)
            .map_err(|e| Error::new(Kind::Io, format!("{path}: {e}")))
    }

    /// Encrypt (if the path must be) and commit one file; waits until committed.
    /// `None` when the content equals what the base already has.
    pub(super) fn commit_file(
        &self,
        path: &str,
        mut data: Zeroizing<Vec<u8>>,
        mode: FileMode,
        base: Option<Oid>,
    ) -> Result<Option<Arc<Mutex<Ticket>>>> {
        let (stored, clear) = match self.encode(path, &data, mode, base)? {
            Encoded::Same | Encoded::Held => return Ok(None),
            Encoded::Stored(b) => (b, false),
            // Moved, not copied: large plain files are not held twice.
            Encoded::Clear => (std::mem::take(&mut *data), true),
        };
        let version = match mode {
            FileMode::Symlink => None,
            _ => self.auto_version(path, &stored, if clear { &stored } else { &data }),
        };
        let mut session = Session::new(base);
        session.write_mode(path, stored, mode);
        if let Some((vpath, content)) = version {
            // `auto_sync`: the source's new version lands in the same commit.
            session.write(vpath, content);
        }
        session.message(format!("valuesfs: update {path}"));
        let mut ticket = self.master.submit(session)?;
        match ticket.wait_committed() {
            Ok(_) => {}
            Err(e) => {
                let msg = format!("{path}: {e}");
                tracing::error!("commit refused: {msg}");
                lock(&self.state)
                    .errors
                    .insert(path.to_string(), e.to_string());
                return Err(Error::new(Kind::Io, msg));
            }
        }
        self.clear_draft(path);
        let mut st = lock(&self.state);
        st.errors.remove(path);
        st.locked.remove(path);
        drop(st);
        Ok(Some(Arc::new(Mutex::new(ticket))))
    }

    /// The one function that turns plaintext for a path into what git stores: encrypted
    /// with the base version's key when the base is a SOPS file, per the creation rules
    /// when new, in clear otherwise (through the leak guard). Refused content becomes a
    /// draft (the error says why); an empty new file under a rule is held.
    pub(super) fn encode(
        &self,
        path: &str,
        data: &[u8],
        mode: FileMode,
        base: Option<Oid>,
    ) -> Result<Encoded> {
        let snap = self.snapshot();
        // The version the edit started from decides how it is stored.
        let base_snap = Snapshot {
            commit: base,
            tree: match base {
                Some(c) if Some(c) != snap.commit => self.with_reader(|r| {
                    let repo = git2::Repository::open_bare(r.repo_path())
                        .map_err(|e| Error::new(Kind::Io, e.to_string()))?;
                    let t = repo
                        .find_commit(c)
                        .map_err(|e| Error::new(Kind::Io, e.to_string()))?
                        .tree_id();
                    Ok(t)
                })?,
                _ => snap.tree,
            },
            seq: 0,
        };
        let prev = self.with_reader(|r| Ok(r.stat(&base_snap, path)?))?;
        let prev = match prev {
            // A base we cannot decode (corrupt, too large) is replaced like a new file.
            Some((EntryKind::File(m), oid)) if m != FileMode::Symlink => {
                self.decode(path, oid).ok().map(|d| (d, m))
            }
            _ => None,
        };
        if let Some((d, m)) = &prev {
            if d.data.as_slice() == data && *m == mode {
                // Same as committed: nothing to do, and any draft is resolved.
                self.clear_draft(path);
                return Ok(Encoded::Same);
            }
            if d.locked.is_some() {
                return Err(Error::new(
                    Kind::ReadOnly,
                    format!("{path}: cannot decrypt"),
                ));
            }
        }
        let format = Format::from_path(path);
        let stored: Vec<u8> = match &prev {
            Some((d, _)) if d.sops.is_some() => {
                let opened = d.sops.as_ref().expect("checked is_some");
                match opened.reencrypt(data) {
                    Ok(b) => b,
                    Err(e) => {
                        let recips: Vec<String> =
                            opened.metadata.age.iter().map(|(r, _)| r.clone()).collect();
                        return Err(self.make_draft(path, data, mode, &recips, &e.to_string()));
                    }
                }
            }
            Some(_) => {
                self.leak_check(path, data, mode)?;
                return Ok(Encoded::Clear);
            }
            None => match self.creation_params(&snap, path) {
                Err(e) => return Err(self.make_draft(path, data, mode, &[], &e.message)),
                Ok(Some(_)) if data.is_empty() => {
                    let why = "empty: committed once it has content (sops cannot encrypt an \
                               empty file)";
                    lock(&self.state).mem.insert(
                        path.to_string(),
                        Mem::File {
                            data: Zeroizing::new(Vec::new()),
                            mode,
                            kind: MemKind::Held(why.to_string()),
                            mtime: SystemTime::now(),
                        },
                    );
                    return Ok(Encoded::Held);
                }
                Ok(Some(params)) => match crypto::encrypt(data, format, &params) {
                    Ok(b) => b,
                    Err(e) => {
                        return Err(self.make_draft(
                            path,
                            data,
                            mode,
                            &params.recipients,
                            &e.to_string(),
                        ))
                    }
                },
                Ok(None) => {
                    self.leak_check(path, data, mode)?;
                    return Ok(Encoded::Clear);
                }
            },
        };
        Ok(Encoded::Stored(stored))
    }

    /// The leak guard (see `fs::leak`): content about to be stored in clear must not carry
    /// a value decrypted from a SOPS file, unless `--allow-plaintext` covers the path.
    /// Refused content is kept as a draft; the error is EACCES.
    pub(super) fn leak_check(&self, path: &str, data: &[u8], mode: FileMode) -> Result<()> {
        if mode == FileMode::Symlink || self.allow_plaintext.is_scratch(path) {
            return Ok(());
        }
        let Some(source) = lock(&self.secrets).find(data) else {
            return Ok(());
        };
        let why = format!(
            "carries a secret decrypted from {source}; it would be stored in clear (a \
             .sops.yaml creation rule covering {path} encrypts it, --allow-plaintext \
             lets it through)"
        );
        let e = self.make_draft(path, data, mode, &[], &why);
        Err(Error::new(Kind::Access, e.message))
    }

    pub(super) fn draft_file(&self, path: &str) -> PathBuf {
        let hex: String = path.bytes().map(|b| format!("{b:02x}")).collect();
        self.cfg.state_dir.join("drafts").join(format!("{hex}.age"))
    }

    /// Keep refused content: readable at its path, encrypted on disk. Returns the error.
    pub(super) fn make_draft(
        &self,
        path: &str,
        data: &[u8],
        mode: FileMode,
        recipients: &[String],
        why: &str,
    ) -> Error {
        let mut all: Vec<String> = recipients.to_vec();
        all.extend(self.keys.recipients());
        all.sort();
        all.dedup();
        let saved = crypto::keys::encrypt_to(&all, data)
            .map_err(|e| e.to_string())
            .and_then(|enc| {
                let file = self.draft_file(path);
                if let Some(d) = file.parent() {
                    std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
                }
                write_synced(&file, &enc).map_err(|e| e.to_string())
            });
        if let Err(e) = &saved {
            tracing::error!("{path}: draft not saved to disk: {e}");
        }
        tracing::error!("{path}: content refused, kept as a draft: {why}");
        let mut st = lock(&self.state);
        st.mem.insert(
            path.to_string(),
            Mem::File {
                data: Zeroizing::new(data.to_vec()),
                mode,
                kind: MemKind::Draft(why.to_string()),
                mtime: SystemTime::now(),
            },
        );
        st.errors.insert(path.to_string(), format!("draft: {why}"));
        Error::new(
            Kind::Io,
            format!("{path}: content refused (kept as a draft): {why}"),
        )
    }

    pub(super) fn clear_draft(&self, path: &str) {
        let mut st = lock(&self.state);
        if matches!(
            st.mem.get(path),
            Some(Mem::File {
                kind: MemKind::Draft(_)
                    | MemKind::Pending
                    | MemKind::Held(_)
                    | MemKind::Deferred { .. },
                ..
            })
        ) {
            st.mem.remove(path);
        }
        drop(st);
        let _ = std::fs::remove_file(self.draft_file(path));
    }

    pub(super) fn load_drafts(&self) {
        let dir = self.cfg.state_dir.join("drafts");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".age") else {
                continue;
            };
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            let Some(path) = bytes.and_then(|b| String::from_utf8(b).ok()) else {
                continue;
            };
            let Ok(enc) = std::fs::read(e.path()) else {
                continue;
            };
            match self.keys.decrypt_file(&enc) {
                Some(data) => {
                    let mut st = lock(&self.state);
                    st.errors
                        .insert(path.clone(), "draft: restored after restart".into());
                    st.mem.insert(
                        path,
                        Mem::File {
                            data,
                            mode: FileMode::Regular,
                            kind: MemKind::Draft("restored after restart".into()),
                            mtime: SystemTime::now(),
                        },
                    );
                }
                None => tracing::error!("draft {name}: cannot decrypt"),
            }
        }
    }

    /// Submit the open file of `ino` if dirty (a new file only after the grace period,
    /// unless `urgent`: fsync, `--push sync`). Blocking.
    pub(super) fn commit_open(&self, ino: u64, urgent: bool) -> Result<Option<Arc<Mutex<Ticket>>>> {
        let Some(gate) = lock(&self.state)
            .open
            .get(&ino)
            .map(|of| of.committing.clone())
        else {
            return Ok(None);
        };
        let _committing = lock(&gate);
        let res = self.commit_open_locked(ino, urgent);
        if let Some(of) = lock(&self.state).open.get_mut(&ino) {
            of.failed = res.as_ref().err().cloned();
        }
        res
    }

    /// Wait until no commit of this file is in flight; the error of the last one, if any.
    pub(super) fn settle(&self, ino: u64) -> Result<()> {
        let Some(gate) = lock(&self.state)
            .open
            .get(&ino)
            .map(|of| of.committing.clone())
        else {
            return Ok(());
        };
        let _done = lock(&gate);
        match lock(&self.state)
            .open
            .get(&ino)
            .and_then(|of| of.failed.clone())
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(super) fn commit_open_locked(
        &self,
        ino: u64,
        urgent: bool,
    ) -> Result<Option<Arc<Mutex<Ticket>>>> {
        let (path, data, mode, base, scratch) = {
            let mut st = lock(&self.state);
            let Some(of) = st.open.get_mut(&ino) else {
                return Ok(None);
            };
            if let Some(e) = of.poisoned.clone() {
                if !of.unlinked {
                    let path = of.path.clone();
                    st.errors.insert(path, e.message.clone());
                    tracing::error!("{}", e.message);
                }
                return Err(e);
            }
            if !of.dirty || of.unlinked {
                return Ok(None);
            }
            of.dirty = false;
            (
                of.path.clone(),
                Zeroizing::new(of.data.to_vec()),
                of.mode,
                of.base,
                of.scratch,
            )
        };
        if scratch || self.is_scratch(&path) {
            let mut st = lock(&self.state);
            st.mem.insert(
                path,
                Mem::File {
                    data,
                    mode,
                    kind: MemKind::Scratch,
                    mtime: SystemTime::now(),
                },
            );
            return Ok(None);
        }
        if !urgent && !self.cfg.new_file_grace.is_zero() {
            let snap = self.snapshot();
            if self.with_reader(|r| Ok(r.stat(&snap, &path)?))?.is_none() {
                return self.defer_new(path, data, mode, base);
            }
        }
        let res = self.commit_file(&path, data, mode, base);
        if let Some(hook) = &self.cfg.after_commit {
            (hook.0)();
        }
        let mut st = lock(&self.state);
        if let Ok(t) = &res {
            // The next session of this buffer builds on the commit that holds this one,
            // not on the head: a fetch may have merged a remote edit of the same file
            // since, and building on the head would silently drop it.
            if let (Some(of), Some(t)) = (st.open.get_mut(&ino), t) {
                of.base = committed_at(t);
                of.last = Some(t.clone());
            }
            if t.is_none() {
                // Nothing to commit: a pending file equal to the base is the base (a
                // held one stays).
                if matches!(
                    st.mem.get(&path),
                    Some(Mem::File {
                        kind: MemKind::Pending,
                        ..
                    })
                ) {
                    st.mem.remove(&path);
                }
            }
        }
        res
    }

    /// Keep a closed new file in memory for the grace period, after the checks a commit
    /// would make (so close still reports a refused content or a leak).
    fn defer_new(
        &self,
        path: String,
        data: Zeroizing<Vec<u8>>,
        mode: FileMode,
        base: Option<Oid>,
    ) -> Result<Option<Arc<Mutex<Ticket>>>> {
        match self.encode(&path, &data, mode, base)? {
            Encoded::Same | Encoded::Held => {}
            Encoded::Stored(_) | Encoded::Clear => {
                // Valid content supersedes an earlier refused one.
                let _ = std::fs::remove_file(self.draft_file(&path));
                let due = Instant::now() + self.cfg.new_file_grace;
                let mut st = lock(&self.state);
                st.errors.remove(&path);
                st.mem.insert(
                    path,
                    Mem::File {
                        data,
                        mode,
                        kind: MemKind::Deferred { due, base },
                        mtime: SystemTime::now(),
                    },
                );
            }
        }
        Ok(None)
    }

    /// Commit deferred new files whose grace has passed (all of them when `all`: at
    /// unmount, or when a caller waits for everything). Blocking; called periodically.
    /// A file still open by a program waits for its next close.
    pub fn commit_deferred(&self, all: bool) {
        let _gate = lock(&self.deferred);
        let now = Instant::now();
        let due: Vec<DeferredFile> = {
            let st = lock(&self.state);
            st.mem
                .iter()
                .filter_map(|(p, m)| match m {
                    Mem::File {
                        data,
                        mode,
                        kind: MemKind::Deferred { due, base },
                        ..
                    } if all || *due <= now => {
                        let open = st
                            .path_ino
                            .get(p)
                            .and_then(|i| st.open.get(i))
                            .is_some_and(|of| of.handles > 0 && !all);
                        (!open).then(|| (p.clone(), Zeroizing::new(data.to_vec()), *mode, *base))
                    }
                    _ => None,
                })
                .collect()
        };
        for (path, data, mode, base) in due {
            let res = self.commit_file(&path, data, mode, base);
            let mut st = lock(&self.state);
            if let Some(Mem::File { kind, .. }) = st.mem.get_mut(&path) {
                if matches!(kind, MemKind::Deferred { .. }) {
                    match &res {
                        // Committed (or equal to what is there): the tree shows it now.
                        Ok(_) => {
                            st.mem.remove(&path);
                        }
                        // A conflict or a stopped master: shown, reported, not retried.
                        Err(e) => {
                            *kind = MemKind::Pending;
                            st.errors.insert(path.clone(), e.message.clone());
                        }
                    }
                }
            }
        }
    }

    /// Wait until the change is on the remote, up to the push timeout. A lost conflict is
    /// EIO; an unreachable remote is success once the change is durable locally (offline
    /// work must not break editors, which fsync on every save).
    pub(super) fn wait_pushed(&self, ticket: &Arc<Mutex<Ticket>>) -> Result<()> {
        let deadline = Instant::now() + self.cfg.push_timeout;
        loop {
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(250));
            let res = lock(ticket).wait_pushed(step);
            match res {
                Ok(_) => return Ok(()),
                Err(crate::repo::Error::Conflict(c)) => {
                    tracing::error!("{c}");
                    return Err(Error::new(Kind::Io, c.to_string()));
                }
                Err(crate::repo::Error::Timeout) if Instant::now() < deadline => {
                    let offline = self
                        .master
                        .status()
                        .is_ok_and(|st| st.last_push_error.is_some() && st.pending_pushes > 0);
                    if offline {
                        tracing::warn!(
                            "remote unreachable: the change is committed locally, push pending"
                        );
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::warn!("push pending: {e}");
                    return Ok(());
                }
            }
        }
    }
}

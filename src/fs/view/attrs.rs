//! Attributes: what `getattr` reports for a path, and `setattr` (truncate, chmod,
//! utimens; chown only to the owner).

use super::*;

impl Fs {
    pub(super) fn mtime_for(&self, st: &mut State, path: &str, oid: Option<Oid>) -> SystemTime {
        match st.mtimes.get(path) {
            Some((seen, t)) if *seen == oid || seen.is_none() && oid.is_none() => *t,
            Some((None, t)) if oid.is_some() => {
                // An explicit time (utimens) sticks until the content changes.
                let t = *t;
                st.mtimes.insert(path.to_string(), (oid, t));
                t
            }
            Some(_) => {
                let now = SystemTime::now();
                st.mtimes.insert(path.to_string(), (oid, now));
                now
            }
            None => {
                st.mtimes.insert(path.to_string(), (oid, self.started));
                self.started
            }
        }
    }

    pub(super) fn attr_of(&self, path: &str, node: &Node) -> Result<Attr> {
        let (uid, gid) = (self.cfg.uid, self.cfg.gid);
        let base = |ino, size, kind, perm, mtime| Attr {
            ino,
            size,
            kind,
            perm,
            mtime,
            uid,
            gid,
            immutable: false,
        };
        match node {
            Node::Dir => {
                let mut st = lock(&self.state);
                let ino = Self::ino_locked(&mut st, path);
                // Private unless the user opted in to other users (`--allow-other`).
                let perm = if path.is_empty() && !self.cfg.allow_other {
                    0o700
                } else {
                    0o755
                };
                let t = match st.mem.get(path) {
                    Some(Mem::Dir(t)) => *t,
                    _ => self.mtime_for(&mut st, path, None),
                };
                Ok(base(ino, 4096, FileKind::Dir, perm, t))
            }
            Node::Blob { oid, mode } => {
                let ino = self.ino_of(path);
                // An open buffer is what the file is now.
                {
                    let mut st = lock(&self.state);
                    if let Some(of) = st.open.get(&ino) {
                        let (size, mode) = (of.data.len() as u64, of.mode);
                        let t = self.mtime_for(&mut st, path, None);
                        return Ok(base(ino, size, kind_for(mode), perm_for(mode, false), t));
                    }
                }
                let (size, ro) = if *mode == FileMode::Symlink {
                    (self.with_reader(|r| Ok(r.blob_size(*oid)?))? as u64, false)
                } else {
                    match self.decode(path, *oid) {
                        Ok(d) => (d.data.len() as u64, d.locked.is_some()),
                        // Still a file: it can be removed, renamed and overwritten.
                        Err(e) if matches!(e.kind, Kind::Io | Kind::TooBig) => {
                            (self.with_reader(|r| Ok(r.blob_size(*oid)?))? as u64, false)
                        }
                        Err(e) => return Err(e),
                    }
                };
                let mut st = lock(&self.state);
                let t = self.mtime_for(&mut st, path, Some(*oid));
                Ok(base(ino, size, kind_for(*mode), perm_for(*mode, ro), t))
            }
            Node::Mem => {
                let mut st = lock(&self.state);
                let ino = Self::ino_locked(&mut st, path);
                if let Some(of) = st.open.get(&ino) {
                    let (size, mode) = (of.data.len() as u64, of.mode);
                    let t = self.mtime_for(&mut st, path, None);
                    return Ok(base(ino, size, kind_for(mode), perm_for(mode, false), t));
                }
                match st.mem.get(path) {
                    Some(Mem::File {
                        data, mode, mtime, ..
                    }) => Ok(base(
                        ino,
                        data.len() as u64,
                        kind_for(*mode),
                        perm_for(*mode, false),
                        *mtime,
                    )),
                    _ => Err(not_found(path)),
                }
            }
            Node::Control(c) => crate::fs::control::attr(self, path, c),
        }
    }

    pub fn setattr(&self, ino: u64, fh: Option<u64>, set: SetAttr) -> Result<Attr> {
        let SetAttr {
            mode,
            uid,
            gid,
            size,
            mtime,
        } = set;
        let path = self.path_of(ino)?;
        if uid.is_some_and(|u| u != self.cfg.uid) || gid.is_some_and(|g| g != self.cfg.gid) {
            return Err(Error::new(
                Kind::Perm,
                "chown to another owner is not supported",
            ));
        }
        let node = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
        if let Node::Control(_) = node {
            return Err(Error::new(Kind::ReadOnly, format!("{path}: read-only")));
        }
        if let Some(size) = size {
            if size as usize > self.cfg.max_file {
                return Err(Error::new(Kind::TooBig, "file larger than the limit"));
            }
            let has_open = lock(&self.state).open.contains_key(&ino);
            if has_open {
                let mut st = lock(&self.state);
                if let Some(of) = st.open.get_mut(&ino) {
                    if of.unreadable.is_some() {
                        if size != 0 {
                            return Err(of.unreadable.clone().expect("checked is_some"));
                        }
                        of.unreadable = None;
                        of.dirty = true;
                    }
                    if of.data.len() != size as usize {
                        of.data.resize(size as usize, 0);
                        of.dirty = true;
                    }
                    if size == 0 {
                        of.poisoned = None;
                    }
                }
                if let Some(h) = fh.and_then(|f| st.handles.get_mut(&f)) {
                    h.wrote = true;
                }
            } else {
                match &node {
                    Node::Mem => {
                        let mut st = lock(&self.state);
                        if let Some(Mem::File { data, .. }) = st.mem.get_mut(&path) {
                            data.resize(size as usize, 0);
                        }
                    }
                    Node::Blob { oid, mode } => {
                        let mut data = match self.decode(&path, *oid) {
                            Ok(d) => Zeroizing::new(d.data.to_vec()),
                            // Truncating a file we cannot read to nothing replaces it.
                            Err(_) if size == 0 => Zeroizing::new(Vec::new()),
                            Err(e) => return Err(e),
                        };
                        data.resize(size as usize, 0);
                        let base = self.snapshot().commit;
                        self.commit_file(&path, data, *mode, base)?;
                    }
                    _ => return Err(Error::new(Kind::IsDir, format!("{path}: a directory"))),
                }
            }
        }
        if let Some(m) = mode {
            let exec = m & 0o111 != 0;
            let want = if exec {
                FileMode::Executable
            } else {
                FileMode::Regular
            };
            let mut commit = None;
            {
                let mut st = lock(&self.state);
                if let Some(of) = st.open.get_mut(&ino) {
                    if of.mode != FileMode::Symlink && of.mode != want {
                        of.mode = want;
                        of.dirty = true;
                    }
                } else if let Some(Mem::File { mode, .. }) = st.mem.get_mut(&path) {
                    if *mode != FileMode::Symlink {
                        *mode = want;
                    }
                } else if let Node::Blob { mode: cur, .. } = &node {
                    if *cur != FileMode::Symlink && *cur != want {
                        commit = Some(want);
                    }
                }
            }
            if let Some(want) = commit {
                let mut s = Session::new(self.snapshot().commit);
                s.set_executable(path.as_str(), want == FileMode::Executable);
                s.message(format!("valuesfs: chmod {path}"));
                self.master.submit(s)?.wait_committed()?;
            }
        }
        if let Some(t) = mtime {
            let mut st = lock(&self.state);
            st.mtimes.insert(path.clone(), (None, t));
            if let Some(Mem::File { mtime, .. }) = st.mem.get_mut(&path) {
                *mtime = t;
            }
        }
        self.getattr(ino)
    }
}

pub(super) fn kind_for(mode: FileMode) -> FileKind {
    match mode {
        FileMode::Symlink => FileKind::Symlink,
        _ => FileKind::File,
    }
}

pub(super) fn perm_for(mode: FileMode, ro: bool) -> u16 {
    match (mode, ro) {
        (FileMode::Symlink, _) => 0o777,
        (FileMode::Executable, false) => 0o755,
        (FileMode::Executable, true) => 0o555,
        (FileMode::Regular, false) => 0o644,
        (FileMode::Regular, true) => 0o444,
    }
}

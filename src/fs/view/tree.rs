//! Operations that change the tree: mkdir, unlink, rmdir, symlink, rename, and the
//! reaper of whiteouts. Those that touch tracked content commit one session each.

use super::*;

impl Fs {
    pub fn mkdir(&self, parent: u64, name: &str) -> Result<Attr> {
        check_name(name)?;
        let ppath = self.path_of(parent)?;
        if ppath == CONTROL
            || ppath.starts_with(".valuesfs/")
            || ppath.is_empty() && name == CONTROL
        {
            return Err(Error::new(Kind::ReadOnly, ".valuesfs is read-only"));
        }
        let path = join(&ppath, name);
        if self.resolve(&path)?.is_some() {
            return Err(Error::new(Kind::Exists, format!("{path}: exists")));
        }
        lock(&self.state)
            .mem
            .insert(path.clone(), Mem::Dir(SystemTime::now()));
        self.lookup(parent, name)
    }

    /// Blocking for tracked files (commits the deletion).
    pub fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        let _gate = lock(&self.deferred);
        let ppath = self.path_of(parent)?;
        let path = join(&ppath, name);
        let node = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
        let in_git = match &node {
            Node::Dir => return Err(Error::new(Kind::IsDir, format!("{path}: a directory"))),
            Node::Control(_) => return Err(Error::new(Kind::ReadOnly, ".valuesfs is read-only")),
            Node::Blob { .. } => true,
            Node::Mem => {
                let mut st = lock(&self.state);
                st.mem.remove(&path);
                drop(st);
                let _ = std::fs::remove_file(self.draft_file(&path));
                let snap = self.snapshot();
                matches!(
                    self.with_reader(|r| Ok(r.stat(&snap, &path)?))?,
                    Some((EntryKind::File(_), _))
                )
            }
        };
        {
            let mut st = lock(&self.state);
            if let Some(ino) = st.path_ino.remove(&path) {
                st.ino_path.remove(&ino);
                if let Some(of) = st.open.get_mut(&ino) {
                    of.unlinked = true;
                }
            }
            st.mtimes.remove(&path);
        }
        if in_git {
            // The deletion is committed after the grace period, so an unlink followed by
            // a create of the same name (git checkout, install) is one change.
            let base = self.snapshot().commit;
            lock(&self.state)
                .mem
                .insert(path.clone(), Mem::Whiteout(Instant::now(), base));
        }
        Ok(())
    }

    /// A directory emptied by a local unlink or rename stays until it is removed (git
    /// keeps no empty directories, POSIX does).
    pub(super) fn keep_dir(&self, dir: &str) -> Result<()> {
        let mut d = dir;
        while !d.is_empty() && self.resolve(d)?.is_none() {
            lock(&self.state)
                .mem
                .insert(d.to_string(), Mem::Dir(SystemTime::now()));
            d = parent_of(d);
        }
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        let ppath = self.path_of(parent)?;
        let path = join(&ppath, name);
        match self.resolve(&path)?.ok_or_else(|| not_found(&path))? {
            Node::Dir => {}
            Node::Control(_) => return Err(Error::new(Kind::ReadOnly, ".valuesfs is read-only")),
            _ => return Err(Error::new(Kind::NotDir, format!("{path}: not a directory"))),
        }
        let ino = self.ino_of(&path);
        if !self.readdir(ino)?.is_empty() {
            return Err(Error::new(Kind::NotEmpty, format!("{path}: not empty")));
        }
        // Files removed below it are deleted now, in one commit.
        let prefix = format!("{path}/");
        self.reap_where(|p, _| p.starts_with(&prefix))?;
        let mut st = lock(&self.state);
        st.mem.remove(&path);
        st.mem
            .retain(|p, m| !p.starts_with(&prefix) || matches!(m, Mem::Whiteout(..)));
        if let Some(ino) = st.path_ino.remove(&path) {
            st.ino_path.remove(&ino);
        }
        drop(st);
        // The parent may have existed only through this directory.
        self.keep_dir(parent_of(&path))
    }

    /// Blocking: commits the link.
    pub fn symlink(&self, parent: u64, name: &str, target: &[u8]) -> Result<Attr> {
        check_name(name)?;
        let ppath = self.path_of(parent)?;
        if ppath == CONTROL || ppath.starts_with(".valuesfs/") {
            return Err(Error::new(Kind::ReadOnly, ".valuesfs is read-only"));
        }
        let path = join(&ppath, name);
        if self.resolve(&path)?.is_some() {
            return Err(Error::new(Kind::Exists, format!("{path}: exists")));
        }
        let mut s = Session::new(self.snapshot().commit);
        s.symlink(path.as_str(), target.to_vec());
        s.message(format!("valuesfs: symlink {path}"));
        self.master.submit(s)?.wait_committed()?;
        lock(&self.state).mem.remove(&path);
        self.lookup(parent, name)
    }

    /// Blocking: a rename that involves tracked content commits one session.
    pub fn rename(
        &self,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        noreplace: bool,
    ) -> Result<()> {
        check_name(newname)?;
        let _gate = lock(&self.deferred);
        let from = join(&self.path_of(parent)?, name);
        let to = join(&self.path_of(newparent)?, newname);
        for p in [&from, &to] {
            if p == CONTROL || p.starts_with(".valuesfs/") {
                return Err(Error::new(Kind::ReadOnly, ".valuesfs is read-only"));
            }
        }
        if from == to {
            return Ok(());
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(Error::new(
                Kind::Invalid,
                "cannot move a directory into itself",
            ));
        }
        let node = self.resolve(&from)?.ok_or_else(|| not_found(&from))?;
        let target = self.resolve(&to)?;
        if noreplace && target.is_some() {
            return Err(Error::new(Kind::Exists, format!("{to}: exists")));
        }
        match (&node, &target) {
            (Node::Dir, Some(Node::Blob { .. } | Node::Mem)) => {
                return Err(Error::new(Kind::NotDir, format!("{to}: not a directory")))
            }
            (Node::Blob { .. } | Node::Mem, Some(Node::Dir)) => {
                return Err(Error::new(Kind::IsDir, format!("{to}: a directory")))
            }
            (Node::Dir, Some(Node::Dir)) => {
                let ino = self.ino_of(&to);
                if !self.readdir(ino)?.is_empty() {
                    return Err(Error::new(Kind::NotEmpty, format!("{to}: not empty")));
                }
            }
            _ => {}
        }
        let to_scratch = self.is_scratch(&to);
        let snap = self.snapshot();
        match node {
            Node::Mem => {
                let from_ino = self.ino_of(&from);
                let (data, mode) = {
                    let st = lock(&self.state);
                    let open = st.open.get(&from_ino).map(|of| (of.data.to_vec(), of.mode));
                    match (open, st.mem.get(&from)) {
                        (Some((d, m)), _) => (Zeroizing::new(d), m),
                        (None, Some(Mem::File { data, mode, .. })) => {
                            (Zeroizing::new(data.to_vec()), *mode)
                        }
                        _ => return Err(not_found(&from)),
                    }
                };
                if to_scratch {
                    let mut st = lock(&self.state);
                    if let Some(m) = st.mem.remove(&from) {
                        st.mem.insert(to.clone(), m);
                    }
                } else {
                    // Write-temporary-then-rename: exactly one session of the target.
                    let t = self.commit_file(&to, data, mode, snap.commit)?;
                    let mut st = lock(&self.state);
                    st.mem.remove(&from);
                    st.mem.remove(&to);
                    if let Some(of) = st.open.get_mut(&from_ino) {
                        of.scratch = false;
                        of.dirty = false;
                        if let Some(t) = &t {
                            of.base = super::commit::committed_at(t);
                        }
                    }
                }
                let _ = std::fs::remove_file(self.draft_file(&from));
            }
            Node::Blob { oid, mode } if to_scratch => {
                // A tracked file moved aside (an editor's backup): hide it, keep it in
                // memory, and commit its deletion only if nothing replaces it.
                let content = match self.decode(&from, oid) {
                    Ok(d) if mode != FileMode::Symlink => Zeroizing::new(d.data.to_vec()),
                    // Links, and files we cannot decode: their stored bytes (ciphertext).
                    _ if self.with_reader(|r| Ok(r.blob_size(oid)?))? <= self.cfg.max_file => {
                        Zeroizing::new(self.with_reader(|r| Ok(read_blob(r, oid)?))?)
                    }
                    _ => Zeroizing::new(Vec::new()),
                };
                let mut st = lock(&self.state);
                st.mem.insert(
                    to.clone(),
                    Mem::File {
                        data: content,
                        mode,
                        kind: MemKind::Scratch,
                        mtime: SystemTime::now(),
                    },
                );
                st.mem
                    .insert(from.clone(), Mem::Whiteout(Instant::now(), snap.commit));
            }
            Node::Blob { .. } | Node::Dir => {
                let in_git = self.with_reader(|r| Ok(r.stat(&snap, &from)?))?.is_some();
                if in_git {
                    let mut s = Session::new(snap.commit);
                    s.rename(from.as_str(), to.as_str());
                    s.message(format!("valuesfs: rename {from} -> {to}"));
                    self.master.submit(s)?.wait_committed()?;
                }
                let mut st = lock(&self.state);
                // Move overlay entries (empty dirs, scratch files) below a directory.
                let prefix = format!("{from}/");
                let moved: Vec<String> = st
                    .mem
                    .keys()
                    .filter(|p| p.as_str() == from || p.starts_with(&prefix))
                    .cloned()
                    .collect();
                for p in moved {
                    if let Some(m) = st.mem.remove(&p) {
                        st.mem.insert(format!("{to}{}", &p[from.len()..]), m);
                    }
                }
                st.mem.remove(&to).filter(|m| !matches!(m, Mem::Dir(_)));
            }
            Node::Control(_) => return Err(Error::new(Kind::ReadOnly, ".valuesfs is read-only")),
        }
        let head = self.snapshot().commit;
        let mut st = lock(&self.state);
        if matches!(st.mem.get(&to), Some(Mem::Whiteout(..))) {
            st.mem.remove(&to);
        }
        Self::move_inodes(&mut st, &from, &to);
        // Buffers open under the new name now build on the head that has the rename.
        let below = format!("{to}/");
        for of in st.open.values_mut() {
            if of.path == to || of.path.starts_with(&below) {
                of.base = head;
            }
        }
        drop(st);
        self.keep_dir(parent_of(&from))?;
        Ok(())
    }

    /// Commit deletions of tracked files that were removed and not recreated within the
    /// grace period (all of them when `all`). Blocking; called periodically by the mount.
    pub fn reap_whiteouts(&self, all: bool) {
        let grace = self.cfg.whiteout_grace;
        let _ = self.reap_where(|_, t| all || t.elapsed() >= grace);
    }

    /// Commit the deletions of the whiteouts `pick` selects, one session per base.
    pub(super) fn reap_where(&self, pick: impl Fn(&str, Instant) -> bool) -> Result<()> {
        let mut by_base: BTreeMap<Option<Oid>, Vec<String>> = BTreeMap::new();
        {
            let st = lock(&self.state);
            for (p, m) in &st.mem {
                if let Mem::Whiteout(t, base) = m {
                    if pick(p, *t) {
                        by_base.entry(*base).or_default().push(p.clone());
                    }
                }
            }
        }
        let mut failed = None;
        for (base, paths) in by_base {
            let mut s = Session::new(base);
            for p in &paths {
                s.delete(p.as_str());
            }
            s.message(match paths.as_slice() {
                [one] => format!("valuesfs: delete {one}"),
                many => format!("valuesfs: delete {} files", many.len()),
            });
            let res = self.master.submit(s).and_then(|mut t| t.wait_committed());
            let mut st = lock(&self.state);
            for p in &paths {
                match &res {
                    Ok(_) => {
                        if matches!(st.mem.get(p), Some(Mem::Whiteout(..))) {
                            st.mem.remove(p);
                        }
                    }
                    Err(e) => {
                        st.errors.insert(p.clone(), e.to_string());
                    }
                }
            }
            drop(st);
            match res {
                Ok(_) => {
                    for p in &paths {
                        self.keep_dir(parent_of(p))?;
                    }
                }
                Err(e) => failed = Some(Error::from(e)),
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

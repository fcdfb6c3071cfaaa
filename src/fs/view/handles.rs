//! Open files and handles: open, create, read, write, and the flush, fsync and release
//! that turn a written buffer into a session (through `commit`).
//!
//! Lock order as in the parent module; blocking methods run on the adapter's workers.

use super::*;

impl Fs {
    pub fn open(&self, ino: u64, flags: i32) -> Result<OpenReply> {
        let path = self.path_of(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let write = acc != libc::O_RDONLY;
        let trunc = flags & libc::O_TRUNC != 0 && write;
        let node = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
        match &node {
            Node::Dir => return Err(Error::new(Kind::IsDir, format!("{path}: a directory"))),
            Node::Control(c) => {
                if write {
                    return Err(Error::new(Kind::ReadOnly, format!("{path}: read-only")));
                }
                let (content, caching) = crate::fs::control::content(self, &path, c)?;
                let direct = caching == crate::fs::control::Caching::Direct;
                let keep = caching == crate::fs::control::Caching::Keep;
                let mut st = lock(&self.state);
                let fh = Self::new_handle(&mut st, Handle::reader(ino, content));
                return Ok(OpenReply {
                    fh,
                    keep_cache: keep,
                    noflush: true,
                    direct_io: direct,
                });
            }
            _ => {}
        }
        let snap = self.snapshot();
        // Current content of the file, unless a buffer already exists.
        let existing = lock(&self.state).open.contains_key(&ino);
        let mut decoded = None;
        let mut mem_data = None;
        let mut unreadable = None;
        let mut mode = FileMode::Regular;
        match &node {
            Node::Blob { oid, mode: m } => {
                mode = *m;
                if *m != FileMode::Symlink && (!existing || !write) {
                    match self.decode(&path, *oid) {
                        Ok(d) => {
                            if write && d.locked.is_some() {
                                return Err(Error::new(
                                    Kind::ReadOnly,
                                    format!("{path}: {}", d.locked.clone().unwrap_or_default()),
                                ));
                            }
                            decoded = Some(d);
                        }
                        // A file we cannot read can still be overwritten whole.
                        Err(e) if write => unreadable = (!trunc).then_some(e),
                        Err(e) => return Err(e),
                    }
                }
            }
            Node::Mem => {
                let st = lock(&self.state);
                if let Some(Mem::File { data, mode: m, .. }) = st.mem.get(&path) {
                    mem_data = Some(data.to_vec());
                    mode = *m;
                }
            }
            _ => {}
        }
        let scratch = self.is_scratch(&path);
        let mut st = lock(&self.state);
        let mut keep_cache = false;
        // A reader joins a writer's buffer (it sees unflushed writes), unless the buffer
        // is poisoned: nothing of it will be committed, so the reader sees the committed
        // version (close() returns before the writer's release is handled).
        let fh = if write || st.open.get(&ino).is_some_and(|of| of.poisoned.is_none()) {
            let of = st.open.entry(ino).or_insert_with(|| OpenFile {
                path: path.clone(),
                base: snap.commit,
                data: Zeroizing::new(
                    mem_data
                        .clone()
                        .or_else(|| decoded.as_ref().map(|d| d.data.to_vec()))
                        .unwrap_or_default(),
                ),
                mode,
                dirty: false,
                handles: 0,
                scratch,
                unlinked: false,
                last: None,
                committing: Arc::new(Mutex::new(())),
                failed: None,
                unreadable: unreadable.clone(),
                poisoned: None,
            });
            of.handles += 1;
            if trunc {
                if !of.data.is_empty() {
                    of.data.clear();
                    of.dirty = true;
                }
                of.unreadable = None;
                of.poisoned = None;
            }
            Self::new_handle(
                &mut st,
                Handle {
                    ino,
                    counted: true,
                    write,
                    wrote: false,
                    content: None,
                    ticket: None,
                },
            )
        } else {
            let content = match (decoded, mem_data) {
                (Some(d), _) => d,
                (None, m) => Arc::new(Decoded {
                    data: Zeroizing::new(m.unwrap_or_default()),
                    sops: None,
                    locked: None,
                }),
            };
            if let Node::Blob { oid, .. } = node {
                keep_cache = st.cached.insert(ino, oid) == Some(oid);
            }
            Self::new_handle(&mut st, Handle::reader(ino, content))
        };
        if write {
            st.cached.remove(&ino);
        }
        Ok(OpenReply {
            fh,
            keep_cache,
            noflush: !write,
            direct_io: false,
        })
    }

    pub fn create(
        &self,
        parent: u64,
        name: &str,
        flags: i32,
        mode: u32,
    ) -> Result<(Attr, OpenReply)> {
        check_name(name)?;
        let ppath = self.path_of(parent)?;
        if ppath == CONTROL || ppath.starts_with(".valuesfs/") {
            return Err(Error::new(Kind::ReadOnly, ".valuesfs is read-only"));
        }
        if ppath.is_empty() && name == CONTROL {
            return Err(Error::new(Kind::Perm, ".valuesfs is reserved"));
        }
        let path = join(&ppath, name);
        if self.resolve(&path)?.is_some() {
            if flags & libc::O_EXCL != 0 {
                return Err(Error::new(Kind::Exists, format!("{path}: exists")));
            }
            let ino = self.ino_of(&path);
            let reply = self.open(ino, flags | libc::O_TRUNC)?;
            return Ok((self.getattr(ino)?, reply));
        }
        let fmode = if mode & 0o111 != 0 {
            FileMode::Executable
        } else {
            FileMode::Regular
        };
        let scratch = self.is_scratch(&path);
        let snap = self.snapshot();
        let mut st = lock(&self.state);
        st.mem.insert(
            path.clone(),
            Mem::File {
                data: Zeroizing::new(Vec::new()),
                mode: fmode,
                kind: if scratch {
                    MemKind::Scratch
                } else {
                    MemKind::Pending
                },
                mtime: SystemTime::now(),
            },
        );
        let ino = Self::ino_locked(&mut st, &path);
        st.mtimes.remove(&path);
        st.open.insert(
            ino,
            OpenFile {
                path: path.clone(),
                base: snap.commit,
                data: Zeroizing::new(Vec::new()),
                mode: fmode,
                // A new file is committed on release even if nothing is written.
                dirty: !scratch,
                handles: 1,
                scratch,
                unlinked: false,
                last: None,
                committing: Arc::new(Mutex::new(())),
                failed: None,
                unreadable: None,
                poisoned: None,
            },
        );
        let fh = Self::new_handle(
            &mut st,
            Handle {
                ino,
                counted: true,
                write: true,
                wrote: false,
                content: None,
                ticket: None,
            },
        );
        drop(st);
        let attr = self.getattr(ino)?;
        Ok((
            attr,
            OpenReply {
                fh,
                keep_cache: false,
                noflush: false,
                direct_io: false,
            },
        ))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let st = lock(&self.state);
        let h = st
            .handles
            .get(&fh)
            .ok_or_else(|| Error::new(Kind::BadHandle, "unknown handle"))?;
        let slice = |data: &[u8]| -> Vec<u8> {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            data[start..end].to_vec()
        };
        if let Some(of) = st.open.get(&h.ino) {
            if h.write || h.content.is_none() {
                if let Some(e) = &of.unreadable {
                    return Err(e.clone());
                }
                return Ok(slice(&of.data));
            }
        }
        match &h.content {
            Some(c) => Ok(slice(&c.data)),
            None => Ok(Vec::new()),
        }
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8], append: bool) -> Result<u32> {
        let mut st = lock(&self.state);
        let max = self.cfg.max_file;
        let ino = {
            let h = st
                .handles
                .get_mut(&fh)
                .ok_or_else(|| Error::new(Kind::BadHandle, "unknown handle"))?;
            if !h.write {
                return Err(Error::new(Kind::BadHandle, "handle not open for writing"));
            }
            h.wrote = true;
            h.ino
        };
        let of = st
            .open
            .get_mut(&ino)
            .ok_or_else(|| Error::new(Kind::BadHandle, "no open file"))?;
        if let Some(e) = &of.unreadable {
            return Err(e.clone());
        }
        let off = if append {
            of.data.len()
        } else {
            offset as usize
        };
        let Some(end) = off.checked_add(data.len()).filter(|e| *e <= max) else {
            let e = Error::new(
                Kind::TooBig,
                format!(
                    "{}: a write went past the {max} byte limit (--max-file-mib); nothing of \
                     this write is committed",
                    of.path
                ),
            );
            of.poisoned = Some(e.clone());
            return Err(e);
        };
        if of.data.len() < end {
            of.data.resize(end, 0);
        }
        of.data[off..end].copy_from_slice(data);
        of.dirty = true;
        Ok(data.len() as u32)
    }

    /// Blocking: the first flush after this handle wrote commits the file.
    pub fn flush(&self, fh: u64) -> Result<()> {
        let ino = {
            let mut st = lock(&self.state);
            let Some(h) = st.handles.get_mut(&fh) else {
                return Err(Error::new(Kind::BadHandle, "unknown handle"));
            };
            if !h.write {
                return Ok(());
            }
            if !h.wrote {
                // Another descriptor's flush may be committing what this one wrote.
                let ino = h.ino;
                drop(st);
                return self.settle(ino);
            }
            h.wrote = false;
            h.ino
        };
        let t = self.commit_open(ino, self.cfg.push_sync)?;
        if let Some(t) = &t {
            if let Some(h) = lock(&self.state).handles.get_mut(&fh) {
                h.ticket = Some(t.clone());
            }
            if self.cfg.push_sync {
                self.wait_pushed(t)?;
            }
        }
        Ok(())
    }

    /// Blocking: commit what is pending, then wait for the push (bounded).
    pub fn fsync(&self, fh: u64) -> Result<()> {
        let (ino, scratch) = {
            let st = lock(&self.state);
            let h = st
                .handles
                .get(&fh)
                .ok_or_else(|| Error::new(Kind::BadHandle, "unknown handle"))?;
            let scratch = st.open.get(&h.ino).is_none_or(|of| of.scratch);
            (h.ino, scratch)
        };
        if scratch {
            // Scratch files live in memory: nothing to wait for.
            return Ok(());
        }
        let t = self.commit_open(ino, true)?;
        let ticket = t.or_else(|| {
            let st = lock(&self.state);
            st.handles
                .get(&fh)
                .and_then(|h| h.ticket.clone())
                .or_else(|| st.open.get(&ino).and_then(|of| of.last.clone()))
        });
        if let Some(h) = lock(&self.state).handles.get_mut(&fh) {
            h.wrote = false;
        }
        match ticket {
            Some(t) => self.wait_pushed(&t),
            None => Ok(()),
        }
    }

    /// Release a handle that has nothing to commit (a read-only open of a file nobody
    /// writes): done at once, without a worker. Returns false if `release` is needed.
    pub fn release_fast(&self, fh: u64) -> bool {
        let mut st = lock(&self.state);
        match st.handles.get(&fh) {
            Some(h) if !h.counted => {
                st.handles.remove(&fh);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Blocking: the last close of a file commits what no flush did.
    pub fn release(&self, fh: u64) -> Result<()> {
        let (ino, last) = {
            let mut st = lock(&self.state);
            let Some(h) = st.handles.remove(&fh) else {
                return Ok(());
            };
            let last = match st.open.get_mut(&h.ino).filter(|_| h.counted) {
                Some(of) => {
                    of.handles = of.handles.saturating_sub(1);
                    of.handles == 0
                }
                None => false,
            };
            (h.ino, last)
        };
        if !last {
            return Ok(());
        }
        let res = self.commit_open(ino, self.cfg.push_sync);
        let mut st = lock(&self.state);
        if st.open.get(&ino).is_some_and(|of| of.handles == 0) {
            if let Some(of) = st.open.remove(&ino) {
                // A new file whose writes failed leaves nothing behind.
                if of.poisoned.is_some()
                    && matches!(
                        st.mem.get(&of.path),
                        Some(Mem::File {
                            kind: MemKind::Pending,
                            ..
                        })
                    )
                {
                    st.mem.remove(&of.path);
                }
            }
        }
        res.map(|_| ())
    }
}

//! Sessions into commits: each session is merged onto the head in memory; a batch ends
//! with one journal record (objects and head, synced once), then the snapshot and the status are
//! published and the acks sent, and a push is requested.

use super::*;

impl State {
    pub(super) fn submit(&mut self, s: Session, committed: Reply<Oid>, pushed: Reply<Oid>) {
        crate::metrics::inc(&crate::metrics::global().sessions);
        match self.apply(&s) {
            Ok(commit) => self.batch.push(Pending {
                commit,
                committed,
                pushed,
            }),
            Err(e) => {
                if matches!(e, Error::Conflict(_)) {
                    self.publish_status(false);
                }
                let _ = committed.send(Err(e.clone()));
                let _ = pushed.send(Err(e));
            }
        }
    }

    /// Applies a session onto the in-memory head; returns the new head.
    pub(super) fn apply(&mut self, s: &Session) -> Result<Oid> {
        if let Some(m) = &mut self.mem {
            m.dirty = true;
        }
        let base_commit = match s.base {
            Some(b) => Some(
                self.repo
                    .find_commit(b)
                    .map_err(|_| Error::UnknownBase(b))?,
            ),
            None => None,
        };
        let base_tree = match &base_commit {
            Some(c) => Some(c.tree()?),
            None => None,
        };
        let ov = s.overlay(&self.repo, base_tree.as_ref())?;
        let head_commit = match self.head {
            Some(h) => Some(self.repo.find_commit(h)?),
            None => None,
        };
        let head_tree = match &head_commit {
            Some(c) => Some(c.tree()?),
            None => None,
        };
        let effective = if s.base == self.head {
            Ok(ov.clone())
        } else {
            merge_overlay(
                &self.repo,
                self.cfg.merger.as_ref(),
                base_tree.as_ref(),
                head_tree.as_ref(),
                &ov,
            )?
        };
        let tree = match effective {
            Ok(eff) => match apply_overlay(&self.repo, head_tree.as_ref(), &eff)? {
                Ok(t) => Ok(t),
                Err(clash) => Err(PathConflict {
                    path: clash.0,
                    detail: ConflictDetail::new("a file and a directory at the same path"),
                }),
            },
            Err(c) => Err(c),
        };
        let paths: Vec<&str> = ov.keys().map(String::as_str).collect();
        let message = s
            .message
            .clone()
            .unwrap_or_else(|| Session::default_message(&paths));
        let message = helping::with_trailer(&message, &helping::new_session_id());
        let author = self.signature(s.author.as_ref())?;
        let committer = self.signature(None)?;
        let tree = match tree {
            Ok(t) => t,
            Err(conflict) => {
                // Keep the session as it was meant: its base plus its changes.
                let own = match apply_overlay(&self.repo, base_tree.as_ref(), &ov)? {
                    Ok(t) => t,
                    Err(clash) => return Err(Error::InvalidPath(clash.0)),
                };
                let own = self.repo.find_tree(own)?;
                let parents: Vec<&git2::Commit<'_>> = base_commit.iter().collect();
                let c = self
                    .repo
                    .commit(None, &author, &committer, &message, &own, &parents)?;
                let info = park(
                    &self.repo,
                    &mut self.mem,
                    &self.conflicts_dir,
                    &mut self.conflicts,
                    c,
                    conflict,
                    "submit",
                )?;
                return Err(Error::Conflict(Box::new(info)));
            }
        };
        let head_tree_id = head_tree.as_ref().map_or(self.empty_tree, |t| t.id());
        if tree == head_tree_id {
            // Nothing changes: acknowledge with the current head, no empty commit.
            return self
                .head
                .ok_or(Error::NotFound("empty session on empty branch".into()));
        }
        let tree = self.repo.find_tree(tree)?;
        let parents: Vec<&git2::Commit<'_>> = head_commit.iter().collect();
        let c = self
            .repo
            .commit(None, &author, &committer, &message, &tree, &parents)?;
        crate::metrics::inc(&crate::metrics::global().commits);
        self.head = Some(c);
        self.unpushed.push(c);
        self.unpushed_set.insert(c);
        Ok(c)
    }

    /// Makes the in-memory head durable and published; acknowledges the batch.
    pub(super) fn flush(&mut self, cause: HeadChangeCause) {
        if self.head != self.disk_head {
            if let Err(e) = self.commit_head() {
                tracing::error!("writing {}: {e}", self.local_ref);
                self.head = self.disk_head;
                let keep = self.durable_unpushed;
                for c in self.unpushed.drain(keep..) {
                    self.unpushed_set.remove(&c);
                }
                for p in self.batch.drain(..) {
                    let _ = p.committed.send(Err(e.clone()));
                    let _ = p.pushed.send(Err(e.clone()));
                }
                return;
            }
            self.disk_head = self.head;
            self.durable_unpushed = self.unpushed.len();
            self.publish(cause);
            self.request_push();
        }
        // Published before the acks: whoever was told "committed" sees it in the status.
        self.publish_status(false);
        for p in std::mem::take(&mut self.batch) {
            let _ = p.committed.send(Ok(p.commit));
            self.wait_pushed(p.commit, p.pushed);
        }
        self.maybe_merge_packs();
    }

    /// Every few batches, lets the pack maintenance go on (it merges on its own thread)
    /// and reopens the repository after a merge so libgit2 forgets the merged packs.
    pub(super) fn maybe_merge_packs(&mut self) {
        self.batches_since_pack_check += 1;
        if self.batches_since_pack_check < 4 {
            return;
        }
        self.batches_since_pack_check = 0;
        self.tend_packs();
    }

    /// Collects a finished merge (then reopens), deletes old merged packs, starts a merge.
    pub(super) fn tend_packs(&mut self) {
        if self.packs.poll() {
            // The mempack is empty here (flush persisted it); drop it before the odb.
            self.mem = None;
            match Repository::open_bare(&self.repo_path) {
                Ok(r) => self.repo = r,
                Err(e) => tracing::error!("reopening after pack merge: {e}"),
            }
            match MemObjects::new(&self.repo) {
                Ok(m) => self.mem = Some(m),
                Err(e) => tracing::warn!("no in-memory odb, writing loose objects: {e}"),
            }
            // A merge reads every object it merges; glibc keeps what was freed unless asked.
            // SAFETY: malloc_trim only releases free heap pages.
            #[cfg(target_env = "gnu")]
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }

    /// Hands the sync thread the head to push, with the remote head it builds on (the
    /// sync thread drops targets built on a remote head it no longer sees).
    pub(super) fn request_push(&mut self) {
        if self.refused.is_some() {
            // Anything pushed now would build on a head we refused: hold it.
            return;
        }
        if let Some(h) = self.head {
            if self.head != self.remote {
                let target = self.push_target(h);
                self.to_sync(SyncCmd::Push {
                    target,
                    base: self.remote_known.then_some(self.remote),
                    own: h,
                });
            }
        }
    }

    pub(super) fn set_unpushed(&mut self, list: Vec<Oid>) {
        self.unpushed_set = list.iter().copied().collect();
        self.unpushed = list;
        self.durable_unpushed = self.unpushed.len();
    }

    pub(super) fn publish(&mut self, cause: HeadChangeCause) {
        let tree = match self.head.map(|h| self.repo.find_commit(h)) {
            Some(Ok(c)) => c.tree_id(),
            Some(Err(e)) => {
                tracing::error!("publishing: {e}");
                return;
            }
            None => self.empty_tree,
        };
        self.seq += 1;
        let new = Arc::new(Snapshot {
            commit: self.head,
            tree,
            seq: self.seq,
        });
        let old = {
            let mut g = match self.cell.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            std::mem::replace(&mut *g, new.clone())
        };
        if self.subscribers.is_empty() {
            return;
        }
        let paths = match changed_paths(&self.repo, old.tree, new.tree) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("diffing for subscribers: {e}");
                Vec::new()
            }
        };
        let ev = HeadChange {
            old,
            new,
            paths,
            cause,
        };
        self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
    }

    /// Registers a "pushed" waiter for `commit` (answered at once if already pushed).
    pub(super) fn wait_pushed(&mut self, commit: Oid, reply: Reply<Oid>) {
        if let (true, Some(r)) = (self.remote_known, self.remote) {
            if !self.unpushed_set.contains(&commit) {
                let _ = reply.send(Ok(r));
                return;
            }
        }
        self.pushed_waiters.push((commit, reply));
    }
}

//! The master's side of the remote: fetched heads are checked and merged, our unpushed
//! commits are replayed onto a moved remote (conflicts parked), push waiters resolved.

use super::*;

impl State {
    pub(super) fn on_sync(&mut self, ev: SyncEvent) {
        match ev {
            SyncEvent::Fetched {
                head,
                inboxes,
                result,
                tokens,
            } => {
                let res = match result {
                    Ok(()) => {
                        // A random order: under the carry limit, no inbox always comes last.
                        let mut inboxes = inboxes;
                        rand::seq::SliceRandom::shuffle(&mut inboxes[..], &mut rand::thread_rng());
                        self.inboxes = inboxes;
                        self.last_fetch = Some(now_rfc3339());
                        self.last_fetch_error = None;
                        self.integrate(head)
                    }
                    Err(e) => {
                        self.last_fetch_error = Some(e.clone());
                        Err(Error::Remote(e))
                    }
                };
                if let Err(e) = &res {
                    tracing::error!("merging remote changes: {e}");
                }
                self.publish_status(false);
                for t in tokens {
                    if let Some(w) = self.fetch_waiters.remove(&t) {
                        let _ = w.send(res.clone());
                    }
                }
            }
            SyncEvent::Pushed { head } => {
                self.last_push = Some(now_rfc3339());
                self.last_push_error = None;
                if let Err(e) = self.integrate(Some(head)) {
                    tracing::error!("after push: {e}");
                }
            }
            SyncEvent::PushFailed { error } => {
                self.last_push_error = Some(error);
            }
        }
    }

    /// The remote head is `r`: resolve waiters, fast-forward, or replay our unpushed
    /// commits onto it, then ask for the next push.
    ///
    /// Hot path (our own push landed, nothing else changed) is bookkeeping on the
    /// in-memory `unpushed` list only: no history walks, which get slow in libgit2 when
    /// thousands of commits share one timestamp.
    pub(super) fn integrate(&mut self, r: Option<Oid>) -> Result<()> {
        if let (Some(bad), Some(r)) = (&self.refused, r) {
            if bad.head == r.to_string() {
                return Err(Error::Refused(Box::new(bad.clone())));
            }
        }
        let was_known = self.remote_known;
        let old = self.remote;
        self.remote = r;
        self.remote_known = true;
        let Some(r) = r else {
            // Empty remote: all local history is ours to push.
            if !was_known || old.is_some() {
                let all = match self.head {
                    Some(h) => self.history(h, None)?,
                    None => Vec::new(),
                };
                self.set_unpushed(all);
            }
            self.request_push();
            return Ok(());
        };
        if was_known && old == Some(r) {
            self.request_push(); // nothing new; the sync thread may have dropped a target
            return Ok(());
        }
        if was_known {
            if let Some(pos) = self.unpushed.iter().position(|c| *c == r) {
                // Our own commits up to `pos` landed.
                let rest = self.unpushed.split_off(pos + 1);
                self.set_unpushed(rest);
                self.resolve_pushed(r);
                self.request_push();
                return Ok(());
            }
        }
        // The remote moved by someone else (or first contact): the slow path. Its new
        // objects are untrusted until they pass the fsck.
        match fsck_head(&self.repo, r, &mut self.verified) {
            Ok(None) => {
                if self.refused.take().is_some() {
                    tracing::info!("remote head {r} passes the checks: pushes resume");
                }
            }
            Ok(Some(bad)) => {
                tracing::error!("{bad}");
                self.remote = old;
                self.remote_known = was_known;
                self.refused = Some(bad.clone());
                return Err(Error::Refused(Box::new(bad)));
            }
            Err(e) => {
                self.remote = old;
                self.remote_known = was_known;
                return Err(e);
            }
        }
        let head = match self.head {
            Some(h) if h != r => h,
            _ => {
                self.head = Some(r);
                self.flush(HeadChangeCause::Remote);
                self.set_unpushed(Vec::new());
                self.resolve_pushed(r);
                return Ok(());
            }
        };
        if self.repo.graph_descendant_of(r, head)? {
            self.head = Some(r);
            self.flush(HeadChangeCause::Remote);
            self.set_unpushed(Vec::new());
            self.resolve_pushed(r);
            return Ok(());
        }
        let ours = self.history(head, Some(r))?;
        if self.repo.graph_descendant_of(head, r)? {
            self.set_unpushed(ours);
            self.resolve_pushed(r);
            self.request_push();
            return Ok(());
        }
        // Diverged: the remote stands; replay ours on top, oldest first. Sessions another
        // master already landed for us (see `helping`) are done, not replayed.
        let landed = self.session_ids(r, head, usize::MAX)?.unwrap_or_default();
        let mut moved: HashMap<Oid, std::result::Result<Oid, ConflictInfo>> = HashMap::new();
        let mut new_head = r;
        let mut replayed = Vec::new();
        for c in ours {
            if !landed.is_empty() {
                let msg = self.repo.find_commit(c)?;
                if helping::session_id(msg.message_raw_bytes())
                    .is_some_and(|id| landed.contains(&id))
                {
                    // Its waiter is told "pushed" below: `r` is not unpushed.
                    moved.insert(c, Ok(r));
                    continue;
                }
            }
            match self.replay(c, new_head)? {
                Ok(n) => {
                    if n != new_head {
                        replayed.push(n);
                    }
                    new_head = n;
                    moved.insert(c, Ok(n));
                }
                Err(info) => {
                    moved.insert(c, Err(info));
                }
            }
        }
        self.head = Some(new_head);
        self.set_unpushed(replayed);
        self.flush(HeadChangeCause::Remote);
        if self.disk_head != Some(new_head) {
            // The old head is still on disk: forget our bookkeeping so the next fetch
            // recomputes it from history.
            self.remote_known = false;
            return Err(Error::Io("could not write the replayed head".into()));
        }
        let waiters = std::mem::take(&mut self.pushed_waiters);
        for (oid, w) in waiters {
            match moved.get(&oid) {
                Some(Ok(n)) => self.pushed_waiters.push((*n, w)),
                Some(Err(info)) => {
                    self.publish_status(false);
                    let _ = w.send(Err(Error::Conflict(Box::new(info.clone()))));
                }
                None => self.pushed_waiters.push((oid, w)),
            }
        }
        self.resolve_pushed(r);
        self.request_push();
        Ok(())
    }

    /// Commits reachable from `head` but not from `hide`, oldest first.
    pub(super) fn history(&self, head: Oid, hide: Option<Oid>) -> Result<Vec<Oid>> {
        let mut walk = self.repo.revwalk()?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
        walk.push(head)?;
        if let Some(h) = hide {
            walk.hide(h)?;
        }
        Ok(walk.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Waiters on commits no longer unpushed are on the remote (`r`) now.
    pub(super) fn resolve_pushed(&mut self, r: Oid) {
        // Whoever is told "pushed" sees it in the status.
        self.publish_status(false);
        let waiters = std::mem::take(&mut self.pushed_waiters);
        for (oid, w) in waiters {
            if self.unpushed_set.contains(&oid) {
                self.pushed_waiters.push((oid, w));
            } else {
                let _ = w.send(Ok(r));
            }
        }
    }

    /// Cherry-picks commit `c` onto `onto`, parking it as a conflict if it does not merge.
    pub(super) fn replay(
        &mut self,
        c: Oid,
        onto: Oid,
    ) -> Result<std::result::Result<Oid, ConflictInfo>> {
        match self.cherry_pick(c, onto)? {
            Ok(n) => Ok(Ok(n)),
            Err(pc) => Ok(Err(park(
                &self.repo,
                &mut self.mem,
                &self.conflicts_dir,
                &mut self.conflicts,
                c,
                pc,
                "push",
            )?)),
        }
    }

    /// Commit `c`'s own diff merged onto `onto`, path by path, as a new commit with
    /// `c`'s author and message (`onto` itself when that changes nothing).
    pub(super) fn cherry_pick(
        &mut self,
        c: Oid,
        onto: Oid,
    ) -> Result<std::result::Result<Oid, PathConflict>> {
        if let Some(m) = &mut self.mem {
            m.dirty = true;
        }
        let commit = self.repo.find_commit(c)?;
        let parent_tree = match commit.parent(0) {
            Ok(p) => Some(p.tree()?),
            Err(_) => None,
        };
        let tree = commit.tree()?;
        let ov: Overlay = diff_overlay(&self.repo, parent_tree.as_ref(), &tree)?;
        let onto_commit = self.repo.find_commit(onto)?;
        let onto_tree = onto_commit.tree()?;
        let merged = merge_overlay(
            &self.repo,
            self.cfg.merger.as_ref(),
            parent_tree.as_ref(),
            Some(&onto_tree),
            &ov,
        )?;
        let result = match merged {
            Ok(eff) => match apply_overlay(&self.repo, Some(&onto_tree), &eff)? {
                Ok(t) => Ok(t),
                Err(clash) => Err(PathConflict {
                    path: clash.0,
                    detail: ConflictDetail::new("a file and a directory at the same path"),
                }),
            },
            Err(pc) => Err(pc),
        };
        match result {
            Ok(t) if t == onto_tree.id() => Ok(Ok(onto)), // already there
            Ok(t) => {
                let t = self.repo.find_tree(t)?;
                let committer = self.signature(None)?;
                let msg = commit.message_raw().unwrap_or("valuesfs: update");
                let n = self.repo.commit(
                    None,
                    &commit.author(),
                    &committer,
                    msg,
                    &t,
                    &[&onto_commit],
                )?;
                Ok(Ok(n))
            }
            Err(pc) => Ok(Err(pc)),
        }
    }
}

//! Helping: many masters on one remote branch land each other's sessions.
//!
//! The branch takes one compare-and-swap per round trip from all masters together, so a
//! fleet where each master only pushes its own sessions leaves most masters waiting for
//! many rounds. Instead, a master whose push was rejected publishes its own head to its
//! inbox ref on the remote (`refs/valuesfs/inbox/<id>`, see the sync thread), and every
//! master builds its push target as its head plus the sessions of every other inbox,
//! replayed on top. Whoever wins the next compare-and-swap lands them all.
//!
//! Invariants:
//! - A session lands at most once. Every session commit carries a `Valuesfs-Session:`
//!   trailer with a random id, kept by every replay. An inbox commit is carried only if
//!   its id is neither on the remote head's history since the inbox forked from it, nor
//!   already in the target; and when our own unpushed commits are replayed after a fetch,
//!   those whose id reached the remote (carried by another master) are dropped as landed.
//!   The target is pushed as a compare-and-swap from the head those checks used.
//! - Helping never decides a conflict for someone else: an inbox commit that does not
//!   merge cleanly (with the same merger as our own replays) ends what is carried from
//!   that inbox; its owner replays and parks it itself.
//! - Our local head (the view) only gets other masters' sessions through the remote:
//!   the combined target is a separate commit chain until it lands.
//! - Inbox heads pass the same fsck as the remote head before anything of theirs is
//!   carried.

use super::*;

/// The trailer naming a session, in every session commit message.
pub(super) const TRAILER: &str = "Valuesfs-Session: ";

/// Inboxes whose tip is older than this are not helped (their owner is gone or done).
const FRESH_SECS: i64 = 600;

/// At most this many commits are looked at per inbox (a long-stale inbox is skipped).
const WALK_LIMIT: usize = 1000;

/// What a push target was built from: our head, the remote head, the inbox tips.
pub(super) type TargetKey = (Oid, Oid, Vec<Oid>);

/// At most this many sessions of others are carried in one push target: every rejected
/// target is rebuilt, so carrying costs its cherry-picks again at each attempt.
const MAX_CARRIED: u64 = 48;

/// A new random session id.
pub(super) fn new_session_id() -> String {
    use rand::Rng;
    let b: [u8; 12] = rand::thread_rng().gen();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `message` with the session trailer (after a blank line, as git trailers go).
pub(super) fn with_trailer(message: &str, id: &str) -> String {
    let body = message.trim_end_matches('\n');
    format!("{body}\n\n{TRAILER}{id}\n")
}

/// The session id of a commit message, if it has one.
pub(super) fn session_id(message: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(message).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(TRAILER))
        .map(|s| s.trim().to_string())
}

impl State {
    /// Session ids of the commits reachable from `head` but not from `hide`, newest
    /// first, at most `limit` commits; `None` when there were more.
    pub(super) fn session_ids(
        &self,
        head: Oid,
        hide: Oid,
        limit: usize,
    ) -> Result<Option<HashSet<String>>> {
        let mut walk = self.repo.revwalk()?;
        walk.push(head)?;
        walk.hide(hide)?;
        let mut ids = HashSet::new();
        for (n, c) in walk.enumerate() {
            if n >= limit {
                return Ok(None);
            }
            if let Some(id) = session_id(self.repo.find_commit(c?)?.message_raw_bytes()) {
                ids.insert(id);
            }
        }
        Ok(Some(ids))
    }

    /// What to push: our head, plus the other masters' inbox sessions that are not on
    /// the remote yet and merge cleanly, replayed on top (see the module doc).
    pub(super) fn push_target(&mut self, head: Oid) -> Oid {
        let Some(remote) = self.remote.filter(|_| self.remote_known) else {
            return head;
        };
        // Only from a durable head: the memory odb then holds nothing of ours.
        if self.inboxes.is_empty() || self.disk_head != Some(head) {
            return head;
        }
        let key = (head, remote, self.inboxes.clone());
        if let Some((k, t)) = &self.combined {
            if *k == key {
                return *t;
            }
        }
        let target = match self.combine(head, remote) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("carrying other masters' sessions: {e}");
                head
            }
        };
        self.combined = Some((key, target));
        target
    }

    fn combine(&mut self, head: Oid, remote: Oid) -> Result<Oid> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut target = head;
        let mut carried: HashSet<String> = HashSet::new();
        let mut helped = 0u64;
        for tip in self.inboxes.clone() {
            if helped >= MAX_CARRIED {
                break;
            }
            if self.inbox_done.contains(&tip) {
                continue;
            }
            let Ok(when) = self
                .repo
                .find_commit(tip)
                .map(|c| c.committer().when().seconds())
            else {
                continue;
            };
            if now - when > FRESH_SECS {
                self.inbox_done.insert(tip);
                continue;
            }
            if fsck_head(&self.repo, tip, &mut self.verified)?.is_some() {
                self.inbox_done.insert(tip);
                continue;
            }
            // Sessions of this inbox already on the remote (or in our head): the history
            // of `head` (which contains `remote`) since the inbox forked from it.
            let Some(landed) = self.session_ids(head, tip, WALK_LIMIT)? else {
                self.inbox_done.insert(tip);
                continue;
            };
            let mut walk = self.repo.revwalk()?;
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
            walk.push(tip)?;
            walk.hide(remote)?;
            walk.hide(head)?;
            let pending: Vec<Oid> = walk
                .take(WALK_LIMIT)
                .collect::<std::result::Result<_, _>>()?;
            let mut all_landed = true;
            for c in pending {
                let Some(id) = session_id(self.repo.find_commit(c)?.message_raw_bytes()) else {
                    // Not a session (a merge, another tool's commit): not ours to carry.
                    all_landed = false;
                    break;
                };
                if landed.contains(&id) {
                    continue;
                }
                all_landed = false;
                if carried.contains(&id) {
                    continue;
                }
                if helped >= MAX_CARRIED {
                    break;
                }
                match self.cherry_pick(c, target)? {
                    Ok(n) => {
                        target = n;
                        carried.insert(id);
                        helped += 1;
                    }
                    Err(_) => break, // its owner parks it
                }
            }
            if all_landed {
                // Nothing to carry from this tip, ever: the remote only grows.
                if self.inbox_done.len() > 10_000 {
                    self.inbox_done.clear();
                }
                self.inbox_done.insert(tip);
            }
        }
        if helped > 0 {
            let m = crate::metrics::global();
            m.sessions_helped
                .fetch_add(helped, std::sync::atomic::Ordering::Relaxed);
            // The carried commits must be on disk for the sync thread's own handle.
            persist(&mut self.mem, &self.repo, &[target], &[head, remote], false)?;
        }
        Ok(target)
    }
}

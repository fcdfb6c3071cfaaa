//! The sync thread: all network I/O, so the master never blocks on the remote.
//!
//! It owns its own `Repository` on the master's directory. It only writes objects
//! (fetch) and the refs `refs/remotes/origin/<branch>` and `refs/valuesfs/push`; the
//! local branch belongs to the master. Push targets arrive as [`SyncCmd::Push`]; newer
//! ones replace older ones, so sessions committed while a push is in flight go out in
//! the next push (batching). A target built on another remote head than the one we
//! know is stale: the master is about to merge that head and will send a new target.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use git2::{Oid, Repository};
use rand::Rng;

use super::master::Request;
use super::packs::Generation;
use super::transport::{self, PushOutcome};
use super::Credentials;

/// After a rejection, pushes publish our inbox for this long (see `master::helping`).
const CONTENDED_FOR: Duration = Duration::from_secs(60);

/// How long a master stops publishing its inbox after the remote refused it.
const INBOX_OFF_FOR: Duration = Duration::from_secs(600);

pub(crate) enum SyncCmd {
    /// Make the remote branch `target`, which the master built on remote head `base`
    /// (`None`: before the master heard of any fetch; `Some(None)`: empty remote).
    Push {
        target: Oid,
        base: Option<Option<Oid>>,
        /// The master's own head (its sessions only), for its inbox.
        own: Oid,
    },
    /// Fetch now; the token comes back in [`SyncEvent::Fetched`].
    Fetch(u64),
}

pub(crate) enum SyncEvent {
    /// A fetch finished (`head` is the remote head when `result` is Ok).
    Fetched {
        head: Option<Oid>,
        /// Other masters' inbox tips.
        inboxes: Vec<Oid>,
        result: Result<(), String>,
        tokens: Vec<u64>,
    },
    /// The remote branch is now `head`.
    Pushed { head: Oid },
    /// A push attempt failed (network, permissions); it will be retried.
    PushFailed { error: String },
}

/// What the sync thread is doing, shared with status readers (never waits on I/O).
#[derive(Debug, Default)]
pub(crate) struct PushState {
    /// Start of the push attempt in progress (RFC 3339).
    pub since: Option<String>,
    /// Failed attempts since the last successful push.
    pub attempts: u32,
    /// Error of the last failed attempt, until a push succeeds.
    pub last_error: Option<String>,
}

pub(crate) struct Syncer {
    pub repo: Repository,
    pub repo_path: std::path::PathBuf,
    /// Reopen `repo` when this changes (the master merged packs).
    pub generation: Generation,
    pub url: String,
    pub branch: String,
    pub creds: Credentials,
    pub interval: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub tx: Sender<Request>,
    pub rx: Receiver<SyncCmd>,
    /// Remote head as last seen; `None` until the first successful fetch.
    pub known: Option<Option<Oid>>,
    pub push_state: std::sync::Arc<std::sync::Mutex<PushState>>,
    /// This master's id: its inbox is `transport::INBOX_PREFIX` + id.
    pub id: String,
}

impl Syncer {
    pub fn run(mut self) {
        let mut target: Option<(Oid, Option<Option<Oid>>)> = None;
        let mut own: Option<Oid> = None;
        let mut inbox_pushed: Option<Oid> = None;
        let mut last_rejection: Option<Instant> = None;
        // A remote that refuses our inbox ref (a hook allowing branches only) is not
        // asked again for a while: a push that includes a refused ref may fail whole.
        let mut inbox_off_until: Option<Instant> = None;
        let inbox = format!("{}{}", transport::INBOX_PREFIX, self.id);
        let mut next_fetch = Instant::now(); // fetch at once: pushes what a crash left behind
        let mut retry_at = Instant::now();
        let mut fail_backoff = self.backoff_min;
        let mut reject_streak = 0u32;
        let mut cache = transport::RemoteCache::default();
        let mut seen_generation = self.generation.get();
        self.tune();
        loop {
            let g = self.generation.get();
            if g != seen_generation {
                match Repository::open_bare(&self.repo_path) {
                    Ok(r) => {
                        self.repo = r;
                        self.tune();
                    }
                    Err(e) => tracing::error!("reopening after pack merge: {e}"),
                }
                seen_generation = g;
            }
            let mut tokens = Vec::new();
            let now = Instant::now();
            let mut deadline = next_fetch;
            if target.is_some() {
                deadline = deadline.min(retry_at);
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(cmd) => Self::on_cmd(cmd, &mut target, &mut own, &mut tokens),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(cmd) = self.rx.try_recv() {
                Self::on_cmd(cmd, &mut target, &mut own, &mut tokens);
            }
            let now = Instant::now();
            if !tokens.is_empty() || now >= next_fetch {
                if self.fetch(tokens) && fail_backoff > self.backoff_min {
                    // The remote answers again: retry a failed push now, not at the
                    // end of its backoff.
                    retry_at = Instant::now();
                    fail_backoff = self.backoff_min;
                }
                next_fetch = Instant::now() + self.jittered(self.interval);
            }
            let Some((t, base)) = target else { continue };
            if Instant::now() < retry_at {
                continue;
            }
            if self.known.is_none() {
                // Never reached the remote: we do not know what to compare-and-swap from.
                if !self.fetch(Vec::new()) {
                    retry_at = Instant::now() + self.jittered(fail_backoff);
                    fail_backoff = (fail_backoff * 2).min(self.backoff_max);
                    continue;
                }
            }
            let expected = self.known.flatten();
            if expected == Some(t) {
                target = None;
                self.send(SyncEvent::Pushed { head: t });
                continue;
            }
            if base != self.known {
                // Built on a remote head we no longer see: the master is about to
                // merge the newer one and will send a new target.
                target = None;
                continue;
            }
            self.push_state(|p| p.since = Some(super::master::now_rfc3339()));
            let m = crate::metrics::global();
            crate::metrics::inc(&m.push_attempts);
            let started = Instant::now();
            // While others race us for the branch, every attempt also publishes our own
            // head to our inbox (same connection), so whoever wins can carry it. An
            // uncontended master never makes an inbox ref.
            let contended = last_rejection.is_some_and(|at| at.elapsed() < CONTENDED_FOR);
            let inbox_on = inbox_off_until.is_none_or(|until| Instant::now() >= until);
            let with_inbox = own
                .filter(|o| contended && inbox_on && inbox_pushed != Some(*o))
                .map(|o| (inbox.as_str(), o));
            let req = transport::PushRequest {
                branch: &self.branch,
                target: t,
                expected,
                inbox: with_inbox,
            };
            let res = transport::push(&self.repo, &self.url, req, &self.creds, &mut cache);
            let res = res.map(|(outcome, inbox_done)| {
                match inbox_done {
                    Some(true) => {
                        crate::metrics::inc(&m.inbox_pushes);
                        inbox_pushed = with_inbox.map(|x| x.1);
                    }
                    Some(false) => {
                        tracing::info!("the remote refuses {inbox}: not publishing it for now");
                        inbox_off_until = Some(Instant::now() + INBOX_OFF_FOR);
                    }
                    None => {}
                }
                outcome
            });
            m.push_seconds.observe(started.elapsed());
            crate::metrics::inc(match &res {
                Ok(PushOutcome::Pushed) => &m.pushes,
                Ok(PushOutcome::Rejected(_)) => &m.push_rejections,
                Err(_) => &m.push_failures,
            });
            self.push_state(|p| {
                p.since = None;
                match &res {
                    Ok(PushOutcome::Pushed) => {
                        p.attempts = 0;
                        p.last_error = None;
                    }
                    Ok(PushOutcome::Rejected(_)) => {}
                    Err(e) => {
                        p.attempts += 1;
                        p.last_error = Some(e.to_string());
                    }
                }
            });
            match res {
                Ok(PushOutcome::Pushed) => {
                    tracing::debug!(%t, "pushed");
                    self.known = Some(Some(t));
                    // The next fetch hides what our refs name; without this the local
                    // transport would resend all history pushed since the last fetch.
                    let tracking = format!("refs/remotes/origin/{}", self.branch);
                    if let Err(e) = self.repo.reference(&tracking, t, true, "valuesfs: pushed") {
                        tracing::warn!("updating {tracking}: {e}");
                    }
                    target = None;
                    fail_backoff = self.backoff_min;
                    reject_streak = 0;
                    self.send(SyncEvent::Pushed { head: t });
                }
                Ok(PushOutcome::Rejected(why)) => {
                    tracing::debug!(%t, %why, "push rejected; fetching");
                    reject_streak += 1;
                    last_rejection = Some(Instant::now());
                    // Racing writers: the branch takes about one push per round trip from
                    // all of them, so the random spread grows in units of our own attempt's
                    // time (1, 2, 4, 8 of them), not in milliseconds: retrying sooner only
                    // loses again and costs the remote a process and us a fetch.
                    let unit = started.elapsed().max(Duration::from_millis(4));
                    let spread =
                        (unit * (1u32 << (reject_streak - 1).min(3))).min(self.backoff_max);
                    retry_at = Instant::now() + self.jittered_full(spread);
                    // Publish our sessions where the masters that beat us find them:
                    // whoever lands next carries them too (see `master::helping`).
                    let inbox_on = inbox_off_until.is_none_or(|until| Instant::now() >= until);
                    if let Some(o) = own.filter(|o| inbox_on && inbox_pushed != Some(*o)) {
                        match transport::push_inbox(
                            &self.repo,
                            &self.url,
                            &inbox,
                            o,
                            expected,
                            &self.creds,
                        ) {
                            Ok(()) => {
                                crate::metrics::inc(&m.inbox_pushes);
                                inbox_pushed = Some(o);
                            }
                            // Only a shortcut for the others: ours retries anyway.
                            Err(e) => {
                                tracing::debug!("publishing {inbox}: {e}");
                                inbox_off_until = Some(Instant::now() + INBOX_OFF_FOR);
                            }
                        }
                    }
                    if self.fetch(Vec::new()) {
                        target = None; // the master answers the fetch with a new target
                    }
                }
                Err(e) => {
                    tracing::warn!(%t, "push failed: {e}");
                    self.send(SyncEvent::PushFailed {
                        error: e.to_string(),
                    });
                    retry_at = Instant::now() + self.jittered(fail_backoff);
                    fail_backoff = (fail_backoff * 2).min(self.backoff_max);
                }
            }
        }
    }

    /// Packs for a local remote stay on this machine: deltas would only cost CPU.
    fn tune(&self) {
        if transport::local_path(&self.url).is_some() {
            if let Err(e) = super::master::without_deltas(&self.repo) {
                tracing::warn!("{e}");
            }
        }
    }

    fn on_cmd(
        cmd: SyncCmd,
        target: &mut Option<(Oid, Option<Option<Oid>>)>,
        own: &mut Option<Oid>,
        tokens: &mut Vec<u64>,
    ) {
        match cmd {
            SyncCmd::Push {
                target: t,
                base,
                own: o,
            } => {
                *target = Some((t, base));
                *own = Some(o);
            }
            SyncCmd::Fetch(tok) => tokens.push(tok),
        }
    }

    /// Fetches and reports; true on success.
    fn fetch(&mut self, tokens: Vec<u64>) -> bool {
        match transport::fetch_with_inboxes(&self.repo, &self.url, &self.branch, &self.creds, true)
        {
            Ok((head, tips)) => {
                crate::metrics::inc(&crate::metrics::global().fetches);
                self.known = Some(head);
                let inboxes = tips
                    .into_iter()
                    .filter(|(id, _)| *id != self.id)
                    .map(|(_, tip)| tip)
                    .collect();
                self.send(SyncEvent::Fetched {
                    head,
                    inboxes,
                    result: Ok(()),
                    tokens,
                });
                true
            }
            Err(e) => {
                crate::metrics::inc(&crate::metrics::global().fetch_failures);
                tracing::warn!("fetch failed: {e}");
                self.send(SyncEvent::Fetched {
                    head: None,
                    inboxes: Vec::new(),
                    result: Err(e.to_string()),
                    tokens,
                });
                false
            }
        }
    }

    fn push_state(&self, f: impl FnOnce(&mut PushState)) {
        match self.push_state.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn send(&self, ev: SyncEvent) {
        // The master is gone only while shutting down; nothing left to tell.
        let _ = self.tx.send(Request::Sync(ev));
    }

    /// `d` plus up to 10% random jitter, so masters do not fetch in lockstep.
    fn jittered(&self, d: Duration) -> Duration {
        let ms = d.as_millis() as u64;
        d + Duration::from_millis(rand::thread_rng().gen_range(0..=ms / 10))
    }

    /// A uniformly random delay in `0..=d`.
    fn jittered_full(&self, d: Duration) -> Duration {
        let ms = d.as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
    }
}

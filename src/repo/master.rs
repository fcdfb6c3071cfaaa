//! The master thread, its handle and tickets.
//!
//! The master drains its channel in batches: every session of a batch becomes one
//! commit in memory, then the batch's objects and new head are appended to the journal
//! with one sync (see `journal`), and only then are the sessions acknowledged
//! *committed* (group commit); the objects and the ref reach the repository unsynced and
//! are checkpointed (one fsynced pack, the ref fsynced) when idle or every
//! `checkpoint_every` batches. Before any non-session message the pending batch is flushed, so remote
//! integration always starts from a durable head.
//!
//! Children: `batch` (sessions into commits, the batch's ref write and publication),
//! `remote` (fetched heads, replay of unpushed commits, push waiters), `store` (fsck of
//! fetched heads, conflict records, objects kept in memory until a batch is written).
//!
//! Locks: the snapshot `cell` (RwLock), the `published` status and the sync thread's
//! `push_state` are leaves: each is held only to copy a value in or out, never while
//! taking another lock or doing I/O. The master thread owns its `State` without a lock;
//! readers never wait on it.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, Once, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use git2::{Oid, Repository, Signature};

use super::merge::{merge_overlay, PathConflict};
use super::names;
use super::packs::{self, Generation};
use super::session::Session;
use super::snapshot::{HeadChange, HeadChangeCause, Reader, Snapshot};
use super::status::{ConflictInfo, RefusedHead, Status};
use super::syncer::{PushState, SyncCmd, SyncEvent, Syncer};
use super::tree::{apply_overlay, changed_paths, diff_overlay, empty_tree, Overlay};
use super::{transport, Config, ConflictDetail, Error, Result};

mod batch;
mod helping;
mod journal;
mod remote;
mod store;
use store::*;
pub(crate) use store::{without_deltas, write_pack};

type Reply<T> = SyncSender<Result<T>>;

pub(crate) enum Request {
    Submit {
        session: Box<Session>,
        committed: Reply<Oid>,
        pushed: Reply<Oid>,
    },
    FetchNow(Reply<()>),
    Status(SyncSender<Status>),
    Flush(Reply<Oid>),
    Subscribe(Sender<HeadChange>),
    DismissConflict(String, Reply<()>),
    Sync(SyncEvent),
    Shutdown,
}

/// Waits for one submitted session.
pub struct Ticket {
    committed: Receiver<Result<Oid>>,
    pushed: Receiver<Result<Oid>>,
    committed_res: Option<Result<Oid>>,
    pushed_res: Option<Result<Oid>>,
}

impl Ticket {
    /// Blocks until the session is durable locally. Returns its commit (the head, if the
    /// session changed nothing), or why it was rejected.
    pub fn wait_committed(&mut self) -> Result<Oid> {
        if let Some(r) = &self.committed_res {
            return r.clone();
        }
        let r = self.committed.recv().unwrap_or(Err(Error::Stopped));
        self.committed_res = Some(r.clone());
        r
    }

    /// Blocks until the session is on the remote (returns the remote head that contains
    /// it), was rejected, or `timeout` passed ([`Error::Timeout`]; the push goes on and
    /// you may wait again).
    pub fn wait_pushed(&mut self, timeout: Duration) -> Result<Oid> {
        self.wait_committed()?;
        if let Some(r) = &self.pushed_res {
            return r.clone();
        }
        let r = match self.pushed.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(Error::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Stopped),
        };
        self.pushed_res = Some(r.clone());
        r
    }
}

struct Inner {
    tx: Sender<Request>,
    /// The master's status as of its last batch, and the sync thread's push state:
    /// status readers never wait behind a batch or a push.
    published: Arc<Mutex<Status>>,
    push_state: Arc<Mutex<PushState>>,
    cell: Arc<RwLock<Arc<Snapshot>>>,
    repo_path: PathBuf,
    generation: Generation,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.tx.send(Request::Shutdown);
        if let Ok(mut t) = self.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}

/// Cloneable access to a running master. The master stops when the last handle is
/// dropped or [`MasterHandle::shutdown`] is called.
#[derive(Clone)]
pub struct MasterHandle {
    inner: Arc<Inner>,
}

fn recv<T>(rx: Receiver<Result<T>>) -> Result<T> {
    rx.recv().unwrap_or(Err(Error::Stopped))
}

impl MasterHandle {
    /// The current head snapshot (cheap: an `Arc` clone under a short read lock).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.inner.cell.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Path of the master's bare repository (for [`Reader::open`]).
    pub fn repo_path(&self) -> &Path {
        &self.inner.repo_path
    }

    /// Opens a new reader on the master's repository.
    pub fn reader(&self) -> Result<Reader> {
        Reader::with_generation(&self.inner.repo_path, self.inner.generation.clone())
    }

    /// Queues a session; returns at once.
    pub fn submit(&self, session: Session) -> Result<Ticket> {
        let (ctx, crx) = mpsc::sync_channel(1);
        let (ptx, prx) = mpsc::sync_channel(1);
        self.inner
            .tx
            .send(Request::Submit {
                session: Box::new(session),
                committed: ctx,
                pushed: ptx,
            })
            .map_err(|_| Error::Stopped)?;
        Ok(Ticket {
            committed: crx,
            pushed: prx,
            committed_res: None,
            pushed_res: None,
        })
    }

    /// Submits and waits until committed locally.
    pub fn commit(&self, session: Session) -> Result<Oid> {
        self.submit(session)?.wait_committed()
    }

    /// Fetches now and merges what came; returns after the merge.
    pub fn fetch_now(&self) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner
            .tx
            .send(Request::FetchNow(tx))
            .map_err(|_| Error::Stopped)?;
        recv(rx)
    }

    /// Waits until everything committed so far is on the remote (or `timeout`).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner
            .tx
            .send(Request::Flush(tx))
            .map_err(|_| Error::Stopped)?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r.map(|_| ()),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Stopped),
        }
    }

    /// Current status.
    pub fn status(&self) -> Result<Status> {
        let mut s = match self.inner.published.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let p = match self.inner.push_state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.push_in_flight_since = p.since.clone();
        s.push_attempts = p.attempts;
        if p.last_error.is_some() {
            s.last_push_error = p.last_error.clone();
        }
        Ok(s)
    }

    /// The status computed by the master thread itself, after everything queued before
    /// (exact ahead/behind even before the first fetch). Waits behind the current batch.
    pub fn status_exact(&self) -> Result<Status> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner
            .tx
            .send(Request::Status(tx))
            .map_err(|_| Error::Stopped)?;
        rx.recv().map_err(|_| Error::Stopped)
    }

    /// A channel told about every published head move.
    pub fn subscribe(&self) -> Result<Receiver<HeadChange>> {
        let (tx, rx) = mpsc::channel();
        self.inner
            .tx
            .send(Request::Subscribe(tx))
            .map_err(|_| Error::Stopped)?;
        Ok(rx)
    }

    /// Forgets an open conflict: deletes its ref and record.
    pub fn dismiss_conflict(&self, id: &str) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner
            .tx
            .send(Request::DismissConflict(id.to_string(), tx))
            .map_err(|_| Error::Stopped)?;
        recv(rx)
    }

    /// Stops the master (pending pushes resume at the next start) and waits for it.
    pub fn shutdown(&self) {
        let _ = self.inner.tx.send(Request::Shutdown);
        if let Ok(mut t) = self.inner.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}

/// Entry point.
pub struct Master;

static FSYNC: Once = Once::new();

/// libgit2's connect and read timeouts for its socket streams (git://, ssh, https);
/// without them a remote that accepts and never answers holds a push forever.
/// Process-wide: the shortest any master of the process asked for.
fn set_net_timeout(t: Duration) {
    // Several masters in one process (tests, tools): the shortest timeout wins.
    static SHORTEST: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(i32::MAX);
    let want = i32::try_from(t.as_millis()).unwrap_or(i32::MAX).max(1);
    let ms = SHORTEST
        .fetch_min(want, std::sync::atomic::Ordering::SeqCst)
        .min(want);
    // SAFETY: plain libgit2 option calls, after its initialisation by git2.
    unsafe {
        if let Err(e) = git2::opts::set_server_connect_timeout_in_milliseconds(ms) {
            tracing::warn!("cannot set the connect timeout: {e}");
        }
        if let Err(e) = git2::opts::set_server_timeout_in_milliseconds(ms) {
            tracing::warn!("cannot set the network timeout: {e}");
        }
    }
}

/// Makes libgit2 fsync object files, packs and refs (process-wide; git2 has no wrapper)
/// and skips hash verification of objects read (process-wide too).
pub(crate) fn enable_fsync() {
    FSYNC.call_once(|| {
        libgit2_sys::init();
        // SAFETY: GIT_OPT_ENABLE_FSYNC_GITDIR takes one int; libgit2 is initialised above.
        let rc = unsafe {
            libgit2_sys::git_libgit2_opts(
                libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as libc::c_int,
                1 as libc::c_int,
            )
        };
        if rc != 0 {
            tracing::error!("could not enable fsync in libgit2 (rc {rc})");
        }
        // Re-hashing every object read costs more than the merges themselves; git does
        // not verify on read either (fsck does).
        git2::opts::strict_hash_verification(false);
        // Objects we create are validated (a tree entry must point at an existing object
        // of the right type); fetched heads get the fsck of `names::fsck_tree`.
        git2::opts::strict_object_creation(true);
        // Readers resolve paths through the root tree on every open; libgit2 only caches
        // trees up to 4 KiB by default, so a directory of ~100 files was inflated again on
        // every lookup. Cache trees up to 1 MiB (the cache stays bounded by its total).
        // SAFETY: plain libgit2 option calls after init.
        unsafe {
            let _ = git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 1 << 20);
        }
        // Every commit makes new trees, and each repository handle (master, sync, the
        // pooled readers) caches the versions it reads: under libgit2's default bound
        // of 256 MiB in all, a 10 000-write soak (bench/fs_soak.sh) peaked at 702 MiB.
        // The bound counts raw object sizes; parsed trees take two to three times that.
        // 8 MiB: 195 MiB peak there, and reads of a 100 000-file tree no slower.
        // SAFETY: a plain libgit2 option call after init; the value is an ssize_t.
        let rc = unsafe {
            libgit2_sys::git_libgit2_opts(
                libgit2_sys::GIT_OPT_SET_CACHE_MAX_SIZE as libc::c_int,
                (8 << 20) as libc::ssize_t,
            )
        };
        if rc != 0 {
            tracing::warn!("could not bound libgit2's object cache (rc {rc})");
        }
        // libgit2 maps packs in windows of 1 GiB and keeps up to 8 GiB mapped; every page
        // it touched counts in the daemon's RSS until unmapped. 4 MiB windows, 32 MiB in
        // all: least recently used windows are unmapped (the page cache keeps the bytes).
        // SAFETY: plain libgit2 option calls after init.
        unsafe {
            if let Err(e) = git2::opts::set_mwindow_size(4 << 20) {
                tracing::warn!("could not set libgit2's pack window size: {e}");
            }
            if let Err(e) = git2::opts::set_mwindow_mapped_limit(32 << 20) {
                tracing::warn!("could not bound libgit2's mapped pack windows: {e}");
            }
        }
    });
}

/// This master's id (its inbox name on the remote), made once per state dir.
fn master_id(state_dir: &Path) -> Result<String> {
    let f = state_dir.join("id");
    match fs::read_to_string(&f) {
        Ok(s) if !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(s.trim().to_string())
        }
        Ok(_) | Err(_) => {
            let id = helping::new_session_id();
            fs::write(&f, format!("{id}\n"))?;
            Ok(id)
        }
    }
}

fn lock_state_dir(dir: &Path) -> Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // A child forked by another thread of this process holds a copy of the previous
    // master's lock fd until it execs (close-on-exec), so wait a moment before giving up.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        // SAFETY: flock on a valid fd we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(f);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::StateDirBusy(dir.to_path_buf()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes `*.lock` files a killed master left in its own repository. Safe because we
/// hold the state dir lock: no one else writes refs there.
fn remove_stale_locks(dir: &Path) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for e in rd {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            if e.file_name() != "objects" {
                remove_stale_locks(&p)?;
            }
        } else if p.extension().is_some_and(|x| x == "lock") {
            tracing::warn!("removing stale lock {}", p.display());
            fs::remove_file(&p)?;
        }
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Master {
    /// Opens or creates the state dir, fetches the remote if there is no local branch
    /// yet (failing if it cannot), and starts the master and sync threads. With an
    /// existing local branch it starts even if the remote is down.
    pub fn start(cfg: Config) -> Result<MasterHandle> {
        enable_fsync();
        set_net_timeout(cfg.net_timeout);
        fs::create_dir_all(&cfg.state_dir)?;
        let lock = lock_state_dir(&cfg.state_dir)?;
        let repo_path = cfg.state_dir.join("repo.git");
        let repo = if repo_path.join("HEAD").exists() {
            remove_stale_locks(&repo_path)?;
            Repository::open_bare(&repo_path)?
        } else {
            Repository::init_bare(&repo_path)?
        };
        {
            let mut c = repo.config()?;
            // Local history replayed onto another remote's would be a disaster: a state
            // dir serves one remote and branch for life.
            let owner = format!("{} {}", cfg.remote_url, cfg.branch);
            match c.get_string("valuesfs.owner") {
                Ok(o) if o != owner => {
                    return Err(Error::StateDirMismatch {
                        dir: cfg.state_dir.clone(),
                        owner: o,
                    })
                }
                Ok(_) => {}
                Err(_) => c.set_str("valuesfs.owner", &owner)?,
            }
            c.set_bool("core.fsyncObjectFiles", true)?;
            c.set_str("remote.origin.url", &cfg.remote_url)?;
        }
        let local_ref = format!("refs/heads/{}", cfg.branch);
        repo.set_head(&local_ref)?;
        let conflicts_dir = cfg.state_dir.join("conflicts");
        fs::create_dir_all(&conflicts_dir)?;

        let journal = journal::recover(&repo, &cfg.state_dir, &local_ref)?;
        let mut head = ref_id(&repo, &local_ref)?;
        let mut known_remote = None;
        let mut verified = HashSet::new();
        let mut refused = None;
        if head.is_none() {
            // Nothing local yet: the remote's state is where we start, if it passes fsck.
            let r = transport::fetch(&repo, &cfg.remote_url, &cfg.branch, &cfg.credentials)?;
            match r.map(|r| fsck_head(&repo, r, &mut verified)).transpose()? {
                Some(Some(bad)) => {
                    tracing::error!("{bad}");
                    refused = Some(bad);
                }
                _ => {
                    if let Some(r) = r {
                        repo.reference(&local_ref, r, true, "valuesfs: initial fetch")?;
                    }
                    head = r;
                    known_remote = Some(r);
                }
            }
        }
        let remote_hint = match known_remote {
            Some(r) => r,
            None => ref_id(&repo, &format!("refs/remotes/origin/{}", cfg.branch))?,
        };
        let empty = empty_tree(&repo)?;
        let tree = match head {
            Some(h) => repo.find_commit(h)?.tree_id(),
            None => empty,
        };
        let cell = Arc::new(RwLock::new(Arc::new(Snapshot {
            commit: head,
            tree,
            seq: 0,
        })));
        let conflicts = load_conflicts(&repo, &conflicts_dir)?;

        let (tx, rx) = mpsc::channel();
        let (sync_tx, sync_rx) = mpsc::channel();
        let generation = Generation::default();
        let push_state = Arc::new(Mutex::new(PushState::default()));
        let published = Arc::new(Mutex::new(Status::default()));
        let syncer = Syncer {
            repo: Repository::open_bare(&repo_path)?,
            repo_path: repo_path.clone(),
            generation: generation.clone(),
            url: cfg.remote_url.clone(),
            branch: cfg.branch.clone(),
            creds: cfg.credentials.clone(),
            interval: cfg.fetch_interval,
            backoff_min: cfg.push_backoff_min,
            backoff_max: cfg.push_backoff_max,
            tx: tx.clone(),
            rx: sync_rx,
            known: known_remote,
            push_state: push_state.clone(),
            id: master_id(&cfg.state_dir)?,
        };
        let sync_thread = std::thread::Builder::new()
            .name("valuesfs-sync".into())
            .spawn(move || syncer.run())?;
        let state = State {
            mem: None,
            journal,
            repo,
            local_ref,
            head,
            disk_head: head,
            remote: remote_hint,
            remote_known: known_remote.is_some(),
            cell: cell.clone(),
            seq: 0,
            subscribers: Vec::new(),
            batch: Vec::new(),
            unpushed: Vec::new(),
            unpushed_set: HashSet::new(),
            durable_unpushed: 0,
            pushed_waiters: Vec::new(),
            fetch_waiters: HashMap::new(),
            next_token: 0,
            conflicts,
            conflicts_dir,
            last_fetch: None,
            last_fetch_error: None,
            last_push: None,
            last_push_error: None,
            sync_tx: Some(sync_tx),
            empty_tree: empty,
            repo_path: repo_path.clone(),
            packs: packs::Maintenance::new(
                &repo_path,
                generation.clone(),
                cfg.pack_merge_exe.clone(),
                cfg.merged_pack_grace,
            ),
            batches_since_pack_check: 0,
            inboxes: Vec::new(),
            inbox_done: HashSet::new(),
            combined: None,
            verified,
            refused,
            cfg,
            published: published.clone(),
            _lock: lock,
        };
        state.publish_status(true);
        let thread = std::thread::Builder::new()
            .name("valuesfs-master".into())
            .spawn(move || {
                state.run(rx);
                // `state` is dropped: the sync channel closes, then we wait for the thread.
                let _ = sync_thread.join();
            })?;
        Ok(MasterHandle {
            inner: Arc::new(Inner {
                tx,
                published,
                push_state,
                cell,
                repo_path,
                generation,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }
}

/// A session applied in memory, waiting for the batch's ref write.
struct Pending {
    commit: Oid,
    committed: Reply<Oid>,
    pushed: Reply<Oid>,
}

struct State {
    /// Declared before `repo` so it is dropped first. `None` (if it could not be set up)
    /// means plain fsynced loose objects.
    mem: Option<MemObjects>,
    /// Batches synced but not yet checkpointed into the repository (see `journal`).
    journal: journal::Journal,
    cfg: Config,
    repo: Repository,
    local_ref: String,
    /// Head in memory (ahead of `disk_head` inside a batch).
    head: Option<Oid>,
    /// Value of the local branch ref on disk.
    disk_head: Option<Oid>,
    /// Last known remote head.
    remote: Option<Oid>,
    /// Whether `remote` comes from a successful fetch/push of this run.
    remote_known: bool,
    cell: Arc<RwLock<Arc<Snapshot>>>,
    seq: u64,
    subscribers: Vec<Sender<HeadChange>>,
    batch: Vec<Pending>,
    /// Our commits on top of `remote`, oldest first (meaningful once `remote_known`).
    unpushed: Vec<Oid>,
    unpushed_set: HashSet<Oid>,
    /// Length of `unpushed` matching `disk_head`.
    durable_unpushed: usize,
    /// Waiting for "pushed", each on a commit of the local branch.
    pushed_waiters: Vec<(Oid, Reply<Oid>)>,
    fetch_waiters: HashMap<u64, Reply<()>>,
    next_token: u64,
    conflicts: Vec<ConflictInfo>,
    conflicts_dir: PathBuf,
    last_fetch: Option<String>,
    last_fetch_error: Option<String>,
    last_push: Option<String>,
    last_push_error: Option<String>,
    sync_tx: Option<Sender<SyncCmd>>,
    empty_tree: Oid,
    repo_path: PathBuf,
    /// Merges packs on its own thread; bumps the readers' generation when one finished.
    packs: packs::Maintenance,
    /// Other masters' inbox tips at the last fetch (see `helping`).
    inboxes: Vec<Oid>,
    /// Inbox tips with nothing left to carry.
    inbox_done: HashSet<Oid>,
    /// The last push target built from (head, remote, inboxes).
    combined: Option<(helping::TargetKey, Oid)>,
    batches_since_pack_check: u32,
    /// Trees that passed the fsck of fetched heads (this run).
    verified: HashSet<Oid>,
    /// A fetched remote head that failed the fsck: not published, pushes held.
    refused: Option<RefusedHead>,
    /// Where [`MasterHandle::status`] reads from.
    published: Arc<Mutex<Status>>,
    _lock: File,
}

/// Most requests taken from the channel before the batch's ref write.
const MAX_BATCH: usize = 512;

impl State {
    fn run(mut self, rx: Receiver<Request>) {
        match MemObjects::new(&self.repo) {
            Ok(m) => self.mem = Some(m),
            Err(e) => tracing::warn!("no in-memory odb, writing loose objects: {e}"),
        }
        // A journal replayed at start is made durable in the repository first.
        self.checkpoint_or_log();
        loop {
            // Checkpoint when idle, so a burst of batches shares one pack and ref fsync.
            let first = if self.journal.records > 0 {
                match rx.recv_timeout(self.cfg.checkpoint_idle) {
                    Ok(r) => r,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.checkpoint_or_log();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else if self.packs.busy() {
                // A merge to collect or merged packs to delete: look again when idle.
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(r) => r,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.tend_packs();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            let mut reqs = vec![first];
            while reqs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => reqs.push(r),
                    Err(_) => break,
                }
            }
            let mut stop = false;
            for r in reqs {
                match r {
                    Request::Submit {
                        session,
                        committed,
                        pushed,
                    } => self.submit(*session, committed, pushed),
                    Request::Shutdown => {
                        stop = true;
                    }
                    other => {
                        self.flush(HeadChangeCause::Sessions);
                        self.handle(other);
                    }
                }
            }
            self.flush(HeadChangeCause::Sessions);
            if self.journal.records >= self.cfg.checkpoint_every.max(1) {
                self.checkpoint_or_log();
            }
            if stop {
                break;
            }
        }
        self.flush(HeadChangeCause::Sessions);
        self.checkpoint_or_log();
        self.sync_tx = None;
    }

    fn handle(&mut self, r: Request) {
        match r {
            Request::Submit { .. } | Request::Shutdown => {}
            Request::FetchNow(reply) => {
                self.next_token += 1;
                let tok = self.next_token;
                self.fetch_waiters.insert(tok, reply);
                self.to_sync(SyncCmd::Fetch(tok));
            }
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::Flush(reply) => match self.head {
                Some(h) => self.wait_pushed(h, reply),
                None => {
                    let _ = reply.send(Ok(Oid::zero()));
                }
            },
            Request::Subscribe(tx) => self.subscribers.push(tx),
            Request::DismissConflict(id, reply) => {
                let res = self.dismiss(&id);
                self.publish_status(false);
                let _ = reply.send(res);
            }
            Request::Sync(ev) => self.on_sync(ev),
        }
    }

    fn to_sync(&self, cmd: SyncCmd) {
        if let Some(tx) = &self.sync_tx {
            if tx.send(cmd).is_err() {
                tracing::error!("sync thread is gone");
            }
        }
    }

    fn signature(&self, who: Option<&(String, String)>) -> Result<Signature<'static>> {
        let (n, e) = who.unwrap_or(&self.cfg.author);
        Ok(Signature::now(n, e)?)
    }

    // ---- conflicts ------------------------------------------------------------------

    fn dismiss(&mut self, id: &str) -> Result<()> {
        let Some(pos) = self.conflicts.iter().position(|c| c.id == id) else {
            return Err(Error::NotFound(id.to_string()));
        };
        let info = self.conflicts.remove(pos);
        if let Ok(mut r) = self.repo.find_reference(&info.refname) {
            r.delete()?;
        }
        match fs::remove_file(self.conflicts_dir.join(format!("{id}.json"))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Publish the status for readers; `exact` walks history before the first fetch
    /// (too slow for every batch), otherwise the in-memory bookkeeping is used.
    fn publish_status(&self, exact: bool) {
        let s = self.status_with(exact);
        match self.published.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }

    fn status(&self) -> Status {
        self.status_with(true)
    }

    fn status_with(&self, exact: bool) -> Status {
        // Between fetches our bookkeeping is exact; before the first one, ask git.
        let (ahead, behind) = match (self.remote_known, self.head, self.remote) {
            (true, _, _) => (self.unpushed.len(), 0),
            (false, _, _) if !exact => (self.unpushed.len(), 0),
            (false, Some(h), Some(r)) => self.repo.graph_ahead_behind(h, r).unwrap_or((0, 0)),
            (false, Some(h), None) => (self.count(h), 0),
            _ => (0, 0),
        };
        Status {
            remote: self.cfg.remote_url.clone(),
            branch: self.cfg.branch.clone(),
            head: self.head.map(|h| h.to_string()),
            remote_head: self.remote.map(|h| h.to_string()),
            ahead,
            behind,
            pending_pushes: ahead,
            last_fetch: self.last_fetch.clone(),
            last_fetch_error: self.last_fetch_error.clone(),
            last_push: self.last_push.clone(),
            last_push_error: self.last_push_error.clone(),
            push_in_flight_since: None,
            push_attempts: 0,
            conflicts: self.conflicts.clone(),
            refused_head: self.refused.clone(),
        }
    }

    fn count(&self, h: Oid) -> usize {
        let Ok(mut w) = self.repo.revwalk() else {
            return 0;
        };
        if w.push(h).is_err() {
            return 0;
        }
        w.count()
    }
}

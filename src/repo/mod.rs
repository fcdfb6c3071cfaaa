//! The git engine behind the mount: one serialized *master* per mount.
//!
//! # Shape
//!
//! * [`Master::start`] opens (or creates, by fetching the remote) a bare repository in
//!   `state_dir/repo.git` and spawns two OS threads:
//!   - the **master thread** owns the only `git2::Repository` that moves the local
//!     branch. Every session, fetch result and push result goes through its channel,
//!     so the local branch has exactly one writer and needs no lock;
//!   - the **sync thread** owns a second `Repository` on the same directory and does all
//!     network I/O (fetch, push). It never moves the local branch; it reports remote
//!     heads back to the master, which merges/rebases and hands it the next push target.
//! * Everything else holds a cloneable [`MasterHandle`]. Readers take the current
//!   [`Snapshot`] (an `Arc`, swapped atomically by the master) and read blobs through
//!   their own [`Reader`] (a separate read-only `Repository`); git objects are immutable,
//!   so readers never synchronise with the master beyond that pointer swap.
//!
//! # Use
//!
//! ```no_run
//! use std::time::Duration;
//! use valuesfs::repo::{Config, Master, Session};
//!
//! # fn main() -> Result<(), valuesfs::repo::Error> {
//! let mut cfg = Config::new("git@example.com:org/values.git", "/var/lib/valuesfs/mnt1");
//! cfg.fetch_interval = valuesfs::repo::parse_duration("30s")?;
//! let master = Master::start(cfg)?;
//!
//! // Read: a snapshot plus a reader (one per thread).
//! let snap = master.snapshot();
//! let reader = master.reader()?;
//! let _ = reader.read(&snap, "apps/web/values.yaml")?;
//!
//! // Write: one session per write-close, based on the snapshot the writer saw.
//! let mut s = Session::new(snap.commit);
//! s.write("apps/web/values.yaml", b"replicas: 3\n".to_vec());
//! let mut ticket = master.submit(s)?;
//! ticket.wait_committed()?; // durable locally (or Error::Conflict)
//! ticket.wait_pushed(Duration::from_secs(10))?; // on the remote (or Error::Timeout)
//!
//! print!("{}", master.status()?.to_yaml());
//! # Ok(()) }
//! ```
//!
//! # Invariants
//!
//! * History is linear on our side: each session is one commit whose parent is the
//!   local head at the time it is applied. A session built on an older base is merged
//!   per path (see [`merge`]) and still committed on top of the head.
//! * The local branch `refs/heads/<branch>` (with `state_dir/journal`) is the record of
//!   acknowledged work: a session is acknowledged *committed* only after its batch's
//!   objects and new head are appended to the journal and synced (one `fdatasync` per
//!   batch). The objects and the ref then reach the repository unsynced, and a
//!   checkpoint writes them as one fsynced pack and an fsynced ref before the journal
//!   is emptied; a start after a crash replays the journal first. `packs.rs` keeps the
//!   pack count small. Unpushed work = commits reachable from the branch but not from the
//!   remote head. After a crash the next start fetches and pushes exactly those
//!   commits (by id), so nothing is pushed twice and nothing acknowledged is lost.
//! * The remote ref only ever moves by compare-and-swap from the value our push was
//!   based on (see [`transport`]); no `+` refspec is ever pushed.
//! * When the remote moved, the remote's history stands: our unpushed commits are
//!   replayed (cherry-picked, per-path three-way merge) onto it in order; one that
//!   conflicts is parked on `refs/valuesfs/conflicts/<id>` (local only, never pushed;
//!   its record is `state_dir/conflicts/<id>.json`) and its waiters get
//!   [`Error::Conflict`]. Nothing is force-pushed, no side silently wins.
//! * The master never deletes objects a snapshot may name (no gc, pack merges keep
//!   unreachable objects), so an old snapshot stays readable.
//!
//! # Process-wide libgit2 settings
//!
//! [`Master::start`] turns on libgit2's fsync of objects, packs and refs, and turns off
//! hash re-verification of every object read (git itself verifies in fsck only).
//!
//! # Locks
//!
//! * `state_dir/lock` is held with `flock(LOCK_EX)` for the whole life of the master:
//!   one master per state dir. It is released by the kernel on `kill -9`.
//! * The snapshot cell (`RwLock<Arc<Snapshot>>`) is held only to clone or swap the `Arc`;
//!   no other lock is ever taken while holding it. There is no other shared lock.

mod duration;
mod master;
pub mod merge;
pub mod names;
mod packs;
mod session;
mod snapshot;
mod status;
mod syncer;
pub mod transport;
mod tree;
pub mod values_merge;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use duration::parse_duration;
pub use master::{Master, MasterHandle, Ticket};
pub use merge::{ConflictDetail, NoSemanticMerge, SemanticMerge};
pub use packs::merge_packs;
pub use session::{Change, FileMode, Session};
pub use snapshot::{
    listing, DirEntry, EntryKind, HeadChange, HeadChangeCause, Listing, Reader, Snapshot,
};
pub use status::{ConflictInfo, RefusedHead, Status};
pub use values_merge::ValuesMerge;

pub use git2::Oid;

/// Errors of the git engine. Cheap to clone so every waiter can get its own copy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A libgit2 call failed.
    #[error("git: {message}")]
    Git {
        /// libgit2's error code, e.g. `NotFound`, `Locked`.
        code: git2::ErrorCode,
        /// libgit2's message.
        message: String,
    },
    /// A filesystem call failed.
    #[error("io: {0}")]
    Io(String),
    /// A true conflict: the session was not applied; its commit is kept on
    /// `info.refname` and listed in [`Status::conflicts`].
    #[error("{0}")]
    Conflict(Box<ConflictInfo>),
    /// A fetched remote head failed the fsck of its tree entries.
    #[error("{0}")]
    Refused(Box<RefusedHead>),
    /// A path in a session is not a valid repository path.
    #[error("invalid path {0:?}")]
    InvalidPath(String),
    /// A session operation refers to a path that does not exist (rename, chmod).
    #[error("no such path {0:?}")]
    NotFound(String),
    /// The session's base commit is unknown to the master.
    #[error("unknown base commit {0}")]
    UnknownBase(Oid),
    /// Another master holds the state directory.
    #[error("state dir {0} is in use by another master")]
    StateDirBusy(PathBuf),
    /// The state dir belongs to another remote or branch (`owner` is "url branch").
    #[error("state dir {dir} belongs to {owner}")]
    StateDirMismatch {
        /// The state dir.
        dir: PathBuf,
        /// Remote URL and branch it was created for.
        owner: String,
    },
    /// The remote could not be reached or refused the operation.
    #[error("remote: {0}")]
    Remote(String),
    /// A duration string could not be parsed.
    #[error("invalid duration {0:?} (use e.g. 250ms, 1s, 5m, 1h)")]
    Duration(String),
    /// Waiting timed out (the work itself continues).
    #[error("timed out")]
    Timeout,
    /// The master has stopped; the request was not (or no longer) handled.
    #[error("master stopped")]
    Stopped,
}

impl From<git2::Error> for Error {
    fn from(e: git2::Error) -> Self {
        Error::Git {
            code: e.code(),
            message: e.message().to_string(),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl Error {
    /// The conflict details if this is a conflict.
    pub fn conflict(&self) -> Option<&ConflictInfo> {
        match self {
            Error::Conflict(c) => Some(c),
            _ => None,
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to authenticate to the remote. Unused fields are ignored by transports that do
/// not need them (local paths, file://, git://).
#[derive(Clone, Default)]
pub struct Credentials {
    /// User name for ssh (default: the user in the URL, else `git`) and https.
    pub username: Option<String>,
    /// Private key file for ssh; without it the ssh agent is asked.
    pub ssh_key: Option<PathBuf>,
    /// Passphrase of `ssh_key`.
    pub ssh_passphrase: Option<String>,
    /// Token for https (sent as the password); without it git's credential helper is asked.
    pub https_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("ssh_key", &self.ssh_key)
            .field(
                "ssh_passphrase",
                &self.ssh_passphrase.as_ref().map(|_| "***"),
            )
            .field("https_token", &self.https_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Configuration of a master.
#[derive(Clone)]
pub struct Config {
    /// Remote URL: a path, `file://`, `git://`, `ssh://` / `user@host:path`, `https://`.
    pub remote_url: String,
    /// Branch on the remote (and locally).
    pub branch: String,
    /// Directory owned by this master (created if missing; an empty one is adopted).
    pub state_dir: PathBuf,
    /// Period of background fetches (a random jitter of up to 10% is added).
    pub fetch_interval: Duration,
    /// First retry delay after a failed push; doubles up to `push_backoff_max`.
    pub push_backoff_min: Duration,
    /// Largest retry delay after failed pushes.
    pub push_backoff_max: Duration,
    /// Default author (name, email) of sessions that set none; also the committer.
    pub author: (String, String),
    /// Merger for files with structure (SOPS); default merges everything as text.
    pub merger: Arc<dyn SemanticMerge>,
    /// Transport credentials.
    pub credentials: Credentials,
    /// Connect and read timeout of network transports (git://, ssh, https): a remote
    /// that accepts the connection and never answers fails the attempt after this.
    pub net_timeout: Duration,
    /// Batches journaled before they are checkpointed into the repository as one pack.
    pub checkpoint_every: usize,
    /// Idle time after which the journaled batches are checkpointed anyway.
    pub checkpoint_idle: Duration,
    /// Packs are merged by running this program as `PROGRAM merge-packs REPO IDX...` (the
    /// daemon passes its own binary), so the merge's memory is never the daemon's; `None`:
    /// on a thread of this process.
    pub pack_merge_exe: Option<PathBuf>,
    /// How long packs replaced by a merge are kept before deletion (readers still using
    /// an older handle finish first); default 10 s.
    pub merged_pack_grace: Duration,
}

impl Config {
    /// A configuration with defaults: branch `main`, fetch every 30 s, backoff 250 ms..30 s.
    pub fn new(remote_url: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Config {
            remote_url: remote_url.into(),
            branch: "main".to_string(),
            state_dir: state_dir.into(),
            fetch_interval: Duration::from_secs(30),
            push_backoff_min: Duration::from_millis(250),
            push_backoff_max: Duration::from_secs(30),
            author: ("valuesfs".to_string(), "valuesfs@localhost".to_string()),
            merger: Arc::new(NoSemanticMerge),
            credentials: Credentials::default(),
            net_timeout: Duration::from_secs(30),
            checkpoint_every: 128,
            checkpoint_idle: Duration::from_millis(100),
            pack_merge_exe: None,
            merged_pack_grace: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("remote_url", &self.remote_url)
            .field("branch", &self.branch)
            .field("state_dir", &self.state_dir)
            .field("fetch_interval", &self.fetch_interval)
            .field("author", &self.author)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

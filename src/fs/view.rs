//! The filesystem logic: paths, inodes, open files and sessions, with no FUSE types.
//!
//! The view is the master's current [`Snapshot`] plus an in-memory overlay (`mem`):
//! editor scratch files, new files not yet committed, drafts of refused content, empty
//! directories, and whiteouts of tracked files renamed onto scratch names. SOPS files
//! are shown decrypted; decoded blobs are cached by (blob id, store, print style), so the
//! cache never goes stale.
//!
//! This file holds the state, inodes, resolution and listing; the children hold
//! attributes (`attrs`), open files and handles (`handles`), decoding (`decode`),
//! committing, the grace period and drafts (`commit`), tree-changing operations
//! (`tree`), conflicts (`conflicts`) and the status lists (`status`), all as methods of
//! [`Fs`].
//!
//! Writes go to a per-inode buffer (`OpenFile`) shared by every handle of that inode. The
//! first flush after a handle wrote submits one session and waits until it is committed;
//! `release` submits what no flush did. Methods that wait on the master are blocking:
//! the FUSE adapter runs them on worker threads, never on a FUSE thread.
//!
//! Lock order, outermost first: the `deferred` gate (renames, unlinks and the commit of
//! files in their grace period), then a file's `committing` gate, then `state`, then
//! `cache`, then `readers`. `secrets` (the leak guard's index) is a leaf, taken with none
//! of the others held. Only the two gates are held while waiting on the master or while
//! encrypting; the mutexes never are.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use zeroize::Zeroizing;

use super::error::{not_found, Error, Kind, Result};
use super::ignore::IgnoreSet;
use super::leak::SecretIndex;
use crate::crypto::{self, Format, Keyring, SopsConfig, Style};
use crate::repo::names::{self, NameRule};
use crate::repo::{EntryKind, FileMode, MasterHandle, Oid, Reader, Session, Snapshot, Ticket};

pub mod api;
mod attrs;
mod team;
use attrs::{kind_for, perm_for};
mod commit;
pub mod conflicts;
mod decode;
mod handles;
mod slices;
mod status;
mod tree;

pub const ROOT_INO: u64 = 1;
pub const CONTROL: &str = ".valuesfs";

/// Settings of a mounted view.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    /// Every close waits for the push (as fsync does).
    pub push_sync: bool,
    /// Other users may use the mount (the root is 0755 instead of 0700; the files'
    /// mode bits apply).
    pub allow_other: bool,
    /// How long fsync (and sync closes) wait for the push.
    pub push_timeout: Duration,
    /// Extra scratch globs (`--ignore`).
    pub ignore: Vec<String>,
    /// Globs of paths that may carry decrypted secrets in clear (`--allow-plaintext`).
    pub allow_plaintext: Vec<String>,
    /// Bytes of decoded blobs kept in memory.
    pub cache_bytes: usize,
    /// Where drafts are kept (age-encrypted).
    pub state_dir: PathBuf,
    /// Largest file the view will decode or accept.
    pub max_file: usize,
    /// How long a tracked file renamed onto a scratch name may stay unreplaced before its
    /// deletion is committed.
    pub whiteout_grace: Duration,
    /// How long a new file, closed and never fsynced, stays in memory before it is
    /// committed: a temporary renamed onto its final name within it is never committed
    /// under its own name (rsync, `mkstemp` + rename, `install`). Zero commits at close.
    pub new_file_grace: Duration,
    /// Test seam: runs after a buffer's session is committed, before the buffer learns
    /// its new base (where a fetch could slip in).
    pub after_commit: Option<Hook>,
}

/// A callback the tests use to inject events at a precise point.
#[derive(Clone)]
pub struct Hook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl FsConfig {
    pub fn new(state_dir: PathBuf) -> FsConfig {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsConfig {
            uid,
            gid,
            push_sync: false,
            allow_other: false,
            push_timeout: Duration::from_secs(30),
            ignore: Vec::new(),
            allow_plaintext: Vec::new(),
            cache_bytes: 256 << 20,
            state_dir,
            max_file: crypto::sops::DEFAULT_MAX_SIZE,
            whiteout_grace: Duration::from_secs(2),
            new_file_grace: Duration::from_secs(2),
            after_commit: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// Attributes the adapter turns into the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub kind: FileKind,
    pub perm: u16,
    pub mtime: SystemTime,
    pub uid: u32,
    pub gid: u32,
    /// Immutable (history, conflicts): the kernel may cache it for long.
    pub immutable: bool,
}

/// The attributes a `setattr` call changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
}

/// Status lists: (path, reason).
pub type PathReasons = Vec<(String, String)>;

/// What the view adds to the master's status.
#[derive(Debug, Default)]
pub struct Extras {
    /// Refused content kept (age-encrypted) as drafts.
    pub drafts: PathReasons,
    /// New files kept uncommitted, and why.
    pub held: PathReasons,
    /// Files that cannot be shown decrypted.
    pub unreadable: PathReasons,
    /// Tree entries not shown because of their names (rule).
    pub unshown: PathReasons,
    /// Recent errors.
    pub errors: PathReasons,
}

/// What `open`/`create` tell the kernel about caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReply {
    pub fh: u64,
    /// Page cache still valid (same content as the last open).
    pub keep_cache: bool,
    /// Read-only open: no flush needed on close.
    pub noflush: bool,
    /// Generated content (status): bypass the page cache.
    pub direct_io: bool,
}

/// A blob as the view shows it.
pub struct Decoded {
    pub data: Zeroizing<Vec<u8>>,
    /// The decrypted SOPS file, for stable re-encryption.
    pub sops: Option<Arc<crypto::Opened>>,
    /// A SOPS file we cannot decrypt: shown as ciphertext, read-only, with this reason.
    pub locked: Option<String>,
}

#[derive(Debug)]
enum MemKind {
    Scratch,
    /// Created, not yet committed.
    Pending,
    /// A new file closed without fsync: its content passed the checks (encoding, the leak
    /// guard) and is committed once `due` passes, unless it is renamed or removed first.
    Deferred {
        due: Instant,
        base: Option<Oid>,
    },
    /// Content that could not be committed (bad content); kept encrypted on disk.
    Draft(String),
    /// A new file kept uncommitted until it can be (an empty file under a creation
    /// rule: sops cannot encrypt an empty document). Nothing to lose, so not on disk.
    Held(String),
}

#[derive(Debug)]
enum Mem {
    Dir(SystemTime),
    File {
        data: Zeroizing<Vec<u8>>,
        mode: FileMode,
        kind: MemKind,
        mtime: SystemTime,
    },
    /// A tracked file removed (unlinked, or moved onto a scratch name), and the commit it
    /// was removed from: hidden, its deletion committed once the grace period passes
    /// unless the path is recreated first (unlink-and-create is one change).
    Whiteout(Instant, Option<Oid>),
}

struct OpenFile {
    path: String,
    /// Commit the buffer's content was read from (the session's base).
    base: Option<Oid>,
    data: Zeroizing<Vec<u8>>,
    mode: FileMode,
    dirty: bool,
    handles: usize,
    scratch: bool,
    unlinked: bool,
    last: Option<Arc<Mutex<Ticket>>>,
    /// Held while this file's content is being committed: every flush, fsync and
    /// release waits for an in-flight commit (a `dup`'d descriptor's flush may have
    /// started it) before it returns.
    committing: Arc<Mutex<()>>,
    /// Why the last commit of this buffer failed, reported to flushes that waited for it.
    failed: Option<Error>,
    /// The file could not be decoded (corrupt, too large): the buffer is empty and
    /// only truncation (`O_TRUNC`, or `ftruncate` to 0 as the kernel does it) makes it
    /// usable; reads and writes before that fail with this error.
    unreadable: Option<Error>,
    /// A write into this buffer failed (over the size limit): nothing of it may be
    /// committed. Every flush, fsync and close reports it until the buffer is truncated
    /// to nothing or released (the previous version stays).
    poisoned: Option<Error>,
}

struct Handle {
    ino: u64,
    /// Counted in the inode's `OpenFile::handles` (read-only handles of an inode with
    /// no open buffer are not).
    counted: bool,
    write: bool,
    wrote: bool,
    /// Content of a read-only open, fixed at open time.
    content: Option<Arc<Decoded>>,
    ticket: Option<Arc<Mutex<Ticket>>>,
}

impl Handle {
    /// A read-only handle reading fixed content.
    fn reader(ino: u64, content: Arc<Decoded>) -> Handle {
        Handle {
            ino,
            counted: false,
            write: false,
            wrote: false,
            content: Some(content),
            ticket: None,
        }
    }
}

#[derive(Default)]
struct State {
    ino_path: HashMap<u64, String>,
    path_ino: HashMap<String, u64>,
    next_ino: u64,
    mem: BTreeMap<String, Mem>,
    open: HashMap<u64, OpenFile>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Per path: the blob id last seen and when it changed (mtime), or an explicit time.
    mtimes: HashMap<String, (Option<Oid>, SystemTime)>,
    /// Per inode: the blob id whose pages the kernel may have cached.
    cached: HashMap<u64, Oid>,
    /// Per inode: lookups the kernel holds (entry replies minus FORGETs).
    lookups: HashMap<u64, u64>,
    /// Files that cannot be shown decrypted (no identity matches: read-only ciphertext;
    /// corrupt or too large: EIO on read): path -> (blob, reason). Entries whose path
    /// no longer holds that blob are dropped when the status is rendered.
    locked: BTreeMap<String, (Oid, String)>,
    /// Tree entries not shown because of their names: path -> rule.
    unshown: BTreeMap<String, String>,
    /// Recent errors: path -> message.
    errors: BTreeMap<String, String>,
}

/// Where a path leads.
#[derive(Clone)]
pub(crate) enum Node {
    /// A live directory (in the snapshot or the overlay).
    Dir,
    /// A live tracked file.
    Blob { oid: Oid, mode: FileMode },
    /// An overlay file.
    Mem,
    /// Something under `.valuesfs/` (read-only).
    Control(super::control::CNode),
}

/// Decoded blobs are keyed by blob, store and print style: content addresses, so an
/// entry never goes stale.
type CacheKey = (Oid, Format, Style);

struct Cache {
    lru: lru::LruCache<CacheKey, Arc<Decoded>>,
    bytes: usize,
    /// Blobs that failed to decode (corrupt, too large), so lookups do not redo it.
    failed: HashMap<CacheKey, Error>,
    /// Parsed `.sops.yaml` files by blob id (parsing compiles regexes).
    configs: HashMap<Oid, std::result::Result<Arc<SopsConfig>, String>>,
    /// Print style per directory, for the root tree `style_tree` (reads stay cheap).
    styles: HashMap<String, Style>,
    style_tree: Option<Oid>,
    /// Recipients of SOPS blobs (parsed metadata only), for the drift list.
    recipients: HashMap<Oid, Vec<String>>,
    /// The files whose recipients differ from their creation rule, for one root tree.
    drift: Option<(Oid, PathReasons)>,
}

/// A mounted view of a values repository.
pub struct Fs {
    pub(crate) master: MasterHandle,
    pub(crate) keys: Arc<Keyring>,
    pub(crate) cfg: FsConfig,
    ignore: Mutex<IgnoreSet>,
    allow_plaintext: IgnoreSet,
    /// Secrets learned from decrypted SOPS files (the leak guard). A leaf lock: taken
    /// with no other lock held.
    secrets: Mutex<SecretIndex>,
    state: Mutex<State>,
    cache: Mutex<Cache>,
    readers: Mutex<Vec<Reader>>,
    /// Held while deferred new files are committed, and by renames and unlinks of
    /// overlay files, so a file is never committed under a name it just left. Taken
    /// before any other lock.
    deferred: Mutex<()>,
    /// Slice versions gone from the active folders, found in history: by head commit.
    slice_history: Mutex<Option<slices::History>>,
    pub(crate) started: SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// A name a program may create: the one name check of `repo::names`.
fn check_name(name: &str) -> Result<()> {
    match names::shown(name.as_bytes()) {
        Ok(_) => Ok(()),
        Err(NameRule::DotGit) => Err(Error::new(
            Kind::Perm,
            format!("{name:?}: .git cannot be created in the mount"),
        )),
        Err(NameRule::TooLong) => Err(Error::new(Kind::NameTooLong, "name too long")),
        Err(rule) => Err(Error::new(
            Kind::Invalid,
            format!("invalid name {name:?} ({rule})"),
        )),
    }
}

impl Fs {
    pub fn new(master: MasterHandle, keys: Arc<Keyring>, cfg: FsConfig) -> Result<Fs> {
        let mut st = State {
            next_ino: ROOT_INO + 1,
            next_fh: 1,
            ..Default::default()
        };
        st.ino_path.insert(ROOT_INO, String::new());
        st.path_ino.insert(String::new(), ROOT_INO);
        let fs = Fs {
            ignore: Mutex::new(IgnoreSet::new(&cfg.ignore)),
            allow_plaintext: IgnoreSet::only(&cfg.allow_plaintext),
            secrets: Mutex::new(SecretIndex::default()),
            master,
            keys,
            cfg,
            state: Mutex::new(st),
            cache: Mutex::new(Cache {
                // Bounded by bytes (`cache_bytes`), not entries: `LruCache::new(n)` would
                // allocate its table for n entries up front, and each new entry touches
                // another page of it (35 MiB resident after 10 000 reads).
                lru: lru::LruCache::unbounded(),
                bytes: 0,
                failed: HashMap::new(),
                configs: HashMap::new(),
                styles: HashMap::new(),
                style_tree: None,
                recipients: HashMap::new(),
                drift: None,
            }),
            readers: Mutex::new(Vec::new()),
            deferred: Mutex::new(()),
            slice_history: Mutex::new(None),
            started: SystemTime::now(),
        };
        fs.refresh_ignore();
        fs.load_drafts();
        fs.check_sops_configs(&[".sops.yaml".to_string()]);
        Ok(fs)
    }

    /// The master this view commits to.
    pub fn master(&self) -> &MasterHandle {
        &self.master
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.master.snapshot()
    }

    /// Run `f` with a pooled reader.
    pub(crate) fn with_reader<T>(&self, f: impl FnOnce(&Reader) -> Result<T>) -> Result<T> {
        let reader = lock(&self.readers).pop();
        let reader = match reader {
            Some(r) => r,
            None => self.master.reader()?,
        };
        let out = f(&reader);
        let mut pool = lock(&self.readers);
        if pool.len() < 16 {
            pool.push(reader);
        }
        out
    }

    /// Re-read `.gitignore` patterns from the current head.
    pub fn refresh_ignore(&self) {
        let snap = self.snapshot();
        let mut set = IgnoreSet::new(&self.cfg.ignore);
        if let Ok(Some((bytes, _))) = self.with_reader(|r| Ok(r.read(&snap, ".gitignore")?)) {
            set.add_gitignore(&String::from_utf8_lossy(&bytes));
        }
        *lock(&self.ignore) = set;
    }

    pub fn is_scratch(&self, path: &str) -> bool {
        lock(&self.ignore).is_scratch(path)
    }

    // ---------------------------------------------------------------- inodes

    pub fn path_of(&self, ino: u64) -> Result<String> {
        lock(&self.state)
            .ino_path
            .get(&ino)
            .cloned()
            .ok_or_else(|| Error::new(Kind::NotFound, format!("stale inode {ino}")))
    }

    pub fn ino_of(&self, path: &str) -> u64 {
        let mut st = lock(&self.state);
        Self::ino_locked(&mut st, path)
    }

    fn ino_locked(st: &mut State, path: &str) -> u64 {
        if let Some(i) = st.path_ino.get(path) {
            return *i;
        }
        let ino = st.next_ino;
        st.next_ino += 1;
        st.path_ino.insert(path.to_string(), ino);
        st.ino_path.insert(ino, path.to_string());
        ino
    }

    /// The kernel took a reference to inode `ino`, the entry `name` of `parent` (an
    /// entry reply). The number was handed out before this call, so a FORGET of the
    /// kernel's previous reference may have dropped its name in between (an entry
    /// invalidation after a fetch does exactly that): give it back, or every later
    /// operation on the entry the kernel now caches would be ENOENT.
    pub fn remember(&self, parent: u64, name: &str, ino: u64) {
        let mut st = lock(&self.state);
        *st.lookups.entry(ino).or_insert(0) += 1;
        if st.ino_path.contains_key(&ino) {
            return;
        }
        let Some(ppath) = st.ino_path.get(&parent).cloned() else {
            return;
        };
        let path = join(&ppath, name);
        st.path_ino.entry(path.clone()).or_insert(ino);
        st.ino_path.insert(ino, path);
    }

    /// The kernel dropped `n` references to an inode: forget its number once none are
    /// left and nothing else uses it. (A late FORGET may follow a new LOOKUP of the same
    /// path that got the same number back: counting keeps that mapping alive.)
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut st = lock(&self.state);
        let left = match st.lookups.get_mut(&ino) {
            Some(c) => {
                *c = c.saturating_sub(n);
                *c
            }
            None => 0,
        };
        if left > 0 {
            return;
        }
        st.lookups.remove(&ino);
        if st.open.contains_key(&ino) || st.handles.values().any(|h| h.ino == ino) {
            return;
        }
        if let Some(p) = st.ino_path.remove(&ino) {
            // The path may have a newer number by now (see `remember`): keep that one.
            if st.path_ino.get(&p) == Some(&ino) {
                st.path_ino.remove(&p);
            }
        }
        st.cached.remove(&ino);
    }

    fn new_handle(st: &mut State, h: Handle) -> u64 {
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, h);
        fh
    }

    fn move_inodes(st: &mut State, from: &str, to: &str) {
        let prefix = format!("{from}/");
        let moved: Vec<(String, u64)> = st
            .path_ino
            .iter()
            .filter(|(p, _)| p.as_str() == from || p.starts_with(&prefix))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        // The target's old inode (if any) loses its name.
        if let Some(old) = st.path_ino.remove(to) {
            st.ino_path.remove(&old);
        }
        for (p, i) in moved {
            st.path_ino.remove(&p);
            let np = format!("{to}{}", &p[from.len()..]);
            st.path_ino.insert(np.clone(), i);
            st.ino_path.insert(i, np.clone());
            if let Some(of) = st.open.get_mut(&i) {
                of.path = np;
            }
        }
    }

    // ---------------------------------------------------------------- decoding

    pub(crate) fn resolve(&self, path: &str) -> Result<Option<Node>> {
        if path == CONTROL || path.starts_with(".valuesfs/") {
            return super::control::resolve(self, path).map(|n| n.map(Node::Control));
        }
        // Names the view never shows (`.git` in any spelling) never resolve either.
        if !path.is_empty() && !names::path_shown(path) {
            return Ok(None);
        }
        {
            let st = lock(&self.state);
            match st.mem.get(path) {
                Some(Mem::Dir(_)) => return Ok(Some(Node::Dir)),
                Some(Mem::File { .. }) => return Ok(Some(Node::Mem)),
                Some(Mem::Whiteout(..)) => return Ok(None),
                None => {}
            }
            // Overlay entries below a path make it a directory.
            let below = format!("{path}/");
            if st
                .mem
                .range(below.clone()..)
                .next()
                .is_some_and(|(k, m)| k.starts_with(&below) && !matches!(m, Mem::Whiteout(..)))
            {
                return Ok(Some(Node::Dir));
            }
            // A parent hidden by a whiteout hides its children.
            let mut p = parent_of(path);
            while !p.is_empty() {
                if matches!(st.mem.get(p), Some(Mem::Whiteout(..))) {
                    return Ok(None);
                }
                p = parent_of(p);
            }
        }
        let snap = self.snapshot();
        let found = self.with_reader(|r| Ok(r.stat(&snap, path)?))?;
        Ok(match found {
            Some((EntryKind::Dir, _)) => Some(Node::Dir),
            Some((EntryKind::File(mode), oid)) => Some(Node::Blob { oid, mode }),
            _ => None,
        })
    }

    // ---------------------------------------------------------------- reading

    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        let ppath = self.path_of(parent)?;
        let path = join(&ppath, name);
        let node = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
        self.attr_of(&path, &node)
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let path = self.path_of(ino)?;
        // Open files that were unlinked stay stat-able through their handles.
        {
            let st = lock(&self.state);
            if let Some(of) = st.open.get(&ino) {
                if of.unlinked {
                    return Ok(Attr {
                        ino,
                        size: of.data.len() as u64,
                        kind: kind_for(of.mode),
                        perm: perm_for(of.mode, false),
                        mtime: SystemTime::now(),
                        uid: self.cfg.uid,
                        gid: self.cfg.gid,
                        immutable: false,
                    });
                }
            }
        }
        let node = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
        self.attr_of(&path, &node)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let path = self.path_of(ino)?;
        match self.resolve(&path)? {
            Some(Node::Blob {
                oid,
                mode: FileMode::Symlink,
            }) => self.with_reader(|r| Ok(read_blob(r, oid)?)),
            Some(Node::Control(c)) => super::control::readlink(self, &c),
            Some(_) => Err(Error::new(Kind::Invalid, format!("{path}: not a symlink"))),
            None => Err(not_found(&path)),
        }
    }

    /// Directory entries: (inode, kind, name), without `.` and `..`.
    pub fn readdir(&self, ino: u64) -> Result<Vec<(u64, FileKind, String)>> {
        let path = self.path_of(ino)?;
        let node = self.resolve(&path)?.ok_or_else(|| not_found(&path))?;
        match node {
            Node::Dir => {}
            Node::Control(c) => return super::control::readdir(self, &path, &c),
            _ => return Err(Error::new(Kind::NotDir, format!("{path}: not a directory"))),
        }
        let snap = self.snapshot();
        let listed = self
            .with_reader(|r| Ok(r.list(&snap, &path)?))?
            .unwrap_or_default();
        self.note_unshown(&path, &listed.skipped);
        let mut out: BTreeMap<String, FileKind> = BTreeMap::new();
        for e in listed.entries {
            let k = match e.kind {
                EntryKind::Dir => FileKind::Dir,
                EntryKind::File(m) => kind_for(m),
                EntryKind::Other => continue,
            };
            out.insert(e.name, k);
        }
        let st = lock(&self.state);
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        for (p, m) in st.mem.range(prefix.clone()..) {
            if !p.starts_with(&prefix) {
                break;
            }
            let rest = &p[prefix.len()..];
            if rest.is_empty() {
                continue;
            }
            match rest.split_once('/') {
                Some((dir, _)) => {
                    if !matches!(st.mem.get(&join(&path, dir)), Some(Mem::Whiteout(..))) {
                        out.entry(dir.to_string()).or_insert(FileKind::Dir);
                    }
                }
                None => match m {
                    Mem::Whiteout(..) => {
                        out.remove(rest);
                    }
                    Mem::Dir(_) => {
                        out.insert(rest.to_string(), FileKind::Dir);
                    }
                    Mem::File { mode, .. } => {
                        out.insert(rest.to_string(), kind_for(*mode));
                    }
                },
            }
        }
        drop(st);
        if path.is_empty() {
            out.insert(CONTROL.to_string(), FileKind::Dir);
        }
        let mut st = lock(&self.state);
        Ok(out
            .into_iter()
            .map(|(name, k)| {
                let ino = Self::ino_locked(&mut st, &join(&path, &name));
                (ino, k, name)
            })
            .collect())
    }

    /// Remember entries a listing left out, for the status.
    pub(crate) fn note_unshown(&self, dir: &str, skipped: &[(String, NameRule)]) {
        if skipped.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        for (name, rule) in skipped {
            let p = join(dir, name);
            if let std::collections::btree_map::Entry::Vacant(v) = st.unshown.entry(p) {
                tracing::warn!("{:?}: not shown ({rule})", v.key());
                v.insert(rule.to_string());
            }
        }
    }

    // ---------------------------------------------------------------- changing the tree
}

fn memchr_all(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Read a blob by id through a reader's repository.
pub(crate) fn read_blob(r: &Reader, oid: Oid) -> crate::repo::Result<Vec<u8>> {
    r.read_blob(oid)
}

fn write_synced(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

//! The daemon around a mount: identities, the master, the FUSE session, kernel cache
//! invalidation on new heads, the whiteout reaper and the private control socket.
//!
//! Threads: FUSE event loop (4), workers (8) for blocking operations, one invalidator
//! (head changes -> kernel notifications), one reaper, one control-socket listener.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::fuse::{Adapter, Workers};
use super::view::{Fs, FsConfig};
use crate::crypto::Keyring;
use crate::repo::{Config, Master, MasterHandle, ValuesMerge};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0}")]
    Keys(String),
    #[error("state dir {path}: {err}")]
    StateDir { path: String, err: String },
    #[error("starting the git master: {0}")]
    Master(#[from] crate::repo::Error),
    #[error("mounting {path}: {err}")]
    Fuse { path: String, err: String },
    #[error("{0}")]
    Fs(#[from] super::Error),
}

/// Everything `valuesfs mount` takes.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub remote: String,
    pub mountpoint: PathBuf,
    pub branch: String,
    pub identity: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub allow_other: bool,
    pub push_sync: bool,
    pub push_timeout: Duration,
    pub fetch_interval: Duration,
    /// Connect and read timeout of network remotes.
    pub net_timeout: Duration,
    /// How to authenticate to ssh and https remotes.
    pub credentials: crate::repo::Credentials,
    pub ignore: Vec<String>,
    /// Globs of paths the leak guard lets through in clear.
    pub allow_plaintext: Vec<String>,
    pub cache_bytes: usize,
    /// Largest file decrypted, served or accepted.
    pub max_file: usize,
    /// See [`Config::pack_merge_exe`].
    pub pack_merge_exe: Option<PathBuf>,
}

impl MountOptions {
    pub fn new(remote: impl Into<String>, mountpoint: impl Into<PathBuf>) -> MountOptions {
        MountOptions {
            remote: remote.into(),
            mountpoint: mountpoint.into(),
            branch: "main".into(),
            identity: None,
            state_dir: None,
            allow_other: false,
            push_sync: false,
            push_timeout: Duration::from_secs(30),
            fetch_interval: Duration::from_secs(30),
            net_timeout: Duration::from_secs(30),
            credentials: Default::default(),
            ignore: Vec::new(),
            allow_plaintext: Vec::new(),
            cache_bytes: 256 << 20,
            max_file: crate::crypto::sops::DEFAULT_MAX_SIZE,
            pack_merge_exe: None,
        }
    }
}

/// The default state directory for a mount: `$XDG_STATE_HOME/valuesfs/<id>`.
pub fn default_state_dir(remote: &str, branch: &str, mountpoint: &Path) -> PathBuf {
    use sha2::Digest;
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let mp = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let h = sha2::Sha256::digest(format!("{remote}\0{branch}\0{}", mp.display()).as_bytes());
    let id: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
    base.join("valuesfs").join(id)
}

/// Identities for the mount: `--identity`, else as sops finds them. Files readable by
/// group or others are refused (ssh's rule).
pub fn load_keys(identity: Option<&Path>) -> Result<Keyring, MountError> {
    if let Some(p) = identity {
        return Keyring::from_file(p, true).map_err(|e| MountError::Keys(e.to_string()));
    }
    if let Some(p) = std::env::var_os("SOPS_AGE_KEY_FILE").filter(|v| !v.is_empty()) {
        Keyring::from_file(Path::new(&p), true).map_err(|e| MountError::Keys(e.to_string()))?;
    }
    match Keyring::from_env() {
        Ok(k) => Ok(k),
        Err(crate::crypto::Error::NoIdentities { default_path }) => {
            tracing::warn!(
                "no age identity (looked at SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, {default_path}): \
                 SOPS files show as read-only ciphertext"
            );
            Ok(Keyring::default())
        }
        Err(e) => Err(MountError::Keys(e.to_string())),
    }
}

/// A running mount.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    pub fs: Arc<Fs>,
    pub master: MasterHandle,
    stop: Arc<AtomicBool>,
    pub mountpoint: PathBuf,
    pub state_dir: PathBuf,
    push_timeout: Duration,
}

/// Mark the process non-dumpable: no core dumps or ptrace by others of decrypted data.
pub fn harden_process() {
    // SAFETY: prctl with these arguments only changes a process flag.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Creates the state dir private (0700, whatever the umask), or checks an existing
/// one: another owner is refused; access for group or others is removed, and said so.
pub fn prepare_state_dir(dir: &Path) -> Result<(), MountError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let err = |e: String| MountError::StateDir {
        path: dir.display().to_string(),
        err: e,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err(e.to_string()))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err("not a directory".into()));
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(err(format!(
            "owned by uid {}, not by us ({me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| err(e.to_string()))?;
        tracing::warn!(
            "state dir {} was readable by others (mode {:o}): set to 0700",
            dir.display(),
            meta.mode() & 0o777
        );
        eprintln!(
            "valuesfs: state dir {} was readable by others (mode {:o}): set to 0700",
            dir.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

pub fn mount(opts: &MountOptions) -> Result<Mounted, MountError> {
    harden_process();
    let keys = Arc::new(load_keys(opts.identity.as_deref())?);
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&opts.remote, &opts.branch, &opts.mountpoint));
    prepare_state_dir(&state_dir)?;
    let mut cfg = Config::new(opts.remote.clone(), state_dir.clone());
    cfg.branch = opts.branch.clone();
    cfg.fetch_interval = opts.fetch_interval;
    cfg.net_timeout = opts.net_timeout;
    cfg.credentials = opts.credentials.clone();
    cfg.merger = Arc::new(ValuesMerge::new(keys.clone()));
    cfg.pack_merge_exe = opts.pack_merge_exe.clone();
    let master = Master::start(cfg)?;

    let mut fcfg = FsConfig::new(state_dir.clone());
    fcfg.push_sync = opts.push_sync;
    fcfg.allow_other = opts.allow_other;
    fcfg.push_timeout = opts.push_timeout;
    fcfg.ignore = opts.ignore.clone();
    fcfg.allow_plaintext = opts.allow_plaintext.clone();
    fcfg.cache_bytes = opts.cache_bytes;
    fcfg.max_file = opts.max_file;
    let fs = Arc::new(Fs::new(master.clone(), keys, fcfg)?);

    let mount_options = vec![
        fuser::MountOption::FSName("valuesfs".into()),
        fuser::MountOption::Subtype("valuesfs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    // `acl` All is fuser's spelling of `allow_other`.
    let mut config = fuser::Config::default();
    config.mount_options = mount_options;
    config.acl = if opts.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(4);
    let workers = Arc::new(Workers::new(8));
    let session = fuser::Session::new(Adapter::new(fs.clone(), workers), &opts.mountpoint, &config)
        .map_err(|e| MountError::Fuse {
            path: opts.mountpoint.display().to_string(),
            err: e.to_string(),
        })?;
    let notifier = session.notifier();
    let session = session.spawn().map_err(|e| MountError::Fuse {
        path: opts.mountpoint.display().to_string(),
        err: e.to_string(),
    })?;
    let stop = Arc::new(AtomicBool::new(false));

    // Remote changes: tell the kernel which cached entries and pages are stale.
    let changes = master.subscribe()?;
    {
        let fs = fs.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("valuesfs-inval".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(change) = changes.recv_timeout(Duration::from_millis(500)) else {
                        continue;
                    };
                    if change.paths.iter().any(|p| p == ".gitignore") {
                        fs.refresh_ignore();
                    }
                    fs.check_sops_configs(&change.paths);
                    // Our own sessions were done through the kernel, whose caches already
                    // match; invalidating them would race the very operations that made
                    // them (a late entry invalidation turns a fresh create into ENOENT).
                    if change.cause == crate::repo::HeadChangeCause::Sessions {
                        continue;
                    }
                    for (ino, parent, name) in fs.known_inodes(&change.paths) {
                        if let Some(i) = ino {
                            let _ = notifier.inval_inode(fuser::INodeNo(i), 0, 0);
                        }
                        if let Some(p) = parent {
                            let _ = notifier.inval_entry(fuser::INodeNo(p), name.as_ref());
                        }
                    }
                }
            })
            .map_err(|e| MountError::Fuse {
                path: opts.mountpoint.display().to_string(),
                err: e.to_string(),
            })?;
    }
    {
        let fs = fs.clone();
        let stop = stop.clone();
        let _ = std::thread::Builder::new()
            .name("valuesfs-reaper".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    fs.reap_whiteouts(false);
                    fs.commit_deferred(false);
                }
            });
    }
    serve_socket(&state_dir, fs.clone(), master.clone(), stop.clone());
    watch_unmount(&opts.mountpoint, stop.clone());
    tracing::info!(
        "mounted {} on {} (state {})",
        opts.remote,
        opts.mountpoint.display(),
        state_dir.display()
    );
    Ok(Mounted {
        session: Some(session),
        fs,
        master,
        stop,
        mountpoint: opts.mountpoint.clone(),
        state_dir,
        push_timeout: opts.push_timeout,
    })
}

/// The private control socket: one command per connection (`status`, `fetch`,
/// `unmount`, `conflicts`, `conflict show|resolve|dismiss ID [mine|theirs]`). Replies
/// that fail start with `error: `.
fn serve_socket(state_dir: &Path, fs: Arc<Fs>, master: MasterHandle, stop: Arc<AtomicBool>) {
    let path = state_dir.join("daemon.sock");
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("control socket {}: {e}", path.display());
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    let _ = std::thread::Builder::new()
        .name("valuesfs-socket".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut line = String::new();
                if BufReader::new(&conn).read_line(&mut line).is_err() {
                    continue;
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                let answer = |r: super::Result<String>| match r {
                    Ok(s) => s,
                    Err(e) => format!("error: {e}\n"),
                };
                let reply = match words.as_slice() {
                    ["conflicts"] => answer(master.status().map_err(Into::into).map(|s| {
                        s.conflicts
                            .iter()
                            .map(|c| format!("{}\t{}\t{}\n", c.id, c.path, c))
                            .collect()
                    })),
                    ["conflict", "show", id] => answer(fs.conflict_show(id)),
                    ["conflict", "resolve", id, side @ ("mine" | "theirs" | "merged")] => {
                        use crate::fs::view::conflicts::Take;
                        let take = match *side {
                            "mine" => Take::Mine,
                            "theirs" => Take::Theirs,
                            _ => Take::Merged,
                        };
                        answer(fs.conflict_resolve(id, take))
                    }
                    ["slices", "sync", rest @ ..] => {
                        let (store, only) = match rest {
                            ["--store", s, more @ ..] => (Some(*s), more),
                            more => (None, more),
                        };
                        let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
                        answer(fs.slices_sync(store, &only))
                    }
                    ["slices", "status"] => answer(fs.slices_status()),
                    ["team", op @ ("updatekeys" | "rotate"), dry @ ("0" | "1"), paths @ ..] => {
                        use crate::crypto::team::Op;
                        let op = if *op == "rotate" {
                            Op::Rotate
                        } else {
                            Op::UpdateKeys
                        };
                        let paths: Vec<String> = paths.iter().map(|p| unescape(p)).collect();
                        answer(fs.team(op, *dry == "1", &paths))
                    }
                    ["slices", "prune", keep] => match keep.parse() {
                        Ok(k) => answer(fs.slices_prune(k)),
                        Err(_) => answer(Err(crate::fs::error::Error::new(
                            crate::fs::error::Kind::Invalid,
                            format!("--keep: not a number: {keep:?}"),
                        ))),
                    },
                    ["slices", "show", name, which, fmt] => {
                        let format = if *fmt == "json" {
                            crate::crypto::Format::Json
                        } else {
                            crate::crypto::Format::Yaml
                        };
                        answer(fs.slices_show(name, Some(which), format))
                    }
                    ["slices", "diff", name, rest @ ..] => {
                        let n = |i: usize| {
                            rest.get(i)
                                .and_then(|v| v.trim_start_matches('v').parse().ok())
                        };
                        answer(fs.slices_diff(name, n(0), n(1)))
                    }
                    ["conflict", "dismiss", id] => answer(
                        master
                            .dismiss_conflict(id)
                            .map(|()| format!("conflict {id} dismissed\n"))
                            .map_err(Into::into),
                    ),
                    _ => match line.trim() {
                        "status" => {
                            super::control::status_text(&fs).unwrap_or_else(|e| e.to_string())
                        }
                        "fetch" => match master.fetch_now() {
                            Ok(()) => "ok\n".into(),
                            Err(e) => format!("error: {e}\n"),
                        },
                        "unmount" => {
                            stop.store(true, Ordering::Relaxed);
                            // SAFETY: raising a signal at ourselves; the main thread waits on it.
                            unsafe {
                                libc::kill(libc::getpid(), libc::SIGTERM);
                            }
                            "ok\n".into()
                        }
                        other => format!("error: unknown command {other:?}\n"),
                    },
                };
                let _ = conn.write_all(reply.as_bytes());
            }
        });
}

/// When the mount disappears from under us (`fusermount3 -u`, `umount`), stop the daemon
/// as if it got SIGTERM, so that pending work is pushed and the process exits.
fn watch_unmount(mountpoint: &Path, stop: Arc<AtomicBool>) {
    let mp = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let target = mp.display().to_string();
    let _ = std::thread::Builder::new()
        .name("valuesfs-watch".into())
        .spawn(move || {
            // Give the kernel a moment to list the new mount.
            std::thread::sleep(Duration::from_millis(500));
            while !stop.load(Ordering::Relaxed) {
                let mounted = std::fs::read_to_string("/proc/self/mountinfo")
                    .map(|t| {
                        t.lines()
                            .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
                    })
                    .unwrap_or(true);
                if !mounted {
                    tracing::info!("{target} was unmounted");
                    // SAFETY: raising a signal at ourselves; the main thread waits on it.
                    unsafe {
                        libc::kill(libc::getpid(), libc::SIGTERM);
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
}

/// Block SIGINT/SIGTERM in this thread and every thread started after it, so that
/// `wait_for_signal` can collect them synchronously.
pub fn block_signals() {
    // SAFETY: plain signal mask manipulation on a zeroed, initialised set; resetting the
    // dispositions first, as a job started in the background inherits SIGINT ignored.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait for SIGINT or SIGTERM (blocked by `block_signals`).
pub fn wait_for_signal() -> i32 {
    // SAFETY: sigwait on a set of blocked signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}

impl Mounted {
    /// Unmount, push what is pending (bounded), stop the master.
    pub fn unmount(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.session.take() {
            if let Err(e) = s.umount_and_join() {
                tracing::warn!("unmount: {e}");
            }
        }
        self.fs.commit_deferred(true);
        self.fs.reap_whiteouts(true);
        if let Err(e) = self.master.flush(self.push_timeout) {
            tracing::warn!("unpushed work stays in the state dir: {e}");
        }
        self.master.shutdown();
        let _ = std::fs::remove_file(self.state_dir.join("daemon.sock"));
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
            self.fs.commit_deferred(true);
            self.fs.reap_whiteouts(true);
            self.master.shutdown();
        }
    }
}

/// A control word back to a path (`valuesfs updatekeys` escapes `%`, space, tab, newline).
fn unescape(w: &str) -> String {
    w.replace("%20", " ")
        .replace("%09", "\t")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

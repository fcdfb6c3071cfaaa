//! Fetch and compare-and-swap push for every transport.
//!
//! * **Local remotes** (a path or `file://`): libgit2's local transport would update the
//!   remote ref without checking its old value, so two masters on one bare repository
//!   could overwrite each other. We therefore open the remote repository directly, copy
//!   the missing objects into it children-first (so an object present there always has
//!   its whole closure present), with fsync, and then move the ref with
//!   `git_reference_create_matching` (expected old value) under git's own `.lock`
//!   protocol, which the git CLI honours too.
//! * **Network remotes** (`git://`, ssh, https): a normal, non-forced push (never a `+`
//!   refspec). The server applies `old -> new` only if the ref still has the old value
//!   we were shown, and libgit2 refuses non-fast-forwards client-side; per-ref statuses
//!   come back through `push_update_reference`.
//!
//! In both cases a lost race is [`PushOutcome::Rejected`], never an overwrite.

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{
    AutotagOption, Cred, CredentialType, FetchOptions, Oid, PushOptions, RemoteCallbacks,
    Repository,
};

use super::{Credentials, Error, Result};

/// Result of a push attempt that reached the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote ref now is the pushed commit.
    Pushed,
    /// The remote ref was not what the push was based on; fetch and retry.
    Rejected(String),
}

/// Age after which a ref lock in a local remote is considered abandoned.
const STALE_LOCK: Duration = Duration::from_secs(10);

/// Local ref (in our repository) naming what the sync thread pushes over the network.
const PUSH_REF: &str = "refs/valuesfs/push";

/// The directory of a local remote, `None` for network URLs.
pub fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(p) = url.strip_prefix("file://") {
        return Some(PathBuf::from(p));
    }
    if url.contains("://") {
        return None;
    }
    // scp-like `user@host:path` is ssh; a ':' before any '/' marks it.
    match (url.find(':'), url.find('/')) {
        (Some(c), Some(s)) if c < s => None,
        (Some(_), None) => None,
        _ => Some(PathBuf::from(url)),
    }
}

fn callbacks<'a>(creds: &'a Credentials, tries: &'a RefCell<u32>) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    cb.credentials(move |url, user_from_url, allowed| {
        // libgit2 calls again after every failed attempt; give up instead of looping.
        let n = {
            let mut t = tries.borrow_mut();
            *t += 1;
            *t
        };
        if n > 4 {
            return Err(git2::Error::from_str("authentication failed"));
        }
        let user = creds
            .username
            .as_deref()
            .or(user_from_url)
            .unwrap_or("git")
            .to_string();
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(&user);
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            if let Some(key) = &creds.ssh_key {
                return Cred::ssh_key(&user, None, key, creds.ssh_passphrase.as_deref());
            }
            return Cred::ssh_key_from_agent(&user);
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(token) = &creds.https_token {
                let u = creds.username.as_deref().unwrap_or("x-access-token");
                return Cred::userpass_plaintext(u, token);
            }
            let cfg = git2::Config::open_default()?;
            return Cred::credential_helper(&cfg, url, creds.username.as_deref().or(user_from_url));
        }
        Err(git2::Error::from_str("no usable credentials"))
    });
    cb
}

/// Fetches `branch` (also into `refs/remotes/origin/<branch>`) and returns the remote's head
/// (`None` if the remote has no such branch).
/// Where other masters publish their unpushed commits on the remote (`<prefix><id>`),
/// and where a fetch copies them to.
pub const INBOX_PREFIX: &str = "refs/valuesfs/inbox/";
const INBOXES_LOCAL: &str = "refs/valuesfs/inboxes/";

/// The remote branch's head, and the tips of the other masters' inboxes.
pub fn fetch(
    repo: &Repository,
    url: &str,
    branch: &str,
    creds: &Credentials,
) -> Result<Option<Oid>> {
    fetch_with_inboxes(repo, url, branch, creds, false).map(|f| f.0)
}

/// Inbox tips on the remote: (master id, commit).
pub type InboxTips = Vec<(String, Oid)>;

/// [`fetch`], also fetching every inbox when `inboxes`: returns the head and the tips.
pub fn fetch_with_inboxes(
    repo: &Repository,
    url: &str,
    branch: &str,
    creds: &Credentials,
    inboxes: bool,
) -> Result<(Option<Oid>, InboxTips)> {
    // The remote head is read back from a scratch ref the fetch (re)creates, which tells
    // "no such branch" apart (git2's `Remote::list` is unsound on empty remotes).
    const SCRATCH: &str = "refs/valuesfs/fetched";
    if let Ok(mut r) = repo.find_reference(SCRATCH) {
        r.delete()?;
    }
    if let Some(path) = local_path(url) {
        if repo.references()?.next().is_none() {
            if let Err(e) = seed_from_local(repo, &path, branch) {
                // The fetch below does it all, only slower.
                tracing::warn!("copying the local remote's packs: {e}");
            }
        }
    }
    let tries = RefCell::new(0);
    let mut remote = repo.remote_anonymous(url)?;
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(creds, &tries));
    fo.download_tags(AutotagOption::None);
    // Forced only for our own scratch ref; pushes are never forced.
    let spec = format!("+refs/heads/{branch}:{SCRATCH}");
    // Inbox refs move back and forth (each master rewrites its own): forced too.
    let inbox_spec = format!("+{INBOX_PREFIX}*:{INBOXES_LOCAL}*");
    let mut specs = vec![spec.as_str()];
    if inboxes {
        specs.push(inbox_spec.as_str());
    }
    remote
        .fetch(&specs, Some(&mut fo), None)
        .map_err(remote_err)?;
    let head = match repo.refname_to_id(SCRATCH) {
        Ok(id) => Some(id),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(h) = head {
        let tracking = format!("refs/remotes/origin/{branch}");
        repo.reference(&tracking, h, true, "valuesfs: fetch")?;
    }
    let mut tips = Vec::new();
    if inboxes {
        for r in repo.references_glob(&format!("{INBOXES_LOCAL}*"))? {
            let r = r?;
            if let (Some(name), Some(id)) = (r.name(), r.target()) {
                if let Some(owner) = name.strip_prefix(INBOXES_LOCAL) {
                    tips.push((owner.to_string(), id));
                }
            }
        }
    }
    Ok((head, tips))
}

/// Publishes `target` (this master's own head) as its inbox `refname` on the remote,
/// for other masters to land with theirs. The inbox is this master's alone, so it is
/// overwritten; `have` is a commit the remote has (its branch head).
pub fn push_inbox(
    repo: &Repository,
    url: &str,
    refname: &str,
    target: Oid,
    have: Option<Oid>,
    creds: &Credentials,
) -> Result<()> {
    match local_path(url) {
        Some(path) => {
            let remote = Repository::open(&path).map_err(remote_err)?;
            copy_objects(repo, &remote, target, have)?;
            remote
                .reference(refname, target, true, "valuesfs: inbox")
                .map_err(remote_err)?;
            Ok(())
        }
        None => {
            repo.reference(INBOX_PUSH_REF, target, true, "valuesfs: inbox")?;
            let tries = RefCell::new(0);
            let failed: RefCell<Option<String>> = RefCell::new(None);
            let mut remote = repo.remote_anonymous(url)?;
            let mut cb = callbacks(creds, &tries);
            cb.push_update_reference(|name, status| {
                if let Some(s) = status {
                    *failed.borrow_mut() = Some(format!("{name}: {s}"));
                }
                Ok(())
            });
            let mut po = PushOptions::new();
            po.remote_callbacks(cb);
            let spec = format!("+{INBOX_PUSH_REF}:{refname}");
            let res = remote.push(&[spec.as_str()], Some(&mut po));
            drop(po);
            res.map_err(remote_err)?;
            match failed.into_inner() {
                Some(why) => Err(Error::Remote(why)),
                None => Ok(()),
            }
        }
    }
}

/// The first fetch from a local remote: its packs and loose objects are copied as they
/// are and the tracking ref is pointed at its head, so the fetch that follows has nothing
/// to send. libgit2's local transport would build a new pack (with a delta search) and
/// index it, 2-3 s at 100 000 files, where copying takes tens of milliseconds. Nothing is
/// seeded (the normal fetch does it all) when the remote borrows objects (alternates), is
/// shallow or partial, or its head's commit and tree are not readable from the copy.
fn seed_from_local(repo: &Repository, remote: &Path, branch: &str) -> Result<()> {
    let src_repo = Repository::open(remote)?;
    let Ok(head) = src_repo.refname_to_id(&format!("refs/heads/{branch}")) else {
        return Ok(());
    };
    let src = src_repo.path().join("objects");
    let dst = repo.path().join("objects");
    if src.join("info/alternates").exists() || src_repo.path().join("shallow").exists() {
        return Ok(());
    }
    let copy = |from: &Path, to: &Path| -> Result<()> {
        if to.exists() {
            return Ok(());
        }
        // Under a temporary name first: a crash never leaves a torn file under the real one.
        let tmp = to.with_extension("valuesfs-tmp");
        fs::copy(from, &tmp)?;
        // `copy` takes the source's mode; the state dir is private whatever the remote's.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o400))?;
        fs::rename(&tmp, to)?;
        Ok(())
    };
    let mut pairs = Vec::new();
    for e in fs::read_dir(src.join("pack"))? {
        let idx = e?.path();
        if idx.extension().is_some_and(|x| x == "promisor") {
            return Ok(());
        }
        let pack = idx.with_extension("pack");
        if idx.extension().is_some_and(|x| x == "idx") && pack.exists() {
            pairs.push((pack, idx));
        }
    }
    fs::create_dir_all(dst.join("pack"))?;
    for (pack, idx) in &pairs {
        // The pack before its index: libgit2 finds packs by their index.
        for f in [pack, idx] {
            copy(f, &dst.join("pack").join(f.file_name().unwrap_or_default()))?;
        }
    }
    for e in fs::read_dir(&src)? {
        let e = e?;
        let name = e.file_name();
        let fan = name.to_string_lossy();
        if fan.len() != 2 || !fan.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        fs::create_dir_all(dst.join(&name))?;
        for f in fs::read_dir(e.path())? {
            let f = f?;
            copy(&f.path(), &dst.join(&name).join(f.file_name()))?;
        }
    }
    // Durable before a ref names them, as libgit2's own fetch makes its pack; one
    // syncfs for every file copied.
    let dir = fs::File::open(&dst)?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let readable = repo
        .find_commit(head)
        .and_then(|c| c.tree().map(|_| ()))
        .is_ok();
    if readable {
        let tracking = format!("refs/remotes/origin/{branch}");
        repo.reference(
            &tracking,
            head,
            true,
            "valuesfs: copied from the local remote",
        )?;
    }
    Ok(())
}

fn remote_err(e: git2::Error) -> Error {
    Error::Remote(e.message().to_string())
}

/// An open handle on a local remote, reused across pushes (opening a repository with
/// many packs costs milliseconds). Dropped after any error so a moved or recreated
/// remote directory is reopened.
#[derive(Default)]
pub struct RemoteCache(Option<Repository>);

/// One push: `target` onto `branch`, moving it only from `expected` (`None`: the branch
/// must not exist yet; `target` must descend from `expected`), and optionally our own
/// head to our inbox ref `(name, commit)` in the same connection.
pub struct PushRequest<'a> {
    pub branch: &'a str,
    pub target: Oid,
    pub expected: Option<Oid>,
    pub inbox: Option<(&'a str, Oid)>,
}

/// Makes a [`PushRequest`]. The second value says what became of the inbox: `None` not
/// sent, `Some(true)` updated, `Some(false)` refused by the remote.
pub fn push(
    repo: &Repository,
    url: &str,
    req: PushRequest<'_>,
    creds: &Credentials,
    cache: &mut RemoteCache,
) -> Result<(PushOutcome, Option<bool>)> {
    let PushRequest {
        branch,
        target,
        expected,
        inbox,
    } = req;
    match local_path(url) {
        Some(path) => {
            let remote = match cache.0.take() {
                Some(r) => r,
                None => Repository::open(&path).map_err(remote_err)?,
            };
            // A local remote is cheap to write twice: the inbox goes separately.
            let res = push_local(repo, &remote, branch, target, expected);
            if res.is_ok() {
                cache.0 = Some(remote);
            }
            res.map(|o| (o, None))
        }
        None => push_network(repo, url, branch, target, inbox, creds),
    }
}

fn push_local(
    repo: &Repository,
    remote: &Repository,
    branch: &str,
    target: Oid,
    expected: Option<Oid>,
) -> Result<PushOutcome> {
    if !remote.path().exists() {
        return Err(Error::Remote(format!(
            "{} is gone",
            remote.path().display()
        )));
    }
    let refname = format!("refs/heads/{branch}");
    if !remote.is_bare() {
        // As git-receive-pack's receive.denyCurrentBranch: moving the checked-out branch
        // would leave that work tree silently out of date.
        if let Ok(head) = remote.find_reference("HEAD") {
            if head.symbolic_target() == Some(refname.as_str()) {
                return Err(Error::Remote(format!(
                    "refusing to update checked-out branch {refname} of non-bare {}",
                    remote.path().display()
                )));
            }
        }
    }
    let current = match remote.refname_to_id(&refname) {
        Ok(id) => Some(id),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => return Err(remote_err(e)),
    };
    if current != expected {
        return Ok(PushOutcome::Rejected(format!(
            "remote {refname} is {current:?}, expected {expected:?}"
        )));
    }
    copy_objects(repo, remote, target, current)?;
    let msg = "valuesfs: push";
    let mut attempt = 0u32;
    loop {
        let res = match current {
            Some(old) => remote.reference_matching(&refname, target, true, old, msg),
            None => remote.reference(&refname, target, false, msg),
        };
        match res {
            Ok(_) => return Ok(PushOutcome::Pushed),
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::Modified | git2::ErrorCode::Exists
                ) =>
            {
                return Ok(PushOutcome::Rejected(e.message().to_string()))
            }
            // Another writer holds the ref lock for a moment: retry briefly.
            Err(e) if e.code() == git2::ErrorCode::Locked && attempt < 200 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(1 + u64::from(attempt % 10)));
            }
            Err(e) if e.code() == git2::ErrorCode::Locked => {
                // A writer killed while holding the lock leaves it behind forever (git
                // asks a human to delete it). Locks are held for milliseconds, so one
                // untouched for STALE_LOCK is abandoned; removing it is safe because the
                // update below is still a compare-and-swap.
                let lock = remote.path().join(format!("{refname}.lock"));
                let age = fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if age.is_some_and(|a| a > STALE_LOCK) {
                    tracing::warn!("removing stale lock {}", lock.display());
                    fs::remove_file(&lock)?;
                    attempt = 0;
                    continue;
                }
                return Err(remote_err(e));
            }
            Err(e) => return Err(remote_err(e)),
        }
    }
}

/// Below this many new objects a push writes loose objects, like git-receive-pack's
/// default `unpackLimit`, so the remote looks as if the git CLI had pushed (and does
/// not collect one tiny pack per push).
const UNPACK_LIMIT: usize = 100;

/// Copies the objects reachable from `target` but not from `have` (whose closure the
/// remote has, as for any ref), computed from our repository alone. Small pushes are
/// written as loose objects, children before parents (so a present object implies its
/// closure); large ones as one pack, atomic because its index is renamed into place
/// last. Both are fsynced by libgit2.
fn copy_objects(
    repo: &Repository,
    remote: &Repository,
    target: Oid,
    have: Option<Oid>,
) -> Result<()> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    walk.push(target)?;
    if let Some(h) = have {
        if repo.find_commit(h).is_ok() {
            walk.hide(h)?;
        }
    }
    let commits = walk.collect::<std::result::Result<Vec<_>, _>>()?;
    let rodb = remote.odb()?;
    if let Some(objects) = small_delta(repo, &commits)? {
        let lodb = repo.odb()?;
        for oid in objects {
            let obj = lodb.read(oid)?;
            rodb.write(obj.kind(), obj.data()).map_err(remote_err)?;
        }
        return Ok(());
    }
    let mut pb = repo.packbuilder()?;
    let mut walk = repo.revwalk()?;
    walk.push(target)?;
    if let Some(h) = have {
        if repo.find_commit(h).is_ok() {
            walk.hide(h)?;
        }
    }
    pb.insert_walk(&mut walk)?;
    if pb.object_count() == 0 {
        return Ok(());
    }
    let mut buf = git2::Buf::new();
    pb.write_buf(&mut buf)?;
    let mut w = rodb.packwriter().map_err(remote_err)?;
    std::io::Write::write_all(&mut w, &buf)?;
    w.commit().map_err(remote_err)?;
    Ok(())
}

/// The objects `commits` add over their first parents, in write order, if they are a
/// linear chain adding fewer than [`UNPACK_LIMIT`] objects; `None` otherwise.
fn small_delta(repo: &Repository, commits: &[Oid]) -> Result<Option<Vec<Oid>>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in commits {
        let commit = repo.find_commit(*c)?;
        if commit.parent_count() > 1 {
            return Ok(None);
        }
        let old = match commit.parent(0) {
            Ok(p) => Some(p.tree_id()),
            Err(_) => None,
        };
        tree_delta(repo, commit.tree_id(), old, &mut seen, &mut out)?;
        out.push(*c);
        if out.len() >= UNPACK_LIMIT {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

fn tree_delta(
    repo: &Repository,
    new: Oid,
    old: Option<Oid>,
    seen: &mut std::collections::HashSet<Oid>,
    out: &mut Vec<Oid>,
) -> Result<()> {
    if Some(new) == old || !seen.insert(new) {
        return Ok(());
    }
    let new_tree = repo.find_tree(new)?;
    let old_tree = match old {
        Some(o) => Some(repo.find_tree(o)?),
        None => None,
    };
    for e in new_tree.iter() {
        let prev = old_tree
            .as_ref()
            .and_then(|t| t.get_name_bytes(e.name_bytes()))
            .map(|p| (p.id(), p.kind()));
        if prev.map(|p| p.0) == Some(e.id()) {
            continue;
        }
        match e.kind() {
            Some(git2::ObjectType::Tree) => {
                let prev_tree = prev
                    .filter(|p| p.1 == Some(git2::ObjectType::Tree))
                    .map(|p| p.0);
                tree_delta(repo, e.id(), prev_tree, seen, out)?;
            }
            Some(git2::ObjectType::Blob) if seen.insert(e.id()) => out.push(e.id()),
            _ => {} // submodule commits live elsewhere
        }
    }
    out.push(new);
    Ok(())
}

fn push_network(
    repo: &Repository,
    url: &str,
    branch: &str,
    target: Oid,
    inbox: Option<(&str, Oid)>,
    creds: &Credentials,
) -> Result<(PushOutcome, Option<bool>)> {
    repo.reference(PUSH_REF, target, true, "valuesfs: push target")?;
    if let Some((_, own)) = inbox {
        repo.reference(INBOX_PUSH_REF, own, true, "valuesfs: inbox")?;
    }
    let tries = RefCell::new(0);
    let rejected: RefCell<Option<String>> = RefCell::new(None);
    let inbox_failed = RefCell::new(false);
    let branch_ref = format!("refs/heads/{branch}");
    let mut remote = repo.remote_anonymous(url)?;
    let mut cb = callbacks(creds, &tries);
    cb.push_update_reference(|name, status| {
        if let Some(s) = status {
            if name == branch_ref {
                *rejected.borrow_mut() = Some(format!("{name}: {s}"));
            } else {
                *inbox_failed.borrow_mut() = true;
            }
        }
        Ok(())
    });
    let mut po = PushOptions::new();
    po.remote_callbacks(cb);
    // No leading '+': the server applies it only from the old value it advertised. The
    // inbox is ours alone, so it is overwritten.
    let mut specs = vec![format!("{PUSH_REF}:{branch_ref}")];
    if let Some((name, _)) = inbox {
        specs.push(format!("+{INBOX_PUSH_REF}:{name}"));
    }
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let res = remote.push(&specs, Some(&mut po));
    drop(po);
    let inbox_done = inbox.map(|_| !inbox_failed.into_inner());
    match res {
        Ok(()) => match rejected.into_inner() {
            Some(why) => Ok((PushOutcome::Rejected(why), inbox_done)),
            None => Ok((PushOutcome::Pushed, inbox_done)),
        },
        // Found before sending anything (the advertised head is not our base).
        Err(e) if e.code() == git2::ErrorCode::NotFastForward => {
            Ok((PushOutcome::Rejected(e.message().to_string()), None))
        }
        Err(e) => Err(remote_err(e)),
    }
}

const INBOX_PUSH_REF: &str = "refs/valuesfs/inbox-push";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urls() {
        assert!(local_path("/srv/values.git").is_some());
        assert!(local_path("relative/dir").is_some());
        assert_eq!(
            local_path("file:///srv/v.git"),
            Some(PathBuf::from("/srv/v.git"))
        );
        assert!(local_path("git://127.0.0.1:9418/v.git").is_none());
        assert!(local_path("git@github.com:org/v.git").is_none());
        assert!(local_path("https://example.com/v.git").is_none());
        assert!(local_path("ssh://git@host/v.git").is_none());
    }
}

//! Keeping the master's pack count small.
//!
//! Group commit writes one pack per batch. libgit2 rescans the pack directory whenever
//! an object is missing (which is every new object), at a cost that grows with the
//! number of packs, so packs are merged geometrically: when there are more than
//! [`MAX_PACKS`], the smallest are merged into one so that the packs left each hold at
//! least twice the objects of all smaller ones ([`geometric_prefix`]). Objects are taken from the `.idx`
//! files, so unreachable objects that a reader's old snapshot may still need survive.
//!
//! Merges run on a thread of their own ([`Maintenance`]), so no session waits for one;
//! they use delta search, so the state dir stays near the size of a `git gc`'d clone.
//! Deletion is deferred: merged packs are deleted a grace period after the merge,
//! by which time every handle has been reopened (handles compare [`Generation`]
//! before use), so no reader is caught between index and pack.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use git2::{Oid, Repository};

use super::{Error, Result};

/// Merge when a repository has more packs than this.
pub(crate) const MAX_PACKS: usize = 16;

/// Bumped after packs were merged; long-lived handles reopen when it changed.
#[derive(Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// `(idx path, object count)` of every pack not already scheduled for deletion.
fn list(dir: &Path, doomed: &[PathBuf]) -> Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in rd {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "idx") && !doomed.contains(&p) {
            let pack = p.with_extension("pack");
            if p.with_extension("keep").exists() {
                continue;
            }
            if pack.exists() {
                let n = idx_count(&p)?;
                out.push((p, n));
            }
        }
    }
    Ok(out)
}

/// The number of objects a pack index (version 2) lists: its last fan-out entry.
fn idx_count(idx: &Path) -> Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8 + 256 * 4];
    fs::File::open(idx)?.read_exact(&mut b)?;
    if b[..4] != [0xff, b't', b'O', b'c'] || b[4..8] != [0, 0, 0, 2] {
        return Err(Error::Io(format!(
            "unsupported pack index {}",
            idx.display()
        )));
    }
    let at = 8 + 255 * 4;
    Ok(u64::from(u32::from_be_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
    ])))
}

/// How many of the smallest packs (`counts` ascending, in objects) to merge so the
/// packs left form a geometric progression: each at least twice the objects of all
/// smaller ones together (as `git repack --geometric=2`). The history is then rewritten
/// about log2(objects) times, not at every merge. At least two when there are two.
fn geometric_prefix(counts: &[u64]) -> usize {
    let mut split = 0;
    let mut sum = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if i > 0 && c < 2 * sum {
            split = i;
        }
        sum += c;
    }
    (split + 1).max(2).min(counts.len())
}

/// Object ids listed in a pack index (version 2).
fn idx_oids(idx: &Path) -> Result<Vec<Oid>> {
    let b = fs::read(idx)?;
    let bad = || Error::Io(format!("unsupported pack index {}", idx.display()));
    if b.len() < 8 + 256 * 4 || b[..4] != [0xff, b't', b'O', b'c'] || b[4..8] != [0, 0, 0, 2] {
        return Err(bad());
    }
    let n_at = 8 + 255 * 4;
    let n = u32::from_be_bytes([b[n_at], b[n_at + 1], b[n_at + 2], b[n_at + 3]]) as usize;
    let start = 8 + 256 * 4;
    let end = start + n * 20;
    if b.len() < end {
        return Err(bad());
    }
    b[start..end]
        .chunks_exact(20)
        .map(|c| Oid::from_bytes(c).map_err(Error::from))
        .collect()
}

/// Packs merged by one finished merge, deleted once the grace period has passed.
struct Doomed {
    since: Instant,
    idx: Vec<PathBuf>,
}

/// How long merged packs stay after the merge, by default. Every handle compares the [`Generation`]
/// before each use, so only an operation already running when the merge finished can
/// still read them. Even then libgit2 keeps reading a pack it has open after deletion,
/// and skips one it had not opened yet, finding the object in the merged pack.
#[cfg(test)]
const DELETE_AFTER: Duration = Duration::from_secs(10);

/// Background pack merging for one repository, driven by its owner (the master).
///
/// Invariants: at most one merge runs at a time; it only adds a pack (readers and the
/// master go on meanwhile); the packs it merged are deleted by [`Maintenance::poll`]
/// on the owner's thread, `grace` after the merge finished (10 s by default).
pub(crate) struct Maintenance {
    repo_path: PathBuf,
    generation: Generation,
    /// Run merges as `exe merge-packs` (see [`merge_packs`]); `None`: on a thread.
    exe: Option<PathBuf>,
    grace: Duration,
    doomed: Vec<Doomed>,
    running: Option<JoinHandle<Result<Vec<PathBuf>>>>,
}

impl Maintenance {
    pub fn new(
        repo_path: &Path,
        generation: Generation,
        exe: Option<PathBuf>,
        grace: Duration,
    ) -> Self {
        Self {
            repo_path: repo_path.to_path_buf(),
            generation,
            exe,
            grace,
            doomed: Vec::new(),
            running: None,
        }
    }

    /// Collects a finished merge, deletes packs merged long enough ago, and starts a
    /// merge if there are too many packs. Returns true when a merge finished since the
    /// last call: the caller then reopens its handle, so it forgets the merged packs.
    pub fn poll(&mut self) -> bool {
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return false;
        }
        let finished = self.collect();
        self.delete_due(Instant::now());
        if let Err(e) = self.start_if_needed() {
            tracing::warn!("merging packs: {e}");
        }
        finished
    }

    /// A merge is running or merged packs wait for deletion.
    pub fn busy(&self) -> bool {
        self.running.is_some() || !self.doomed.is_empty()
    }

    /// Waits for a running merge (shutdown, tests); true if one finished.
    pub fn wait(&mut self) -> bool {
        self.collect()
    }

    fn collect(&mut self) -> bool {
        let Some(h) = self.running.take() else {
            return false;
        };
        match h.join() {
            Ok(Ok(idx)) => {
                self.generation.bump();
                self.doomed.push(Doomed {
                    since: Instant::now(),
                    idx,
                });
                true
            }
            Ok(Err(e)) => {
                tracing::warn!("merging packs: {e}");
                false
            }
            Err(_) => {
                tracing::error!("the pack merge thread panicked");
                false
            }
        }
    }

    fn delete_due(&mut self, now: Instant) {
        let grace = self.grace;
        self.doomed.retain(|d| {
            if now.duration_since(d.since) < grace {
                return true;
            }
            for idx in &d.idx {
                for ext in ["pack", "rev", "idx"] {
                    match fs::remove_file(idx.with_extension(ext)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!("deleting merged pack {}: {e}", idx.display()),
                    }
                }
            }
            false
        });
    }

    fn start_if_needed(&mut self) -> Result<()> {
        let dir = self.repo_path.join("objects").join("pack");
        let doomed: Vec<PathBuf> = self.doomed.iter().flat_map(|d| d.idx.clone()).collect();
        let mut packs = list(&dir, &doomed)?;
        if packs.len() <= MAX_PACKS {
            return Ok(());
        }
        packs.sort_by_key(|p| p.1);
        let counts: Vec<u64> = packs.iter().map(|p| p.1).collect();
        packs.truncate(geometric_prefix(&counts));
        let victims: Vec<PathBuf> = packs.into_iter().map(|p| p.0).collect();
        let path = self.repo_path.clone();
        let exe = self.exe.clone();
        let h = std::thread::Builder::new()
            .name("valuesfs-packs".into())
            .spawn(move || match exe {
                Some(exe) => merge_in_child(&exe, &path, victims),
                None => merge(&path, &victims).map(|()| victims),
            })?;
        self.running = Some(h);
        Ok(())
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.wait();
    }
}

/// Runs [`merge_packs`] as `exe merge-packs REPO IDX...` and waits for it.
fn merge_in_child(exe: &Path, repo_path: &Path, victims: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new(exe)
        .arg("merge-packs")
        .arg(repo_path)
        .args(&victims)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Io(format!(
            "{} merge-packs: {} ({})",
            exe.display(),
            err.trim(),
            out.status
        )));
    }
    Ok(victims)
}

/// The `merge-packs` command: one pack of every object the pack indexes `idx` list,
/// written into `repo_path` (the packs themselves stay; their owner deletes them).
pub fn merge_packs(repo_path: &Path, idx: &[PathBuf]) -> Result<()> {
    // A merge the daemon no longer waits for is of no use to anyone.
    #[cfg(target_os = "linux")]
    // SAFETY: a plain prctl on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    // The merged pack must be durable before the packs it replaces are deleted, and
    // the daemon's own libgit2 settings (fsync, bounded caches) apply here too.
    super::master::enable_fsync();
    merge(repo_path, idx)
}

/// Writes one pack holding every object of `victims`, with deltas, through a handle of
/// its own.
///
/// Memory stays bounded on a long history: the pack is streamed to the indexer rather
/// than built in one buffer, and computed deltas are kept only up to 1 MiB (the rest are
/// computed again when written). libgit2 reads its "no delta above this size" threshold
/// from the same `pack.deltaCacheSize` key, so no object above 1 MiB is deltified.
fn merge(repo_path: &Path, victims: &[PathBuf]) -> Result<()> {
    // The delta search is the one long computation here: let sessions and reads go first.
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread (Linux nice values are per thread).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
    let repo = Repository::open_bare(repo_path)?;
    let file = repo_path.join("valuesfs-merge.gitconfig");
    if !file.exists() {
        fs::write(
            &file,
            "[pack]\n\tdeltaCacheSize = 1048576\n\twindowMemory = 4194304\n",
        )?;
    }
    repo.config()?
        .add_file(&file, git2::ConfigLevel::App, true)?;
    let mut pb = repo.packbuilder()?;
    pb.set_threads(1);
    for idx in victims {
        for oid in idx_oids(idx)? {
            pb.insert_object(oid, None)?;
        }
    }
    super::master::write_pack(&repo.odb()?, &mut pb)?;
    tracing::debug!("merged {} packs", victims.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_the_smallest_packs_until_the_rest_is_geometric() {
        // Sixteen checkpoint packs beside one big merged pack: only the small ones.
        let mut c = vec![370u64; 16];
        c.push(48_000);
        assert_eq!(geometric_prefix(&c), 16);
        // Once the small ones outweigh half the big one, it is rewritten too.
        let mut c = vec![370u64; 16];
        c.push(10_000);
        assert_eq!(geometric_prefix(&c), 17);
        // Already geometric: the two smallest, the least work that lowers the count.
        assert_eq!(geometric_prefix(&[1, 3, 10, 30, 100]), 2);
        assert_eq!(geometric_prefix(&[5]), 1);
        assert_eq!(geometric_prefix(&[]), 0);
    }

    #[test]
    fn merges_and_keeps_every_object() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let mut all = Vec::new();
        for i in 0..(MAX_PACKS + 3) {
            let b = repo.blob(format!("blob {i}").as_bytes()).expect("blob");
            all.push(b);
            let mut pb = repo.packbuilder().expect("pb");
            pb.insert_object(b, None).expect("insert");
            let mut buf = git2::Buf::new();
            pb.write_buf(&mut buf).expect("write");
            let odb = repo.odb().expect("odb");
            let mut w = odb.packwriter().expect("pw");
            std::io::Write::write_all(&mut w, &buf).expect("w");
            w.commit().expect("commit");
        }
        let g = Generation::default();
        let mut m = Maintenance::new(dir.path(), g.clone(), None, DELETE_AFTER);
        assert!(
            !m.poll(),
            "nothing finished yet: the merge has just started"
        );
        assert!(m.wait(), "the merge finished");
        assert_eq!(g.get(), 1);
        let pack_dir = dir.path().join("objects/pack");
        let doomed: Vec<PathBuf> = m.doomed.iter().flat_map(|d| d.idx.clone()).collect();
        assert_eq!(doomed.len(), MAX_PACKS + 3);
        assert_eq!(list(&pack_dir, &doomed).expect("list").len(), 1);
        // Merged packs stay until DELETE_AFTER has passed, then go.
        m.delete_due(Instant::now());
        assert_eq!(list(&pack_dir, &[]).expect("list").len(), MAX_PACKS + 4);
        m.delete_due(Instant::now() + DELETE_AFTER);
        assert_eq!(list(&pack_dir, &[]).expect("list").len(), 1);
        // Loose copies gone, packs deleted at a later round: objects still there.
        for entry in fs::read_dir(dir.path().join("objects")).expect("rd") {
            let p = entry.expect("e").path();
            if p.file_name().is_some_and(|n| n.len() == 2) {
                fs::remove_dir_all(p).expect("rm loose");
            }
        }
        let fresh = Repository::open_bare(dir.path()).expect("open");
        for b in &all {
            assert!(fresh.find_blob(*b).is_ok());
        }
    }
}

//! Keeping the master's pack count small.
//!
//! Group commit writes one pack per batch. libgit2 rescans the pack directory whenever
//! an object is missing (which is every new object), at a cost that grows with the
//! number of packs, so packs are merged geometrically: when there are more than
//! [`MAX_PACKS`], all packs but the largest are merged into one (or all of them, if
//! the small ones together outweigh the largest). Objects are taken from the `.idx`
//! files, so unreachable objects that a reader's old snapshot may still need survive.
//!
//! Deletion is deferred by one round: the packs merged now are deleted at the next
//! merge, by which time every handle has been reopened (handles compare
//! [`Generation`] before use), so no reader is caught between index and pack.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// `(idx path, pack size)` of every pack not already scheduled for deletion.
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
            if let Ok(m) = fs::metadata(&pack) {
                out.push((p, m.len()));
            }
        }
    }
    Ok(out)
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

/// Merges packs if there are too many; returns true when it changed anything (then
/// the caller reopens its repository). `doomed` carries last round's merged packs.
pub(crate) fn maybe_merge(
    repo: &Repository,
    doomed: &mut Vec<PathBuf>,
    generation: &Generation,
) -> Result<bool> {
    let dir = repo.path().join("objects").join("pack");
    let mut packs = list(&dir, doomed)?;
    if packs.len() <= MAX_PACKS {
        return Ok(false);
    }
    // Last round's victims: every handle has reopened since (generation bump).
    for idx in doomed.drain(..) {
        for ext in ["pack", "rev", "idx"] {
            match fs::remove_file(idx.with_extension(ext)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    packs.sort_by_key(|p| p.1);
    let packs_len = packs.len();
    let largest = packs.last().map_or(0, |p| p.1);
    let small: u64 = packs[..packs.len() - 1].iter().map(|p| p.1).sum();
    let victims: Vec<PathBuf> = if small >= largest {
        packs.into_iter().map(|p| p.0).collect()
    } else {
        packs[..packs.len() - 1]
            .iter()
            .map(|p| p.0.clone())
            .collect()
    };
    // Deltas only when everything is merged (rare, geometric): a fresh handle, since
    // the master's own has delta search turned off. The frequent small merges stay
    // cheap so they do not stall the sessions queued behind them.
    let fresh;
    let repo = if victims.len() == packs_len {
        fresh = Repository::open_bare(repo.path())?;
        &fresh
    } else {
        repo
    };
    let mut pb = repo.packbuilder()?;
    for idx in &victims {
        for oid in idx_oids(idx)? {
            pb.insert_object(oid, None)?;
        }
    }
    let mut buf = git2::Buf::new();
    pb.write_buf(&mut buf)?;
    let odb = repo.odb()?;
    let mut w = odb.packwriter()?;
    std::io::Write::write_all(&mut w, &buf)?;
    w.commit()?;
    tracing::debug!("merged {} packs", victims.len());
    *doomed = victims;
    generation.bump();
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut doomed = Vec::new();
        assert!(maybe_merge(&repo, &mut doomed, &g).expect("merge"));
        assert_eq!(g.get(), 1);
        let pack_dir = dir.path().join("objects/pack");
        assert_eq!(list(&pack_dir, &doomed).expect("list").len(), 1);
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

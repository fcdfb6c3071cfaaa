//! The master's repository store: fsck of fetched heads, conflict records, parking
//! rejected commits on refs, and writing batches of objects (in memory until a batch's
//! ref write, then one pack).

use super::*;

/// Checks the tree of a fetched head as git fsck checks trees: the first bad entry, if
/// any. Only the head's tree is published, so only it is checked: a bad entry in older
/// history stays out of the view (history views filter names too), and a fix pushed on
/// top of it is accepted.
pub(super) fn fsck_head(
    repo: &Repository,
    head: Oid,
    verified: &mut HashSet<Oid>,
) -> Result<Option<RefusedHead>> {
    let tree = repo.find_commit(head)?.tree_id();
    Ok(
        names::fsck_tree(repo, tree, verified)?.map(|bad| RefusedHead {
            head: head.to_string(),
            path: bad.path,
            rule: bad.rule.id().to_string(),
        }),
    )
}

pub(super) fn ref_id(repo: &Repository, name: &str) -> Result<Option<Oid>> {
    match repo.refname_to_id(name) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn load_conflicts(repo: &Repository, dir: &Path) -> Result<Vec<ConflictInfo>> {
    let mut out = Vec::new();
    for r in repo.references_glob("refs/valuesfs/conflicts/*")? {
        let r = r?;
        let (Some(name), Some(target)) = (r.name(), r.target()) else {
            continue;
        };
        let id = name
            .trim_start_matches("refs/valuesfs/conflicts/")
            .to_string();
        let rec = fs::read(dir.join(format!("{id}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice::<ConflictInfo>(&b).ok());
        out.push(rec.unwrap_or_else(|| ConflictInfo {
            id: id.clone(),
            path: String::new(),
            key: None,
            message: "record lost".to_string(),
            refname: name.to_string(),
            commit: target.to_string(),
            at: String::new(),
            phase: String::new(),
        }));
    }
    out.sort_by(|a, b| a.at.cmp(&b.at));
    Ok(out)
}

/// Keeps `commit` on a conflicts ref with a durable record; returns the record.
pub(super) fn park(
    repo: &Repository,
    mem: &mut Option<MemObjects>,
    dir: &Path,
    list: &mut Vec<ConflictInfo>,
    commit: Oid,
    c: PathConflict,
    phase: &str,
) -> Result<ConflictInfo> {
    let id = commit.to_string()[..12].to_string();
    let info = ConflictInfo {
        id: id.clone(),
        path: c.path,
        key: c.detail.key,
        message: c.detail.message,
        refname: format!("refs/valuesfs/conflicts/{id}"),
        commit: commit.to_string(),
        at: now_rfc3339(),
        phase: phase.to_string(),
    };
    let file = dir.join(format!("{id}.json"));
    let tmp = dir.join(format!("{id}.json.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&info).map_err(|e| Error::Io(e.to_string()))?)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &file)?;
    fsync_dir(dir)?;
    let parents: Vec<Oid> = repo.find_commit(commit)?.parent_ids().collect();
    persist(mem, repo, &[commit], &parents, true)?;
    repo.reference(&info.refname, commit, true, "valuesfs: conflict")?;
    tracing::warn!("{info}");
    crate::metrics::inc(&crate::metrics::global().conflicts);
    list.retain(|x| x.id != id);
    list.push(info.clone());
    Ok(info)
}

/// New objects of the current batch: written to an in-memory odb backend (highest
/// priority, so it takes every write and is read first), then stored as one fsynced
/// pack before any ref may point at them. One pack per batch instead of one fsynced
/// loose file per object is what makes group commit cheap.
pub(super) struct MemObjects {
    // Field order is drop order: the mempack is owned by the odb kept alive below.
    pub(super) mempack: git2::Mempack<'static>,
    pub(super) odb: git2::Odb<'static>,
    pub(super) dirty: bool,
}

// SAFETY: libgit2 objects are not bound to the thread that made them; they only need
// to be used by one thread at a time, which owning them in `State` guarantees (the same
// reasoning git2 applies to `Repository: Send`).
unsafe impl Send for MemObjects {}

impl MemObjects {
    pub(super) fn new(repo: &Repository) -> Result<MemObjects> {
        // Batch packs are small and short-lived (merged later, with deltas, by a fresh
        // handle): skip delta search for them.
        without_deltas(repo)?;
        let odb = repo.odb()?;
        let mempack = odb.add_new_mempack_backend(1000)?;
        // SAFETY: the lifetimes only tie these handles to the Rust `Repository` value;
        // libgit2 reference-counts the odb (we hold a reference in `odb`) and the mempack
        // backend is freed by that odb only. `State` drops this before its `Repository`.
        let mempack: git2::Mempack<'static> = unsafe { std::mem::transmute(mempack) };
        let odb: git2::Odb<'static> = unsafe { std::mem::transmute(odb) };
        Ok(MemObjects {
            mempack,
            odb,
            dirty: false,
        })
    }

    /// Writes the objects that commits `tips` add over `hide` (commits already on disk)
    /// as one pack (fsynced by libgit2) and empties memory. Anything else in memory
    /// (objects of no-op or rejected sessions) is garbage and dropped.
    ///
    /// Not `git_mempack_dump`: it packs the *whole tree* of every commit, which makes
    /// each batch cost as much as the repository is large.
    ///
    /// With `keep`, memory is left as it is: used for a conflict commit in the middle of
    /// a batch whose other commits are not durable yet.
    pub(super) fn persist(
        &mut self,
        repo: &Repository,
        tips: &[Oid],
        hide: &[Oid],
        keep: bool,
    ) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut walk = repo.revwalk()?;
        for t in tips {
            walk.push(*t)?;
        }
        for h in hide {
            // Only commits we have can bound the walk (all of them should be here).
            if repo.find_commit(*h).is_ok() {
                walk.hide(*h)?;
            }
        }
        let mut pb = repo.packbuilder()?;
        pb.insert_walk(&mut walk)?;
        write_pack(&self.odb, &mut pb)?;
        if !keep {
            self.mempack.reset()?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// Writes what `pb` holds as one pack (fsynced by libgit2), if anything. Streamed chunk
/// by chunk: a batch with a large file never holds the whole pack in memory besides the
/// objects themselves.
pub(crate) fn write_pack(odb: &git2::Odb<'_>, pb: &mut git2::PackBuilder<'_>) -> Result<()> {
    if pb.object_count() == 0 {
        return Ok(());
    }
    let mut w = odb.packwriter()?;
    let mut failed = None;
    pb.foreach(|chunk| match w.write_all(chunk) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    w.commit()?;
    Ok(())
}

pub(super) fn persist(
    mem: &mut Option<MemObjects>,
    repo: &Repository,
    tips: &[Oid],
    hide: &[Oid],
    keep: bool,
) -> Result<()> {
    match mem {
        Some(m) => m.persist(repo, tips, hide, keep),
        None => Ok(()),
    }
}

/// Turns off delta search in packs built through this handle. libgit2 reads its "no
/// delta above this size" threshold from `pack.deltaCacheSize`; an app-level config
/// file on this handle only sets it to 1 byte. If that ever stops working we merely
/// lose speed.
pub(crate) fn without_deltas(repo: &Repository) -> Result<()> {
    let file = repo.path().join("valuesfs-nodelta.gitconfig");
    if !file.exists() {
        fs::write(&file, "[pack]\n\tdeltaCacheSize = 1\n")?;
    }
    repo.config()?
        .add_file(&file, git2::ConfigLevel::App, true)?;
    Ok(())
}

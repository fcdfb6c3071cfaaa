//! Slices in the mount: the slice functions (`crate::slices`) over the current head, and
//! `sync` as one session through the master. Versions are byte copies of their sources,
//! so encrypted sources stay encrypted.

use super::*;
use crate::slices::{self, RepoView, SliceError, StoreCfg};

/// The view of one snapshot the slice functions read.
struct At<'a> {
    fs: &'a Fs,
    snap: Arc<Snapshot>,
}

impl RepoView for At<'_> {
    fn files(&self, dir: &str) -> std::result::Result<Vec<(String, Oid)>, String> {
        let listing = self
            .fs
            .with_reader(|r| Ok(r.list(&self.snap, dir)?))
            .map_err(|e| e.message)?;
        Ok(listing
            .map(|l| {
                l.entries
                    .into_iter()
                    .filter(|e| matches!(e.kind, EntryKind::File(m) if m != FileMode::Symlink))
                    .map(|e| (e.name, e.oid))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn is_dir(&self, dir: &str) -> bool {
        matches!(
            self.fs.with_reader(|r| Ok(r.stat(&self.snap, dir)?)),
            Ok(Some((EntryKind::Dir, _)))
        )
    }

    fn stored(&self, oid: Oid) -> std::result::Result<Vec<u8>, String> {
        self.fs
            .with_reader(|r| Ok(read_blob(r, oid)?))
            .map_err(|e| e.message)
    }

    fn plain(&self, path: &str, oid: Oid) -> std::result::Result<Vec<u8>, String> {
        self.fs
            .decode(path, oid)
            .map(|d| d.data.to_vec())
            .map_err(|e| e.message)
    }
}

fn bad(e: SliceError) -> Error {
    Error::new(Kind::Invalid, e.0)
}

impl Fs {
    fn slice_view(&self) -> At<'_> {
        At {
            fs: self,
            snap: self.snapshot(),
        }
    }

    /// The stores of `.valuesfs.yaml` in the head (none without the file).
    fn slice_stores(&self, view: &At<'_>) -> Result<Vec<StoreCfg>> {
        let Some((EntryKind::File(_), oid)) =
            self.with_reader(|r| Ok(r.stat(&view.snap, slices::CONFIG_FILE)?))?
        else {
            return Ok(Vec::new());
        };
        // Decoded: a creation rule may have encrypted it like any other YAML file.
        let bytes = self.decode(slices::CONFIG_FILE, oid)?;
        let text = String::from_utf8_lossy(&bytes.data);
        slices::parse_config(&text, Some(view)).map_err(bad)
    }

    fn store_named(&self, stores: Vec<StoreCfg>, name: &str) -> Result<StoreCfg> {
        stores
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::new(Kind::NotFound, format!("no slice store {name:?}")))
    }

    /// `slices sync`: every changed source gets its next version, all in one commit;
    /// returns once the commit is in the view, with what was written. When another
    /// mount wrote the same version number first (the push finds it), the sync's commit
    /// is dropped and planned again on the new head: numbers stay consecutive.
    pub fn slices_sync(&self, store: Option<&str>, only: &[String]) -> Result<String> {
        let mut attempt = 0;
        let mut notes = String::new();
        loop {
            let view = self.slice_view();
            let mut stores = self.slice_stores(&view)?;
            if let Some(s) = store {
                stores = vec![self.store_named(stores, s)?];
            }
            let plan = slices::plan_sync(&view, &stores, only).map_err(bad)?;
            if plan.is_empty() {
                return Ok(format!("{notes}nothing to sync\n"));
            }
            let mut session = Session::new(view.snap.commit);
            let mut report = notes.clone();
            for p in &plan {
                session.write(p.path.as_str(), p.content.clone());
                report.push_str(&format!(
                    "{}/{}: v{}{} -> {}\n",
                    p.store,
                    p.slice,
                    p.n,
                    if p.deleted { " (source deleted)" } else { "" },
                    p.path
                ));
            }
            session.message(format!("valuesfs: slices sync ({} versions)", plan.len()));
            let mut ticket = self.master.submit(session)?;
            ticket.wait_committed()?;
            match ticket.wait_pushed(self.cfg.push_timeout) {
                Err(crate::repo::Error::Conflict(c)) if attempt < 5 => {
                    // The rejected commit holds only copies of sources still in the
                    // repository: nothing is lost by dropping it.
                    tracing::info!(
                        "slices sync: {} was taken meanwhile; planning again",
                        c.path
                    );
                    notes.push_str(&format!(
                        "{} was written by another sync first: planned again\n",
                        c.path
                    ));
                    self.master.dismiss_conflict(&c.id)?;
                    attempt += 1;
                }
                Err(crate::repo::Error::Conflict(c)) => {
                    return Err(Error::from(crate::repo::Error::Conflict(c)))
                }
                Ok(_) => return Ok(report),
                // Offline or slow: committed locally, pushed later like any session.
                Err(e) => {
                    report.push_str(&format!("(committed; not pushed yet: {e})\n"));
                    return Ok(report);
                }
            }
        }
    }

    /// `slices prune --keep N`: old versions and deleted slices leave the active
    /// folders in one commit; they stay readable under `purged/`.
    pub fn slices_prune(&self, keep: usize) -> Result<String> {
        let view = self.slice_view();
        let stores = self.slice_stores(&view)?;
        let gone = slices::plan_prune(&view, &stores, keep).map_err(bad)?;
        if gone.is_empty() {
            return Ok("nothing to prune\n".into());
        }
        let mut session = Session::new(view.snap.commit);
        let mut report = String::new();
        for p in &gone {
            session.delete(p.as_str());
            report.push_str(&format!("pruned {p}\n"));
        }
        session.message(format!("valuesfs: slices prune ({} versions)", gone.len()));
        self.master.submit(session)?.wait_committed()?;
        Ok(report)
    }

    /// With `auto_sync`, the version file a session writing a source also writes.
    pub(super) fn auto_version(
        &self,
        path: &str,
        stored: &[u8],
        plain: &[u8],
    ) -> Option<(String, Vec<u8>)> {
        let view = self.slice_view();
        let stores = self.slice_stores(&view).ok()?;
        if !stores.iter().any(|s| s.auto_sync) {
            return None;
        }
        slices::auto_version(&view, &stores, path, stored, plain).map(|p| (p.path, p.content))
    }

    /// Problems of `.valuesfs.yaml`, for the status file.
    pub(crate) fn slices_problems(&self) -> Vec<(String, String)> {
        match self.slice_stores(&self.slice_view()) {
            Ok(_) => Vec::new(),
            Err(e) => vec![(slices::CONFIG_FILE.to_string(), e.message)],
        }
    }

    /// `slices status`.
    pub fn slices_status(&self) -> Result<String> {
        let view = self.slice_view();
        let stores = self.slice_stores(&view)?;
        slices::status(&view, &stores).map_err(bad)
    }

    /// The store of `STORE/SLICE` and the slice's parsed versions, oldest first.
    fn slice_versions(&self, name: &str) -> Result<(StoreCfg, Vec<(u32, Value)>)> {
        let view = self.slice_view();
        let (store, slice) = name
            .split_once('/')
            .ok_or_else(|| Error::new(Kind::Invalid, "name a slice as STORE/SLICE"))?;
        let store = self.store_named(self.slice_stores(&view)?, store)?;
        let pruned = self.pruned_versions(&view, &store, slice);
        let versions = slices::parsed_versions(&view, &store, slice, &pruned).map_err(bad)?;
        Ok((store, versions))
    }

    /// `slices show STORE/SLICE [vN|model] [yaml|json]`: a version or the model.
    pub fn slices_show(&self, name: &str, which: Option<&str>, format: Format) -> Result<String> {
        let (store, versions) = self.slice_versions(name)?;
        let doc = match which {
            None | Some("model") => slices::model(&versions, &store.identity),
            Some(v) => {
                let n: u32 = v
                    .trim_start_matches('v')
                    .parse()
                    .map_err(|_| Error::new(Kind::Invalid, format!("bad version {v:?}")))?;
                versions
                    .into_iter()
                    .find(|(m, _)| *m == n)
                    .map(|(_, d)| d)
                    .ok_or_else(|| Error::new(Kind::NotFound, format!("{name}: no v{n}")))?
            }
        };
        Ok(crypto::sops::render_plain(format, &[doc]))
    }

    /// `slices diff STORE/SLICE [A] [B]` (default: the last two versions).
    pub fn slices_diff(&self, name: &str, a: Option<u32>, b: Option<u32>) -> Result<String> {
        let (store, versions) = self.slice_versions(name)?;
        let pick = |n: Option<u32>, back: usize| -> Result<(u32, Value)> {
            let found = match n {
                Some(n) => versions.iter().find(|(m, _)| *m == n),
                None => versions
                    .len()
                    .checked_sub(back)
                    .and_then(|i| versions.get(i)),
            };
            found
                .cloned()
                .ok_or_else(|| Error::new(Kind::NotFound, format!("{name}: no such version")))
        };
        let empty = (0, Value::Map(Vec::new()));
        let (va, vb) = match (a, b) {
            (Some(_), Some(_)) => (pick(a, 0)?, pick(b, 0)?),
            (Some(_), None) => (pick(a, 0)?, pick(None, 1)?),
            (None, _) => (pick(None, 2).unwrap_or(empty), pick(None, 1)?),
        };
        Ok(slices::diff((va.0, &va.1), (vb.0, &vb.1), &store.identity))
    }
}

use crate::crypto::value::Value;

/// Versions found in history and gone from the active folders, for one head:
/// (head, store) -> slice -> versions, newest blob of each number.
#[derive(Default)]
pub(crate) struct History {
    head: Option<Oid>,
    stores: std::collections::HashMap<String, BTreeMap<String, Vec<slices::Version>>>,
}

impl Fs {
    /// The versions of `slice` that history has and the active folder no longer does.
    fn pruned_versions(
        &self,
        view: &At<'_>,
        store: &StoreCfg,
        slice: &str,
    ) -> Vec<slices::Version> {
        self.store_history(view, store)
            .remove(slice)
            .unwrap_or_default()
    }

    /// Every version gone from a store's active folder: walk the history from the head,
    /// reading the folder at each commit where it changed. Cached per head.
    fn store_history(
        &self,
        view: &At<'_>,
        store: &StoreCfg,
    ) -> BTreeMap<String, Vec<slices::Version>> {
        let head = view.snap.commit;
        {
            let h = lock(&self.slice_history);
            if let Some(h) = h.as_ref().filter(|h| h.head == head) {
                if let Some(found) = h.stores.get(&store.name) {
                    return found.clone();
                }
            }
        }
        let found = self.walk_store_history(view, store).unwrap_or_default();
        let mut h = lock(&self.slice_history);
        let h = h.get_or_insert_with(History::default);
        if h.head != head {
            *h = History {
                head,
                stores: Default::default(),
            };
        }
        h.stores.insert(store.name.clone(), found.clone());
        found
    }

    fn walk_store_history(
        &self,
        view: &At<'_>,
        store: &StoreCfg,
    ) -> Option<BTreeMap<String, Vec<slices::Version>>> {
        let head = view.snap.commit?;
        let now: std::collections::HashSet<String> = view
            .files(&store.active)
            .ok()?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let repo = self
            .with_reader(|r| {
                git2::Repository::open_bare(r.repo_path())
                    .map_err(|e| Error::new(Kind::Io, e.to_string()))
            })
            .ok()?;
        let mut walk = repo.revwalk().ok()?;
        walk.push(head).ok()?;
        let mut seen_trees = std::collections::HashSet::new();
        let mut out: BTreeMap<String, Vec<slices::Version>> = BTreeMap::new();
        let mut taken = std::collections::HashSet::new();
        for oid in walk.flatten() {
            let Ok(tree) = repo.find_commit(oid).and_then(|c| c.tree()) else {
                continue;
            };
            let Ok(entry) = tree.get_path(std::path::Path::new(&store.active)) else {
                continue;
            };
            if !seen_trees.insert(entry.id()) {
                continue;
            }
            let Ok(dir) = repo.find_tree(entry.id()) else {
                continue;
            };
            for e in dir.iter() {
                let Some(name) = e.name() else { continue };
                if now.contains(name) || e.kind() != Some(git2::ObjectType::Blob) {
                    continue;
                }
                let Some((slice, n)) = slices::parse_version_name(name) else {
                    continue;
                };
                // Versions are never rewritten: the first blob met is the version.
                if taken.insert(name.to_string()) {
                    out.entry(slice.to_string())
                        .or_default()
                        .push(slices::Version {
                            n,
                            path: join(&store.active, name),
                            oid: e.id(),
                        });
                }
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|v| v.n);
        }
        Some(out)
    }

    fn slice_store(&self, view: &At<'_>, store: &str) -> Option<StoreCfg> {
        self.slice_stores(view)
            .ok()?
            .into_iter()
            .find(|s| s.name == store)
    }
}

fn version_files(vs: Vec<slices::Version>) -> Vec<(String, String, Oid)> {
    vs.into_iter()
        .map(|v| {
            let ext = v.path.rsplit('.').next().unwrap_or("yaml").to_string();
            (format!("v{}.{ext}", v.n), v.path, v.oid)
        })
        .collect()
}

/// What `.valuesfs/slices/...` shows (read-only, decrypted).
impl crate::fs::control::SliceViews for Fs {
    /// Stores of the head's `.valuesfs.yaml` (an invalid one shows none).
    fn store_names(&self) -> Vec<String> {
        let view = self.slice_view();
        self.slice_stores(&view)
            .map(|s| s.into_iter().map(|s| s.name).collect())
            .unwrap_or_default()
    }

    fn slice_names(&self, store: &str) -> Vec<String> {
        let view = self.slice_view();
        let Some(cfg) = self.slice_store(&view, store) else {
            return Vec::new();
        };
        let mut names: Vec<String> = slices::sources(&view, &cfg)
            .map(|m| m.into_keys().collect())
            .unwrap_or_default();
        if let Ok(v) = slices::versions(&view, &cfg) {
            names.extend(v.into_keys());
        }
        names.extend(self.store_history(&view, &cfg).into_keys());
        names.sort();
        names.dedup();
        names
    }

    fn active_files(&self, store: &str, slice: &str) -> Vec<(String, String, Oid)> {
        let view = self.slice_view();
        let Some(cfg) = self.slice_store(&view, store) else {
            return Vec::new();
        };
        let Ok(mut all) = slices::versions(&view, &cfg) else {
            return Vec::new();
        };
        version_files(all.remove(slice).unwrap_or_default())
    }

    fn purged_files(&self, store: &str, slice: &str) -> Vec<(String, String, Oid)> {
        let view = self.slice_view();
        let Some(cfg) = self.slice_store(&view, store) else {
            return Vec::new();
        };
        version_files(self.pruned_versions(&view, &cfg, slice))
    }

    /// The model, rendered in the store its latest version has.
    fn model(&self, store: &str, slice: &str) -> Result<(String, Zeroizing<Vec<u8>>)> {
        let latest = self
            .active_files(store, slice)
            .into_iter()
            .chain(self.purged_files(store, slice))
            .max_by_key(|(n, _, _)| {
                n.trim_start_matches('v')
                    .split('.')
                    .next()
                    .and_then(|d| d.parse::<u32>().ok())
            });
        let ext = latest
            .map(|(n, _, _)| n.rsplit('.').next().unwrap_or("yaml").to_string())
            .unwrap_or_else(|| "yaml".into());
        let format = Format::from_path(&format!("x.{ext}"));
        let text = self.slices_show(&format!("{store}/{slice}"), Some("model"), format)?;
        Ok((format!("model.{ext}"), Zeroizing::new(text.into_bytes())))
    }
}

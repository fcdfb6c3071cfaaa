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
    /// returns once the commit is in the view, with what was written.
    pub fn slices_sync(&self, store: Option<&str>, only: &[String]) -> Result<String> {
        let view = self.slice_view();
        let mut stores = self.slice_stores(&view)?;
        if let Some(s) = store {
            stores = vec![self.store_named(stores, s)?];
        }
        let plan = slices::plan_sync(&view, &stores, only).map_err(bad)?;
        if plan.is_empty() {
            return Ok("nothing to sync\n".into());
        }
        let mut session = Session::new(view.snap.commit);
        let mut report = String::new();
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
        self.master.submit(session)?.wait_committed()?;
        Ok(report)
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
        let versions = slices::parsed_versions(&view, &store, slice).map_err(bad)?;
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

/// What `.valuesfs/slices/...` shows (read-only, decrypted).
impl Fs {
    /// Stores of the head's `.valuesfs.yaml` (an invalid one shows none).
    pub(crate) fn slice_store_names(&self) -> Vec<String> {
        let view = self.slice_view();
        self.slice_stores(&view)
            .map(|s| s.into_iter().map(|s| s.name).collect())
            .unwrap_or_default()
    }

    fn store_now(&self, view: &At<'_>, store: &str) -> Option<StoreCfg> {
        self.slice_stores(view)
            .ok()?
            .into_iter()
            .find(|s| s.name == store)
    }

    /// The slices of a store: with a source or with versions.
    pub(crate) fn slice_names(&self, store: &str) -> Vec<String> {
        let view = self.slice_view();
        let Some(cfg) = self.store_now(&view, store) else {
            return Vec::new();
        };
        let mut names: Vec<String> = slices::sources(&view, &cfg)
            .map(|m| m.into_keys().collect())
            .unwrap_or_default();
        if let Ok(v) = slices::versions(&view, &cfg) {
            names.extend(v.into_keys());
        }
        names.sort();
        names.dedup();
        names
    }

    /// The versions of a slice as `(file name vN.ext, repository path, blob)`.
    pub(crate) fn slice_version_files(
        &self,
        store: &str,
        slice: &str,
    ) -> Vec<(String, String, Oid)> {
        let view = self.slice_view();
        let Some(cfg) = self.store_now(&view, store) else {
            return Vec::new();
        };
        let Ok(mut all) = slices::versions(&view, &cfg) else {
            return Vec::new();
        };
        all.remove(slice)
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                let ext = v.path.rsplit('.').next().unwrap_or("yaml").to_string();
                (format!("v{}.{ext}", v.n), v.path, v.oid)
            })
            .collect()
    }

    /// The model of a slice, rendered in the store its latest version has.
    pub(crate) fn slice_model_text(&self, store: &str, slice: &str) -> Result<(String, String)> {
        let ext = self
            .slice_version_files(store, slice)
            .last()
            .map(|(n, _, _)| n.rsplit('.').next().unwrap_or("yaml").to_string())
            .unwrap_or_else(|| "yaml".into());
        let format = Format::from_path(&format!("x.{ext}"));
        let text = self.slices_show(&format!("{store}/{slice}"), Some("model"), format)?;
        Ok((format!("model.{ext}"), text))
    }
}

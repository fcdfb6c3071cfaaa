//! Decoding blobs for display: the decoded-blob cache (keyed by blob id, store and print
//! style, so entries never go stale), unreadable files, and the nearest `.sops.yaml`.
//!
//! Lock order as in the parent module: `state`, then `cache`, then `readers`; decrypting
//! happens with no lock held.

use super::*;
use crate::metrics;

impl Fs {
    /// Decode a blob for display (cached by blob id and store).
    /// A blob that cannot be decoded (corrupt SOPS file, over the size limit) is an
    /// error here, remembered per blob and listed as unreadable in the status.
    pub(crate) fn decode(&self, path: &str, oid: Oid) -> Result<Arc<Decoded>> {
        let format = Format::from_path(path);
        let key = (oid, format, self.style_for(path));
        {
            let mut c = lock(&self.cache);
            if let Some(d) = c.lru.get(&key) {
                metrics::inc(&metrics::global().cache_hits);
                return Ok(d.clone());
            }
            metrics::inc(&metrics::global().cache_misses);
            if let Some(e) = c.failed.get(&key).cloned() {
                drop(c);
                self.note_unreadable(path, oid, &e);
                return Err(e);
            }
        }
        match self.decode_blob(path, key) {
            Ok(d) => Ok(d),
            Err(e) => {
                if matches!(e.kind, Kind::Io | Kind::TooBig) {
                    let mut c = lock(&self.cache);
                    if c.failed.len() >= 4096 {
                        c.failed.clear();
                    }
                    c.failed.insert(key, e.clone());
                    drop(c);
                    self.note_unreadable(path, oid, &e);
                }
                Err(e)
            }
        }
    }

    pub(super) fn note_unreadable(&self, path: &str, oid: Oid, e: &Error) {
        let reason = e
            .message
            .strip_prefix(&format!("{path}: "))
            .unwrap_or(&e.message);
        lock(&self.state)
            .locked
            .insert(path.to_string(), (oid, reason.to_string()));
    }

    /// How sops prints files under `path`'s directory: the nearest `.sops.yaml`'s
    /// `stores:` settings in the current head (defaults without one, or if it is invalid).
    pub(super) fn style_for(&self, path: &str) -> Style {
        let snap = self.snapshot();
        let dir = parent_of(path);
        {
            let mut c = lock(&self.cache);
            if c.style_tree != Some(snap.tree) {
                c.styles.clear();
                c.style_tree = Some(snap.tree);
            }
            if let Some(s) = c.styles.get(dir) {
                return *s;
            }
        }
        let style = match self.sops_config(&snap, path) {
            Ok(Some((_, cfg))) => cfg.style,
            _ => Style::default(),
        };
        let mut c = lock(&self.cache);
        if c.style_tree == Some(snap.tree) {
            c.styles.insert(dir.to_string(), style);
        }
        style
    }

    pub(super) fn decode_blob(&self, path: &str, key: CacheKey) -> Result<Arc<Decoded>> {
        let (oid, format, style) = key;
        let size = self.with_reader(|r| Ok(r.blob_size(oid)?))?;
        if size > self.cfg.max_file {
            return Err(Error::new(
                Kind::TooBig,
                format!(
                    "{path}: {size} bytes, over the {} byte limit",
                    self.cfg.max_file
                ),
            ));
        }
        let raw = self.with_reader(|r| Ok(read_blob(r, oid)?))?;
        let looks_sops = memchr_all(&raw, b"sops") && memchr_all(&raw, b"ENC[AES256_GCM,");
        let store = looks_sops
            .then(|| crypto::sops::sops_format(&raw, format))
            .flatten();
        let decoded = if let Some(store) = store {
            match crypto::decrypt_styled(&raw, store, &self.keys, style) {
                Ok(opened) => {
                    let mut ix = lock(&self.secrets);
                    if !ix.knows(oid) {
                        ix.learn(oid, path, &opened.encrypted_strings());
                    }
                    drop(ix);
                    Decoded {
                        data: Zeroizing::new(opened.plaintext.to_vec()),
                        sops: Some(Arc::new(opened)),
                        locked: None,
                    }
                }
                Err(
                    e @ (crypto::Error::NoMatchingIdentity { .. }
                    | crypto::Error::NoIdentities { .. }
                    | crypto::Error::UnsupportedKeyServices { .. }),
                ) => {
                    let reason = e.to_string();
                    lock(&self.state)
                        .locked
                        .insert(path.to_string(), (oid, reason.clone()));
                    Decoded {
                        data: Zeroizing::new(raw),
                        sops: None,
                        locked: Some(reason),
                    }
                }
                Err(e) => {
                    let msg = format!("{path}: {e}");
                    tracing::error!("{msg}");
                    return Err(Error::new(Kind::Io, msg));
                }
            }
        } else {
            Decoded {
                data: Zeroizing::new(raw),
                sops: None,
                locked: None,
            }
        };
        let d = Arc::new(decoded);
        let mut c = lock(&self.cache);
        c.bytes += cached_size(&d);
        if let Some(old) = c.lru.put(key, d.clone()) {
            c.bytes = c.bytes.saturating_sub(cached_size(&old));
        }
        while c.bytes > self.cfg.cache_bytes && c.lru.len() > 1 {
            match c.lru.pop_lru() {
                Some((_, old)) => c.bytes = c.bytes.saturating_sub(cached_size(&old)),
                None => break,
            }
        }
        Ok(d)
    }

    /// Bytes the decoded cache holds (content plus the cost of an entry).
    pub fn cache_bytes(&self) -> usize {
        lock(&self.cache).bytes
    }

    // ---------------------------------------------------------------- resolution

    /// The nearest `.sops.yaml` at or above the directory of `path` in `snap`: its path
    /// and its parsed content (cached by blob). An invalid one is an error naming it.
    pub(super) fn sops_config(
        &self,
        snap: &Snapshot,
        path: &str,
    ) -> Result<Option<(String, Arc<SopsConfig>)>> {
        let mut dir = parent_of(path).to_string();
        loop {
            let cfg_path = join(&dir, ".sops.yaml");
            if let Some((EntryKind::File(_), oid)) =
                self.with_reader(|r| Ok(r.stat(snap, &cfg_path)?))?
            {
                let cached = lock(&self.cache).configs.get(&oid).cloned();
                let parsed = match cached {
                    Some(p) => p,
                    None => {
                        let bytes = self.with_reader(|r| Ok(read_blob(r, oid)?))?;
                        let p = SopsConfig::parse(
                            &String::from_utf8_lossy(&bytes),
                            PathBuf::from(&dir),
                        )
                        .map(Arc::new)
                        .map_err(|e| e.to_string());
                        let mut c = lock(&self.cache);
                        if c.configs.len() >= 256 {
                            c.configs.clear();
                        }
                        c.configs.insert(oid, p.clone());
                        p
                    }
                };
                return parsed
                    .map(|c| Some((cfg_path.clone(), c)))
                    .map_err(|e| Error::new(Kind::Io, format!("{cfg_path}: {e}")));
            }
            if dir.is_empty() {
                return Ok(None);
            }
            dir = parent_of(&dir).to_string();
        }
    }
}

/// What one cache entry counts against `cache_bytes`: its content and the entry itself
/// (key, node, `Arc`), so a cache of many tiny files stays bounded too.
fn cached_size(d: &Decoded) -> usize {
    d.data.len() + 160
}

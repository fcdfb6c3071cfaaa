//! `updatekeys` and `rotate` inside a mount: every SOPS file of the head under the given
//! paths, re-wrapped (or re-keyed) with the daemon's identities, in one session, so one
//! commit; and the status's list of files whose recipients differ from their rule.
//!
//! Lock order: `cache` is taken alone, never while `state` is held (as elsewhere).

use super::*;
use crate::crypto::team::{plan, recipient_changes, Op, Outcome, Report};

/// Blobs parsed for the status's recipient list per status read, at most.
const DRIFT_PARSES_PER_READ: usize = 2000;

impl Fs {
    /// Every file (not symlink) of `snap` at or under `roots` ("." or "" is the root).
    fn files_under(
        &self,
        snap: &Snapshot,
        roots: &[String],
    ) -> Result<Vec<(String, Oid, FileMode)>> {
        let mut out = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        let roots: Vec<String> = if roots.is_empty() {
            vec![String::new()]
        } else {
            roots
                .iter()
                .map(|r| r.trim_matches('/').trim_start_matches("./").to_string())
                .map(|r| if r == "." { String::new() } else { r })
                .collect()
        };
        for r in roots {
            match self.with_reader(|rd| Ok(rd.stat(snap, &r)?))? {
                _ if r.is_empty() => dirs.push(r),
                Some((EntryKind::Dir, _)) => dirs.push(r),
                Some((EntryKind::File(m), oid)) if m != FileMode::Symlink => out.push((r, oid, m)),
                Some(_) => {}
                None => return Err(not_found(&r)),
            }
        }
        while let Some(d) = dirs.pop() {
            let Some(listing) = self.with_reader(|rd| Ok(rd.list(snap, &d)?))? else {
                continue;
            };
            for e in listing.entries {
                let p = join(&d, &e.name);
                match e.kind {
                    EntryKind::Dir => dirs.push(p),
                    EntryKind::File(m) if m != FileMode::Symlink && e.name != ".sops.yaml" => {
                        out.push((p, e.oid, m));
                    }
                    _ => {}
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// Files of the head that a `.sops.yaml` governs, sorted, each with that config. The
    /// walk goes top down and looks a config up once per directory that holds one (a
    /// file's nearest `.sops.yaml` is its directory's or the one inherited from above),
    /// not once per file: a repository of 100 000 files and no `.sops.yaml` costs one
    /// pass over its trees. Under a `.sops.yaml` that does not parse, files are skipped.
    fn governed_files(&self, snap: &Snapshot) -> Result<Vec<(String, Oid, Arc<SopsConfig>)>> {
        let mut out = Vec::new();
        let mut dirs: Vec<(String, Option<Arc<SopsConfig>>)> = vec![(String::new(), None)];
        while let Some((d, inherited)) = dirs.pop() {
            let Some(listing) = self.with_reader(|rd| Ok(rd.list(snap, &d)?))? else {
                continue;
            };
            let has_config = listing
                .entries
                .iter()
                .any(|e| e.name == ".sops.yaml" && matches!(e.kind, EntryKind::File(_)));
            let here = if has_config {
                self.sops_config(snap, &join(&d, "x"))
                    .ok()
                    .flatten()
                    .map(|(_, c)| c)
            } else {
                inherited
            };
            for e in listing.entries {
                let p = join(&d, &e.name);
                match (&e.kind, &here) {
                    (EntryKind::Dir, _) => dirs.push((p, here.clone())),
                    (EntryKind::File(m), Some(c))
                        if *m != FileMode::Symlink && e.name != ".sops.yaml" =>
                    {
                        out.push((p, e.oid, c.clone()));
                    }
                    _ => {}
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The path relative to its `.sops.yaml`'s directory.
    fn rel_to<'a>(cfg: &SopsConfig, path: &'a str) -> &'a str {
        let dir = cfg.dir.to_string_lossy();
        if dir.is_empty() {
            path
        } else {
            path.strip_prefix(&*dir)
                .and_then(|p| p.strip_prefix('/'))
                .unwrap_or(path)
        }
    }

    /// Run `op` over the head; the report ends with an `exit N` line (see
    /// `Report::exit_code`). Changed files go in one commit, made before replying.
    pub fn team(&self, op: Op, dry_run: bool, paths: &[String]) -> Result<String> {
        let snap = self.snapshot();
        let mut report = Report::default();
        let mut session = Session::new(snap.commit);
        for (path, oid, mode) in self.files_under(&snap, paths)? {
            let bytes = self.with_reader(|r| Ok(read_blob(r, oid)?))?;
            let Some(format) = crypto::sops::sops_format(&bytes, Format::from_path(&path)) else {
                continue;
            };
            let outcome = match self.sops_config(&snap, &path) {
                Err(e) => Outcome::Failed(e.message),
                Ok(cfg) => {
                    let cfg = cfg.map(|(_, c)| c);
                    let rel = cfg
                        .as_deref()
                        .map(|c| Self::rel_to(c, &path))
                        .unwrap_or(&path);
                    plan(op, rel, &bytes, format, cfg.as_deref(), &self.keys, dry_run)
                }
            };
            if let Outcome::Changed {
                bytes: Some(new), ..
            } = &outcome
            {
                session.write_mode(path.as_str(), new.clone(), mode);
            }
            report.add(op, &path, &outcome, dry_run);
        }
        let mut text = report.render(op, dry_run);
        if !session.is_empty() {
            let what = if op == Op::Rotate {
                "rotate"
            } else {
                "updatekeys"
            };
            session.message(format!("valuesfs: {what} ({} files)", report.changed));
            let commit = self.master.submit(session)?.wait_committed()?;
            text.push_str(&format!("committed {commit}\n"));
        }
        text.push_str(&format!("exit {}\n", report.exit_code(dry_run)));
        Ok(text)
    }

    /// SOPS files of the head whose recipients differ from their creation rule's, with
    /// what `updatekeys` would add and remove. Recomputed when the head's tree changes;
    /// each blob's metadata is parsed once.
    pub(crate) fn recipient_drift(&self) -> PathReasons {
        let snap = self.snapshot();
        if let Some((tree, list)) = &lock(&self.cache).drift {
            if *tree == snap.tree {
                return list.clone();
            }
        }
        let mut out = PathReasons::new();
        let files = match self.governed_files(&snap) {
            Ok(f) => f,
            Err(e) => return vec![(String::new(), e.message)],
        };
        let total = files.len();
        let mut parsed = 0usize;
        for (done, (path, oid, cfg)) in files.into_iter().enumerate() {
            if parsed >= DRIFT_PARSES_PER_READ {
                // A status read stays short: the rest is read at the next one.
                out.push((
                    String::new(),
                    format!("checked {done} of {total} files so far; read the status again"),
                ));
                return out;
            }
            let format = Format::from_path(&path);
            if format == Format::Binary {
                continue; // named like no text store: not checked (binary envelopes)
            }
            let cached = lock(&self.cache).recipients.get(&oid).cloned();
            let have = match cached {
                Some(h) => h,
                None => {
                    parsed += 1;
                    let Ok(bytes) = self.with_reader(|r| Ok(read_blob(r, oid)?)) else {
                        continue;
                    };
                    // Not a SOPS file (or unreadable metadata): no recipients, remembered.
                    let h = match crypto::is_sops(&bytes, format) {
                        true => crypto::sops::file_recipients(&bytes, format).unwrap_or_default(),
                        false => Vec::new(),
                    };
                    lock(&self.cache).recipients.insert(oid, h.clone());
                    h
                }
            };
            if have.is_empty() {
                continue;
            }
            let rel = Self::rel_to(&cfg, &path);
            match recipient_changes(rel, &have, &cfg) {
                Ok(Some((added, removed))) if !(added.is_empty() && removed.is_empty()) => {
                    let mut why = String::from("recipients differ from .sops.yaml:");
                    for r in added {
                        why.push_str(&format!(" +{r}"));
                    }
                    for r in removed {
                        why.push_str(&format!(" -{r}"));
                    }
                    out.push((path, why));
                }
                Err(why) => out.push((path, why)),
                _ => {}
            }
        }
        let mut c = lock(&self.cache);
        if c.recipients.len() > 100_000 {
            c.recipients.clear();
        }
        c.drift = Some((snap.tree, out.clone()));
        out
    }
}

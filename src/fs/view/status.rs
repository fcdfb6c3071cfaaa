//! What the view adds to the status file, and the checks of a newly published head
//! (`.sops.yaml` validity, kernel cache invalidation targets).

use super::*;

impl Fs {
    /// The view's lists for the status file.
    pub(crate) fn status_extras(&self) -> Extras {
        let st = lock(&self.state);
        let mem = |want: fn(&MemKind) -> Option<String>| -> PathReasons {
            st.mem
                .iter()
                .filter_map(|(p, m)| match m {
                    Mem::File { kind, .. } => want(kind).map(|w| (p.clone(), w)),
                    _ => None,
                })
                .collect()
        };
        let pairs = |m: &BTreeMap<String, String>| -> PathReasons {
            m.iter().map(|(a, b)| (a.clone(), b.clone())).collect()
        };
        let unreadable: Vec<(String, Oid, String)> = st
            .locked
            .iter()
            .map(|(p, (o, w))| (p.clone(), *o, w.clone()))
            .collect();
        let mut x = Extras {
            drafts: mem(|k| match k {
                MemKind::Draft(w) => Some(w.clone()),
                _ => None,
            }),
            held: mem(|k| match k {
                MemKind::Held(w) => Some(w.clone()),
                MemKind::Deferred { .. } => Some(
                    "new, closed without fsync: committed once left alone for the grace \
                     period (fsync commits at once)"
                        .into(),
                ),
                _ => None,
            }),
            unreadable: Vec::new(),
            unshown: pairs(&st.unshown),
            errors: pairs(&st.errors),
        };
        drop(st);
        // Only what the view still shows at that path (not removed, renamed or fixed).
        let mut gone = Vec::new();
        for (p, oid, why) in unreadable {
            let here = self.resolve(&p).ok().flatten();
            if matches!(here, Some(Node::Blob { oid: o, .. }) if o == oid) {
                x.unreadable.push((p, why));
            } else {
                gone.push(p);
            }
        }
        let mut st = lock(&self.state);
        for p in gone {
            st.locked.remove(&p);
        }
        x
    }

    /// Check the `.sops.yaml` files among `paths` of the current head: a file that does
    /// not parse is an error in the status at once, not at the first write under it.
    pub fn check_sops_configs(&self, paths: &[String]) {
        let snap = self.snapshot();
        for p in paths
            .iter()
            .filter(|p| p.rsplit('/').next() == Some(".sops.yaml"))
        {
            let read = self.with_reader(|r| Ok(r.read(&snap, p)?));
            let dir = PathBuf::from(parent_of(p));
            let problem = match read {
                Ok(Some((bytes, _))) => SopsConfig::parse(&String::from_utf8_lossy(&bytes), dir)
                    .err()
                    .map(|e| e.to_string()),
                Ok(None) => None,
                Err(e) => Some(e.message),
            };
            let mut st = lock(&self.state);
            match problem {
                Some(why) => {
                    tracing::error!("{p}: {why}");
                    st.errors.insert(p.clone(), why);
                }
                None => {
                    st.errors.remove(p);
                }
            }
        }
    }

    /// Inodes of paths that changed between two heads (for kernel cache invalidation):
    /// (inode, parent inode, name).
    pub fn known_inodes(&self, paths: &[String]) -> Vec<(Option<u64>, Option<u64>, String)> {
        let mut st = lock(&self.state);
        let mut out = Vec::new();
        for p in paths {
            let ino = st.path_ino.get(p).copied();
            if let Some(i) = ino {
                st.cached.remove(&i);
            }
            let parent = st.path_ino.get(parent_of(p)).copied();
            let name = p.rsplit('/').next().unwrap_or(p).to_string();
            out.push((ino, parent, name));
        }
        out
    }
}

//! Three-way merge of one side's changes onto another tree, path by path.
//!
//! Used for sessions built on an old base, for replaying unpushed commits onto a moved
//! remote, and nowhere else. Only the paths the incoming side changed are examined, so
//! the cost is proportional to the change, not to the tree.
//!
//! Per path, with `base` (common ancestor), `ours` (the tree we merge onto, i.e. the
//! current head) and `theirs` (the incoming change):
//! * unchanged on one side -> take the other side;
//! * same result on both sides -> take it;
//! * both changed a file -> the [`SemanticMerge`] is asked first; if it declines, the
//!   content is merged as text the way git does (libgit2 `merge_file`, which refuses
//!   binary files and overlapping hunks); modes merge independently;
//! * anything else (delete vs modify, file vs directory, symlinks) is a conflict.

use git2::{IndexEntry, IndexTime, Oid, Repository, Tree};

use super::tree::{lookup, Entry, Overlay};
use super::Result;
use crate::crypto::merge::MergeRules;

/// Why a file cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConflictDetail {
    /// The key inside the file both sides changed, when the merger knows it.
    pub key: Option<String>,
    /// Human-readable explanation.
    pub message: String,
}

impl ConflictDetail {
    /// A conflict without a key.
    pub fn new(message: impl Into<String>) -> Self {
        ConflictDetail {
            key: None,
            message: message.into(),
        }
    }
}

/// A merger for structured files (e.g. SOPS files, merged key by key on decrypted trees).
pub trait SemanticMerge: Send + Sync + 'static {
    /// `None`: not mine, merge as text. `Some(Ok(bytes))`: merged content.
    /// `Some(Err(c))`: true conflict.
    ///
    /// `ours` is the content already on the branch, `theirs` the incoming change, `base`
    /// their common ancestor (`None` when both sides added the file).
    fn merge(
        &self,
        path: &str,
        base: Option<&[u8]>,
        ours: &[u8],
        theirs: &[u8],
        rules: &MergeRules,
    ) -> Option<std::result::Result<Vec<u8>, ConflictDetail>>;
}

/// The default merger: claims nothing, everything is merged as text.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSemanticMerge;

impl SemanticMerge for NoSemanticMerge {
    fn merge(
        &self,
        _path: &str,
        _base: Option<&[u8]>,
        _ours: &[u8],
        _theirs: &[u8],
        _rules: &MergeRules,
    ) -> Option<std::result::Result<Vec<u8>, ConflictDetail>> {
        None
    }
}

/// A conflict on one path.
#[derive(Debug, Clone)]
pub(crate) struct PathConflict {
    pub path: String,
    pub detail: ConflictDetail,
}

/// Rewrites `theirs` (changes relative to `base`) into changes relative to `ours`.
pub(crate) fn merge_overlay(
    repo: &Repository,
    merger: &dyn SemanticMerge,
    base: Option<&Tree<'_>>,
    ours: Option<&Tree<'_>>,
    theirs: &Overlay,
) -> Result<std::result::Result<Overlay, PathConflict>> {
    let mut out = Overlay::new();
    let mut rules: Option<MergeRules> = None;
    for (path, new) in theirs {
        let b = match base {
            Some(t) => lookup(t, path)?,
            None => None,
        };
        let o = match ours {
            Some(t) => lookup(t, path)?,
            None => None,
        };
        if *new == b || *new == o {
            continue; // no change on their side, or the same change on both
        }
        if o == b {
            out.insert(path.clone(), *new);
            continue;
        }
        if rules.is_none() {
            rules = Some(merge_rules(repo, ours)?);
        }
        let r = rules.as_ref().expect("set just above");
        match merge_entry(repo, merger, r, path, b, o, *new)? {
            Ok(e) => {
                out.insert(path.clone(), Some(e));
            }
            Err(detail) => {
                return Ok(Err(PathConflict {
                    path: path.clone(),
                    detail,
                }))
            }
        }
    }
    Ok(Ok(out))
}

/// The head's `.valuesfs.yaml` `merge:` rules (none when absent or invalid: the status
/// lists an invalid file).
fn merge_rules(repo: &Repository, ours: Option<&Tree<'_>>) -> Result<MergeRules> {
    let Some(tree) = ours else {
        return Ok(MergeRules::default());
    };
    let Some(e) = lookup(tree, crate::slices::CONFIG_FILE)? else {
        return Ok(MergeRules::default());
    };
    let blob = repo.find_blob(e.oid)?;
    Ok(std::str::from_utf8(blob.content())
        .ok()
        .and_then(|t| crate::slices::merge_rules(t).ok())
        .unwrap_or_default())
}

fn merge_entry(
    repo: &Repository,
    merger: &dyn SemanticMerge,
    rules: &MergeRules,
    path: &str,
    base: Option<Entry>,
    ours: Option<Entry>,
    theirs: Option<Entry>,
) -> Result<std::result::Result<Entry, ConflictDetail>> {
    let (o, t) = match (ours, theirs) {
        (Some(o), Some(t)) if o.is_file() && t.is_file() => (o, t),
        (None, _) => {
            return Ok(Err(ConflictDetail::new(
                "deleted on the branch, modified by this change",
            )))
        }
        (_, None) => {
            return Ok(Err(ConflictDetail::new(
                "modified on the branch, deleted by this change",
            )))
        }
        _ => {
            return Ok(Err(ConflictDetail::new(
                "changed in incompatible ways (file type differs or symlink changed)",
            )))
        }
    };
    let b = base.filter(|b| b.is_file());
    let mode = if o.mode == t.mode {
        o.mode
    } else if b.map(|b| b.mode) == Some(o.mode) {
        t.mode
    } else if b.map(|b| b.mode) == Some(t.mode) {
        o.mode
    } else {
        return Ok(Err(ConflictDetail::new("file mode changed both ways")));
    };
    let oid = if o.oid == t.oid {
        o.oid
    } else if b.map(|b| b.oid) == Some(o.oid) {
        t.oid
    } else if b.map(|b| b.oid) == Some(t.oid) {
        o.oid
    } else {
        let base_bytes = match b {
            Some(b) => Some(repo.find_blob(b.oid)?.content().to_vec()),
            None => None,
        };
        let ours_blob = repo.find_blob(o.oid)?;
        let theirs_blob = repo.find_blob(t.oid)?;
        match merger.merge(
            path,
            base_bytes.as_deref(),
            ours_blob.content(),
            theirs_blob.content(),
            rules,
        ) {
            Some(Ok(bytes)) => repo.blob(&bytes)?,
            Some(Err(c)) => return Ok(Err(c)),
            None => match text_merge(repo, path, b.map(|b| b.oid), o, t)? {
                Some(oid) => oid,
                None => {
                    return Ok(Err(ConflictDetail::new(
                        "overlapping text changes (or binary file) changed both ways",
                    )))
                }
            },
        }
    };
    Ok(Ok(Entry { oid, mode }))
}

/// git's file merge; `None` when it leaves conflict markers.
fn text_merge(
    repo: &Repository,
    path: &str,
    base: Option<Oid>,
    ours: Entry,
    theirs: Entry,
) -> Result<Option<Oid>> {
    // Both sides added the file: merge against an empty ancestor, as git does.
    let base = match base {
        Some(b) => b,
        None => repo.blob(b"")?,
    };
    let entry = |oid: Oid, mode: i32| IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: mode as u32,
        uid: 0,
        gid: 0,
        file_size: 0,
        id: oid,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    };
    let res = repo.merge_file_from_index(
        &entry(base, ours.mode),
        &entry(ours.oid, ours.mode),
        &entry(theirs.oid, theirs.mode),
        None,
    )?;
    if !res.is_automergeable() {
        return Ok(None);
    }
    Ok(Some(repo.blob(res.content())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::{apply_overlay, MODE_BLOB};

    fn tree_with<'r>(repo: &'r Repository, files: &[(&str, &str)]) -> Tree<'r> {
        let mut ov = Overlay::new();
        for (p, c) in files {
            ov.insert(
                p.to_string(),
                Some(Entry {
                    oid: repo.blob(c.as_bytes()).expect("blob"),
                    mode: MODE_BLOB,
                }),
            );
        }
        let oid = apply_overlay(repo, None, &ov).expect("io").expect("clash");
        repo.find_tree(oid).expect("tree")
    }

    #[test]
    fn modes_merge_and_delete_vs_modify_conflicts() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let base = tree_with(&repo, &[("a", "1\n"), ("b", "1\n")]);
        // Ours: content change of `a`. Theirs: exec bit on `a`, delete `b`.
        let ours = tree_with(&repo, &[("a", "2\n"), ("b", "1\n")]);
        let mut th = Overlay::new();
        let a = lookup(&base, "a").expect("l").expect("a");
        th.insert(
            "a".into(),
            Some(Entry {
                oid: a.oid,
                mode: crate::repo::tree::MODE_EXEC,
            }),
        );
        th.insert("b".into(), None);
        let m = merge_overlay(&repo, &NoSemanticMerge, Some(&base), Some(&ours), &th)
            .expect("io")
            .expect("clean");
        let e = m["a"].expect("a kept");
        assert_eq!(e.mode, crate::repo::tree::MODE_EXEC);
        assert_eq!(repo.find_blob(e.oid).expect("blob").content(), b"2\n");
        assert_eq!(m["b"], None);
        // Theirs deletes what ours modified: conflict.
        let ours2 = tree_with(&repo, &[("a", "1\n"), ("b", "changed\n")]);
        let c = merge_overlay(&repo, &NoSemanticMerge, Some(&base), Some(&ours2), &th)
            .expect("io")
            .expect_err("delete vs modify");
        assert_eq!(c.path, "b");
    }

    #[test]
    fn text_merges_like_git() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = Repository::init_bare(dir.path()).expect("init");
        let base = tree_with(&repo, &[("f", "1\n2\n3\n4\n5\n6\n7\n")]);
        let ours = tree_with(&repo, &[("f", "one\n2\n3\n4\n5\n6\n7\n")]);
        let theirs = tree_with(&repo, &[("f", "1\n2\n3\n4\n5\n6\nseven\n")]);
        let th = crate::repo::tree::diff_overlay(&repo, Some(&base), &theirs).expect("diff");
        let m = merge_overlay(&repo, &NoSemanticMerge, Some(&base), Some(&ours), &th)
            .expect("io")
            .expect("clean");
        let e = m["f"].expect("file");
        let blob = repo.find_blob(e.oid).expect("blob");
        assert_eq!(blob.content(), b"one\n2\n3\n4\n5\n6\nseven\n");

        let theirs2 = tree_with(&repo, &[("f", "uno\n2\n3\n4\n5\n6\n7\n")]);
        let th2 = crate::repo::tree::diff_overlay(&repo, Some(&base), &theirs2).expect("diff");
        let c = merge_overlay(&repo, &NoSemanticMerge, Some(&base), Some(&ours), &th2)
            .expect("io")
            .expect_err("conflict");
        assert_eq!(c.path, "f");
    }
}

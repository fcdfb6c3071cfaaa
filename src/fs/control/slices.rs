//! `slices/<store>/<slice>/`: `active/v<N>.<ext>` (the versions in the active folder),
//! `purged/v<N>.<ext>` (versions pruned from it, read from history) and `model.<ext>` (the
//! latest version plus every element removed since, marked). All decrypted, read-only.

use super::{Caching, Cx, Leaf, Provider};
use crate::fs::error::Result;
use crate::fs::view::FileKind;

pub(crate) struct Slices;

const FOLDERS: &[&str] = &["active", "purged"];

impl Provider for Slices {
    fn name(&self) -> &'static str {
        "slices"
    }

    fn resolve(&self, cx: &Cx, parts: &[&str]) -> Result<Option<Leaf>> {
        let dir = Some(Leaf::Dir { fixed: false });
        let s = cx.slices;
        Ok(match parts {
            [] => dir,
            [store, rest @ ..] => {
                if !s.store_names().iter().any(|n| n == store) {
                    return Ok(None);
                }
                match rest {
                    [] => dir,
                    [slice, rest @ ..] => {
                        if !s.slice_names(store).iter().any(|n| n == slice) {
                            return Ok(None);
                        }
                        match rest {
                            [] => dir,
                            [folder] if FOLDERS.contains(folder) => dir,
                            [folder, file] if FOLDERS.contains(folder) => {
                                let files = if *folder == "active" {
                                    s.active_files(store, slice)
                                } else {
                                    s.purged_files(store, slice)
                                };
                                files.into_iter().find(|(n, _, _)| n == file).map(
                                    |(_, path, oid)| Leaf::Blob {
                                        path,
                                        oid,
                                        caching: Caching::Fresh,
                                    },
                                )
                            }
                            [file] if file.starts_with("model.") => match s.model(store, slice) {
                                Ok((name, text)) if name == *file => {
                                    Some(super::text(text.to_vec()))
                                }
                                _ => None,
                            },
                            _ => None,
                        }
                    }
                }
            }
        })
    }

    fn list(&self, cx: &Cx, parts: &[&str], _: &str) -> Result<Vec<(String, FileKind)>> {
        let s = cx.slices;
        let dirs = |v: Vec<String>| v.into_iter().map(|n| (n, FileKind::Dir)).collect();
        let files = |v: Vec<(String, String, git2::Oid)>| {
            v.into_iter().map(|(n, _, _)| (n, FileKind::File)).collect()
        };
        Ok(match parts {
            [] => dirs(s.store_names()),
            [store] => dirs(s.slice_names(store)),
            [store, slice] => {
                let mut out: Vec<(String, FileKind)> = FOLDERS
                    .iter()
                    .map(|f| (f.to_string(), FileKind::Dir))
                    .collect();
                if let Ok((model, _)) = s.model(store, slice) {
                    out.push((model, FileKind::File));
                }
                out
            }
            [store, slice, "active"] => files(s.active_files(store, slice)),
            [store, slice, "purged"] => files(s.purged_files(store, slice)),
            _ => Vec::new(),
        })
    }
}

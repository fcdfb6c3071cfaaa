//! `status` (the mount's state, YAML) and `daemon` (how to reach the running daemon).

use super::{text, Cx, Leaf, Provider};
use crate::fs::error::Result;
use crate::fs::view::{FileKind, Fs};

pub(crate) struct StatusFile;
pub(crate) struct DaemonFile;

impl Provider for StatusFile {
    fn name(&self) -> &'static str {
        "status"
    }

    fn resolve(&self, cx: &Cx, parts: &[&str]) -> Result<Option<Leaf>> {
        Ok(match parts {
            [] => Some(text(cx.mount.status_text()?.into_bytes())),
            _ => None,
        })
    }

    fn list(&self, _: &Cx, _: &[&str], _: &str) -> Result<Vec<(String, FileKind)>> {
        Ok(Vec::new())
    }
}

impl Provider for DaemonFile {
    fn name(&self) -> &'static str {
        "daemon"
    }

    fn resolve(&self, cx: &Cx, parts: &[&str]) -> Result<Option<Leaf>> {
        Ok(parts
            .is_empty()
            .then(|| text(cx.mount.daemon_text().into_bytes())))
    }

    fn list(&self, _: &Cx, _: &[&str], _: &str) -> Result<Vec<(String, FileKind)>> {
        Ok(Vec::new())
    }
}

pub(crate) fn status_text(fs: &Fs) -> Result<String> {
    let mut out = fs.master.status()?.to_yaml();
    let x = fs.status_extras();
    let list = |out: &mut String, name: &str, items: &[(String, String)]| {
        if items.is_empty() {
            out.push_str(&format!("{name}: []\n"));
        } else {
            out.push_str(&format!("{name}:\n"));
            for (p, why) in items {
                out.push_str(&format!(
                    "  - path: {}\n    reason: {}\n",
                    crate::crypto::json::quote(p),
                    crate::crypto::json::quote(why)
                ));
            }
        }
    };
    list(&mut out, "drafts", &x.drafts);
    list(&mut out, "held", &x.held);
    list(&mut out, "unreadable", &x.unreadable);
    list(&mut out, "unshown", &x.unshown);
    list(&mut out, "errors", &x.errors);
    list(&mut out, "recipients", &fs.recipient_drift());
    list(&mut out, "slices", &fs.slices_problems());
    out.push_str(&format!("cache_bytes: {}\n", fs.cache_bytes()));
    Ok(out)
}

pub(crate) fn daemon_text(fs: &Fs) -> String {
    format!(
        "pid: {}\nsocket: {}\nstate_dir: {}\n",
        std::process::id(),
        crate::crypto::json::quote(&fs.cfg.state_dir.join("daemon.sock").display().to_string()),
        crate::crypto::json::quote(&fs.cfg.state_dir.display().to_string()),
    )
}

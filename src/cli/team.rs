//! `valuesfs updatekeys` and `valuesfs rotate`: inside a mount the daemon does the work
//! (one commit through the master); on a plain checkout the files are rewritten in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use valuesfs::crypto::config::find_config;
use valuesfs::crypto::team::{plan, Op, Outcome, Report};
use valuesfs::crypto::{sops, Format, Keyring, SopsConfig};

/// Escape a path for the control socket's space-separated words.
pub fn escape(p: &str) -> String {
    p.replace('%', "%25")
        .replace(' ', "%20")
        .replace('\t', "%09")
        .replace('\n', "%0A")
}

/// Run `op`; returns the exit code (see `Report::exit_code`).
pub fn run(op: Op, paths: &[PathBuf], dry_run: bool, mount: Option<&Path>) -> Result<i32> {
    let cwd = std::env::current_dir()?;
    let root = match mount {
        Some(m) => Some(std::path::absolute(m)?),
        None => super::mount::find_mount(&cwd),
    };
    match root {
        Some(root) => in_mount(op, &root, &cwd, paths, dry_run),
        None => in_checkout(op, &cwd, paths, dry_run),
    }
}

fn in_mount(op: Op, root: &Path, cwd: &Path, paths: &[PathBuf], dry_run: bool) -> Result<i32> {
    let mut cmd = format!(
        "team {} {}",
        if op == Op::Rotate {
            "rotate"
        } else {
            "updatekeys"
        },
        u8::from(dry_run)
    );
    for p in paths {
        let abs = std::path::absolute(cwd.join(p))?;
        let rel = abs
            .strip_prefix(root)
            .map_err(|_| anyhow!("{} is not inside the mount {}", p.display(), root.display()))?;
        let rel = rel.to_string_lossy();
        cmd.push(' ');
        cmd.push_str(&escape(if rel.is_empty() { "." } else { &rel }));
    }
    let reply = super::mount::ask(root, &cmd)?;
    if let Some(e) = reply.strip_prefix("error: ") {
        anyhow::bail!("{}", e.trim_end());
    }
    let (text, code) = match reply.trim_end().rsplit_once('\n') {
        Some((text, last)) if last.starts_with("exit ") => {
            (format!("{text}\n"), last[5..].trim().parse().unwrap_or(2))
        }
        _ => (reply.clone(), 2),
    };
    print!("{text}");
    Ok(code)
}

fn in_checkout(op: Op, cwd: &Path, paths: &[PathBuf], dry_run: bool) -> Result<i32> {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        let top = git2::Repository::discover(cwd)
            .ok()
            .and_then(|r| r.workdir().map(Path::to_path_buf));
        vec![top.unwrap_or_else(|| cwd.to_path_buf())]
    } else {
        paths.iter().map(|p| cwd.join(p)).collect()
    };
    let mut files = Vec::new();
    for r in &roots {
        if !r.exists() {
            anyhow::bail!("{}: no such file or directory", r.display());
        }
        collect(r, &mut files)?;
    }
    files.sort();
    files.dedup();
    let keys = Keyring::from_env().unwrap_or_default();
    let mut configs: HashMap<PathBuf, Result<Arc<SopsConfig>, String>> = HashMap::new();
    let mut report = Report::default();
    for f in files {
        let shown = f
            .strip_prefix(cwd)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let Ok(bytes) = std::fs::read(&f) else {
            report.add(
                op,
                &shown,
                &Outcome::Failed("cannot read it".into()),
                dry_run,
            );
            continue;
        };
        let Some(format) = sops::sops_format(&bytes, Format::from_path(&shown)) else {
            continue;
        };
        let dir = f.parent().unwrap_or(Path::new("/")).to_path_buf();
        let cfg = match find_config(&dir) {
            None => None,
            Some(p) => {
                let loaded = configs
                    .entry(p.clone())
                    .or_insert_with(|| {
                        SopsConfig::load(&p)
                            .map(Arc::new)
                            .map_err(|e| format!("{}: {e}", p.display()))
                    })
                    .clone();
                match loaded {
                    Ok(c) => Some(c),
                    Err(why) => {
                        report.add(op, &shown, &Outcome::Failed(why), dry_run);
                        continue;
                    }
                }
            }
        };
        let rel = match &cfg {
            Some(c) => f
                .strip_prefix(&c.dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned(),
            None => shown.clone(),
        };
        let mut outcome = plan(op, &rel, &bytes, format, cfg.as_deref(), &keys, dry_run);
        if let Outcome::Changed {
            bytes: Some(new), ..
        } = &outcome
        {
            if let Err(e) = super::write_atomic(&f, new) {
                outcome = Outcome::Failed(format!("cannot write it: {e}"));
            }
        }
        report.add(op, &shown, &outcome, dry_run);
    }
    print!("{}", report.render(op, dry_run));
    Ok(report.exit_code(dry_run))
}

/// Regular files under `p` (or `p` itself), `.git` and symlinks left out.
fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::symlink_metadata(p)?;
    if meta.is_file() {
        if p.file_name().is_some_and(|n| n != ".sops.yaml") {
            out.push(std::path::absolute(p)?);
        }
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    for e in std::fs::read_dir(p)? {
        let e = e?;
        if e.file_name() == ".git" {
            continue;
        }
        collect(&e.path(), out)?;
    }
    Ok(())
}

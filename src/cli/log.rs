//! `valuesfs log [PATH]`: the history of a path with decrypted diffs, from a mount (the
//! daemon's repository, read only) or from a plain clone.
//!
//! Invariants: nothing is written to either repository; decrypted text goes to stdout
//! only; a version this machine cannot decrypt is shown as stored, with the reason.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use git2::{DiffOptions, Repository};
use valuesfs::crypto::{self, Format, Keyring};

/// Where the history comes from: a repository, the branch (or HEAD) and the folder of
/// the working view (mount root or work tree) that paths are relative to.
struct Source {
    repo: Repository,
    rev: String,
    root: PathBuf,
}

fn quoted_field(text: &str, key: &str) -> Option<String> {
    let raw = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))?;
    serde_json::from_str(raw.trim())
        .ok()
        .or_else(|| Some(raw.trim().to_string()))
}

fn source(mount: Option<&Path>, cwd: &Path) -> Result<Source> {
    let root = match mount {
        Some(m) => Some(m.to_path_buf()),
        None => super::mount::find_mount(cwd),
    };
    if let Some(root) = root {
        let daemon = std::fs::read_to_string(root.join(".valuesfs/daemon"))
            .with_context(|| format!("{}: not a valuesfs mount", root.display()))?;
        let status = std::fs::read_to_string(root.join(".valuesfs/status"))?;
        let state = quoted_field(&daemon, "state_dir")
            .ok_or_else(|| anyhow!("no state_dir in .valuesfs/daemon"))?;
        let branch = quoted_field(&status, "branch").unwrap_or_else(|| "main".into());
        let repo = Repository::open_bare(Path::new(&state).join("repo.git"))
            .context("the mount's repository")?;
        return Ok(Source {
            repo,
            rev: format!("refs/heads/{branch}"),
            root,
        });
    }
    let repo = Repository::discover(cwd).context("not in a git repository or a mount")?;
    let root = repo
        .workdir()
        .ok_or_else(|| anyhow!("a bare repository: run it in a clone or a mount"))?
        .to_path_buf();
    Ok(Source {
        repo,
        rev: "HEAD".into(),
        root,
    })
}

/// `path` (relative to `cwd`) as a repository path.
fn repo_path(root: &Path, cwd: &Path, path: &Path) -> Result<String> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let rel = abs
        .strip_prefix(&root)
        .map_err(|_| anyhow!("{}: outside {}", path.display(), root.display()))?;
    for c in rel.components() {
        match c {
            std::path::Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
}

/// The text a version shows: decrypted when it is a SOPS file we can open.
fn shown(keys: &Keyring, path: &str, data: &[u8]) -> Vec<u8> {
    let format = Format::from_path(path);
    match crypto::sops::sops_format(data, format) {
        Some(f) => match crypto::decrypt(data, f, keys) {
            Ok(o) => o.plaintext.to_vec(),
            Err(e) => {
                let mut out = format!("# valuesfs: not decrypted here: {e}\n").into_bytes();
                out.extend_from_slice(data);
                out
            }
        },
        None => data.to_vec(),
    }
}

pub fn run(path: Option<&Path>, mount: Option<&Path>, max: Option<usize>) -> Result<()> {
    let cwd = std::env::current_dir()?.canonicalize()?;
    let src = source(mount, &cwd)?;
    let spec = match path {
        Some(p) => Some(repo_path(&src.root, &cwd, p)?),
        None => None,
    };
    let keys = Keyring::from_env().unwrap_or_default();
    let repo = &src.repo;
    let head = repo
        .revparse_single(&src.rev)
        .and_then(|o| o.peel_to_commit())
        .with_context(|| format!("{}: no commits", src.rev))?;
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    walk.push(head.id())?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut shown_commits = 0;
    for id in walk {
        if max.is_some_and(|m| shown_commits >= m) {
            break;
        }
        let commit = repo.find_commit(id?)?;
        let tree = commit.tree()?;
        let parent = match commit.parent(0) {
            Ok(p) => Some(p.tree()?),
            Err(_) => None,
        };
        let mut opts = DiffOptions::new();
        if let Some(s) = &spec {
            if !s.is_empty() {
                opts.pathspec(s);
            }
        }
        let diff = repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), Some(&mut opts))?;
        if diff.deltas().len() == 0 {
            continue;
        }
        shown_commits += 1;
        let author = commit.author();
        let when = chrono::DateTime::from_timestamp(commit.time().seconds(), 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        writeln!(out, "commit {}", commit.id())?;
        writeln!(
            out,
            "Author: {} <{}>",
            author.name().unwrap_or(""),
            author.email().unwrap_or("")
        )?;
        writeln!(out, "Date:   {when}\n")?;
        for line in commit.message().unwrap_or("").trim_end().lines() {
            writeln!(out, "    {line}")?;
        }
        writeln!(out)?;
        for delta in diff.deltas() {
            let blob = |f: git2::DiffFile<'_>| -> Result<Vec<u8>> {
                if f.id().is_zero() {
                    return Ok(Vec::new());
                }
                Ok(repo.find_blob(f.id())?.content().to_vec())
            };
            let old_path = delta
                .old_file()
                .path()
                .map(|p| p.to_string_lossy().into_owned());
            let new_path = delta
                .new_file()
                .path()
                .map(|p| p.to_string_lossy().into_owned());
            let name = new_path.clone().or(old_path.clone()).unwrap_or_default();
            let old = zeroize::Zeroizing::new(shown(&keys, &name, &blob(delta.old_file())?));
            let new = zeroize::Zeroizing::new(shown(&keys, &name, &blob(delta.new_file())?));
            let mut patch = git2::Patch::from_buffers(
                &old,
                old_path.as_deref().map(Path::new),
                &new,
                new_path.as_deref().map(Path::new),
                None,
            )?;
            let text = zeroize::Zeroizing::new(patch.to_buf()?.to_vec());
            out.write_all(&text)?;
        }
        writeln!(out)?;
    }
    if shown_commits == 0 {
        if let Some(s) = &spec {
            return Err(anyhow!("{s}: no history"));
        }
    }
    Ok(())
}

//! `updatekeys` and `rotate` over many files: what each file needs, decided the same way
//! for a plain checkout (the CLI) and for a mount (the daemon, one commit), and the
//! report both print.
//!
//! A file's recipients are compared, as sets, with the `age` recipients of the first
//! `.sops.yaml` creation rule matching its path (relative to that `.sops.yaml`), as
//! `sops updatekeys` does for one file.

use std::collections::BTreeSet;

use super::config::SopsConfig;
use super::keys::Keyring;
use super::sops::{self, Format};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    UpdateKeys,
    Rotate,
}

/// What happened (or, in a dry run, would happen) to one file.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Its recipients are those of its rule.
    UpToDate,
    /// No creation rule matches its path (left alone).
    NoRule,
    /// Re-wrapped (`added`, `removed`) or rotated; `bytes` is `None` in a dry run.
    Changed {
        added: Vec<String>,
        removed: Vec<String>,
        bytes: Option<Vec<u8>>,
    },
    /// Left unchanged, and why.
    Failed(String),
}

/// Recipients to add and to remove.
pub type Changes = (Vec<String>, Vec<String>);

/// The recipients a file has and its rule wants: (added, removed), both empty when they
/// agree. `Err` for a rule valuesfs cannot apply; `Ok(None)` when no rule matches.
pub fn recipient_changes(
    rel: &str,
    have: &[String],
    config: &SopsConfig,
) -> Result<Option<Changes>, String> {
    let Some(rule) = config.rule_for(rel) else {
        return Ok(None);
    };
    if let Some(why) = &rule.refused {
        return Err(why.clone());
    }
    if !rule.unsupported.is_empty() {
        return Err(format!(
            "its creation rule also names {}, which valuesfs cannot wrap keys for \
             (use sops updatekeys)",
            rule.unsupported.join(", ")
        ));
    }
    if rule.params.recipients.is_empty() {
        return Err("its creation rule names no age recipient".into());
    }
    let have_set: BTreeSet<&str> = have.iter().map(|s| s.trim()).collect();
    let want_set: BTreeSet<&str> = rule.params.recipients.iter().map(|s| s.trim()).collect();
    let added = rule
        .params
        .recipients
        .iter()
        .filter(|r| !have_set.contains(r.trim()))
        .cloned()
        .collect();
    let removed = have
        .iter()
        .filter(|r| !want_set.contains(r.trim()))
        .cloned()
        .collect();
    Ok(Some((added, removed)))
}

/// Decide, and unless `dry_run` do, `op` for one SOPS file at `rel` (relative to the
/// directory of `config`, its nearest `.sops.yaml`; `None` when there is none).
pub fn plan(
    op: Op,
    rel: &str,
    bytes: &[u8],
    format: Format,
    config: Option<&SopsConfig>,
    keys: &Keyring,
    dry_run: bool,
) -> Outcome {
    match op {
        Op::UpdateKeys => {
            let Some(config) = config else {
                return Outcome::NoRule;
            };
            let have = match sops::file_recipients(bytes, format) {
                Ok(h) => h,
                Err(e) => return Outcome::Failed(e.to_string()),
            };
            let (added, removed) = match recipient_changes(rel, &have, config) {
                Ok(None) => return Outcome::NoRule,
                Ok(Some(c)) => c,
                Err(why) => return Outcome::Failed(why),
            };
            if added.is_empty() && removed.is_empty() {
                return Outcome::UpToDate;
            }
            let bytes = if dry_run {
                None
            } else {
                let want = &config
                    .rule_for(rel)
                    .expect("recipient_changes found a rule")
                    .params
                    .recipients;
                match sops::rewrap(bytes, format, keys, want) {
                    Ok(b) => Some(b),
                    Err(e) => return Outcome::Failed(cannot(&e)),
                }
            };
            Outcome::Changed {
                added,
                removed,
                bytes,
            }
        }
        Op::Rotate => {
            let style = config.map(|c| c.style).unwrap_or_default();
            let bytes = if dry_run {
                // Still prove that it could be done: the data key opens.
                match sops::decrypt_styled(bytes, format, keys, style) {
                    Ok(_) => None,
                    Err(e) => return Outcome::Failed(cannot(&e)),
                }
            } else {
                match sops::rotate(bytes, format, keys, style) {
                    Ok(b) => Some(b),
                    Err(e) => return Outcome::Failed(cannot(&e)),
                }
            };
            Outcome::Changed {
                added: Vec::new(),
                removed: Vec::new(),
                bytes,
            }
        }
    }
}

fn cannot(e: &super::Error) -> String {
    match e {
        super::Error::NoMatchingIdentity { .. } | super::Error::NoIdentities { .. } => {
            format!("cannot re-wrap its data key: {e}")
        }
        _ => e.to_string(),
    }
}

/// The per-file lines and the summary of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub changed: usize,
    pub up_to_date: usize,
    pub no_rule: Vec<String>,
    pub failed: usize,
}

impl Report {
    pub fn add(&mut self, op: Op, path: &str, outcome: &Outcome, dry_run: bool) {
        match outcome {
            Outcome::UpToDate => self.up_to_date += 1,
            Outcome::NoRule => self.no_rule.push(path.to_string()),
            Outcome::Failed(why) => {
                self.failed += 1;
                self.lines
                    .push(format!("{path}: FAILED, left unchanged: {why}"));
            }
            Outcome::Changed { added, removed, .. } => {
                self.changed += 1;
                let verb = match (op, dry_run) {
                    (Op::Rotate, false) => "new data key",
                    (Op::Rotate, true) => "would get a new data key",
                    (Op::UpdateKeys, false) => "updated",
                    (Op::UpdateKeys, true) => "would change",
                };
                let mut l = format!("{path}: {verb}");
                for r in added {
                    l.push_str(&format!("\n    + {r}"));
                }
                for r in removed {
                    l.push_str(&format!("\n    - {r}"));
                }
                self.lines.push(l);
            }
        }
    }

    /// The text to print: per-file lines, files without a rule, a summary.
    pub fn render(&self, op: Op, dry_run: bool) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        if op == Op::UpdateKeys && !self.no_rule.is_empty() {
            out.push_str("no creation rule matches (left alone):\n");
            for p in &self.no_rule {
                out.push_str(&format!("    {p}\n"));
            }
        }
        let what = match (op, dry_run) {
            (Op::UpdateKeys, false) => "updated",
            (Op::UpdateKeys, true) => "to update",
            (Op::Rotate, false) => "rotated",
            (Op::Rotate, true) => "to rotate",
        };
        out.push_str(&format!(
            "{} {what}, {} up to date, {} without a rule, {} failed\n",
            self.changed,
            self.up_to_date,
            self.no_rule.len(),
            self.failed
        ));
        if op == Op::Rotate && !dry_run && self.changed > 0 {
            out.push_str(
                "note: git history still holds every earlier version, and those open with \
                 the old data keys; a recipient removed before can still read them\n",
            );
        }
        out
    }

    /// 2 if a file failed; 1 in a dry run that found work; else 0.
    pub fn exit_code(&self, dry_run: bool) -> i32 {
        if self.failed > 0 {
            2
        } else if dry_run && self.changed > 0 {
            1
        } else {
            0
        }
    }
}

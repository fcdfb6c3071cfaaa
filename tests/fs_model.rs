//! A reference model of the mount: random sequences of create / write-at-offset /
//! truncate / rename / unlink / mkdir / rmdir / fsync over a few names (the repository's
//! `.sops.yaml` encrypts the `.yaml` ones) run on the mount with `std::fs` and on an
//! in-memory model (path -> bytes, plus the directory `d`). Each operation must succeed or
//! fail as the model says; the touched files must read as the model says; at the end every
//! file and listing must match, and so must the remote's tree once pushed (decrypted).

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;

use fs_common::*;
use proptest::prelude::*;

const FILES: [&str; 4] = ["a.yaml", "b.txt", "d/c.yaml", "d/e.txt"];
/// Renames stay within one kind (YAML to YAML, text to text), across directories.
const PAIRS: [(&str, &str); 2] = [("a.yaml", "d/c.yaml"), ("b.txt", "d/e.txt")];
/// Length of one YAML line `kNN: vNNNNN\n`.
const LINE: usize = 12;

fn yaml_line(i: usize, v: u32) -> String {
    format!("k{:02}: v{:05}\n", i % 100, v % 100_000)
}

fn is_yaml(p: &str) -> bool {
    p.ends_with(".yaml")
}

#[derive(Clone, Debug)]
enum Op {
    /// Create or replace the whole file (YAML: `lines` values; text: `bytes`).
    Create {
        f: usize,
        lines: Vec<u32>,
        bytes: Vec<u8>,
    },
    /// Write into an existing file: YAML rewrites (or appends) line `line`; text writes
    /// `bytes` at `off` (past the end leaves zeros). Optionally fsync before closing.
    WriteAt {
        f: usize,
        line: usize,
        val: u32,
        off: usize,
        bytes: Vec<u8>,
        sync: bool,
    },
    /// ftruncate: YAML keeps at least one whole line; text to any length.
    Truncate {
        f: usize,
        lines: usize,
        len: usize,
    },
    Rename {
        pair: usize,
        forward: bool,
    },
    Unlink {
        f: usize,
    },
    Mkdir,
    Rmdir,
    Fsync {
        f: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, prop::collection::vec(0..100_000u32, 1..4), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(f, lines, bytes)| Op::Create { f, lines, bytes }),
        3 => (0..4usize, 0..5usize, 0..100_000u32, 0..48usize, prop::collection::vec(any::<u8>(), 1..16), any::<bool>())
            .prop_map(|(f, line, val, off, bytes, sync)| Op::WriteAt { f, line, val, off, bytes, sync }),
        2 => (0..4usize, 1..4usize, 0..48usize).prop_map(|(f, lines, len)| Op::Truncate { f, lines, len }),
        2 => (0..2usize, any::<bool>()).prop_map(|(pair, forward)| Op::Rename { pair, forward }),
        2 => (0..4usize).prop_map(|f| Op::Unlink { f }),
        2 => Just(Op::Mkdir),
        1 => Just(Op::Rmdir),
        1 => (0..4usize).prop_map(|f| Op::Fsync { f }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotFound,
    Exists,
    NotEmpty,
    Other(i32),
}

fn outcome(r: std::io::Result<()>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOENT) => Outcome::NotFound,
            Some(libc::EEXIST) => Outcome::Exists,
            Some(libc::ENOTEMPTY) => Outcome::NotEmpty,
            Some(n) => Outcome::Other(n),
            None => Outcome::Other(-1),
        },
    }
}

#[derive(Default, Debug)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
    dir_d: bool,
}

impl Model {
    fn parent_ok(&self, p: &str) -> bool {
        !p.starts_with("d/") || self.dir_d
    }

    /// Applies `op`; returns the expected outcome and the paths whose content it touched.
    fn apply(&mut self, op: &Op) -> (Outcome, Vec<String>) {
        match op {
            Op::Create { f, lines, bytes } => {
                let p = FILES[*f];
                if !self.parent_ok(p) {
                    return (Outcome::NotFound, vec![]);
                }
                let content = if is_yaml(p) {
                    lines
                        .iter()
                        .enumerate()
                        .map(|(i, v)| yaml_line(i, *v))
                        .collect::<String>()
                        .into_bytes()
                } else {
                    bytes.clone()
                };
                self.files.insert(p.to_string(), content);
                (Outcome::Ok, vec![p.to_string()])
            }
            Op::WriteAt {
                f,
                line,
                val,
                off,
                bytes,
                ..
            } => {
                let p = FILES[*f];
                let Some(data) = self.files.get_mut(p) else {
                    return (Outcome::NotFound, vec![]);
                };
                let (off, bytes) = write_args(p, data.len(), *line, *val, *off, bytes);
                if data.len() < off + bytes.len() {
                    data.resize(off + bytes.len(), 0);
                }
                data[off..off + bytes.len()].copy_from_slice(&bytes);
                (Outcome::Ok, vec![p.to_string()])
            }
            Op::Truncate { f, lines, len } => {
                let p = FILES[*f];
                let Some(data) = self.files.get_mut(p) else {
                    return (Outcome::NotFound, vec![]);
                };
                let n = truncate_len(p, data.len(), *lines, *len);
                data.resize(n, 0);
                (Outcome::Ok, vec![p.to_string()])
            }
            Op::Rename { pair, forward } => {
                let (from, to) = rename_args(*pair, *forward);
                if !self.files.contains_key(from) || !self.parent_ok(to) {
                    return (Outcome::NotFound, vec![]);
                }
                let data = self.files.remove(from).expect("checked");
                self.files.insert(to.to_string(), data);
                (Outcome::Ok, vec![from.to_string(), to.to_string()])
            }
            Op::Unlink { f } => {
                let p = FILES[*f];
                if self.files.remove(p).is_none() {
                    return (Outcome::NotFound, vec![]);
                }
                (Outcome::Ok, vec![p.to_string()])
            }
            Op::Mkdir => {
                if self.dir_d {
                    return (Outcome::Exists, vec![]);
                }
                self.dir_d = true;
                (Outcome::Ok, vec![])
            }
            Op::Rmdir => {
                if !self.dir_d {
                    return (Outcome::NotFound, vec![]);
                }
                if self.files.keys().any(|p| p.starts_with("d/")) {
                    return (Outcome::NotEmpty, vec![]);
                }
                self.dir_d = false;
                (Outcome::Ok, vec![])
            }
            Op::Fsync { f } => {
                let p = FILES[*f];
                if !self.files.contains_key(p) {
                    return (Outcome::NotFound, vec![]);
                }
                (Outcome::Ok, vec![p.to_string()])
            }
        }
    }
}

/// Offset and bytes of a write: YAML files get a whole line at a line boundary no further
/// than one past the last line (keys stay unique: the key is the line number).
fn write_args(
    p: &str,
    cur: usize,
    line: usize,
    val: u32,
    off: usize,
    bytes: &[u8],
) -> (usize, Vec<u8>) {
    if is_yaml(p) {
        let line = line.min(cur / LINE);
        (line * LINE, yaml_line(line, val).into_bytes())
    } else {
        (off, bytes.to_vec())
    }
}

fn truncate_len(p: &str, cur: usize, lines: usize, len: usize) -> usize {
    if is_yaml(p) {
        (lines.min(cur / LINE).max(1)) * LINE
    } else {
        len
    }
}

fn rename_args(pair: usize, forward: bool) -> (&'static str, &'static str) {
    let (a, b) = PAIRS[pair];
    if forward {
        (a, b)
    } else {
        (b, a)
    }
}

/// Runs `op` on the mount. Sizes the model needs are read from the model's state
/// before the op (`cur`: the file's current length, if any).
fn run_op(m: &Mnt, op: &Op, cur: Option<usize>) -> Outcome {
    match op {
        Op::Create { f, lines, bytes } => {
            let p = FILES[*f];
            let content = if is_yaml(p) {
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, v)| yaml_line(i, *v))
                    .collect::<String>()
                    .into_bytes()
            } else {
                bytes.clone()
            };
            outcome(write_checked(&m.p(p), &content))
        }
        Op::WriteAt {
            f,
            line,
            val,
            off,
            bytes,
            sync,
        } => {
            let p = FILES[*f];
            outcome((|| {
                let h = OpenOptions::new().write(true).open(m.p(p))?;
                let (off, bytes) = write_args(p, cur.unwrap_or(0), *line, *val, *off, bytes);
                h.write_all_at(&bytes, off as u64)?;
                if *sync {
                    h.sync_all()?;
                }
                close_checked(h)
            })())
        }
        Op::Truncate { f, lines, len } => {
            let p = FILES[*f];
            outcome((|| {
                let h = OpenOptions::new().write(true).open(m.p(p))?;
                h.set_len(truncate_len(p, cur.unwrap_or(0), *lines, *len) as u64)?;
                close_checked(h)
            })())
        }
        Op::Rename { pair, forward } => {
            let (from, to) = rename_args(*pair, *forward);
            outcome(std::fs::rename(m.p(from), m.p(to)))
        }
        Op::Unlink { f } => outcome(std::fs::remove_file(m.p(FILES[*f]))),
        Op::Mkdir => outcome(std::fs::create_dir(m.p("d"))),
        Op::Rmdir => outcome(std::fs::remove_dir(m.p("d"))),
        Op::Fsync { f } => outcome((|| {
            let mut h = OpenOptions::new().write(true).open(m.p(FILES[*f]))?;
            h.flush()?;
            h.sync_all()?;
            close_checked(h)
        })()),
    }
}

fn listing(m: &Mnt, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(m.p(dir))
        .unwrap_or_else(|e| panic!("readdir {dir}: {e}"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".sops.yaml" && n != ".valuesfs")
        .collect();
    v.sort();
    v
}

fn check(ops: &[Op]) -> Result<(), TestCaseError> {
    let r = sops_only_remote();
    let m = mount_remote(&r);
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let cur = match op {
            Op::WriteAt { f, .. } | Op::Truncate { f, .. } => {
                model.files.get(FILES[*f]).map(Vec::len)
            }
            _ => None,
        };
        let (want, touched) = model.apply(op);
        let got = run_op(&m, op, cur);
        prop_assert_eq!(got, want, "op #{} {:?}", i, op);
        for p in touched {
            let on_mount = std::fs::read(m.p(&p)).ok();
            prop_assert_eq!(
                on_mount.as_ref(),
                model.files.get(&p),
                "content of {} after op #{} {:?}",
                p,
                i,
                op
            );
        }
    }

    // Every file and listing through the mount.
    for (p, data) in &model.files {
        prop_assert_eq!(
            &std::fs::read(m.p(p)).ok(),
            &Some(data.clone()),
            "final content of {}",
            p
        );
    }
    let mut want_root: Vec<String> = model
        .files
        .keys()
        .filter(|p| !p.contains('/'))
        .cloned()
        .collect();
    if model.dir_d {
        want_root.push("d".into());
    }
    want_root.sort();
    prop_assert_eq!(listing(&m, ""), want_root, "root listing");
    if model.dir_d {
        let want_d: Vec<String> = model
            .files
            .keys()
            .filter_map(|p| p.strip_prefix("d/").map(String::from))
            .collect();
        prop_assert_eq!(listing(&m, "d"), want_d, "listing of d");
    } else {
        prop_assert!(!m.p("d").exists(), "d exists but was removed");
    }

    // What the remote holds once everything is pushed (decrypted; no empty dirs).
    m.flush();
    let mut remote = remote_tree_plain(&r);
    remote.remove(".sops.yaml");
    for (p, raw) in &remote {
        if is_yaml(p) {
            let enc = remote_raw(&r, p).expect("listed");
            prop_assert!(is_sops(p, &enc), "{} is not encrypted on the remote", p);
        }
        let _ = raw;
    }
    prop_assert_eq!(&remote, &model.files, "remote tree differs from the model");
    m.unmount();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 48,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mount_matches_the_model(ops in prop::collection::vec(op(), 1..=25)) {
        check(&ops)?;
    }
}

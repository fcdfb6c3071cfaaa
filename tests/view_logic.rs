//! The filesystem logic driven directly, without a FUSE mount: the same `Fs` the adapter
//! calls, on a real master and a real bare remote.

mod common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use repo_common::*;
use valuesfs::crypto::{self, Format};
use valuesfs::fs::{Fs, FsConfig, Kind, SetAttr};
use valuesfs::repo::{Master, ValuesMerge};

const ROOT: u64 = 1;

fn setup(tmp: &std::path::Path) -> (Fs, std::path::PathBuf) {
    let remote = bare(tmp, "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    let secret = std::fs::read_to_string(vectors().join("enc/values.yaml")).expect("vec");
    let rules = std::fs::read_to_string(vectors().join(".sops.yaml")).expect("rules");
    cli_commit(
        tmp,
        &url,
        &[
            ("secret.yaml", &secret),
            (".sops.yaml", &rules),
            ("notes.txt", "one\n"),
        ],
        "seed",
    );
    let mut cfg = config(&url, &tmp.join("state"));
    let keys = Arc::new(keyring());
    cfg.merger = Arc::new(ValuesMerge::new(keys.clone()));
    let master = Master::start(cfg).expect("master");
    let mut fcfg = FsConfig::new(tmp.join("state"));
    fcfg.whiteout_grace = Duration::from_millis(200);
    (Fs::new(master, keys, fcfg).expect("fs"), remote)
}

/// A view of `url` with the vector identity and default settings (text merges only).
fn plain_fs(url: &str, state: &std::path::Path) -> Fs {
    let master = Master::start(config(url, state)).expect("master");
    Fs::new(
        master,
        Arc::new(keyring()),
        FsConfig::new(state.to_path_buf()),
    )
    .expect("fs")
}

fn commits(remote: &std::path::Path) -> usize {
    git(remote, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .expect("count")
}

#[test]
fn write_close_is_one_commit_and_reads_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fs, remote) = setup(tmp.path());
    let secret = fs.lookup(ROOT, "secret.yaml").expect("lookup");
    let plain = crypto::decrypt(
        &std::fs::read(vectors().join("enc/values.yaml")).expect("vec"),
        Format::Yaml,
        &keyring(),
    )
    .expect("decrypt");
    assert_eq!(
        secret.size as usize,
        plain.plaintext.len(),
        "plaintext size in getattr"
    );

    // A shell redirect: open O_TRUNC, an empty flush, write, flush, release.
    let o = fs
        .open(secret.ino, libc::O_WRONLY | libc::O_TRUNC)
        .expect("open");
    fs.flush(o.fh).expect("empty flush");
    let text = String::from_utf8(plain.plaintext.to_vec())
        .expect("utf8")
        .replace("replicas: 2", "replicas: 5");
    fs.write(o.fh, 0, text.as_bytes(), false).expect("write");
    fs.flush(o.fh).expect("flush commits");
    fs.release(o.fh).expect("release");
    fs.master().flush(Duration::from_secs(10)).expect("pushed");
    assert_eq!(
        commits(&remote),
        2,
        "exactly one commit for the write-close"
    );

    let r = fs.open(secret.ino, libc::O_RDONLY).expect("open");
    assert_eq!(fs.read(r.fh, 0, 1 << 20).expect("read"), text.as_bytes());
    fs.release(r.fh).expect("release");
    // Stored encrypted, and sops reads it.
    let co = clone(tmp.path(), remote.to_str().expect("utf8"));
    let key = private_key(tmp.path());
    let out = sops_decrypt(&co.path().join("secret.yaml"), &key, &[]);
    assert!(String::from_utf8_lossy(&out).contains("replicas: 5"));
}

#[test]
fn scratch_files_stay_in_memory_and_rename_commits_the_target_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fs, remote) = setup(tmp.path());
    let (a, o) = fs
        .create(ROOT, "notes.txt.tmp", libc::O_WRONLY | libc::O_CREAT, 0o644)
        .expect("create");
    fs.write(o.fh, 0, b"two\n", false).expect("write");
    fs.fsync(o.fh)
        .expect("fsync of a scratch file returns at once");
    fs.release(o.fh).expect("release");
    assert_eq!(fs.getattr(a.ino).expect("attr").size, 4);
    fs.master().flush(Duration::from_secs(10)).expect("flush");
    assert_eq!(commits(&remote), 1, "scratch file not committed");
    fs.rename(ROOT, "notes.txt.tmp", ROOT, "notes.txt", false)
        .expect("rename");
    fs.master().flush(Duration::from_secs(10)).expect("flush");
    assert_eq!(commits(&remote), 2, "one session for the atomic save");
    assert_eq!(git(&remote, &["show", "main:notes.txt"]), "two\n");
    assert!(!git(&remote, &["ls-tree", "-r", "--name-only", "main"]).contains(".tmp"));
}

#[test]
fn errors_map_to_what_tools_expect() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fs, _remote) = setup(tmp.path());
    fn err<T>(r: valuesfs::fs::Result<T>) -> Kind {
        r.map(|_| ()).expect_err("error").kind
    }
    assert_eq!(err(fs.lookup(ROOT, "missing")), Kind::NotFound);
    assert_eq!(err(fs.mkdir(ROOT, ".git")), Kind::Perm);
    assert_eq!(
        err(fs.create(ROOT, "secret.yaml", libc::O_EXCL | libc::O_CREAT, 0o644)),
        Kind::Exists
    );
    let notes = fs.lookup(ROOT, "notes.txt").expect("notes");
    let set = SetAttr {
        uid: Some(4242),
        ..Default::default()
    };
    assert_eq!(err(fs.setattr(notes.ino, None, set)), Kind::Perm);
    let ctl = fs.lookup(ROOT, ".valuesfs").expect("control dir");
    assert_eq!(
        err(fs.create(ctl.ino, "x", libc::O_CREAT, 0o644)),
        Kind::ReadOnly
    );
    fs.mkdir(ROOT, "d").expect("mkdir");
    let d = fs.lookup(ROOT, "d").expect("d");
    fs.create(d.ino, "f.txt", libc::O_CREAT | libc::O_WRONLY, 0o644)
        .map(|(_, o)| fs.release(o.fh))
        .expect("create")
        .expect("release");
    assert_eq!(err(fs.rmdir(ROOT, "d")), Kind::NotEmpty);
    assert_eq!(
        err(fs.rename(ROOT, "notes.txt", ROOT, "secret.yaml", true)),
        Kind::Exists
    );
}

#[test]
fn invalid_content_for_an_encrypted_path_becomes_a_draft() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fs, remote) = setup(tmp.path());
    let secret = fs.lookup(ROOT, "secret.yaml").expect("lookup");
    let o = fs
        .open(secret.ino, libc::O_WRONLY | libc::O_TRUNC)
        .expect("open");
    fs.write(o.fh, 0, b"a: [unclosed\n", false).expect("write");
    let e = fs.flush(o.fh).expect_err("refused");
    assert_eq!(e.kind, Kind::Io);
    fs.release(o.fh).ok();
    fs.master().flush(Duration::from_secs(10)).expect("flush");
    assert_eq!(commits(&remote), 1, "nothing committed");
    // Readable at its path, kept encrypted on disk.
    let r = fs.open(secret.ino, libc::O_RDONLY).expect("open");
    assert_eq!(fs.read(r.fh, 0, 100).expect("read"), b"a: [unclosed\n");
    fs.release(r.fh).expect("release");
    let drafts: Vec<_> = std::fs::read_dir(tmp.path().join("state/drafts"))
        .expect("drafts dir")
        .collect();
    assert_eq!(drafts.len(), 1);
    let stored = std::fs::read(drafts[0].as_ref().expect("entry").path()).expect("read");
    assert!(!String::from_utf8_lossy(&stored).contains("unclosed"));
}

#[test]
fn hostile_repository_content_is_refused_not_shown() {
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    // A secret whose password ciphertext was flipped by someone without the key.
    let secret = std::fs::read_to_string(vectors().join("enc/values.yaml")).expect("vec");
    let line = secret
        .lines()
        .find(|l| l.contains("password: ENC"))
        .expect("password line");
    let at = line.find("data:").expect("data") + 5;
    let mut bad = line.to_string().into_bytes();
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    let tampered = secret.replace(line, std::str::from_utf8(&bad).expect("utf8"));
    // An alias bomb that claims to be a SOPS file.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='k' {
        bomb.push_str(&format!(
            "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
        prev = c;
    }
    bomb.push_str("sops:\n    mac: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\n");
    cli_commit(
        tmp.path(),
        &url,
        &[("tampered.yaml", &tampered), ("bomb.yaml", &bomb)],
        "hostile",
    );
    let fs = plain_fs(&url, &tmp.path().join("state"));

    // Tampered: still a file (it stats, so it can be removed or replaced), EIO on open
    // for reading, never the plaintext; the reason is in the status.
    let a = fs.lookup(ROOT, "tampered.yaml").expect("stats");
    assert_eq!(a.size as usize, tampered.len());
    let e = fs.open(a.ino, libc::O_RDONLY).expect_err("refused");
    assert_eq!(e.kind, Kind::Io);
    assert!(!e.message.contains("correct-horse"), "{}", e.message);
    let ctl = fs.lookup(ROOT, ".valuesfs").expect("ctl");
    let st = fs.lookup(ctl.ino, "status").expect("status");
    let o = fs.open(st.ino, libc::O_RDONLY).expect("open status");
    let status = String::from_utf8(fs.read(o.fh, 0, 1 << 20).expect("read")).expect("utf8");
    assert!(status.contains("tampered.yaml"), "{status}");

    // The bomb fails fast as SOPS and shows as the plain file it is.
    let t0 = std::time::Instant::now();
    let a = fs.lookup(ROOT, "bomb.yaml").expect("bomb shows");
    assert_eq!(a.size as usize, bomb.len());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn the_view_prints_as_the_repos_stores_settings_say() {
    let tmp = tempfile::tempdir().expect("tmp");
    let key = private_key(tmp.path());
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    let cfg =
        format!("stores:\n  yaml:\n    indent: 2\ncreation_rules:\n  - age: {VECTOR_RECIPIENT}\n");
    // sops itself encrypts and prints under that config.
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    std::fs::write(work.join(".sops.yaml"), &cfg).expect("write");
    std::fs::write(
        work.join("v.yaml"),
        "apps:\n- name: api\n  env:\n  - k: v\n",
    )
    .expect("write");
    let run = |args: &[&str]| {
        let out = sops()
            .current_dir(&work)
            .env("SOPS_AGE_KEY_FILE", &key)
            .args(args)
            .output()
            .expect("sops");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    let enc = run(&["-e", "v.yaml"]);
    std::fs::write(work.join("v.enc.yaml"), &enc).expect("write");
    let shown_by_sops = run(&["-d", "v.enc.yaml"]);
    assert!(
        shown_by_sops.contains("\n  - name: api\n"),
        "{shown_by_sops}"
    );
    cli_commit(
        tmp.path(),
        &url,
        &[(".sops.yaml", &cfg), ("v.yaml", &enc)],
        "seed",
    );
    let fs = plain_fs(&url, &tmp.path().join("state"));
    let a = fs.lookup(ROOT, "v.yaml").expect("lookup");
    let o = fs.open(a.ino, libc::O_RDONLY).expect("open");
    let shown = fs.read(o.fh, 0, 1 << 20).expect("read");
    assert_eq!(String::from_utf8_lossy(&shown), shown_by_sops);
}

#[test]
fn a_fetch_between_commit_and_the_next_write_is_not_overwritten() {
    // A program keeps one descriptor open and flushes twice. Between the first commit
    // and the buffer learning its new base, a fetch merges a remote edit of another line
    // of the same file. The second flush must merge with it, not fast-forward over it.
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = bare(tmp.path(), "r.git");
    let url = remote.to_str().expect("utf8").to_string();
    cli_commit(tmp.path(), &url, &[("list.txt", "a\nm\nb\nn\nc\n")], "seed");
    let master = Master::start(config(&url, &tmp.path().join("state"))).expect("master");
    let injected = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook = {
        let (m, url, dir, injected) = (
            master.clone(),
            url.clone(),
            tmp.path().to_path_buf(),
            injected.clone(),
        );
        valuesfs::fs::Hook(Arc::new(move || {
            if injected.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            m.flush(Duration::from_secs(30))
                .expect("push the first write");
            let w = clone(&dir, &url);
            let f = w.path().join("list.txt");
            let text = std::fs::read_to_string(&f).expect("read");
            std::fs::write(&f, text.replace("c\n", "C\n")).expect("write");
            git(w.path(), &["commit", "-qam", "remote edit"]);
            git(w.path(), &["push", "-q", "origin", "HEAD:main"]);
            m.fetch_now().expect("fetch");
        }))
    };
    let mut fcfg = FsConfig::new(tmp.path().join("state"));
    fcfg.after_commit = Some(hook);
    let fs = Fs::new(master, Arc::new(keyring()), fcfg).expect("fs");
    let ino = fs.lookup(ROOT, "list.txt").expect("lookup").ino;
    let o = fs.open(ino, libc::O_RDWR).expect("open");
    fs.write(o.fh, 0, b"A\nm\nb\nn\nc\n", false)
        .expect("write 1");
    fs.flush(o.fh).expect("flush 1");
    assert!(injected.load(std::sync::atomic::Ordering::SeqCst));
    // The program's buffer still holds its own text; it changes line 3 next.
    fs.write(o.fh, 0, b"A\nm\nB\nn\nc\n", false)
        .expect("write 2");
    fs.flush(o.fh).expect("flush 2");
    fs.release(o.fh).expect("release");
    fs.master().flush(Duration::from_secs(30)).expect("push");
    let shown = git(&remote, &["show", "main:list.txt"]);
    assert_eq!(shown, "A\nm\nB\nn\nC\n", "the remote edit was overwritten");
}

/// close() returns before the kernel's release reaches the view: a reader that opens the
/// file in between must see the committed version, not a buffer that will never commit.
#[test]
fn a_reader_between_a_failed_write_and_its_release_sees_the_committed_version() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fs, _remote) = setup(tmp.path());
    let notes = fs.lookup(ROOT, "notes.txt").expect("lookup");
    let w = fs.open(notes.ino, libc::O_WRONLY).expect("open");
    // Writes within the limit land in the buffer, then one goes past it.
    fs.write(w.fh, 0, &[0u8; 4096], false).expect("write");
    assert_eq!(
        fs.write(w.fh, 64 << 20, b"x", false)
            .expect_err("past the limit")
            .kind,
        Kind::TooBig
    );
    let r = fs.open(notes.ino, libc::O_RDONLY).expect("open reader");
    let got = fs.read(r.fh, 0, 1 << 20).expect("read");
    assert!(
        got == b"one\n",
        "the reader got {} bytes of the buffer",
        got.len()
    );
    fs.release(r.fh).expect("release reader");
    assert_eq!(
        fs.release(w.fh).expect_err("the failed write").kind,
        Kind::TooBig
    );
}

/// The kernel's FORGET of an old reference can run between a LOOKUP handing out the same
/// number and the adapter counting the new reference (an entry invalidation after a fetch
/// does this). The entry the kernel then holds must still work, not be a stale ENOENT.
#[test]
fn a_forget_racing_a_lookup_of_the_same_entry_leaves_it_usable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fs, _remote) = setup(tmp.path());
    let first = fs.lookup(ROOT, "notes.txt").expect("lookup");
    fs.remember(ROOT, "notes.txt", first.ino);
    // A second LOOKUP gets the number; the FORGET of the first reference lands before
    // the adapter counts the second.
    let second = fs.lookup(ROOT, "notes.txt").expect("lookup again");
    assert_eq!(second.ino, first.ino, "a known path keeps its number");
    fs.forget(first.ino, 1);
    fs.remember(ROOT, "notes.txt", second.ino);
    let a = fs
        .getattr(second.ino)
        .expect("getattr of the entry the kernel holds");
    assert_eq!(a.size, 4);
    let o = fs.open(second.ino, libc::O_RDONLY).expect("open");
    assert_eq!(fs.read(o.fh, 0, 100).expect("read"), b"one\n");
    fs.release(o.fh).expect("release");
    // Its last reference gone, the number is forgotten for real.
    fs.forget(second.ino, 1);
    assert_eq!(
        fs.getattr(second.ino).expect_err("forgotten").kind,
        Kind::NotFound
    );
    // A new lookup still finds the file.
    let third = fs.lookup(ROOT, "notes.txt").expect("lookup after forget");
    assert_eq!(fs.getattr(third.ino).expect("getattr").size, 4);
}

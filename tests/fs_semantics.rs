//! POSIX semantics of the mount: read-after-write byte for byte (also after a remount on
//! the same state dir and through a second mount of the same remote), open flags
//! (O_TRUNC, O_APPEND, O_EXCL), writes at offsets and truncation, renames (over a file,
//! across directories, RENAME_NOREPLACE), directories, symlinks, the refused operations
//! (hard links, mknod, xattrs, chown to others), chmod, the `.valuesfs` control dir and
//! that a close with nothing written commits nothing.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};

use fs_common::*;

fn write_file(path: &std::path::Path, data: &[u8]) {
    put(path, data);
}

/// YAML with comments, quoting styles, unicode, block scalars, flow collections,
/// trailing spaces and no final newline: what the user writes must read back exactly.
const AWKWARD_YAML: &str = concat!(
    "# leading comment\n",
    "plain: value   # trailing comment\n",
    "quoted: \"double \\\"quoted\\\" : colon\"\n",
    "single: 'it''s'\n",
    "empty:\n",
    "nulls: ~\n",
    "bools: [yes, no, true]\n",
    "octal: 0755\n",
    "float: 1.50\n",
    "unicode: \"h\u{e9}llo w\u{f6}rld \u{2713} \u{65e5}\u{672c}\"\n",
    "key with spaces: x\n",
    "nested:\n",
    "  - a: 1\n",
    "    b: [1, 2, {c: d}]\n",
    "  -   - deep\n",
    "block: |\n",
    "  line one\n",
    "\n",
    "    indented line\n",
    "folded: >-\n",
    "  folded\n",
    "  text\n",
    "trailing_ws: x   ",
);

const AWKWARD_JSON: &str = "{\n  \"a\": 1,\n  \"nested\": {\"b\": [true, null, \"x\"]},\n  \"s\": \"h\\u00e9 \u{2713}\"\n}\n";
const AWKWARD_ENV: &str =
    "A=1\n# comment\nB=\"quoted value\"\nEMPTY=\nURL=https://x.example/?a=b&c=d\n";

#[test]
fn read_after_write_survives_remount_and_second_mount() {
    use rand::RngCore;
    let r = seeded_remote();
    let state = r.dir().join("state-a");
    let mut blob = vec![0u8; 200 * 1024 + 7];
    rand::thread_rng().fill_bytes(&mut blob);

    let m = mount_with(&r, Some(&state), |_| {});
    write_file(&m.p("blob.dat"), &blob);
    write_file(&m.p("awkward.yaml"), AWKWARD_YAML.as_bytes());
    write_file(&m.p("conf.json"), AWKWARD_JSON.as_bytes());
    write_file(&m.p("app.env"), AWKWARD_ENV.as_bytes());
    assert_eq!(m.read("blob.dat"), blob, "random bytes differ on read-back");
    assert_eq!(m.read_str("awkward.yaml"), AWKWARD_YAML);
    assert_eq!(
        std::fs::metadata(m.p("awkward.yaml")).expect("stat").len(),
        AWKWARD_YAML.len() as u64
    );
    m.flush();

    // In git: the binary file as is, the YAML encrypted (a creation rule matches).
    assert_eq!(remote_raw(&r, "blob.dat").expect("blob pushed"), blob);
    let raw = remote_raw(&r, "awkward.yaml").unwrap_or_else(|| {
        panic!(
            "awkward.yaml not on the remote; commits {:?}\nstatus:\n{}",
            subjects(&r),
            m.status()
        )
    });
    assert!(
        is_sops("awkward.yaml", &raw),
        "new .yaml file was not encrypted"
    );
    assert!(
        !String::from_utf8_lossy(&raw).contains("trailing comment"),
        "plaintext comment visible in git"
    );
    assert_eq!(
        String::from_utf8(decrypt_if_sops("awkward.yaml", &raw)).expect("utf8"),
        AWKWARD_YAML
    );
    for (p, want) in [("conf.json", AWKWARD_JSON), ("app.env", AWKWARD_ENV)] {
        let raw = remote_raw(&r, p).unwrap_or_else(|| panic!("{p} not pushed"));
        assert!(is_sops(p, &raw), "new {p} was not encrypted");
        assert_eq!(
            String::from_utf8(decrypt_if_sops(p, &raw)).expect("utf8"),
            want
        );
        assert_eq!(m.read_str(p), want, "{p} differs on read-back");
    }
    let before = commits(&r);

    // Remount on the same state dir.
    m.unmount();
    let m = mount_with(&r, Some(&state), |_| {});
    assert_eq!(m.read("blob.dat"), blob, "after remount");
    assert_eq!(m.read_str("awkward.yaml"), AWKWARD_YAML, "after remount");
    assert_eq!(m.read_str("conf.json"), AWKWARD_JSON, "after remount");
    assert_eq!(m.read_str("app.env"), AWKWARD_ENV, "after remount");

    // A second mount of the same remote with its own state dir.
    let m2 = mount_remote(&r);
    assert_eq!(m2.read("blob.dat"), blob, "second mount");
    assert_eq!(m2.read_str("awkward.yaml"), AWKWARD_YAML, "second mount");
    m2.flush();
    m.flush();
    assert_eq!(commits(&r), before, "reading committed something");
}

#[test]
fn open_flags_offsets_and_truncate() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let f = m.p("f.txt");

    write_file(&f, b"0123456789");
    assert_eq!(m.read("f.txt"), b"0123456789");

    // O_TRUNC.
    {
        let mut h = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&f)
            .expect("open");
        h.write_all(b"abc").expect("write");
    }
    assert_eq!(m.read("f.txt"), b"abc");

    // O_APPEND.
    {
        let mut h = OpenOptions::new().append(true).open(&f).expect("open");
        h.write_all(b"def").expect("write");
        h.write_all(b"gh").expect("write");
    }
    assert_eq!(m.read("f.txt"), b"abcdefgh");

    // O_EXCL on an existing file and on a new one.
    let e = OpenOptions::new().write(true).create_new(true).open(&f);
    assert_eq!(errno(e), libc::EEXIST);
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.p("plain.txt"));
    assert_eq!(errno(e), libc::EEXIST, "O_EXCL on a tracked file");
    {
        let mut h = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m.p("excl.txt"))
            .expect("O_EXCL on a new name");
        h.write_all(b"x").expect("write");
    }
    assert_eq!(m.read("excl.txt"), b"x");

    // Writes at offsets, inside and past the end (the gap reads as zeros).
    {
        let h = OpenOptions::new().write(true).open(&f).expect("open");
        h.write_at(b"XY", 1).expect("pwrite");
        h.write_at(b"Z", 10).expect("pwrite past end");
    }
    assert_eq!(m.read("f.txt"), b"aXYdefgh\0\0Z");

    // Read-your-writes through one read-write handle.
    {
        let mut h = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&f)
            .expect("open rw");
        h.seek(SeekFrom::Start(3)).expect("seek");
        h.write_all(b"--").expect("write");
        h.seek(SeekFrom::Start(0)).expect("seek");
        let mut s = Vec::new();
        h.read_to_end(&mut s).expect("read");
        assert_eq!(s, b"aXY--fgh\0\0Z");
    }

    // ftruncate: shrink, then grow.
    {
        let h = OpenOptions::new().write(true).open(&f).expect("open");
        h.set_len(3).expect("shrink");
        assert_eq!(h.metadata().expect("fstat").len(), 3);
    }
    assert_eq!(m.read("f.txt"), b"aXY");
    {
        let h = OpenOptions::new().write(true).open(&f).expect("open");
        h.set_len(5).expect("grow");
    }
    assert_eq!(m.read("f.txt"), b"aXY\0\0");
    assert_eq!(std::fs::metadata(&f).expect("stat").len(), 5);

    // truncate(2) by path, with no open handle, on a tracked file.
    let n = {
        m.flush();
        commits(&r)
    };
    let rc = unsafe { libc::truncate(cstr(&m.p("plain.txt")).as_ptr(), 3) };
    assert_eq!(rc, 0, "truncate: errno {}", last_errno());
    assert_eq!(m.read("plain.txt"), b"hel");
    m.flush();
    assert_eq!(commits(&r), n + 1, "truncate by path is one commit");

    assert_eq!(remote_raw(&r, "f.txt").as_deref(), Some(&b"aXY\0\0"[..]));
    assert_eq!(remote_raw(&r, "excl.txt").as_deref(), Some(&b"x"[..]));
    assert_eq!(remote_raw(&r, "plain.txt").as_deref(), Some(&b"hel"[..]));
}

#[test]
fn renames() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    write_file(&m.p("a.txt"), b"from a\n");
    m.flush();

    // Over an existing file: one commit, the target has the source's content.
    let n = commits(&r);
    std::fs::rename(m.p("a.txt"), m.p("plain.txt")).expect("rename over");
    assert_eq!(m.read("plain.txt"), b"from a\n");
    assert!(!m.p("a.txt").exists());
    m.flush();
    assert_eq!(commits(&r), n + 1, "rename over a file is one commit");
    assert_eq!(
        remote_raw(&r, "plain.txt").as_deref(),
        Some(&b"from a\n"[..])
    );
    assert_eq!(remote_raw(&r, "a.txt"), None);

    // Across directories: into a tracked dir and into a new (in-memory) one.
    std::fs::rename(m.p("dir/a.txt"), m.p("dir/sub/a.txt")).expect("rename across dirs");
    std::fs::create_dir(m.p("newdir")).expect("mkdir");
    std::fs::rename(m.p("plain.txt"), m.p("newdir/p.txt")).expect("rename into new dir");
    assert_eq!(m.read("dir/sub/a.txt"), b"alpha\n");
    assert_eq!(m.read("newdir/p.txt"), b"from a\n");
    m.flush();
    let paths = remote_paths(&r);
    assert!(paths.contains(&"dir/sub/a.txt".to_string()), "{paths:?}");
    assert!(paths.contains(&"newdir/p.txt".to_string()), "{paths:?}");
    assert!(!paths.contains(&"dir/a.txt".to_string()), "{paths:?}");
    assert!(!paths.contains(&"plain.txt".to_string()), "{paths:?}");

    // A secret renamed to another YAML name still reads decrypted.
    std::fs::rename(m.p("secret.yaml"), m.p("dir/moved.yaml")).expect("rename secret");
    assert_eq!(m.read("dir/moved.yaml"), secret_plaintext());
    m.flush();
    assert_eq!(
        remote_raw(&r, "dir/moved.yaml").expect("moved"),
        secret_ciphertext(),
        "a rename rewrote the ciphertext"
    );

    // RENAME_NOREPLACE onto an existing name: EEXIST, nothing changes.
    let n = commits(&r);
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cstr(&m.p("dir/sub/a.txt")).as_ptr(),
            libc::AT_FDCWD,
            cstr(&m.p("dir/sub/b.txt")).as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(rc, -1, "RENAME_NOREPLACE replaced an existing file");
    assert_eq!(last_errno(), libc::EEXIST);
    assert_eq!(m.read("dir/sub/a.txt"), b"alpha\n");
    assert_eq!(m.read("dir/sub/b.txt"), b"beta\n");
    // ... and onto a free name it renames.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            cstr(&m.p("dir/sub/a.txt")).as_ptr(),
            libc::AT_FDCWD,
            cstr(&m.p("dir/sub/c.txt")).as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(
        rc,
        0,
        "RENAME_NOREPLACE to a free name: errno {}",
        last_errno()
    );
    m.flush();
    assert_eq!(commits(&r), n + 1);
    assert_eq!(
        remote_raw(&r, "dir/sub/c.txt").as_deref(),
        Some(&b"alpha\n"[..])
    );
    assert_eq!(
        remote_raw(&r, "dir/sub/b.txt").as_deref(),
        Some(&b"beta\n"[..])
    );

    // Renaming onto a directory, or a missing source.
    assert_eq!(
        errno(std::fs::rename(m.p("dir/sub/c.txt"), m.p("newdir"))),
        libc::EISDIR
    );
    assert_eq!(
        errno(std::fs::rename(m.p("nope.txt"), m.p("x.txt"))),
        libc::ENOENT
    );
}

#[test]
fn directories() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let n = commits(&r);

    std::fs::create_dir(m.p("empty")).expect("mkdir");
    assert!(m.p("empty").is_dir());
    assert_eq!(errno(std::fs::create_dir(m.p("empty"))), libc::EEXIST);
    assert_eq!(errno(std::fs::create_dir(m.p("dir"))), libc::EEXIST);
    m.flush();
    assert_eq!(commits(&r), n, "an empty directory was committed");
    assert!(remote_paths(&r).iter().all(|p| !p.starts_with("empty")));
    std::fs::remove_dir(m.p("empty")).expect("rmdir empty");
    assert!(!m.p("empty").exists());

    // A file lands in a new nested dir: committed; the dir is not empty any more.
    std::fs::create_dir_all(m.p("x/y/z")).expect("mkdir -p");
    write_file(&m.p("x/y/z/f.txt"), b"deep\n");
    m.flush();
    assert_eq!(
        remote_raw(&r, "x/y/z/f.txt").as_deref(),
        Some(&b"deep\n"[..])
    );
    assert_eq!(errno(std::fs::remove_dir(m.p("x/y/z"))), libc::ENOTEMPTY);
    assert_eq!(errno(std::fs::remove_dir(m.p("x"))), libc::ENOTEMPTY);
    assert_eq!(errno(std::fs::remove_dir(m.p("dir"))), libc::ENOTEMPTY);
    assert_eq!(errno(std::fs::remove_dir(m.p("plain.txt"))), libc::ENOTDIR);
    assert_eq!(errno(std::fs::remove_file(m.p("dir"))), libc::EISDIR);

    // Emptied by unlinking, the directories can be removed bottom-up (what `rm -r` does).
    std::fs::remove_file(m.p("x/y/z/f.txt")).expect("unlink");
    std::fs::remove_dir(m.p("x/y/z")).expect("rmdir x/y/z");
    std::fs::remove_dir(m.p("x/y")).expect("rmdir x/y");
    std::fs::remove_dir(m.p("x")).expect("rmdir x");
    assert!(!m.p("x").exists());

    // The same for a directory that came from git.
    std::fs::remove_file(m.p("dir/sub/b.txt")).expect("unlink");
    assert!(
        m.p("dir/sub").is_dir(),
        "a tracked directory vanished when its last file was unlinked"
    );
    std::fs::remove_dir(m.p("dir/sub")).expect("rmdir of a tracked dir emptied by unlink");
    m.flush();
    assert_eq!(
        remote_paths(&r),
        [".sops.yaml", "dir/a.txt", "plain.txt", "secret.yaml"]
    );
}

#[test]
fn symlinks_are_committed_as_symlinks() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    std::os::unix::fs::symlink("plain.txt", m.p("link")).expect("symlink");
    std::os::unix::fs::symlink("../secret.yaml", m.p("dir/slink")).expect("symlink");
    assert_eq!(
        std::fs::read_link(m.p("link")).expect("readlink"),
        std::path::Path::new("plain.txt")
    );
    assert!(std::fs::symlink_metadata(m.p("link"))
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(m.read("link"), PLAIN.as_bytes(), "reading through the link");
    assert_eq!(m.read("dir/slink"), secret_plaintext());
    assert_eq!(
        errno(std::os::unix::fs::symlink("x", m.p("plain.txt"))),
        libc::EEXIST
    );
    m.flush();
    let tree = ls_tree(&r);
    assert_eq!(
        tree.get("link").map(String::as_str),
        Some("120000"),
        "{tree:?}"
    );
    assert_eq!(
        tree.get("dir/slink").map(String::as_str),
        Some("120000"),
        "{tree:?}"
    );
    assert_eq!(remote_raw(&r, "link").as_deref(), Some(&b"plain.txt"[..]));
    // Removing the link removes the link only.
    std::fs::remove_file(m.p("link")).expect("unlink link");
    m.flush();
    assert!(!ls_tree(&r).contains_key("link"));
    assert_eq!(
        remote_raw(&r, "plain.txt").as_deref(),
        Some(PLAIN.as_bytes())
    );
}

/// `mknod(path, mode, dev)`: 0 or the errno.
fn mknod_errno(path: &std::path::Path, mode: libc::mode_t, dev: libc::dev_t) -> i32 {
    let rc = unsafe { libc::mknod(cstr(path).as_ptr(), mode, dev) };
    if rc == 0 {
        0
    } else {
        last_errno()
    }
}

/// The refusals below must be ours, not the kernel's: on an ordinary directory the kernel
/// lets this process make each of these (it runs as root, with CAP_CHOWN and CAP_MKNOD),
/// and a daemon that did not implement them would give ENOSYS, not EPERM.
fn assert_the_kernel_allows_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("f"), b"x").expect("write");
    std::fs::hard_link(p("f"), p("hard")).expect("control: hard link outside the mount");
    for (name, mode, dev) in [
        ("fifo", libc::S_IFIFO, 0),
        ("sock", libc::S_IFSOCK, 0),
        ("dev", libc::S_IFCHR, libc::makedev(1, 3)),
    ] {
        assert_eq!(
            mknod_errno(&p(name), mode | 0o644, dev),
            0,
            "control: mknod {name} outside the mount (this test needs root with CAP_MKNOD)"
        );
    }
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    std::os::unix::fs::chown(p("f"), Some(uid + 4242), Some(gid + 4242))
        .expect("control: chown to another owner outside the mount (needs CAP_CHOWN)");
    let meta = std::fs::metadata(p("f")).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (uid + 4242, gid + 4242));
    std::fs::create_dir(p(".git")).expect("control: mkdir .git outside the mount");
}

/// `rel` is neither in the mount (by lookup or listing) nor on the remote.
fn assert_absent(m: &Mnt, r: &Remote, rel: &str) {
    assert_eq!(
        errno(std::fs::symlink_metadata(m.p(rel))),
        libc::ENOENT,
        "{rel} exists in the mount"
    );
    let parent = std::path::Path::new(rel)
        .parent()
        .map(|p| m.p(&p.to_string_lossy()))
        .unwrap_or_else(|| m.mnt.clone());
    let name = std::path::Path::new(rel).file_name().expect("name");
    assert!(
        std::fs::read_dir(&parent)
            .expect("readdir")
            .all(|e| e.expect("entry").file_name() != name),
        "{rel} listed in the mount"
    );
    assert!(
        !remote_paths(r)
            .iter()
            .any(|p| p == rel || p.starts_with(&format!("{rel}/"))),
        "{rel} on the remote"
    );
}

#[test]
fn refused_operations() {
    assert_the_kernel_allows_them();
    let r = seeded_remote();
    let m = mount_remote(&r);
    let n = commits(&r);
    let head = remote_head(&r);
    let tree_before = ls_tree(&r);

    // Hard links.
    assert_eq!(
        errno(std::fs::hard_link(m.p("plain.txt"), m.p("hard.txt"))),
        libc::EPERM
    );
    // Device nodes, FIFOs and sockets.
    assert_eq!(
        mknod_errno(&m.p("fifo"), libc::S_IFIFO | 0o644, 0),
        libc::EPERM,
        "mknod of a FIFO"
    );
    assert_eq!(
        mknod_errno(&m.p("sock"), libc::S_IFSOCK | 0o644, 0),
        libc::EPERM,
        "mknod of a socket"
    );
    assert_eq!(
        mknod_errno(&m.p("dev"), libc::S_IFCHR | 0o644, libc::makedev(1, 3)),
        libc::EPERM,
        "mknod of a device"
    );
    assert_eq!(
        mknod_errno(&m.p("dir/dev"), libc::S_IFBLK | 0o644, libc::makedev(7, 0)),
        libc::EPERM,
        "mknod of a block device"
    );
    // xattrs.
    let name = std::ffi::CString::new("user.test").expect("c");
    for p in ["plain.txt", "secret.yaml", "dir"] {
        let path = cstr(&m.p(p));
        let rc =
            unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, -1, "setxattr on {p}");
        assert_eq!(last_errno(), libc::ENOTSUP, "setxattr on {p}");
        let mut buf = [0u8; 64];
        let rc = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(rc, -1, "getxattr on {p}");
        assert_eq!(last_errno(), libc::ENOTSUP, "getxattr on {p}");
    }
    // chown: to another owner refused (the kernel would allow it, see above) and the
    // owner unchanged; to ourselves fine.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    for p in ["plain.txt", "secret.yaml", "dir"] {
        assert_eq!(
            errno(std::os::unix::fs::chown(m.p(p), Some(uid + 4242), None)),
            libc::EPERM,
            "chown {p}"
        );
        assert_eq!(
            errno(std::os::unix::fs::chown(m.p(p), None, Some(gid + 4242))),
            libc::EPERM,
            "chgrp {p}"
        );
        let meta = std::fs::metadata(m.p(p)).expect("stat");
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{p} changed owner");
    }
    std::os::unix::fs::chown(m.p("plain.txt"), Some(uid), Some(gid)).expect("chown to self");
    let meta = std::fs::metadata(m.p("plain.txt")).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    // `.git` cannot be made inside the mount.
    assert_eq!(
        errno(std::fs::create_dir(m.p(".git"))),
        libc::EPERM,
        "mkdir .git"
    );
    assert_eq!(
        errno(std::fs::write(m.p(".git"), b"x")),
        libc::EPERM,
        "creating .git"
    );

    // Nothing was made, nothing committed (deferred files and deletions forced too).
    m.flush();
    for p in ["hard.txt", "fifo", "sock", "dev", "dir/dev", ".git"] {
        assert_absent(&m, &r, p);
    }
    assert_eq!(commits(&r), n, "a refused operation committed something");
    assert_eq!(remote_head(&r), head);
    assert_eq!(ls_tree(&r), tree_before);
    assert_eq!(m.read("plain.txt"), PLAIN.as_bytes());
}

#[test]
fn chmod_is_committed() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    std::fs::set_permissions(m.p("plain.txt"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod +x");
    assert_eq!(
        std::fs::metadata(m.p("plain.txt")).expect("stat").mode() & 0o777,
        0o755
    );
    m.flush();
    assert_eq!(
        ls_tree(&r).get("plain.txt").map(String::as_str),
        Some("100755")
    );
    assert_eq!(
        remote_raw(&r, "plain.txt").as_deref(),
        Some(PLAIN.as_bytes())
    );
    // A new executable file.
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(m.p("run.sh"))
            .expect("create");
        f.write_all(b"#!/bin/sh\necho hi\n").expect("write");
    }
    // And back.
    std::fs::set_permissions(m.p("plain.txt"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod -x");
    m.flush();
    let tree = ls_tree(&r);
    assert_eq!(tree.get("plain.txt").map(String::as_str), Some("100644"));
    assert_eq!(tree.get("run.sh").map(String::as_str), Some("100755"));
    // chmod of the encrypted file keeps it encrypted and decrypted in the view.
    std::fs::set_permissions(m.p("secret.yaml"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod secret");
    m.flush();
    assert_eq!(
        ls_tree(&r).get("secret.yaml").map(String::as_str),
        Some("100755")
    );
    assert_eq!(
        remote_raw(&r, "secret.yaml").expect("secret"),
        secret_ciphertext()
    );
    assert_eq!(m.read("secret.yaml"), secret_plaintext());
}

#[test]
fn control_dir() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let seed = remote_head(&r);

    // The mount root is private.
    assert_eq!(
        std::fs::metadata(&m.mnt).expect("stat root").mode() & 0o7777,
        0o700
    );

    // Status: a real size, and the head it names.
    // (It may legitimately change between a stat and a read, e.g. when the first
    // background fetch lands: wait for a stable pair.)
    let mut seen = Vec::new();
    let stable = wait_for(std::time::Duration::from_secs(3), || {
        let a = std::fs::metadata(m.p(".valuesfs/status")).ok()?.len();
        let t = m.status();
        let b = std::fs::metadata(m.p(".valuesfs/status")).ok()?.len();
        seen.push((a, t.len(), b));
        (a == t.len() as u64 && a == b).then_some(t)
    });
    assert!(
        stable.is_some(),
        "stat size of status never matched its content (stat, read, stat): {seen:?}"
    );
    let text = stable.expect("checked");
    assert!(!text.is_empty());
    assert_eq!(
        status_field(&text, "head").as_deref(),
        Some(format!("\"{seed}\"").as_str()),
        "{text}"
    );
    for key in [
        "remote_head",
        "pending_pushes",
        "conflicts",
        "drafts",
        "unreadable",
        "errors",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key}:"))),
            "no {key}: {text}"
        );
    }

    // History: previous versions, decrypted, read-only. HEAD moves with the head: what
    // was read through it before must not be served from a cache afterwards.
    assert_eq!(m.read(".valuesfs/history/HEAD/plain.txt"), PLAIN.as_bytes());
    assert_eq!(
        m.read(".valuesfs/history/HEAD/secret.yaml"),
        secret_plaintext()
    );
    let edited = String::from_utf8(secret_plaintext())
        .expect("utf8")
        .replace("replicas: 2", "replicas: 5");
    write_file(&m.p("secret.yaml"), edited.as_bytes());
    write_file(&m.p("plain.txt"), b"v2\n");
    m.flush();
    assert_eq!(m.read("secret.yaml"), edited.as_bytes());
    assert_eq!(
        m.read(".valuesfs/history/HEAD~1/plain.txt"),
        PLAIN.as_bytes()
    );
    assert_eq!(
        m.read(".valuesfs/history/HEAD~1/secret.yaml"),
        edited.as_bytes()
    );
    assert_eq!(
        m.read(".valuesfs/history/HEAD~2/secret.yaml"),
        secret_plaintext(),
        "history shows the previous secret decrypted"
    );
    assert_eq!(
        m.read(&format!(".valuesfs/history/{seed}/secret.yaml")),
        secret_plaintext()
    );
    assert_eq!(
        m.read(&format!(".valuesfs/history/{}/dir/sub/b.txt", &seed[..10])),
        b"beta\n"
    );
    assert_eq!(
        std::fs::metadata(m.p(".valuesfs/history/HEAD~2/secret.yaml"))
            .expect("stat")
            .len(),
        secret_plaintext().len() as u64
    );
    let head = remote_head(&r);
    assert_eq!(
        status_field(&m.status(), "head").as_deref(),
        Some(format!("\"{head}\"").as_str())
    );

    // Nothing under .valuesfs can be written.
    let n = commits(&r);
    assert!(
        std::fs::write(m.p(".valuesfs/new"), b"x").is_err(),
        "created a file in .valuesfs"
    );
    assert!(
        OpenOptions::new()
            .write(true)
            .open(m.p(".valuesfs/status"))
            .is_err(),
        "opened status for writing"
    );
    assert!(
        OpenOptions::new()
            .write(true)
            .open(m.p(".valuesfs/history/HEAD/plain.txt"))
            .is_err(),
        "opened history for writing"
    );
    assert!(
        std::fs::create_dir(m.p(".valuesfs/d")).is_err(),
        "mkdir in .valuesfs"
    );
    assert!(
        std::fs::remove_file(m.p(".valuesfs/status")).is_err(),
        "unlinked status"
    );
    assert!(
        std::fs::rename(m.p("plain.txt"), m.p(".valuesfs/history/x")).is_err(),
        "renamed into .valuesfs"
    );
    assert!(
        std::fs::remove_dir_all(m.p(".valuesfs")).is_err(),
        "removed .valuesfs"
    );
    assert!(m.p(".valuesfs/status").exists());
    assert_eq!(m.read("plain.txt"), b"v2\n");
    m.flush();
    assert_eq!(commits(&r), n);
    assert!(remote_paths(&r).iter().all(|p| !p.starts_with(".valuesfs")));

    // (Last, so the checks above run even when this fails.)
    assert_eq!(
        m.read(".valuesfs/history/HEAD/plain.txt"),
        b"v2\n",
        "history/HEAD serves the previous head's file"
    );
    assert_eq!(
        m.read(".valuesfs/history/HEAD/secret.yaml"),
        edited.as_bytes(),
        "history/HEAD serves the previous head's secret"
    );
}

#[test]
fn close_without_writing_commits_nothing() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let n = commits(&r);
    // Open for writing and close.
    drop(
        OpenOptions::new()
            .write(true)
            .open(m.p("plain.txt"))
            .expect("open"),
    );
    drop(
        OpenOptions::new()
            .write(true)
            .open(m.p("secret.yaml"))
            .expect("open"),
    );
    // Open, fsync with nothing written, close.
    {
        let f = OpenOptions::new()
            .write(true)
            .open(m.p("secret.yaml"))
            .expect("open");
        f.sync_all().expect("fsync");
    }
    // Rewriting identical content.
    write_file(&m.p("plain.txt"), PLAIN.as_bytes());
    write_file(&m.p("secret.yaml"), &secret_plaintext());
    // Reading.
    let mut s = String::new();
    File::open(m.p("secret.yaml"))
        .expect("open")
        .read_to_string(&mut s)
        .expect("read");
    m.flush();
    assert_eq!(commits(&r), n, "{:?}", subjects(&r));
    assert_eq!(
        remote_raw(&r, "secret.yaml").expect("secret"),
        secret_ciphertext()
    );

    // A new empty file (touch) is one commit, made by the release that follows the
    // close (the kernel sends it asynchronously, so wait for it).
    File::create(m.p("touched.txt")).expect("touch");
    let landed = wait_for(std::time::Duration::from_secs(5), || {
        m.flush();
        (commits(&r) > n).then_some(())
    });
    assert!(landed.is_some(), "touch of a new file was never committed");
    m.flush();
    assert_eq!(commits(&r), n + 1);
    assert_eq!(remote_raw(&r, "touched.txt").as_deref(), Some(&b""[..]));
}

/// A file stays reachable right after its write-close: reopening it (for writing or
/// reading) and stat-ing it never gives ENOENT, however quickly it follows the commit.
#[test]
fn reopen_right_after_write_close() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let mut failures = Vec::new();
    for i in 0..40 {
        let data = format!("x{i}\n");
        if let Err(e) = write_checked(&m.p("q.txt"), data.as_bytes()) {
            failures.push(format!("{i}: create/write: {e}"));
            continue;
        }
        match OpenOptions::new().write(true).open(m.p("q.txt")) {
            Ok(f) => drop(f),
            Err(e) => failures.push(format!("{i}: reopen for write: {e}")),
        }
        match std::fs::read(m.p("q.txt")) {
            Ok(b) if b == data.as_bytes() => {}
            Ok(b) => failures.push(format!("{i}: read {:?}", String::from_utf8_lossy(&b))),
            Err(e) => failures.push(format!("{i}: read: {e}")),
        }
        if let Err(e) = std::fs::metadata(m.p("q.txt")) {
            failures.push(format!("{i}: stat: {e}"));
        }
    }
    let st = std::fs::read_to_string(m.p(".valuesfs/status")).unwrap_or_default();
    assert!(
        failures.is_empty(),
        "{} of 160 operations failed right after a write-close, e.g. {:?}\nstatus:\n{st}",
        failures.len(),
        &failures[..failures.len().min(6)]
    );
}

/// A handle opened before its file was renamed (in the same mount) writes to the file
/// under its new name, as on any POSIX filesystem: no conflict with the mount's own rename.
#[test]
fn write_through_a_handle_opened_before_a_rename() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.p("plain.txt"))
        .expect("open");
    std::fs::rename(m.p("plain.txt"), m.p("dir/renamed.txt")).expect("rename while open");
    f.write_all(b"written after the rename\n").expect("write");
    let closed = close_checked(f);
    m.flush();
    let st = m.status();
    assert!(
        closed.is_ok(),
        "close after a rename of the open file failed: {closed:?}\nstatus:\n{st}"
    );
    assert_eq!(m.read("dir/renamed.txt"), b"written after the rename\n");
    assert!(!m.p("plain.txt").exists());
    assert_eq!(
        remote_raw(&r, "dir/renamed.txt").as_deref(),
        Some(&b"written after the rename\n"[..])
    );
    assert_eq!(remote_raw(&r, "plain.txt"), None);
    assert!(st.contains("conflicts: []"), "{st}");
}

/// Several processes (threads here) writing different files at once: every write-close
/// is its own commit and all of them land.
#[test]
fn parallel_writers_in_one_mount() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let n = commits(&r);
    std::thread::scope(|s| {
        for t in 0..6 {
            let m = &m;
            s.spawn(move || {
                for i in 0..5 {
                    let name = if i % 2 == 0 {
                        format!("t{t}-{i}.txt")
                    } else {
                        format!("t{t}-{i}.yaml")
                    };
                    put(&m.p(&name), format!("k: v{t}{i}\n").as_bytes());
                }
            });
        }
    });
    m.flush();
    assert_eq!(commits(&r), n + 30, "{:?}", subjects(&r));
    for t in 0..6 {
        for i in 0..5 {
            let name = if i % 2 == 0 {
                format!("t{t}-{i}.txt")
            } else {
                format!("t{t}-{i}.yaml")
            };
            assert_eq!(
                remote_plain(&r, &name).unwrap_or_else(|| panic!("{name} missing")),
                format!("k: v{t}{i}\n").as_bytes()
            );
            assert_eq!(m.read(&name), format!("k: v{t}{i}\n").as_bytes());
        }
    }
}

/// mtime: untouched files keep one, a write moves it forward, an explicit time sticks.
#[test]
fn mtime_follows_writes_and_utimens() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let before = std::fs::metadata(m.p("plain.txt"))
        .expect("stat")
        .modified()
        .expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_file(&m.p("plain.txt"), b"changed\n");
    let after = std::fs::metadata(m.p("plain.txt"))
        .expect("stat")
        .modified()
        .expect("mtime");
    assert!(
        after > before,
        "mtime did not move on write: {before:?} -> {after:?}"
    );
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_577_836_800);
    File::options()
        .write(true)
        .open(m.p("dir/a.txt"))
        .expect("open")
        .set_modified(t)
        .expect("utimens");
    assert_eq!(
        std::fs::metadata(m.p("dir/a.txt"))
            .expect("stat")
            .modified()
            .expect("mtime"),
        t
    );
    let n = {
        m.flush();
        commits(&r)
    };
    assert_eq!(m.read("dir/a.txt"), b"alpha\n");
    assert_eq!(
        std::fs::metadata(m.p("dir/a.txt"))
            .expect("stat")
            .modified()
            .expect("mtime"),
        t
    );
    m.flush();
    assert_eq!(commits(&r), n, "utimens committed something");
}

/// The kernel sends one FLUSH per close of every descriptor of an open file (a `dup`, or
/// a forked child's inherited copy closed at exec). The close of the descriptor that
/// wrote must still return only once the write is committed, even when the other
/// descriptor's FLUSH got there first: here both are closed at the same moment, and right
/// after the writer's close returns the mount's head must hold the data (a tracked file:
/// new files wait for the grace period).
#[test]
fn close_waits_for_the_commit_even_when_another_descriptor_flushes() {
    let r = seeded_remote();
    let m = mount_remote(&r);
    let master = m.m().master.clone();
    let head_content = || -> Option<Vec<u8>> {
        let snap = master.snapshot();
        let reader = master.reader().ok()?;
        reader.read(&snap, "plain.txt").ok()?.map(|(b, _)| b)
    };
    let mut failures = Vec::new();
    for i in 0..30 {
        let data = format!("v{i}\n");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.p("plain.txt"))
            .expect("open");
        f.write_all(data.as_bytes()).expect("write");
        let dup = f.try_clone().expect("dup");
        let barrier = std::sync::Barrier::new(2);
        let (writer, other) = std::thread::scope(|s| {
            let other = s.spawn(|| {
                barrier.wait();
                close_checked(dup)
            });
            barrier.wait();
            let r = close_checked(f);
            let writer = (r, head_content());
            (writer, other.join().expect("thread"))
        });
        if let Err(e) = other {
            failures.push(format!("{i}: close of the dup failed: {e}"));
        }
        match writer {
            (Err(e), _) => failures.push(format!("{i}: close failed: {e}")),
            (Ok(()), head) if head.as_deref() != Some(data.as_bytes()) => failures.push(format!(
                "{i}: close returned before the commit (head has {:?})",
                head.map(|h| String::from_utf8_lossy(&h).into_owned())
            )),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 30 write-closes broke the contract, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(6)]
    );
}

//! Tree entry names and `.sops.yaml` files as a hostile remote would push them: the name
//! check never panics and agrees with itself, a raw tree object of fuzzed entries is
//! checked (or refused by libgit2) without a panic, and `.sops.yaml` parses or errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valuesfs::crypto::SopsConfig;
use valuesfs::repo::names;

fuzz_target!(|data: &[u8]| {
    // Each line is one entry name.
    for name in data.split(|b| *b == b'\n') {
        let checked = names::check(name);
        if let Ok(shown) = names::shown(name) {
            assert!(checked.is_ok());
            assert!(names::path_shown(shown));
            assert!(!names::is_dotgit(name));
        }
    }
    // A raw tree object made of those names (modes alternate blob/tree).
    thread_local! {
        static REPO: (tempfile::TempDir, git2::Repository) = {
            let dir = tempfile::tempdir().expect("tmp");
            let repo = git2::Repository::init_bare(dir.path()).expect("init");
            (dir, repo)
        };
    }
    REPO.with(|(_, repo)| {
        let blob = repo.blob(b"x").expect("blob");
        let mut raw = Vec::new();
        for (i, name) in data.split(|b| *b == b'\n').take(64).enumerate() {
            raw.extend_from_slice(if i % 2 == 0 { b"100644 " } else { b"40000 " });
            raw.extend_from_slice(name);
            raw.push(0);
            raw.extend_from_slice(blob.as_bytes());
        }
        git2::opts::strict_object_creation(false);
        if let Ok(odb) = repo.odb() {
            if let Ok(oid) = odb.write(git2::ObjectType::Tree, &raw) {
                let mut seen = std::collections::HashSet::new();
                let _ = names::fsck_tree(repo, oid, &mut seen);
            }
        }
    });
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SopsConfig::parse(text, std::path::PathBuf::from("/"));
    }
});

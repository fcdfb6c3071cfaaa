//! A small fleet in CI: four masters (mounts, each with its own state) on one remote
//! served by `git daemon`, writing at the same time with `--push sync` (fsync returns once
//! the change is on the remote). Every acknowledged write is on the remote exactly once,
//! with its bytes, and no master's write is lost to another's push. The full-size fleet
//! (netns, a delaying proxy, 20-50 masters) is `bench/fleet.sh`.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::io::Write;
use std::time::Duration;

use fs_common::*;

const MASTERS: usize = 4;
const WRITES: usize = 8;

#[test]
fn four_masters_writing_at_once_lose_and_duplicate_nothing() {
    let remote = seeded_remote();
    let daemon = repo_common::Daemon::start(remote.dir());
    let url = format!("git://127.0.0.1:{}/remote.git", daemon.port);
    let mounts: Vec<Mnt> = (0..MASTERS)
        .map(|_| {
            mount_with(&remote, None, |o| {
                o.remote = url.clone();
                o.push_sync = true;
                o.push_timeout = Duration::from_secs(60);
            })
        })
        .collect();
    std::thread::scope(|s| {
        for (i, m) in mounts.iter().enumerate() {
            s.spawn(move || {
                std::fs::create_dir_all(m.p(&format!("m{i}"))).expect("mkdir");
                for j in 0..WRITES {
                    let mut f =
                        std::fs::File::create(m.p(&format!("m{i}/f{j}.yml"))).expect("create");
                    f.write_all(format!("master: {i}\nwrite: {j}\n").as_bytes())
                        .expect("write");
                    f.sync_all()
                        .unwrap_or_else(|e| panic!("master {i} write {j}: fsync {e}"));
                    close_checked(f).expect("close");
                }
            });
        }
    });
    let tree = remote_tree_plain(&remote);
    for i in 0..MASTERS {
        for j in 0..WRITES {
            let path = format!("m{i}/f{j}.yml");
            assert_eq!(
                tree.get(&path)
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
                Some(format!("master: {i}\nwrite: {j}\n")),
                "{path} on the remote"
            );
            let log = repo_common::git(
                &remote.path,
                &["log", "--no-merges", "--format=%H", "main", "--", &path],
            );
            assert_eq!(
                log.lines().count(),
                1,
                "{path}: committed exactly once\n{log}"
            );
        }
    }
    repo_common::fsck(&remote.path);
    for m in &mounts {
        assert!(
            status_paths(&m.status(), "conflicts").is_empty(),
            "{}",
            m.status()
        );
    }
}

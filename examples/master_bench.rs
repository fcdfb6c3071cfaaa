//! Throughput and latency of one master against a local bare remote, compared with a
//! `git commit && git push` CLI loop and a clone-per-session loop doing the same work.
//!
//! Usage: `master_bench [SESSIONS=1000] [THREADS=8] [CLI_SESSIONS=200] [CLONE_SESSIONS=50]`
//! (run by `bench/master_bench.sh`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use valuesfs::repo::{Config, Master, Session};

fn git(cwd: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_AUTHOR_NAME", "cli")
        .env("GIT_AUTHOR_EMAIL", "cli@bench")
        .env("GIT_COMMITTER_NAME", "cli")
        .env("GIT_COMMITTER_EMAIL", "cli@bench")
        .output()
        .expect("spawn git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx]
}

struct Row {
    name: String,
    sessions: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

fn seed(tmp: &Path, name: &str) -> std::path::PathBuf {
    git(tmp, &["init", "-q", "--bare", "-b", "main", name]);
    let remote = tmp.join(name);
    let w = tmp.join(format!("{name}-seed"));
    git(
        tmp,
        &["init", "-q", "-b", "main", w.to_str().expect("utf8")],
    );
    std::fs::write(w.join("README"), "bench\n").expect("write");
    git(&w, &["add", "README"]);
    git(&w, &["commit", "-q", "-m", "seed"]);
    git(
        &w,
        &["push", "-q", remote.to_str().expect("utf8"), "HEAD:main"],
    );
    remote
}

fn bench_master(tmp: &Path, sessions: usize, threads: usize) -> (Row, Row) {
    let remote = seed(tmp, "master.git");
    let mut cfg = Config::new(remote.to_str().expect("utf8"), tmp.join("state"));
    cfg.push_backoff_min = Duration::from_millis(10);
    let m = Master::start(cfg).expect("start");

    // Loaded: all threads submit back to back; latency includes queueing.
    let t0 = Instant::now();
    let mut joins = Vec::new();
    for t in 0..threads {
        let h = m.clone();
        let n = sessions / threads + usize::from(t < sessions % threads);
        joins.push(std::thread::spawn(move || {
            let (tx, rx) = std::sync::mpsc::channel::<(Instant, valuesfs::repo::Ticket)>();
            let waiter = std::thread::spawn(move || {
                let mut lat = Vec::new();
                for (at, mut tk) in rx {
                    tk.wait_pushed(Duration::from_secs(120)).expect("pushed");
                    lat.push(at.elapsed());
                }
                lat
            });
            for i in 0..n {
                let mut s = Session::new(h.snapshot().commit);
                s.write(format!("load/t{t}/{i}.txt"), format!("{t} {i}\n"));
                let at = Instant::now();
                let tk = h.submit(s).expect("submit");
                tx.send((at, tk)).expect("waiter");
            }
            drop(tx);
            waiter.join().expect("waiter")
        }));
    }
    let mut lat = Vec::new();
    for j in joins {
        lat.extend(j.join().expect("thread"));
    }
    let loaded = Row {
        name: format!("valuesfs master, {threads} threads, all in flight"),
        sessions,
        elapsed: t0.elapsed(),
        lat,
    };

    // One at a time: the latency a single writer sees.
    let n = sessions.min(200);
    let t0 = Instant::now();
    let mut lat = Vec::new();
    let mut clat = Vec::new();
    for i in 0..n {
        let mut s = Session::new(m.snapshot().commit);
        s.write(format!("seq/{i}.txt"), format!("{i}\n"));
        let at = Instant::now();
        let mut tk = m.submit(s).expect("submit");
        tk.wait_committed().expect("committed");
        clat.push(at.elapsed());
        tk.wait_pushed(Duration::from_secs(60)).expect("pushed");
        lat.push(at.elapsed());
    }
    let c50 = pct(&mut clat, 0.5);
    let c99 = pct(&mut clat, 0.99);
    println!("single writer: submit->committed (durable locally) p50 {c50:.2?} p99 {c99:.2?}");
    let seq = Row {
        name: "valuesfs master, 1 writer, 1 in flight".into(),
        sessions: n,
        elapsed: t0.elapsed(),
        lat,
    };
    m.shutdown();
    let out = Command::new("git")
        .args(["fsck", "--strict", "--no-progress"])
        .current_dir(&remote)
        .output()
        .expect("fsck");
    assert!(out.status.success(), "fsck failed");
    (loaded, seq)
}

fn bench_cli(tmp: &Path, n: usize) -> Row {
    let remote = seed(tmp, "cli.git");
    let w = tmp.join("cli-work");
    git(
        tmp,
        &["clone", "-q", remote.to_str().expect("utf8"), "cli-work"],
    );
    let t0 = Instant::now();
    let mut lat = Vec::new();
    for i in 0..n {
        let at = Instant::now();
        let f = format!("f{i}.txt");
        std::fs::write(w.join(&f), format!("{i}\n")).expect("write");
        git(&w, &["add", &f]);
        git(&w, &["commit", "-q", "-m", &f]);
        git(&w, &["push", "-q", "origin", "HEAD:main"]);
        lat.push(at.elapsed());
    }
    Row {
        name: "git CLI: add && commit && push loop".into(),
        sessions: n,
        elapsed: t0.elapsed(),
        lat,
    }
}

fn bench_clone(tmp: &Path, n: usize) -> Row {
    let remote = seed(tmp, "clone.git");
    let url = remote.to_str().expect("utf8").to_string();
    let t0 = Instant::now();
    let mut lat = Vec::new();
    for i in 0..n {
        let at = Instant::now();
        let d = tmp.join(format!("clone-{i}"));
        git(tmp, &["clone", "-q", &url, d.to_str().expect("utf8")]);
        let f = format!("f{i}.txt");
        std::fs::write(d.join(&f), format!("{i}\n")).expect("write");
        git(&d, &["add", &f]);
        git(&d, &["commit", "-q", "-m", &f]);
        git(&d, &["push", "-q", "origin", "HEAD:main"]);
        std::fs::remove_dir_all(&d).expect("rm");
        lat.push(at.elapsed());
    }
    Row {
        name: "git CLI: clone, commit, push per session".into(),
        sessions: n,
        elapsed: t0.elapsed(),
        lat,
    }
}

fn main() {
    let sessions = arg(1, 1000);
    let threads = arg(2, 8).max(1);
    let cli_n = arg(3, 200);
    let clone_n = arg(4, 50);
    let tmp = tempfile::tempdir().expect("tmp");
    let (loaded, seq) = bench_master(tmp.path(), sessions, threads);
    let cli = bench_cli(tmp.path(), cli_n);
    let clone = bench_clone(tmp.path(), clone_n);
    let cli_rate = cli.sessions as f64 / cli.elapsed.as_secs_f64();
    println!(
        "| method | sessions | wall | sessions/s | vs CLI loop | p50 submit->on remote | p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for mut r in [loaded, seq, cli, clone] {
        let rate = r.sessions as f64 / r.elapsed.as_secs_f64();
        let p50 = pct(&mut r.lat, 0.50);
        let p99 = pct(&mut r.lat, 0.99);
        println!(
            "| {} | {} | {:.2?} | {:.0} | {:.1}x | {:.2?} | {:.2?} |",
            r.name,
            r.sessions,
            r.elapsed,
            rate,
            rate / cli_rate,
            p50,
            p99
        );
    }
}

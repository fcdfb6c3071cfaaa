//! Merge benchmark (bench/merge.sh): a values file with N env items (about 1 MiB at
//! 1 000 items), ours and theirs each appending an item and changing a value far from
//! the other's; times `merge_plain` in process, best of R rounds, and writes the three
//! texts into DIR for `git merge-file` to be timed on the same inputs.
//!
//! Usage: merge_bench DIR [ITEMS] [ROUNDS]

use std::time::Instant;

use valuesfs::crypto::merge::MergeRules;
use valuesfs::crypto::{Format, Style};
use valuesfs::repo::values_merge::merge_plain;

fn item(i: usize, value: &str) -> String {
    // Roughly 1 KiB per item, as in a chart with long annotations.
    format!(
        "      - name: VAR_{i:04}\n        value: \"{value}\"\n        description: >-\n          {}\n",
        "lorem ipsum dolor sit amet ".repeat(36).trim_end()
    )
}

fn file(items: &[String], tail: &str) -> String {
    format!(
        "# generated for the merge bench\ncontainers:\n  - name: web\n    env:\n{}{tail}replicas: 3\n",
        items.concat()
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("DIR"));
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    let base_items: Vec<String> = (0..n).map(|i| item(i, "v")).collect();
    let mut ours_items = base_items.clone();
    ours_items[n / 4] = item(n / 4, "ours");
    ours_items.push(item(n, "added by ours"));
    let mut theirs_items = base_items.clone();
    theirs_items[3 * n / 4] = item(3 * n / 4, "theirs");
    theirs_items.push(item(n + 1, "added by theirs"));
    let (base, ours, theirs) = (
        file(&base_items, ""),
        file(&ours_items, ""),
        file(&theirs_items, ""),
    );
    std::fs::create_dir_all(&dir).expect("dir");
    for (name, text) in [("base", &base), ("ours", &ours), ("theirs", &theirs)] {
        std::fs::write(dir.join(format!("{name}.yaml")), text).expect("write");
    }
    let mut best = f64::MAX;
    let mut out = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = merge_plain(
            Format::Yaml,
            Some(base.as_bytes()),
            ours.as_bytes(),
            theirs.as_bytes(),
            &MergeRules::default(),
            Style::default(),
        )
        .expect("merges")
        .expect("claimed");
        best = best.min(t.elapsed().as_secs_f64());
        out = r.to_vec();
    }
    std::fs::write(dir.join("merged.yaml"), &out).expect("write");
    let text = String::from_utf8(out).expect("utf8");
    assert!(text.contains("added by ours") && text.contains("added by theirs"));
    println!("bytes {}", base.len());
    println!("items {n}");
    println!("merge_ms {:.2}", best * 1000.0);
}

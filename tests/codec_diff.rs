//! The generator-based differential test against the real `sops` (bench/codec_diff.py):
//! random JSON and dotenv files, each encrypted by sops and by valuesfs, decrypted by
//! both, and edited by `sops set` and by `valuesfs edit`, must agree byte for byte.
//! (YAML runs in the soak, `bench/codec_soak.sh`, which takes too long for CI.)

mod common;

use std::path::Path;
use std::process::Command;

fn run(store: &str, cases: &str, seed: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/codec_diff.py");
    let _ = common::sops(); // fails (never skips) without the sops binary
    let tmp = tempfile::tempdir().expect("tmp");
    let key = common::private_key(tmp.path());
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--store", store, "--cases", cases, "--seed", seed, "--jobs", "2",
        ])
        .arg("--valuesfs")
        .arg(common::bin())
        .arg("--key")
        .arg(&key)
        .output()
        .expect("run codec_diff.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("codec_diff:"))
        .unwrap_or("(no summary)");
    assert!(
        out.status.success() && summary.contains(" 0 failed"),
        "{summary}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.contains(&format!("{cases} cases")), "{summary}");
}

#[test]
fn random_json_files_agree_with_sops() {
    run("json", "150", "101");
}

#[test]
fn random_dotenv_files_agree_with_sops() {
    run("dotenv", "150", "202");
}

//! `valuesfs reconcile --once`: one run of `valuesfs::reconcile` from the command line.
//! Exit status: 0 done (with `--diff`: nothing would change), 1 with `--diff` when
//! something would change, 2 when the run failed (one line on stderr).

use std::path::PathBuf;
use std::time::Duration;

use valuesfs::crypto::Keyring;
use valuesfs::reconcile::{self, Options};

#[derive(clap::Args)]
pub struct Args {
    /// One run, then exit (`valuesfs mount --reconcile` runs the ValuesSync reconciler).
    #[arg(long, required = true)]
    once: bool,
    /// The folder of manifests: `*.yaml|yml|json`, SOPS files decrypted in memory.
    #[arg(long)]
    path: PathBuf,
    /// Delete objects the set held that this run no longer has.
    #[arg(long)]
    prune: bool,
    /// Server-side dry run: print what would be created, changed and pruned.
    #[arg(long)]
    diff: bool,
    /// Namespace for objects without one, and of the ApplySet parent.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Name of the ApplySet parent Secret (default: `valuesfs-` + the folder's name).
    #[arg(long)]
    applyset: Option<String>,
    /// API server URL, instead of the kubeconfig.
    #[arg(long)]
    server: Option<String>,
    /// After applying, wait until Deployments, StatefulSets and DaemonSets rolled out
    /// (within --timeout); the error names the object that did not.
    #[arg(long)]
    wait: bool,
    /// Deadline of the whole run.
    #[arg(long, default_value = "60s", value_parser = valuesfs::repo::parse_duration)]
    timeout: Duration,
}

pub fn run(a: &Args) -> i32 {
    let _ = a.once;
    let opts = Options {
        path: a.path.clone(),
        prune: a.prune,
        diff: a.diff,
        namespace: a.namespace.clone(),
        applyset: a.applyset.clone(),
        timeout: a.timeout,
        server: a.server.clone(),
        wait: a.wait,
    };
    // Without an identity plain manifests still apply; a SOPS file then says why it
    // cannot be decrypted.
    let keys = Keyring::from_env().unwrap_or_default();
    match reconcile::run_once(&opts, &keys) {
        Ok(report) => {
            for l in &report.lines {
                println!("{l}");
            }
            let verb = if a.diff { "would apply" } else { "applied" };
            let pruned = if a.diff { "would prune" } else { "pruned" };
            println!(
                "{verb} {}, unchanged {}, {pruned} {} (applyset {})",
                report.applied, report.unchanged, report.pruned, report.set_id
            );
            if a.diff && report.changed() {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("valuesfs: reconcile: {e}");
            2
        }
    }
}

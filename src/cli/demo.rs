//! `valuesfs demo DIR`: a realistic values repo on a bare remote (`DIR/remote.git`), a
//! fresh age identity (`DIR/key.txt`, 0600), mounted at `DIR/mnt` in the foreground until
//! SIGINT or SIGTERM (dispositions reset first: a background job starts with SIGINT
//! ignored).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use anyhow::{bail, Context, Result};
use valuesfs::crypto::{self, CreationParams, Format};
use valuesfs::fs::mount as m;

const WEB_VALUES: &str = "# Helm values of the web frontend, shared by every environment.
replicaCount: 2
image:
  repository: registry.example.com/shop/web
  tag: \"1.14.2\"
  pullPolicy: IfNotPresent
service:
  type: ClusterIP
  port: 80
ingress:
  enabled: true
  className: nginx
  hosts:
    - host: shop.example.com
      paths:
        - path: /
          pathType: Prefix
resources:
  requests:
    cpu: 100m
    memory: 128Mi
  limits:
    cpu: 500m
    memory: 256Mi
";
const WEB_PROD: &str = "# Production overrides.
replicaCount: 6
ingress:
  hosts:
    - host: shop.example.com
      paths:
        - path: /
          pathType: Prefix
autoscaling:
  enabled: true
  minReplicas: 6
  maxReplicas: 20
";
const WEB_STAGING: &str = "# Staging overrides.
replicaCount: 1
ingress:
  hosts:
    - host: staging.shop.example.com
      paths:
        - path: /
          pathType: Prefix
";
const WEB_SECRETS: &str = "# Credentials of the web frontend (SOPS-encrypted in git).
session:
  secret: 3f9a1c0e-demo-session-key
oauth:
  clientId: shop-web
  clientSecret: demo-oauth-secret-7d2e
";
const DB_VALUES: &str = "# Helm values of the database.
architecture: replication
primary:
  persistence:
    size: 20Gi
readReplicas:
  replicaCount: 2
metrics:
  enabled: true
";
const DB_SECRETS: &str = "auth:
  username: shop
  password: demo-db-password-91c4
  replicationPassword: demo-repl-password-55ab
";
const NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: shop
";
const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  LOG_LEVEL: info
  FEATURE_CHECKOUT_V2: \"true\"
";
const DB_CREDENTIALS: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  namespace: shop
type: Opaque
stringData:
  username: shop
  password: demo-db-password-91c4
";
const SLICES: &str = "slices:
  - name: features
    source: slices/features
    active: slices/.active/features
";
const FLAGS: &str = "# Feature flags, released as numbered versions: `valuesfs slices sync`.
flags:
  - name: checkout-v2
    enabled: true
  - name: dark-mode
    enabled: false
";

/// The demo repository's files: path -> (text, encrypted in git?).
fn files(recipient: &str) -> Vec<(&'static str, String, bool)> {
    let sops_yaml = format!(
        "creation_rules:\n  - path_regex: (secrets|credentials)[^/]*\\.yaml$\n    age: {recipient}\n"
    );
    let readme = "# Demo values repo\n\napps/: Helm values per app and environment; secrets.yaml files are SOPS-encrypted.\nmanifests/: Kubernetes manifests (try `valuesfs reconcile --once --diff`).\nslices/: a slice store (see .valuesfs.yaml).\n";
    vec![
        (".sops.yaml", sops_yaml, false),
        (".valuesfs.yaml", SLICES.into(), false),
        ("README.md", readme.into(), false),
        ("apps/web/values.yaml", WEB_VALUES.into(), false),
        ("apps/web/values-prod.yaml", WEB_PROD.into(), false),
        ("apps/web/values-staging.yaml", WEB_STAGING.into(), false),
        ("apps/web/secrets.yaml", WEB_SECRETS.into(), true),
        ("apps/db/values.yaml", DB_VALUES.into(), false),
        ("apps/db/secrets.yaml", DB_SECRETS.into(), true),
        ("manifests/prod/namespace.yaml", NAMESPACE.into(), false),
        ("manifests/prod/web-config.yaml", CONFIGMAP.into(), false),
        (
            "manifests/prod/db-credentials.yaml",
            DB_CREDENTIALS.into(),
            true,
        ),
        ("slices/features/flags.yaml", FLAGS.into(), false),
    ]
}

/// A tree of `files` (paths with `/`) written into `repo`.
fn tree(repo: &git2::Repository, files: &BTreeMap<String, Vec<u8>>) -> Result<git2::Oid> {
    let mut here = repo.treebuilder(None)?;
    let mut sub: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for (path, bytes) in files {
        match path.split_once('/') {
            Some((dir, rest)) => {
                sub.entry(dir.to_string())
                    .or_default()
                    .insert(rest.to_string(), bytes.clone());
            }
            None => {
                let blob = repo.blob(bytes)?;
                here.insert(path, blob, 0o100644)?;
            }
        }
    }
    for (dir, inner) in sub {
        let oid = tree(repo, &inner)?;
        here.insert(&dir, oid, 0o040000)?;
    }
    Ok(here.write()?)
}

fn write_key(path: &Path, identity: &age::x25519::Identity) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}", path.display()))?;
    writeln!(
        f,
        "# created by valuesfs demo\n# public key: {}\n{}",
        identity.to_public(),
        identity.to_string().expose_secret()
    )?;
    Ok(())
}

/// Make DIR: the key, the remote with one commit on `main`. Returns the recipient.
pub fn prepare(dir: &Path) -> Result<String> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    std::fs::create_dir_all(dir.join("mnt"))?;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    write_key(&dir.join("key.txt"), &identity)?;
    let params = CreationParams {
        recipients: vec![recipient.clone()],
        ..Default::default()
    };
    let mut content = BTreeMap::new();
    for (path, text, secret) in files(&recipient) {
        let bytes = if secret {
            crypto::encrypt(text.as_bytes(), Format::Yaml, &params)
                .with_context(|| path.to_string())?
        } else {
            text.into_bytes()
        };
        content.insert(path.to_string(), bytes);
    }
    let repo = git2::Repository::init_bare(dir.join("remote.git"))?;
    let tree_id = tree(&repo, &content)?;
    let sig = git2::Signature::now("valuesfs demo", "demo@valuesfs.invalid")?;
    let tree = repo.find_tree(tree_id)?;
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "Demo values repo",
        &tree,
        &[],
    )?;
    repo.set_head("refs/heads/main")?;
    Ok(recipient)
}

pub fn run(dir: &Path) -> Result<()> {
    let dir: PathBuf = std::path::absolute(dir)?;
    prepare(&dir)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("VALUESFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    m::block_signals();
    let mut opts = m::MountOptions::new(
        dir.join("remote.git").display().to_string(),
        dir.join("mnt"),
    );
    opts.identity = Some(dir.join("key.txt"));
    opts.state_dir = Some(dir.join("state"));
    let mounted = m::mount(&opts)?;
    let d = dir.display();
    println!(
        "valuesfs demo: {d}/remote.git is mounted on {d}/mnt (age key {d}/key.txt)

Try, in another terminal:
  cat {d}/mnt/apps/web/secrets.yaml                      # decrypted, in memory only
  git --git-dir {d}/remote.git show main:apps/web/secrets.yaml | head -4   # what git holds
  ${{EDITOR:-vi}} {d}/mnt/apps/web/secrets.yaml          # save: one commit, pushed
  sed -i 's/replicaCount: 6/replicaCount: 8/' {d}/mnt/apps/web/values-prod.yaml
  git --git-dir {d}/remote.git log --oneline main
  cat {d}/mnt/.valuesfs/status
  valuesfs slices --mount {d}/mnt sync                  # version the feature flags
  ls {d}/mnt/.valuesfs/slices/features/
  valuesfs reconcile --once --diff --path {d}/mnt/manifests/prod   # against your cluster

Ctrl-C (or SIGTERM) unmounts and exits."
    );
    let _ = std::io::stdout().flush();
    let sig = m::wait_for_signal();
    println!("signal {sig}: unmounting");
    mounted.unmount();
    println!("unmounted; the remote and the key stay in {d}");
    Ok(())
}

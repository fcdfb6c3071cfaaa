//! Command line: sops-like `decrypt`, `encrypt` and `edit` over the codec.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use valuesfs::crypto::{self, sops, CreationParams, Format, Keyring, Selector, SopsConfig};
use zeroize::Zeroizing;

mod demo;
mod log;
mod mount;
mod reconcile;
mod team;

#[derive(Parser)]
#[command(
    name = "valuesfs",
    version,
    about = "A git values repo with SOPS files shown decrypted"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the plaintext of a SOPS file (`-` reads stdin); also a git textconv driver.
    #[command(after_help = "Example: valuesfs decrypt secrets.yaml\n\
        As git's textconv: git config diff.sops.textconv 'valuesfs decrypt --textconv'")]
    Decrypt {
        file: String,
        #[command(flatten)]
        types: Types,
        /// For git textconv: a file that is not SOPS, or that no key here opens, prints as
        /// it is stored (the reason on stderr) instead of failing the diff.
        #[arg(long)]
        textconv: bool,
    },
    /// Encrypt a plaintext file, to stdout or in place.
    #[command(after_help = "Example: valuesfs encrypt -i --age age1... secrets.yaml")]
    Encrypt {
        file: String,
        #[command(flatten)]
        types: Types,
        /// Recipients, comma separated: age keys or ssh public keys (default: the nearest
        /// .sops.yaml creation rule).
        #[arg(long, value_delimiter = ',', env = "SOPS_AGE_RECIPIENTS")]
        age: Vec<String>,
        /// Write the result over FILE instead of stdout.
        #[arg(short = 'i', long)]
        in_place: bool,
        #[command(flatten)]
        sel: SelectorArgs,
        /// Hash only encrypted values into the MAC.
        #[arg(long)]
        mac_only_encrypted: bool,
    },
    /// Edit a SOPS file in $EDITOR; re-encrypts with stable ciphertext.
    #[command(after_help = "Example: EDITOR=vim valuesfs edit secrets.yaml")]
    Edit {
        file: String,
        #[command(flatten)]
        types: Types,
    },
    /// Mount a values repository: SOPS files decrypted, every write-close a commit.
    #[command(
        after_help = "Example: valuesfs mount git@github.com:team/values.git ~/values --identity ~/.age/key.txt"
    )]
    Mount(Box<MountArgs>),
    /// Unmount a mount cleanly (pending pushes are attempted first).
    #[command(after_help = "Example: valuesfs unmount ~/values")]
    Unmount { mountpoint: PathBuf },
    /// List the mount's conflicts, show one (its versions decrypted, as diffs), resolve it
    /// by taking one side, or dismiss it.
    #[command(after_help = "Example: valuesfs conflicts --mount ~/values show 1")]
    Conflicts {
        #[arg(long)]
        mount: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<ConflictAction>,
    },
    /// Slices: versioned fragments (`.valuesfs.yaml`): sync, status, show, diff.
    #[command(after_help = "Example: valuesfs slices --mount ~/values sync")]
    Slices {
        #[arg(long)]
        mount: Option<PathBuf>,
        #[command(subcommand)]
        action: SliceAction,
    },
    /// Make every SOPS file's recipients those of its `.sops.yaml` creation rule (as `sops
    /// updatekeys` does for one file): the data key re-wrapped, no value changed. In a
    /// mount, one commit; in a checkout, files rewritten in place.
    #[command(
        after_help = "Example: valuesfs updatekeys --dry-run   # exits 1 when a file does not match .sops.yaml"
    )]
    Updatekeys(TeamArgs),
    /// Give every SOPS file a new data key (every value gets new ciphertext), as `sops
    /// rotate` does. Git history still holds the old versions and their keys.
    #[command(after_help = "Example: valuesfs rotate env/prod")]
    Rotate(TeamArgs),
    /// Print the status of the mount containing the current directory (or --mount).
    #[command(after_help = "Example: valuesfs status --mount ~/values")]
    Status {
        #[arg(long)]
        mount: Option<PathBuf>,
    },
    /// Apply the manifests of a folder to a Kubernetes cluster (server-side apply, prune).
    #[command(
        after_help = "Example: valuesfs reconcile --once --path ~/values/manifests/prod --prune --diff"
    )]
    Reconcile(reconcile::Args),
    /// The history of PATH (default: everything) with decrypted diffs, in a mount or a
    /// plain clone.
    #[command(after_help = "Example: valuesfs log -n 5 env/prod/secrets.yaml")]
    Log {
        path: Option<PathBuf>,
        /// The mount (default: the one containing the current directory, else the git
        /// clone containing it).
        #[arg(long)]
        mount: Option<PathBuf>,
        /// Show at most N commits (default: all).
        #[arg(short = 'n', long, value_name = "N")]
        max_count: Option<usize>,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = "Example: valuesfs completions bash > /etc/bash_completion.d/valuesfs")]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout, or write one page per command into DIR.
    #[command(after_help = "Example: valuesfs man | man -l -")]
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the ValuesSync CustomResourceDefinition (one YAML document).
    #[command(after_help = "Example: valuesfs crd | kubectl apply -f -")]
    Crd,
    /// Make DIR with a demo values repo (DIR/remote.git), a fresh age key (DIR/key.txt)
    /// and mount it on DIR/mnt in the foreground until Ctrl-C.
    #[command(after_help = "Example: valuesfs demo /tmp/vfs-demo")]
    Demo {
        /// A new (or empty) folder.
        dir: PathBuf,
    },
    /// Internal: the daemon merges its packs in a child process running this.
    #[command(hide = true)]
    MergePacks { repo: PathBuf, idx: Vec<PathBuf> },
}

#[derive(Subcommand)]
enum SliceAction {
    /// Write the next version of every slice whose source changed (one commit).
    Sync {
        #[arg(long)]
        store: Option<String>,
        slices: Vec<String>,
    },
    /// Per slice: the active version, and what a sync would add, change or remove.
    Status,
    /// Remove old versions (each slice keeps its latest N) and deleted slices from the
    /// active folders, in one commit; they stay readable under `.valuesfs/slices/.../purged/`.
    Prune {
        #[arg(long, default_value_t = 1)]
        keep: usize,
    },
    /// A version (`--version N`) or the model (default) of STORE/SLICE.
    Show {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        model: bool,
        #[arg(short = 'o', long, default_value = "yaml", value_parser = ["yaml", "json"])]
        output: String,
    },
    /// Element-level changes between versions A and B (default: the last two).
    Diff {
        name: String,
        a: Option<u32>,
        b: Option<u32>,
    },
}

#[derive(Subcommand)]
enum ConflictAction {
    /// The base, mine and theirs of the conflicted file, decrypted, as two diffs.
    Show { id: String },
    /// Land one side: `mine` (the rejected version) or `theirs` (keep the remote's), or
    /// `merged`: merge the rejected change again onto the current head, with the head's
    /// `.valuesfs.yaml` merge rules (the conflict stays when it still does not merge).
    Resolve {
        id: String,
        #[arg(long, value_parser = ["mine", "theirs", "merged"])]
        take: String,
    },
    /// Forget the conflict (its ref and record) without changing any file.
    Dismiss { id: String },
}

#[derive(Args, Clone)]
struct TeamArgs {
    /// Files or directories (default: the whole repository).
    paths: Vec<PathBuf>,
    /// Change nothing; exit 1 when something would change.
    #[arg(long)]
    dry_run: bool,
    /// The mount (default: the one containing the current directory, else the files are
    /// a plain checkout and are rewritten in place).
    #[arg(long)]
    mount: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct MountArgs {
    /// Remote URL: a path, file://, git://, ssh or https.
    remote: Option<String>,
    /// Where to mount.
    mountpoint: Option<PathBuf>,
    /// YAML file with the same settings (command-line flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Branch of the remote to mount (default: main).
    #[arg(long)]
    branch: Option<String>,
    /// age identity file, not readable by group or others (default: as sops finds it:
    /// SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, ~/.config/sops/age/keys.txt).
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Where the clone, drafts and log live (default:
    /// $XDG_STATE_HOME/valuesfs/<id of remote, branch, mountpoint>).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Let other users (e.g. pods of a DaemonSet) use the mount.
    #[arg(long)]
    allow_other: bool,
    /// `async` (close waits for the local commit) or `sync` (close waits for the push)
    /// (default: async).
    #[arg(long)]
    push: Option<String>,
    /// With --push sync: how long close waits for the push (default: 30s).
    #[arg(long)]
    push_timeout: Option<String>,
    /// How often remote changes are fetched (default: 30s).
    #[arg(long)]
    fetch_interval: Option<String>,
    /// ssh private key for the remote (default: the ssh agent).
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// User name for ssh and https (default: the one in the URL; `git` for ssh).
    #[arg(long)]
    remote_user: Option<String>,
    /// File holding an https token, sent as the password (default: git's credential
    /// helper).
    #[arg(long, value_name = "FILE")]
    https_token_file: Option<PathBuf>,
    /// Connect and read timeout of network remotes (default 30s).
    #[arg(long)]
    net_timeout: Option<String>,
    /// More scratch-file globs (kept in memory, never committed).
    #[arg(long)]
    ignore: Vec<String>,
    /// Paths (globs, as for --ignore) that may be stored in clear even when they carry
    /// a value decrypted from a SOPS file (the leak guard lets them through).
    #[arg(long, value_name = "GLOB")]
    allow_plaintext: Vec<String>,
    /// Memory for decrypted files, in MiB (default: 256).
    #[arg(long)]
    cache_mib: Option<usize>,
    /// Largest file (MiB) the mount decrypts, serves or accepts (default 64).
    #[arg(long, value_name = "N")]
    max_file_mib: Option<usize>,
    /// Stay in the foreground (default: detach once mounted).
    #[arg(long)]
    foreground: bool,
    /// Log format: human or json.
    #[arg(long, default_value = "human")]
    log_format: String,
    /// Run the reconciler: apply the ValuesSyncs of the cluster (kubeconfig, or
    /// in-cluster) from this mount's snapshots.
    #[arg(long)]
    reconcile: bool,
    /// API server URL for the reconciler, instead of the kubeconfig.
    #[arg(long, value_name = "URL")]
    kube_server: Option<String>,
    /// Serve only the ValuesSyncs of this namespace (default: every namespace).
    #[arg(long, value_name = "NS")]
    reconcile_namespace: Option<String>,
    /// How often the reconciler looks at the ValuesSyncs (default 10s).
    #[arg(long, value_name = "DURATION")]
    reconcile_poll: Option<String>,
    /// Serve the HTTP API on ADDR (e.g. 127.0.0.1:8080; off by default).
    #[arg(long, value_name = "ADDR", requires = "http_token_file")]
    http: Option<String>,
    /// File holding the API's bearer token (whitespace trimmed); required with --http.
    #[arg(long, value_name = "FILE")]
    http_token_file: Option<PathBuf>,
    /// File holding the shared secret of push webhooks (GitHub, Gitea, GitLab) for
    /// `POST /v1/hooks/push`; webhooks are off without it.
    #[arg(long, value_name = "FILE", requires = "http")]
    webhook_secret_file: Option<PathBuf>,
    /// Leader election: only the holder of this Lease (in the reconcile namespace, else
    /// `default`) applies; for DaemonSets, where every node mounts.
    #[arg(long, value_name = "NAME")]
    lease: Option<String>,
}

#[derive(Args)]
struct Types {
    /// Store of the input: yaml, json, dotenv, ini or binary (default: from the file name).
    #[arg(long)]
    input_type: Option<String>,
    /// Store of the output (default: same as the input).
    #[arg(long)]
    output_type: Option<String>,
}

#[derive(Args, Default)]
struct SelectorArgs {
    #[arg(long)]
    unencrypted_suffix: Option<String>,
    #[arg(long)]
    encrypted_suffix: Option<String>,
    #[arg(long)]
    unencrypted_regex: Option<String>,
    #[arg(long)]
    encrypted_regex: Option<String>,
    #[arg(long)]
    unencrypted_comment_regex: Option<String>,
    #[arg(long)]
    encrypted_comment_regex: Option<String>,
}

impl SelectorArgs {
    fn selector(&self) -> Result<Option<Selector>> {
        let all = [
            ("unencrypted_suffix", &self.unencrypted_suffix),
            ("encrypted_suffix", &self.encrypted_suffix),
            ("unencrypted_regex", &self.unencrypted_regex),
            ("encrypted_regex", &self.encrypted_regex),
            ("unencrypted_comment_regex", &self.unencrypted_comment_regex),
            ("encrypted_comment_regex", &self.encrypted_comment_regex),
        ];
        let set: Vec<_> = all.iter().filter(|(_, v)| v.is_some()).collect();
        if set.len() > 1 {
            bail!("only one of the selector flags may be given");
        }
        match set.first() {
            Some((f, Some(v))) => Ok(Some(Selector::new(f, v)?)),
            _ => Ok(None),
        }
    }
}

impl Types {
    fn formats(&self, file: &str) -> Result<(Format, Format)> {
        let parse = |t: &Option<String>| -> Result<Option<Format>> {
            t.as_deref()
                .map(|n| Format::from_name(n).ok_or_else(|| anyhow!("unknown store type {n:?}")))
                .transpose()
        };
        let input = parse(&self.input_type)?.unwrap_or_else(|| Format::from_path(file));
        let output = parse(&self.output_type)?.unwrap_or(input);
        Ok((input, output))
    }
}

pub fn run() -> i32 {
    let cli = Cli::parse();
    if let Cmd::Reconcile(args) = &cli.cmd {
        return reconcile::run(args);
    }
    let file = match &cli.cmd {
        Cmd::Decrypt { file, .. } | Cmd::Encrypt { file, .. } | Cmd::Edit { file, .. } => {
            file.clone()
        }
        Cmd::Mount(m) => m
            .mountpoint
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "mount".into()),
        Cmd::Unmount { mountpoint } => mountpoint.display().to_string(),
        Cmd::Status { .. } => "status".into(),
        Cmd::Updatekeys(_) => "updatekeys".into(),
        Cmd::Rotate(_) => "rotate".into(),
        Cmd::Conflicts { .. } => "conflicts".into(),
        Cmd::Slices { .. } => "slices".into(),
        Cmd::Reconcile(_) => "reconcile".into(),
        Cmd::Crd => "crd".into(),
        Cmd::Log { path, .. } => path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "log".into()),
        Cmd::Completions { .. } => "completions".into(),
        Cmd::Man { .. } => "man".into(),
        Cmd::Demo { dir } => dir.display().to_string(),
        Cmd::MergePacks { repo, .. } => repo.display().to_string(),
    };
    match dispatch(cli.cmd) {
        Ok(()) => 0,
        Err(e) => {
            // thiserror sources repeat in their parent's message: print each text once.
            let mut chain: Vec<String> = Vec::new();
            for c in e.chain().map(|c| c.to_string()) {
                if !chain.last().is_some_and(|l| l.contains(&c)) {
                    chain.push(c);
                }
            }
            eprintln!("valuesfs: {file}: {}", chain.join(": "));
            1
        }
    }
}

fn read_input(file: &str) -> Result<Vec<u8>> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| "cannot read file".to_string())
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Decrypt {
            file,
            types,
            textconv,
        } => {
            let (mut input, output) = types.formats(&file)?;
            // sops's `--input-type json --output-type binary` reads a binary envelope.
            if output == Format::Binary {
                input = Format::Binary;
            }
            let data = read_input(&file)?;
            if textconv && !crypto::is_sops(&data, input) {
                std::io::stdout().write_all(&data)?;
                return Ok(());
            }
            let opened = Keyring::from_env()
                .map_err(anyhow::Error::from)
                .and_then(|keys| {
                    let style = config_style(&file)?;
                    Ok((crypto::decrypt_styled(&data, input, &keys, style)?, style))
                });
            let (opened, style) = match opened {
                Ok(o) => o,
                Err(e) if textconv => {
                    eprintln!("valuesfs: {file}: shown encrypted: {e:#}");
                    std::io::stdout().write_all(&data)?;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let out: Zeroizing<Vec<u8>> = if output == input
                || input == Format::Binary
                || output == Format::Binary
            {
                Zeroizing::new(opened.plaintext.to_vec())
            } else {
                Zeroizing::new(sops::render_styled(output, opened.documents(), style).into_bytes())
            };
            std::io::stdout().write_all(&out)?;
            Ok(())
        }
        Cmd::Encrypt {
            file,
            types,
            age,
            in_place,
            sel,
            mac_only_encrypted,
        } => {
            let (input, _) = types.formats(&file)?;
            let data = Zeroizing::new(read_input(&file)?);
            if crypto::is_sops(&data, input) {
                bail!("already encrypted (use `valuesfs edit` to change it)");
            }
            let mut params = if age.is_empty() {
                rule_params(&file)?
            } else {
                CreationParams {
                    recipients: age,
                    style: config_style(&file)?,
                    ..Default::default()
                }
            };
            if let Some(s) = sel.selector()? {
                params.selector = Some(s);
            }
            params.mac_only_encrypted |= mac_only_encrypted;
            let out = crypto::encrypt(&data, input, &params)?;
            if in_place {
                write_atomic(Path::new(&file), &out)?;
            } else {
                std::io::stdout().write_all(&out)?;
            }
            Ok(())
        }
        Cmd::Edit { file, types } => edit(&file, &types),
        Cmd::Log {
            path,
            mount,
            max_count,
        } => log::run(path.as_deref(), mount.as_deref(), max_count),
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "valuesfs", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(d) => {
                    std::fs::create_dir_all(&d)?;
                    clap_mangen::generate_to(cmd, &d)?;
                }
                None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
            }
            Ok(())
        }
        Cmd::Mount(args) => mount::run(*args),
        Cmd::Unmount { mountpoint } => mount::unmount(&mountpoint),
        Cmd::Status { mount } => mount::status(mount.as_deref()),
        Cmd::Updatekeys(a) => team_cmd(valuesfs::crypto::team::Op::UpdateKeys, &a),
        Cmd::Rotate(a) => team_cmd(valuesfs::crypto::team::Op::Rotate, &a),
        Cmd::Reconcile(args) => std::process::exit(reconcile::run(&args)),
        Cmd::Crd => {
            print!("{}", valuesfs::reconcile::crd_yaml());
            Ok(())
        }
        Cmd::Demo { dir } => demo::run(&dir),
        Cmd::MergePacks { repo, idx } => Ok(valuesfs::repo::merge_packs(&repo, &idx)?),
        Cmd::Conflicts { mount, action } => {
            let cmd = match action {
                None => "conflicts".to_string(),
                Some(ConflictAction::Show { id }) => format!("conflict show {id}"),
                Some(ConflictAction::Resolve { id, take }) => {
                    format!("conflict resolve {id} {take}")
                }
                Some(ConflictAction::Dismiss { id }) => format!("conflict dismiss {id}"),
            };
            mount::control(mount.as_deref(), &cmd)
        }
        Cmd::Slices { mount, action } => {
            let one = |s: &str| -> Result<()> {
                if s.is_empty() || s.split_whitespace().count() != 1 {
                    bail!("invalid name {s:?}");
                }
                Ok(())
            };
            let cmd = match action {
                SliceAction::Sync { store, slices } => {
                    let mut c = "slices sync".to_string();
                    if let Some(s) = store {
                        one(&s)?;
                        c.push_str(&format!(" --store {s}"));
                    }
                    for s in slices {
                        one(&s)?;
                        c.push_str(&format!(" {s}"));
                    }
                    c
                }
                SliceAction::Status => "slices status".into(),
                SliceAction::Prune { keep } => format!("slices prune {keep}"),
                SliceAction::Show {
                    name,
                    version,
                    model: _,
                    output,
                } => {
                    one(&name)?;
                    let which = version.map_or("model".to_string(), |n| format!("v{n}"));
                    format!("slices show {name} {which} {output}")
                }
                SliceAction::Diff { name, a, b } => {
                    one(&name)?;
                    let mut c = format!("slices diff {name}");
                    for v in [a, b].into_iter().flatten() {
                        c.push_str(&format!(" {v}"));
                    }
                    c
                }
            };
            mount::control(mount.as_deref(), &cmd)
        }
    }
}

/// The `stores:` style of the nearest `.sops.yaml` above `file` (`-`: the current
/// directory); sops's defaults when there is none.
fn config_style(file: &str) -> Result<crypto::Style> {
    let start = if file == "-" {
        std::env::current_dir()?
    } else {
        let abs = std::path::absolute(file)?;
        abs.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    match crypto::config::find_config(&start) {
        Some(p) => Ok(SopsConfig::load(&p)?.style),
        None => Ok(crypto::Style::default()),
    }
}

/// Creation parameters from the nearest `.sops.yaml` for `file`.
fn rule_params(file: &str) -> Result<CreationParams> {
    let abs = std::path::absolute(file)?;
    let start = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    let cfg_path = crypto::config::find_config(&start).ok_or(crypto::Error::NoRecipients)?;
    let cfg = SopsConfig::load(&cfg_path)?;
    let rel = abs
        .strip_prefix(&cfg.dir)
        .unwrap_or(&abs)
        .to_string_lossy()
        .into_owned();
    cfg.params_for(&rel)?.ok_or_else(|| {
        anyhow!(
            "no creation rule in {} matches this path",
            cfg_path.display()
        )
    })
}

/// `updatekeys` or `rotate`; ends the process with the report's exit code when it is
/// not 0 (the report is already printed).
fn team_cmd(op: valuesfs::crypto::team::Op, a: &TeamArgs) -> Result<()> {
    let code = team::run(op, &a.paths, a.dry_run, a.mount.as_deref())?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| anyhow!("not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.valuesfs-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mode = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap_or(0o644);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(())
}

/// A 0600 file in memory-backed storage, removed (after zeroing) on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn create(name: &str, content: &[u8]) -> Result<Scratch> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| PathBuf::from("/dev/shm"));
        let dir = base.join(format!("valuesfs-edit-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)?;
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(content)?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::metadata(&self.0) {
            let _ = std::fs::write(&self.0, vec![0u8; meta.len() as usize]);
        }
        let _ = std::fs::remove_file(&self.0);
        if let Some(d) = self.0.parent() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn run_editor(path: &Path) -> Result<()> {
    let editor = std::env::var("EDITOR")
        .or_else(|_| std::env::var("VISUAL"))
        .unwrap_or_else(|_| "vi".into());
    let mut parts = editor.split_whitespace();
    let prog = parts.next().ok_or_else(|| anyhow!("$EDITOR is empty"))?;
    let status = std::process::Command::new(prog)
        .args(parts)
        .arg(path)
        .status()
        .with_context(|| format!("cannot run editor {prog:?}"))?;
    if !status.success() {
        bail!("editor exited with {status}");
    }
    Ok(())
}

fn edit(file: &str, types: &Types) -> Result<()> {
    let (format, _) = types.formats(file)?;
    let existing = match std::fs::read(file) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("cannot read file"),
    };
    let opened = match &existing {
        Some(d) => Some(crypto::decrypt_styled(
            d,
            format,
            &Keyring::from_env()?,
            config_style(file)?,
        )?),
        None => None,
    };
    let original: Zeroizing<Vec<u8>> = opened
        .as_ref()
        .map(|o| Zeroizing::new(o.plaintext.to_vec()))
        .unwrap_or_default();
    let name = Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let scratch = Scratch::create(&name, &original)?;
    loop {
        run_editor(&scratch.0)?;
        // Editors may replace the file: read the path again, not an open handle.
        let edited = Zeroizing::new(std::fs::read(&scratch.0).context("edited file vanished")?);
        if edited.as_slice() == original.as_slice() && existing.is_some() {
            eprintln!("valuesfs: {file}: no changes");
            return Ok(());
        }
        let result = match &opened {
            Some(o) => o.reencrypt(&edited),
            None => {
                let params = rule_params(file)?;
                crypto::encrypt(&edited, format, &params)
            }
        };
        match result {
            Ok(out) => {
                write_atomic(Path::new(file), &out)?;
                return Ok(());
            }
            Err(e) if std::io::stdin().is_terminal() => {
                eprintln!("valuesfs: {file}: {e}\nPress Enter to edit again, Ctrl-C to abort.");
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

//! `valuesfs mount`, `unmount` and `status`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use valuesfs::crypto::value::Value;
use valuesfs::fs::mount::{self as m, MountOptions};
use valuesfs::reconcile;
use valuesfs::repo::parse_duration;

use super::MountArgs;

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VALUESFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Settings from `--config FILE` (YAML), overridden by flags.
fn options(args: &MountArgs) -> Result<MountOptions> {
    let cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            valuesfs::crypto::yaml::parse_mappings(&text, Default::default())
                .with_context(|| format!("{}", p.display()))?
                .into_iter()
                .next()
                .unwrap_or(Value::Map(Vec::new()))
        }
        None => Value::Map(Vec::new()),
    };
    let text = |k: &str| -> Option<String> {
        match cfg.get(k) {
            Some(Value::Str(s)) => Some(s.clone()),
            Some(Value::Int(i)) => Some(i.to_string()),
            _ => None,
        }
    };
    let remote = args
        .remote
        .clone()
        .or_else(|| text("remote"))
        .ok_or_else(|| anyhow!("no remote given"))?;
    let mountpoint = args
        .mountpoint
        .clone()
        .or_else(|| text("mountpoint").map(PathBuf::from))
        .ok_or_else(|| anyhow!("no mountpoint given"))?;
    let mut o = MountOptions::new(remote, mountpoint);
    if let Some(b) = args.branch.clone().or_else(|| text("branch")) {
        o.branch = b;
    }
    o.identity = args
        .identity
        .clone()
        .or_else(|| text("identity").map(PathBuf::from));
    o.state_dir = args
        .state_dir
        .clone()
        .or_else(|| text("state_dir").map(PathBuf::from));
    // Our own binary; through /proc if it was deleted since (an upgrade in place).
    o.pack_merge_exe = match std::env::current_exe() {
        Ok(p) if p.exists() => Some(p),
        _ => Some(PathBuf::from("/proc/self/exe")),
    };
    o.allow_other = args.allow_other || matches!(cfg.get("allow_other"), Some(Value::Bool(true)));
    match args.push.clone().or_else(|| text("push")).as_deref() {
        None | Some("async") => {}
        Some("sync") => o.push_sync = true,
        Some(other) => bail!("--push takes async or sync, not {other:?}"),
    }
    if let Some(t) = args.push_timeout.clone().or_else(|| text("push_timeout")) {
        o.push_timeout = parse_duration(&t)?;
    }
    if let Some(t) = args
        .fetch_interval
        .clone()
        .or_else(|| text("fetch_interval"))
    {
        o.fetch_interval = parse_duration(&t)?;
    }
    if let Some(t) = args.net_timeout.clone().or_else(|| text("net_timeout")) {
        o.net_timeout = parse_duration(&t)?;
    }
    o.credentials.ssh_key = args
        .ssh_key
        .clone()
        .or_else(|| text("ssh_key").map(PathBuf::from));
    o.credentials.username = args.remote_user.clone().or_else(|| text("remote_user"));
    if let Some(f) = args
        .https_token_file
        .clone()
        .or_else(|| text("https_token_file").map(PathBuf::from))
    {
        let token = std::fs::read_to_string(&f).with_context(|| format!("{}", f.display()))?;
        o.credentials.https_token = Some(token.trim().to_string());
    }
    o.ignore = args.ignore.clone();
    if let Some(Value::Seq(items)) = cfg.get("ignore") {
        o.ignore
            .extend(items.iter().filter_map(|v| v.as_str().map(String::from)));
    }
    o.allow_plaintext = args.allow_plaintext.clone();
    if let Some(Value::Seq(items)) = cfg.get("allow_plaintext") {
        o.allow_plaintext
            .extend(items.iter().filter_map(|v| v.as_str().map(String::from)));
    }
    if let Some(mib) = args.cache_mib {
        o.cache_bytes = mib << 20;
    }
    if let Some(mib) = args.max_file_mib {
        o.max_file = mib << 20;
    }
    Ok(o)
}

pub fn run(args: MountArgs) -> Result<()> {
    let opts = options(&args)?;
    if !opts.mountpoint.is_dir() {
        bail!(
            "mountpoint {} is not a directory",
            opts.mountpoint.display()
        );
    }
    // Everything the daemon creates (state dir, clone, drafts, log) is private.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    if !args.foreground {
        return detach(&opts);
    }
    // glibc gives every thread that allocates an arena of its own (up to 8 per core), and
    // freed memory stays in each. The daemon's threads mostly wait; with one arena (and
    // glibc's per-thread caches) its RSS after `find` and 10 000 reads of a 100 000-file
    // mount was 89 MiB against 103 MiB (bench/fs_scale.sh), reads no slower.
    // SAFETY: a malloc tuning call, made before this process starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    init_logging(&args.log_format);
    m::block_signals();
    // The API's listener is up before the mount appears.
    let http = match &args.http {
        Some(addr) => {
            let file = args
                .http_token_file
                .as_ref()
                .ok_or_else(|| anyhow!("--http needs --http-token-file"))?;
            let token =
                std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
            if token.trim().is_empty() {
                bail!("{}: the token is empty", file.display());
            }
            let secret = match &args.webhook_secret_file {
                Some(f) => {
                    let s =
                        std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?;
                    if s.trim().is_empty() {
                        bail!("{}: the webhook secret is empty", f.display());
                    }
                    Some(s.trim().to_string())
                }
                None => None,
            };
            let listener = valuesfs::http::bind(addr).with_context(|| format!("--http {addr}"))?;
            Some((listener, token, secret))
        }
        None => None,
    };
    let mounted = m::mount(&opts)?;
    let reconciler = if args.reconcile {
        Some(start_reconciler(&args, &opts, &mounted)?)
    } else {
        None
    };
    let api = match http {
        Some((listener, token, secret)) => {
            let mut cfg = valuesfs::http::HttpConfig::new(&token);
            cfg.push_timeout = opts.push_timeout;
            cfg.webhook_secret = secret;
            cfg.branch = opts.branch.clone();
            // One registry: the reconciler's counters are served with the API's.
            if let Some(r) = &reconciler {
                let m = r.metrics.clone();
                cfg.extra_metrics = Some(std::sync::Arc::new(move || m.render()));
            }
            let server = valuesfs::http::serve(listener, mounted.fs.clone(), cfg)?;
            tracing::info!(addr = %server.addr, "HTTP API");
            Some(server)
        }
        None => None,
    };
    let sig = m::wait_for_signal();
    tracing::info!("signal {sig}: unmounting");
    // Release the Lease first, so another node takes over while this one unmounts.
    if let Some(r) = reconciler {
        r.stop();
    }
    // No request may start a session once the master is stopping.
    drop(api);
    mounted.unmount();
    Ok(())
}

/// The reconciler on its own thread, woken by every head the master publishes.
fn start_reconciler(
    args: &MountArgs,
    opts: &MountOptions,
    mounted: &m::Mounted,
) -> Result<reconcile::Controller> {
    let keys = m::load_keys(opts.identity.as_deref())?;
    let source = reconcile::SnapshotSource::new(mounted.master.clone(), keys, &opts.branch);
    let mut cfg = reconcile::ControllerConfig {
        server: args.kube_server.clone(),
        namespace: args.reconcile_namespace.clone(),
        ..Default::default()
    };
    if let Some(p) = &args.reconcile_poll {
        cfg.poll = parse_duration(p)?;
    }
    if let Some(name) = &args.lease {
        let node = std::env::var("NODE_NAME")
            .or_else(|_| std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()))
            .unwrap_or_else(|_| "valuesfs".into());
        let identity = format!("{node}-{}", std::process::id());
        let ns = args.reconcile_namespace.as_deref().unwrap_or("default");
        cfg.lease = Some(reconcile::LeaseConfig::new(ns, name, &identity));
    }
    let ctl = reconcile::spawn(std::sync::Arc::new(source), cfg)?;
    let heads = mounted.master.subscribe()?;
    let notify = ctl.notifier();
    std::thread::Builder::new()
        .name("reconcile-heads".into())
        .spawn(move || {
            for _ in heads {
                notify();
            }
        })?;
    Ok(ctl)
}

/// Start the daemon in the background and return once the mount answers.
fn detach(opts: &MountOptions) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let state = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| m::default_state_dir(&opts.remote, &opts.branch, &opts.mountpoint));
    m::prepare_state_dir(&state)?;
    let log = {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(state.join("daemon.log"))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f
    };
    // What the daemon logs from here on is its start-up: shown if it fails.
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    argv.push("--foreground".into());
    if opts.state_dir.is_none() {
        argv.push("--state-dir".into());
        argv.push(state.display().to_string());
    }
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let marker = opts.mountpoint.join(".valuesfs/status");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(st)) = child.try_wait() {
            let cause = startup_error(&state.join("daemon.log"), log_start);
            bail!(
                "the daemon exited ({st}){cause}; see {}",
                state.join("daemon.log").display()
            );
        }
        if marker.exists() {
            println!(
                "mounted on {} (log: {})",
                opts.mountpoint.display(),
                state.join("daemon.log").display()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the mount did not come up within 60 s");
}

/// The daemon's last error line logged since `from` (its start), as `: CAUSE`.
fn startup_error(log: &Path, from: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.starts_with("valuesfs:") || l.contains("error"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()));
    match line {
        Some(l) => format!(": {}", l.trim()),
        None => String::new(),
    }
}

fn socket_of(mountpoint: &Path) -> Result<PathBuf> {
    let daemon = std::fs::read_to_string(mountpoint.join(".valuesfs/daemon"))
        .with_context(|| format!("{} is not a valuesfs mount", mountpoint.display()))?;
    let line = daemon
        .lines()
        .find_map(|l| l.strip_prefix("socket: "))
        .ok_or_else(|| anyhow!("no socket in .valuesfs/daemon"))?;
    Ok(PathBuf::from(line.trim().trim_matches('"')))
}

pub(super) fn ask(mountpoint: &Path, cmd: &str) -> Result<String> {
    let mut s = UnixStream::connect(socket_of(mountpoint)?).context("connecting to the daemon")?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

pub fn unmount(mountpoint: &Path) -> Result<()> {
    if ask(mountpoint, "unmount").is_err() {
        // No daemon answering: let the kernel drop the mount.
        let ok = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(mountpoint)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
            || std::process::Command::new("umount")
                .arg(mountpoint)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        if !ok {
            bail!("cannot unmount");
        }
        return Ok(());
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if !mountpoint.join(".valuesfs").exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the daemon did not unmount within 60 s")
}

/// The mount root containing `dir`: the nearest ancestor with `.valuesfs/daemon`.
pub(super) fn find_mount(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".valuesfs/daemon").is_file())
        .map(Path::to_path_buf)
}

pub fn status(mount: Option<&Path>) -> Result<()> {
    control(mount, "status")
}

/// Send one command to the daemon of the mount (`--mount`, else the one containing the
/// current directory) and print its answer; an `error: ` answer fails.
pub fn control(mount: Option<&Path>, cmd: &str) -> Result<()> {
    let root = match mount {
        Some(m) => m.to_path_buf(),
        None => find_mount(&std::env::current_dir()?)
            .ok_or_else(|| anyhow!("not inside a valuesfs mount (use --mount)"))?,
    };
    let reply = ask(&root, cmd)?;
    if let Some(e) = reply.strip_prefix("error: ") {
        bail!("{}", e.trim_end());
    }
    print!("{reply}");
    Ok(())
}

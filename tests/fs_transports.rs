//! The network transports for real, all on 127.0.0.1: Debian's `sshd` (a key file, the
//! ssh agent, `known_hosts` checking on) and git's own `http-backend` behind nginx with
//! fcgiwrap, TLS from a test CA made here, basic auth with a token (given, or from git's
//! credential helper). A mount pushes and fetches through each; an unknown host key, a
//! certificate for another name and a wrong token refuse the mount with a clear message
//! (nothing was written through it, so nothing is lost).
//!
//! libgit2 reads `~/.ssh/known_hosts`, git's credential helper config and the CA file
//! (`SSL_CERT_FILE`) from the environment, so this binary sets `HOME`, `SSL_CERT_FILE`
//! and `SSH_AUTH_SOCK` once, before its first mount.

mod common;
mod fs_common;
#[path = "repo_common/mod.rs"]
mod repo_common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fs_common::*;
use repo_common::free_port;

/// The basic-auth user and token nginx accepts.
const USER: &str = "u";
const TOKEN: &str = "t0ken-for-tests";

/// Files shared by the tests of this binary (kept for the process's lifetime).
struct Fixture {
    dir: PathBuf,
    home: PathBuf,
    /// Appends to `~/.ssh/known_hosts` and `~/.git-credentials` one test at a time.
    edit: Mutex<()>,
}

fn sh(cmd: &str, dir: &Path) {
    run(Command::new("sh").arg("-c").arg(cmd).current_dir(dir));
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp").keep();
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
        sh(
            "ssh-keygen -q -t ed25519 -N '' -f host_key \
             && ssh-keygen -q -t ed25519 -N '' -f client_key \
             && ssh-keygen -q -t ed25519 -N '' -f agent_key \
             && cat client_key.pub agent_key.pub > authorized_keys \
             && chmod 600 client_key agent_key \
             && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
                -subj '/CN=valuesfs test CA' 2>/dev/null \
             && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr \
                -subj '/CN=127.0.0.1' 2>/dev/null \
             && printf 'subjectAltName=IP:127.0.0.1\\n' > ext \
             && openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -out srv.crt -days 2 -extfile ext 2>/dev/null",
            &dir,
        );
        let htpasswd = run(Command::new("openssl").args(["passwd", "-apr1", TOKEN]));
        std::fs::write(dir.join("htpasswd"), format!("{USER}:{}", htpasswd.trim()))
            .expect("htpasswd");
        std::fs::write(
            home.join(".gitconfig"),
            format!(
                "[credential]\n\thelper = store --file {}\n",
                home.join(".git-credentials").display()
            ),
        )
        .expect("gitconfig");
        std::fs::write(home.join(".ssh/known_hosts"), "").expect("known_hosts");
        // Before any libgit2 call of this process (every test calls `fixture` first).
        std::env::set_var("HOME", &home);
        std::env::set_var("SSL_CERT_FILE", dir.join("ca.crt"));
        std::env::set_var("SSH_AUTH_SOCK", dir.join("agent.sock"));
        Fixture {
            dir,
            home,
            edit: Mutex::new(()),
        }
    })
}

impl Fixture {
    fn append(&self, file: &str, line: &str) {
        let _g = self.edit.lock().expect("lock");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.home.join(file))
            .expect("open");
        writeln!(f, "{line}").expect("append");
    }
}

/// Children killed when the test ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

fn wait_port(port: u16) {
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A mount of `remote` with `tweak` must fail; returns its message.
fn mount_fails(
    remote: &Remote,
    tweak: impl FnOnce(&mut valuesfs::fs::mount::MountOptions),
) -> String {
    let dirs = tempfile::tempdir_in(remote.dir()).expect("tmp");
    let mnt = dirs.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mut o = test_options(remote, &mnt, &dirs.path().join("state"));
    tweak(&mut o);
    match valuesfs::fs::mount::mount(&o) {
        Ok(_) => panic!("the mount of {} came up", o.remote),
        Err(e) => e.to_string(),
    }
}

/// Write and fsync a new file; it lands on the remote.
fn write_lands(m: &Mnt, remote: &Remote, name: &str) {
    let body = format!("{name} through the transport\n");
    {
        let mut f = std::fs::File::create(m.p(name)).expect("create");
        f.write_all(body.as_bytes()).expect("write");
        f.sync_all().expect("fsync");
    }
    m.flush();
    assert_eq!(
        remote_raw(remote, name).as_deref(),
        Some(body.as_bytes()),
        "{}",
        m.status()
    );
}

#[test]
fn ssh_with_a_key_file_and_with_the_agent_and_known_hosts_checked() {
    let fx = fixture();
    let remote = seeded_remote();
    let port = free_port();
    std::fs::create_dir_all("/run/sshd").expect("privilege separation dir");
    let config = fx.dir.join(format!("sshd_config_{port}"));
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {d}/sshd_{port}.pid\n",
            d = fx.dir.display()
        ),
    )
    .expect("sshd_config");
    let mut procs = Procs(vec![spawn(
        Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(&config),
    )]);
    wait_port(port);
    let host_pub = std::fs::read_to_string(fx.dir.join("host_key.pub")).expect("host key");
    let mut parts = host_pub.split_whitespace();
    let (kind, key) = (parts.next().expect("type"), parts.next().expect("key"));
    fx.append(
        ".ssh/known_hosts",
        &format!("[127.0.0.1]:{port} {kind} {key}"),
    );
    let url = |host: &str| format!("ssh://root@{host}:{port}{}", remote.path.display());

    // A key file.
    let a = mount_with(&remote, None, |o| {
        o.remote = url("127.0.0.1");
        o.credentials.ssh_key = Some(fx.dir.join("client_key"));
    });
    assert_eq!(a.read("plain.txt"), PLAIN.as_bytes());
    write_lands(&a, &remote, "by-key.txt");

    // The agent (no key file given).
    let sock = fx.dir.join("agent.sock");
    let _ = std::fs::remove_file(&sock);
    procs.0.push(spawn(
        Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock),
    ));
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "ssh-agent did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run(Command::new("ssh-add")
        .arg(fx.dir.join("agent_key"))
        .env("SSH_AUTH_SOCK", &sock));
    let b = mount_with(&remote, None, |o| o.remote = url("127.0.0.1"));
    assert_eq!(b.read("by-key.txt"), b"by-key.txt through the transport\n");
    write_lands(&b, &remote, "by-agent.txt");

    // An unknown host key is refused, clearly; writes are kept.
    let err = mount_fails(&remote, |o| {
        o.remote = url("localhost");
        o.credentials.ssh_key = Some(fx.dir.join("client_key"));
    });
    assert!(err.contains("unknown remote ssh hostkey"), "{err}");
    // The mounts that work are unaffected and their writes all landed.
    a.fetch();
    assert_eq!(
        a.read("by-agent.txt"),
        b"by-agent.txt through the transport\n"
    );
}

#[test]
fn https_behind_nginx_with_a_token_and_a_credential_helper() {
    let fx = fixture();
    let remote = seeded_remote();
    let port = free_port();
    let d = fx.dir.join(format!("nginx_{port}"));
    for t in ["body", "fcgi", "proxy", "uwsgi", "scgi"] {
        std::fs::create_dir_all(d.join(t)).expect("mkdir");
    }
    let sock = d.join("fcgi.sock");
    std::fs::write(
        d.join("nginx.conf"),
        format!(
            "user root;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  fastcgi_temp_path {d}/fcgi;\n  proxy_temp_path {d}/proxy;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    listen 127.0.0.2:{port} ssl;\n    ssl_certificate {f}/srv.crt;\n    ssl_certificate_key {f}/srv.key;\n    client_max_body_size 0;\n    location / {{\n      auth_basic \"git\";\n      auth_basic_user_file {f}/htpasswd;\n      include /etc/nginx/fastcgi_params;\n      fastcgi_pass unix:{s};\n      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;\n      fastcgi_param GIT_PROJECT_ROOT {root};\n      fastcgi_param GIT_HTTP_EXPORT_ALL \"\";\n      fastcgi_param PATH_INFO $uri;\n      fastcgi_param REMOTE_USER $remote_user;\n    }}\n  }}\n}}\n",
            d = d.display(),
            f = fx.dir.display(),
            s = sock.display(),
            root = remote.dir().display(),
        ),
    )
    .expect("nginx.conf");
    let _procs = Procs(vec![
        spawn(
            Command::new("/usr/sbin/fcgiwrap")
                .arg("-s")
                .arg(format!("unix:{}", sock.display())),
        ),
        spawn(
            Command::new("/usr/sbin/nginx")
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .arg("-p")
                .arg(&d),
        ),
    ]);
    wait_port(port);
    let url = |host: &str| format!("https://{host}:{port}/remote.git");

    // A token given to the mount.
    let a = mount_with(&remote, None, |o| {
        o.remote = url("127.0.0.1");
        o.credentials.username = Some(USER.into());
        o.credentials.https_token = Some(TOKEN.into());
    });
    assert_eq!(a.read("plain.txt"), PLAIN.as_bytes());
    write_lands(&a, &remote, "by-token.txt");

    // No token: git's credential helper (`store`, from ~/.gitconfig) answers.
    fx.append(
        ".git-credentials",
        &format!("https://{USER}:{TOKEN}@127.0.0.1:{port}"),
    );
    let b = mount_with(&remote, None, |o| o.remote = url("127.0.0.1"));
    assert_eq!(
        b.read("by-token.txt"),
        b"by-token.txt through the transport\n"
    );
    write_lands(&b, &remote, "by-helper.txt");

    // A wrong token and a certificate for another name fail clearly.
    let err = mount_fails(&remote, |o| {
        o.remote = url("127.0.0.1");
        o.credentials.username = Some(USER.into());
        o.credentials.https_token = Some("wrong".into());
    });
    assert!(err.contains("authentication failed"), "{err}");
    // (127.0.0.2 is this machine too; the certificate names only 127.0.0.1.)
    let err = mount_fails(&remote, |o| {
        o.remote = url("127.0.0.2");
        o.credentials.https_token = Some(TOKEN.into());
    });
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    a.fetch();
    assert_eq!(
        a.read("by-helper.txt"),
        b"by-helper.txt through the transport\n"
    );
}

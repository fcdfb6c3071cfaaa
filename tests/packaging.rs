//! The packaging manifests read as the Kubernetes types they claim to be, say what the
//! DaemonSet needs (FUSE, propagation, the Lease), list every file in the kustomization,
//! and carry the CRD `valuesfs crd` prints.

mod common;

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value as Json;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kubernetes")
}

fn objects(file: &str) -> Vec<Json> {
    let bytes = std::fs::read(dir().join(file)).expect("read");
    valuesfs::reconcile::parse_file(file, &bytes, &Default::default())
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .into_iter()
        .map(|m| m.object)
        .collect()
}

fn typed<T: serde::de::DeserializeOwned>(file: &str, v: &Json) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn the_kustomize_base_reads_as_kubernetes_objects() {
    let text = std::fs::read_to_string(dir().join("kustomization.yaml")).expect("read");
    let kust: Vec<Json> = valuesfs::crypto::yaml::parse_kubectl(&text, Default::default())
        .expect("kustomization.yaml")
        .iter()
        .map(|v| valuesfs::reconcile::to_json(v).expect("json"))
        .collect();
    let listed: Vec<String> = kust[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file").to_string())
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(dir())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, on_disk, "kustomization.yaml lists every file");
    let mut kinds = Vec::new();
    for file in &listed {
        for o in objects(file) {
            let kind = o["kind"].as_str().expect("kind").to_string();
            match kind.as_str() {
                "Namespace" => drop(typed::<Namespace>(file, &o)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(file, &o)),
                "ClusterRole" => drop(typed::<ClusterRole>(file, &o)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(file, &o)),
                "Role" => drop(typed::<Role>(file, &o)),
                "RoleBinding" => drop(typed::<RoleBinding>(file, &o)),
                "ConfigMap" => drop(typed::<ConfigMap>(file, &o)),
                "DaemonSet" => drop(typed::<DaemonSet>(file, &o)),
                "CustomResourceDefinition" => {}
                other => panic!("{file}: unexpected kind {other}"),
            }
            kinds.push(kind);
        }
    }
    for k in [
        "DaemonSet",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "CustomResourceDefinition",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k}");
    }
}

#[test]
fn the_daemonset_has_what_fuse_and_the_lease_need() {
    let o = &objects("daemonset.yaml")[0];
    let ds: DaemonSet = typed("daemonset.yaml", o);
    let pod = ds.spec.expect("spec").template.spec.expect("pod spec");
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap_or_default();
    for a in ["mount", "--foreground", "--reconcile", "--lease"] {
        assert!(args.iter().any(|x| x == a), "args lack {a}: {args:?}");
    }
    let caps = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.clone())
        .unwrap_or_default();
    assert!(caps.iter().any(|c| c == "SYS_ADMIN"));
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    assert!(mounts.iter().any(|m| m.mount_path == "/dev/fuse"));
    assert!(mounts
        .iter()
        .any(|m| m.mount_propagation.as_deref() == Some("Bidirectional")));
    let env = c.env.clone().unwrap_or_default();
    assert!(env.iter().any(|e| e.name == "NODE_NAME"
        && e.value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str())
            == Some("spec.nodeName")));
    assert!(c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .is_some());
    // Both probes ask the API's /healthz on the port `--http` listens on.
    let at = args.iter().position(|a| a == "--http").expect("--http");
    let port: i32 = args[at + 1]
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let named = c
        .ports
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("a port named http");
    assert_eq!(named.container_port, port);
    for probe in [&c.liveness_probe, &c.readiness_probe] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some("/healthz"));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
        );
    }
    assert!(args.iter().any(|a| a == "--http-token-file"));
    let volumes = pod.volumes.unwrap_or_default();
    let age = volumes
        .iter()
        .find(|v| v.secret.is_some())
        .and_then(|v| v.secret.as_ref())
        .expect("the age identity from a Secret");
    assert_eq!(age.default_mode, Some(0o400));
    // The mount's settings: allow_other for the node's pods, and the identity file
    // where the Secret is mounted.
    let cm = &objects("config.yaml")[0];
    let text = cm["data"]["config.yaml"].as_str().expect("config");
    assert!(text.contains("allow_other: true"));
    assert!(text.contains("identity: /etc/valuesfs/age/key.txt"));
}

#[test]
fn both_packaged_crds_are_what_valuesfs_crd_prints() {
    let printed = valuesfs::reconcile::crd_yaml();
    for f in [
        "packaging/crds/valuesync.yaml",
        "packaging/kubernetes/crd.yaml",
    ] {
        let packaged =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(f)).expect(f);
        assert_eq!(packaged, printed, "{f} is stale: valuesfs crd > {f}");
    }
}

/// kubectl's own kustomize builds the base: every object lands in namespace `valuesfs`.
#[test]
fn kubectl_kustomize_builds_the_base() {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir())
        .output()
        .expect("kubectl is installed (scripts/setup.sh installs kubernetes-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kind: DaemonSet"), "{text}");
    assert!(text.contains("kind: CustomResourceDefinition"));
    let docs = text.split("\n---\n").count();
    assert_eq!(docs, 9, "{text}");
    for doc in text.split("\n---\n") {
        let namespaced = !doc.contains("kind: Namespace\n")
            && !doc.contains("kind: ClusterRole")
            && !doc.contains("kind: CustomResourceDefinition");
        if namespaced {
            assert!(doc.contains("namespace: valuesfs"), "{doc}");
        }
    }
}

/// `cargo deb` (packaging/deb.sh, here on the binary the tests built) makes a package
/// holding the binary, the systemd unit, completions for three shells and a man page per
/// command, depending on fuse3.
#[test]
fn the_debian_package_holds_what_it_should() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = common::bin();
    let release = bin.parent().expect("target/release");
    let target = release.parent().expect("target");
    let out = tempfile::tempdir().expect("tmp");
    let deb = out.path().join("valuesfs.deb");
    // No build here: cargo test holds the build directory's lock.
    let run = std::process::Command::new("bash")
        .arg(root.join("packaging/deb.sh"))
        .args(["--no-build", "--fast", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(root)
        .output()
        .expect("bash");
    assert!(
        run.status.success(),
        "packaging/deb.sh: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let list = std::process::Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    let list = String::from_utf8_lossy(&list.stdout);
    let files: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for want in [
        "./usr/bin/valuesfs",
        "./lib/systemd/system/valuesfs@.service",
        "./usr/share/bash-completion/completions/valuesfs",
        "./usr/share/zsh/vendor-completions/_valuesfs",
        "./usr/share/fish/vendor_completions.d/valuesfs.fish",
        "./usr/share/man/man1/valuesfs.1.gz",
        "./usr/share/man/man1/valuesfs-mount.1.gz",
        "./usr/share/doc/valuesfs/README.md",
        "./usr/share/doc/valuesfs/copyright",
    ] {
        assert!(files.contains(&want), "{want} not in\n{list}");
    }
    assert!(
        list.lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("./usr/bin/valuesfs")),
        "{list}"
    );
    let field = |f: &str| {
        let o = std::process::Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&deb)
            .arg(f)
            .output()
            .expect("dpkg-deb");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "valuesfs");
    assert!(field("Depends").contains("fuse3"), "{}", field("Depends"));
    assert!(field("Depends").contains("libc6"), "{}", field("Depends"));
}

//! `valuesfs reconcile --once`: one run whose inventory is a kubectl ApplySet (a parent
//! Secret listing the set's group-kinds and namespaces; members labelled `part-of`).
//! Order of writes: the parent with the union of old and new extents (a run stopped
//! half-way still lets the next one prune), the members, the prune, the parent with
//! the new extent. A no-op run writes nothing, the parent included.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::json;

use super::applyset as set;
use super::run::{self, api_err, api_for, Kinds, Options, Report};
use super::{Error, Manifest};

const PARENT_MANAGER: &str = "valuesfs-applyset";

/// The run itself (see the module doc).
pub(super) async fn run(opts: &Options, manifests: Vec<Manifest>) -> Result<Report, Error> {
    let started = Instant::now();
    let (client, default_ns) =
        run::connect(opts.server.as_deref(), opts.namespace.as_deref(), None).await?;
    let parent_name = opts
        .applyset
        .clone()
        .unwrap_or_else(|| default_parent(&opts.path));
    let id = set::applyset_id(&parent_name, &default_ns, "Secret", "");
    let mut report = Report {
        set_id: id.clone(),
        ..Default::default()
    };
    let mut kinds = Kinds::new(client.clone());
    let plan = run::plan(&mut kinds, manifests, &default_ns, &id, opts.diff).await?;

    // The parent: what the set held before.
    let secrets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &default_ns, &run::secret_resource());
    let parent = secrets
        .get_opt(&parent_name)
        .await
        .map_err(|e| api_err(&format!("applyset parent {default_ns}/{parent_name}"), e))?;
    let (old_gks, old_ns) = match &parent {
        Some(p) => {
            let ann = p.metadata.annotations.clone().unwrap_or_default();
            let labels = p.metadata.labels.clone().unwrap_or_default();
            if let Some(t) = ann.get(set::TOOLING) {
                if !t.starts_with("valuesfs/") {
                    return Err(Error::Api(format!(
                        "applyset parent {default_ns}/{parent_name} belongs to {t}"
                    )));
                }
            }
            if labels.get(set::ID_LABEL).is_some_and(|l| *l != id) {
                return Err(Error::Api(format!(
                    "applyset parent {default_ns}/{parent_name} has another id"
                )));
            }
            (
                set::parse_list(ann.get(set::GROUP_KINDS).map(String::as_str)),
                set::parse_list(ann.get(set::NAMESPACES).map(String::as_str)),
            )
        }
        None => Default::default(),
    };
    if !opts.diff {
        let (new_gks, new_ns) = plan.extent(&default_ns);
        let gks: BTreeSet<String> = old_gks.union(&new_gks).cloned().collect();
        let nss: BTreeSet<String> = old_ns.union(&new_ns).cloned().collect();
        if parent.is_none() || gks != old_gks || nss != old_ns {
            apply_parent(&secrets, &parent_name, &default_ns, &id, &gks, &nss).await?;
        }
    }

    let done = run::apply_all(
        &client,
        &mut kinds,
        plan,
        opts.diff,
        &id,
        &default_ns,
        &mut report,
    )
    .await?;

    // Prune: members of the set (old and new kinds and namespaces) this run did not have.
    let mut gks: BTreeSet<String> = old_gks.clone();
    gks.extend(done.keys().map(|(gk, _, _)| gk.clone()));
    let mut nss: BTreeSet<String> = old_ns.clone();
    nss.extend(
        done.keys()
            .map(|(_, ns, _)| ns.clone())
            .filter(|n| !n.is_empty()),
    );
    nss.insert(default_ns.clone());
    if opts.prune {
        let selector = format!("{}={id}", set::PART_OF);
        let mut victims = Vec::new();
        for gk in &gks {
            let (group, kind) = set::split_group_kind(gk);
            let Some((ar, scope)) = kinds.find_gk(&group, &kind).await? else {
                continue;
            };
            let spaces: Vec<String> = match scope {
                Scope::Cluster => vec![String::new()],
                Scope::Namespaced => nss.iter().cloned().collect(),
            };
            for ns in spaces {
                let list = api_for(&client, &ar, &ns)
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(|e| api_err(&format!("list {gk}"), e))?;
                for o in list.items {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    if done.contains_key(&(gk.clone(), ns.clone(), name.clone())) {
                        continue;
                    }
                    if !run::keeps_itself(&o) {
                        victims.push((ar.clone(), ns.clone(), name));
                    }
                }
            }
        }
        run::delete_all(&client, victims, opts.diff, &mut report).await?;
    }
    if !opts.diff {
        // The set now: what this run applied (and, without prune, what it kept).
        let (gks, nss) = if opts.prune {
            let g: BTreeSet<String> = done.keys().map(|(gk, _, _)| gk.clone()).collect();
            let n: BTreeSet<String> = done
                .keys()
                .map(|(_, ns, _)| ns.clone())
                .filter(|n| !n.is_empty() && *n != default_ns)
                .collect();
            (g, n)
        } else {
            nss.remove(&default_ns);
            (gks, nss)
        };
        if (&gks, &nss) != (&old_gks, &old_ns) || parent.is_none() {
            apply_parent(&secrets, &parent_name, &default_ns, &id, &gks, &nss).await?;
        }
    }
    if opts.wait && !opts.diff {
        // Leave a little of the deadline to say which object is not ready.
        let within = opts
            .timeout
            .saturating_sub(started.elapsed())
            .saturating_sub(Duration::from_secs(1));
        super::health::wait(&client, &mut kinds, &done, within).await?;
        report.lines.push("rolled out".into());
    }
    Ok(report)
}
/// The default parent name: `valuesfs-` and the folder's name, as a DNS label.
fn default_parent(path: &std::path::Path) -> String {
    let base = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut s: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(40);
    let s = s.trim_matches('-');
    if s.is_empty() {
        "valuesfs".into()
    } else {
        format!("valuesfs-{s}")
    }
}

async fn apply_parent(
    secrets: &Api<DynamicObject>,
    name: &str,
    ns: &str,
    id: &str,
    gks: &BTreeSet<String>,
    nss: &BTreeSet<String>,
) -> Result<(), Error> {
    let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(",");
    let body = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": { set::ID_LABEL: id },
            "annotations": {
                set::TOOLING: format!("valuesfs/{}", env!("CARGO_PKG_VERSION")),
                set::GROUP_KINDS: join(gks),
                set::NAMESPACES: join(nss),
            },
        },
    });
    secrets
        .patch(
            name,
            &PatchParams::apply(PARENT_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| api_err(&format!("applyset parent {ns}/{name}"), e))?;
    Ok(())
}

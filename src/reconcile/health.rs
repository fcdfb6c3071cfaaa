//! Waiting for workloads to roll out, as `kubectl rollout status` judges them: the
//! controller has seen the latest generation and every replica is updated and
//! available (Deployments), ready (StatefulSets) or scheduled and available (DaemonSets).

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::run::{self, Applied, Kinds};
use super::Error;

/// Why `obj` is not rolled out yet, or `None` when it is.
pub fn not_ready(kind: &str, obj: &Json) -> Option<String> {
    let int = |p: &str| obj.pointer(p).and_then(Json::as_i64).unwrap_or(0);
    let generation = int("/metadata/generation");
    let observed = int("/status/observedGeneration");
    if observed < generation {
        return Some(format!(
            "generation {generation} not observed yet (at {observed})"
        ));
    }
    let want = obj
        .pointer("/spec/replicas")
        .and_then(Json::as_i64)
        .unwrap_or(1);
    match kind {
        "Deployment" => {
            let updated = int("/status/updatedReplicas");
            let available = int("/status/availableReplicas");
            let total = int("/status/replicas");
            if updated < want {
                Some(format!("{updated}/{want} replicas updated"))
            } else if total > updated {
                Some(format!(
                    "{} old replicas pending termination",
                    total - updated
                ))
            } else if available < updated {
                Some(format!("{available}/{updated} updated replicas available"))
            } else {
                None
            }
        }
        "StatefulSet" => {
            let ready = int("/status/readyReplicas");
            let updated = int("/status/updatedReplicas");
            if updated < want {
                Some(format!("{updated}/{want} replicas updated"))
            } else if ready < want {
                Some(format!("{ready}/{want} replicas ready"))
            } else {
                None
            }
        }
        "DaemonSet" => {
            let desired = int("/status/desiredNumberScheduled");
            let updated = int("/status/updatedNumberScheduled");
            let available = int("/status/numberAvailable");
            if updated < desired {
                Some(format!("{updated}/{desired} pods updated"))
            } else if available < desired {
                Some(format!("{available}/{desired} pods available"))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Wait until every Deployment, StatefulSet and DaemonSet of `done` rolled out, or say
/// which one did not within `within`.
pub(super) async fn wait(
    client: &kube::Client,
    kinds: &mut Kinds,
    done: &Applied,
    within: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + within;
    // (kind, namespace, name, version)
    let mut pending: Vec<(String, String, String, String)> = done
        .iter()
        .filter_map(|((gk, ns, name), v)| {
            let kind = gk.strip_suffix(".apps")?;
            ["Deployment", "StatefulSet", "DaemonSet"]
                .contains(&kind)
                .then(|| (kind.to_string(), ns.clone(), name.clone(), v.clone()))
        })
        .collect();
    loop {
        let mut still = Vec::new();
        let mut why = String::new();
        for (kind, ns, name, v) in pending {
            let Some((ar, _)) = kinds.find(&format!("apps/{v}"), &kind, false).await? else {
                continue;
            };
            let obj = run::api_for(client, &ar, &ns)
                .get(&name)
                .await
                .map_err(|e| run::api_err(&format!("{kind} {ns}/{name}"), e))?;
            if let Some(w) = not_ready(&kind, &run::to_json(&obj)) {
                if why.is_empty() {
                    why = format!("{kind} {ns}/{name} not ready: {w}");
                }
                still.push((kind, ns, name, v));
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Api(format!("{why} after {within:?}")));
        }
        pending = still;
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(500))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rollouts_are_judged_like_kubectl() {
        let d = |gen: i64, obs: i64, upd: i64, avail: i64, total: i64| {
            json!({"metadata": {"generation": gen}, "spec": {"replicas": 2},
                   "status": {"observedGeneration": obs, "updatedReplicas": upd,
                              "availableReplicas": avail, "replicas": total}})
        };
        assert!(
            not_ready("Deployment", &d(2, 1, 2, 2, 2)).is_some_and(|w| w.contains("not observed"))
        );
        assert_eq!(
            not_ready("Deployment", &d(1, 1, 1, 1, 2)).as_deref(),
            Some("1/2 replicas updated")
        );
        assert_eq!(
            not_ready("Deployment", &d(1, 1, 2, 2, 3)).as_deref(),
            Some("1 old replicas pending termination")
        );
        assert_eq!(
            not_ready("Deployment", &d(1, 1, 2, 1, 2)).as_deref(),
            Some("1/2 updated replicas available")
        );
        assert_eq!(not_ready("Deployment", &d(1, 1, 2, 2, 2)), None);
        let ds = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            not_ready("DaemonSet", &ds).as_deref(),
            Some("2/3 pods available")
        );
        assert_eq!(not_ready("ConfigMap", &json!({})), None);
    }
}

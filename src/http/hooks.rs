//! Push webhooks (`POST /v1/hooks/push`): GitHub, Gitea and GitLab tell us the remote
//! moved, and we fetch now instead of at the next interval.
//!
//! Invariants: a request counts only when it proves the shared secret (GitHub's and
//! Gitea's HMAC-SHA256 of the exact body, or GitLab's token), checked in constant time
//! before the body is parsed; without a configured secret the route does not exist.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;

/// Which proof the sender gave, read from its headers.
fn verified(h: &HeaderMap, body: &[u8], secret: &str) -> bool {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let hmac_ok = |hex: &str| {
        let Some(sig) = unhex(hex) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    };
    if let Some(s) = text("x-hub-signature-256") {
        return s.strip_prefix("sha256=").is_some_and(hmac_ok);
    }
    if let Some(s) = text("x-gitea-signature") {
        return hmac_ok(s);
    }
    if let Some(t) = text("x-gitlab-token") {
        return same(t.as_bytes(), secret.as_bytes());
    }
    false
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn answer(code: StatusCode, fetching: bool, reason: &str) -> Response {
    let body = format!(
        "{{\"fetching\":{fetching},\"reason\":{}}}\n",
        crate::crypto::json::quote(reason)
    );
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(super) async fn push(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    let Some(secret) = app.cfg.webhook_secret.as_deref() else {
        let e = Error::new(
            Kind::NotFound,
            "webhooks are off (mount --webhook-secret-file FILE)",
        );
        return fail(&app, &e);
    };
    if !verified(&headers, &body, secret) {
        app.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return problem(
            StatusCode::UNAUTHORIZED,
            "the webhook's signature or token does not match the secret",
        );
    }
    let event = ["x-github-event", "x-gitea-event", "x-gitlab-event"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()));
    if event == Some("ping") {
        return answer(StatusCode::ACCEPTED, false, "ping");
    }
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            let e = Error::new(Kind::Invalid, "the body is not a JSON object");
            return fail(&app, &e);
        }
        Err(e) => {
            let e = Error::new(Kind::Invalid, format!("the body is not JSON: {e}"));
            return fail(&app, &e);
        }
    };
    let ours = format!("refs/heads/{}", app.cfg.branch);
    if let Some(r) = payload.get("ref").and_then(|r| r.as_str()) {
        if r != ours {
            return answer(
                StatusCode::ACCEPTED,
                false,
                &format!("a push to {r}, not {ours}"),
            );
        }
    }
    match blocking(&app, |fs| fs.api_sync()).await {
        Ok(()) => answer(StatusCode::ACCEPTED, true, &format!("a push to {ours}")),
        Err(e) => fail(&app, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("ascii"));
        }
        h
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn each_forge_proves_the_secret_its_own_way() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = sign("s3cret", body);
        let github = headers(&[("x-hub-signature-256", &format!("sha256={sig}"))]);
        assert!(verified(&github, body, "s3cret"));
        assert!(!verified(&github, b"{}", "s3cret"), "another body");
        assert!(!verified(&github, body, "other"), "another secret");
        let bare = headers(&[("x-hub-signature-256", &sig)]);
        assert!(
            !verified(&bare, body, "s3cret"),
            "GitHub's prefix is required"
        );
        assert!(verified(
            &headers(&[("x-gitea-signature", &sig)]),
            body,
            "s3cret"
        ));
        assert!(verified(
            &headers(&[("x-gitlab-token", "s3cret")]),
            body,
            "s3cret"
        ));
        assert!(!verified(
            &headers(&[("x-gitlab-token", "s3cre")]),
            body,
            "s3cret"
        ));
        assert!(!verified(&HeaderMap::new(), body, "s3cret"));
        assert!(!verified(
            &headers(&[("x-gitea-signature", "zz")]),
            body,
            "s3cret"
        ));
    }
}

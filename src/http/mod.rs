//! The HTTP API (off by default: `valuesfs mount --http ADDR --http-token-file FILE`):
//! files by path, decrypted from the current snapshot; each write one session through the
//! mount's own plaintext-to-session function (`Fs::api_write` -> `commit_file`), replied
//! once committed. It runs on its own thread with one tokio runtime; every call into the
//! mount runs on the blocking pool, so no request waits on the runtime's thread.
//!
//! Invariants: every route but `/healthz` needs the bearer token (loopback included);
//! bodies are raw bytes whatever their type, bounded (`max_body`, 413 beyond); decrypted
//! bytes are never logged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use zeroize::Zeroizing;

use crate::fs::view::api::{api_path, ApiWrite, Precondition};
use crate::fs::{Error, Fs, Kind};

mod hooks;

/// More Prometheus text for `/metrics` (the reconciler's counters, when it runs).
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// How the API is served.
#[derive(Clone)]
pub struct HttpConfig {
    /// The bearer token every request but `/healthz` must carry.
    pub token: String,
    /// Largest request body (default 16 MiB).
    pub max_body: usize,
    /// How long `?wait=pushed` waits for the push.
    pub push_timeout: Duration,
    /// Appended to `/metrics`.
    pub extra_metrics: Option<ExtraMetrics>,
    /// The shared secret of push webhooks (`/v1/hooks/push` is off without one).
    pub webhook_secret: Option<String>,
    /// The mounted branch: pushes to other branches fetch nothing.
    pub branch: String,
}

impl HttpConfig {
    pub fn new(token: &str) -> HttpConfig {
        HttpConfig {
            token: token.trim().to_string(),
            max_body: 16 << 20,
            push_timeout: Duration::from_secs(30),
            extra_metrics: None,
            webhook_secret: None,
            branch: "main".into(),
        }
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    writes: AtomicU64,
    errors: AtomicU64,
    unauthorized: AtomicU64,
}

struct App {
    fs: Arc<Fs>,
    cfg: HttpConfig,
    counters: Counters,
}

/// A running server; dropping it stops it.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bind the listener (before the mount appears, so clients never find it closed).
pub fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serve the API for `fs` on `listener`, on a thread of its own.
pub fn serve(
    listener: std::net::TcpListener,
    fs: Arc<Fs>,
    cfg: HttpConfig,
) -> std::io::Result<Server> {
    if cfg.token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the HTTP token is empty",
        ));
    }
    let addr = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = Arc::new(App {
        fs,
        cfg,
        counters: Counters::default(),
    });
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "http listener");
                        return;
                    }
                };
                let r = axum::serve(listener, router(app))
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "http server");
                }
            })
        })?;
    Ok(Server {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}

fn router(app: Arc<App>) -> Router {
    let limit = app.cfg.max_body;
    let api = Router::new()
        .route(
            "/v1/files/{*path}",
            get(read_file)
                .post(create_file)
                .put(put_file)
                .patch(patch_file)
                .delete(delete_file),
        )
        .route("/v1/tree", get(tree_root))
        .route("/v1/tree/{*path}", get(tree))
        .route("/v1/status", get(status))
        .route("/v1/sync", post(sync))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        // Verified by the sender's signature, not the bearer token.
        .route("/v1/hooks/push", post(hooks::push))
        .merge(api)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(app)
}

/// Every error reply is a JSON problem, also those axum makes itself (a query that does
/// not parse, a body over the limit, a method a route does not have).
async fn json_errors(r: Response) -> Response {
    let json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(r.status().is_client_error() || r.status().is_server_error()) || json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let msg = match String::from_utf8_lossy(&text).trim() {
        "" => parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string(),
        t => t.to_string(),
    };
    let mut out = problem(parts.status, &msg);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if same(t.as_bytes(), app.cfg.token.as_bytes()) => next.run(req).await,
        _ => {
            app.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            let mut r = problem(StatusCode::UNAUTHORIZED, "a bearer token is required");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

fn problem(code: StatusCode, msg: &str) -> Response {
    let body = format!("{{\"error\":{}}}\n", crate::crypto::json::quote(msg));
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The one mapping of the mount's errors to HTTP statuses.
fn status_of(e: &Error) -> StatusCode {
    match e.kind {
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Exists => StatusCode::CONFLICT,
        Kind::Stale => StatusCode::PRECONDITION_FAILED,
        Kind::Invalid | Kind::NameTooLong | Kind::NotDir | Kind::IsDir | Kind::NotEmpty => {
            StatusCode::BAD_REQUEST
        }
        Kind::Access | Kind::Perm => StatusCode::FORBIDDEN,
        Kind::ReadOnly => StatusCode::CONFLICT,
        Kind::TooBig => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::NotSupported | Kind::BadHandle => StatusCode::BAD_REQUEST,
        // A refused session (merge conflict, content that does not parse): the client
        // must change something; anything else is ours.
        Kind::Io if e.message.contains("conflict") || e.message.contains("invalid") => {
            StatusCode::CONFLICT
        }
        Kind::Io => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn fail(app: &App, e: &Error) -> Response {
    app.counters.errors.fetch_add(1, Ordering::Relaxed);
    problem(status_of(e), &e.message)
}

/// Run a call into the mount on the blocking pool.
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&Fs) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let a = app.clone();
    tokio::task::spawn_blocking(move || f(&a.fs))
        .await
        .unwrap_or_else(|e| Err(Error::new(Kind::Io, format!("worker: {e}"))))
}

fn checked(raw: &str) -> Result<String, Error> {
    api_path(raw)
}

/// A path that names a file (not the root).
fn file_path(raw: &str) -> Result<String, Error> {
    match api_path(raw)? {
        p if p.is_empty() => Err(Error::new(Kind::Invalid, "no path")),
        p => Ok(p),
    }
}

#[derive(serde::Deserialize)]
struct ReadQuery {
    rev: Option<String>,
}

async fn read_file(
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Response {
    let path = match checked(&raw) {
        Ok(p) => p,
        Err(e) => return fail(&app, &e),
    };
    let p = path.clone();
    match blocking(&app, move |fs| fs.api_read(&p, q.rev.as_deref())).await {
        Ok(Some(f)) => {
            let etag = format!("\"{}\"", f.etag);
            let body: Vec<u8> = f.data.to_vec();
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (header::ETAG, etag),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
                body,
            )
                .into_response()
        }
        Ok(None) => fail(
            &app,
            &Error::new(Kind::NotFound, format!("{path}: not found")),
        ),
        Err(e) => fail(&app, &e),
    }
}

#[derive(serde::Deserialize)]
struct WriteQuery {
    wait: Option<String>,
}

async fn write(
    app: Arc<App>,
    raw: String,
    q: WriteQuery,
    body: Bytes,
    pre: Precondition,
    created: StatusCode,
) -> Response {
    let path = match file_path(&raw) {
        Ok(p) => p,
        Err(e) => return fail(&app, &e),
    };
    let data = Zeroizing::new(body.to_vec());
    session(app, q, created, move |fs| fs.api_write(&path, data, &pre)).await
}

/// Runs one write session on the blocking pool and replies with its commit (once pushed
/// with `?wait=pushed`).
async fn session(
    app: Arc<App>,
    q: WriteQuery,
    created: StatusCode,
    f: impl FnOnce(&Fs) -> Result<ApiWrite, Error> + Send + 'static,
) -> Response {
    let wait_push = match q.wait.as_deref() {
        None | Some("committed") => false,
        Some("pushed") => true,
        Some(other) => {
            return fail(
                &app,
                &Error::new(
                    Kind::Invalid,
                    format!("wait={other:?}: committed or pushed"),
                ),
            )
        }
    };
    let timeout = app.cfg.push_timeout;
    let r = blocking(&app, move |fs| {
        let w = f(fs)?;
        if wait_push {
            w.wait_pushed(timeout)?;
        }
        Ok(w.commit)
    })
    .await;
    match r {
        Ok(commit) => {
            app.counters.writes.fetch_add(1, Ordering::Relaxed);
            let commit = commit.map(|c| c.to_string()).unwrap_or_default();
            (
                created,
                [(header::CONTENT_TYPE, "application/json")],
                format!("{{\"commit\":\"{commit}\"}}\n"),
            )
                .into_response()
        }
        Err(e) => fail(&app, &e),
    }
}

fn if_match(h: &HeaderMap) -> Option<String> {
    h.get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string()
        })
}

async fn create_file(
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
    Query(q): Query<WriteQuery>,
    body: Bytes,
) -> Response {
    write(app, raw, q, body, Precondition::Absent, StatusCode::CREATED).await
}

async fn put_file(
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pre = Precondition::Matches(if_match(&headers));
    write(app, raw, q, body, pre, StatusCode::OK).await
}

async fn patch_file(
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = match file_path(&raw) {
        Ok(p) => p,
        Err(e) => return fail(&app, &e),
    };
    let patch: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let e = Error::new(
                Kind::Invalid,
                format!("the body is not a JSON merge patch: {e}"),
            );
            return fail(&app, &e);
        }
    };
    let tag = if_match(&headers);
    session(app, q, StatusCode::OK, move |fs| {
        fs.api_patch(&path, &patch, tag.as_deref())
    })
    .await
}

async fn delete_file(
    State(app): State<Arc<App>>,
    Path(raw): Path<String>,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
) -> Response {
    let path = match checked(&raw) {
        Ok(p) => p,
        Err(e) => return fail(&app, &e),
    };
    let tag = if_match(&headers);
    session(app, q, StatusCode::OK, move |fs| {
        fs.api_delete(&path, tag.as_deref())
    })
    .await
}

async fn openapi() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// The API's OpenAPI document (also docs/openapi.json).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

async fn tree_root(State(app): State<Arc<App>>) -> Response {
    list(app, String::new()).await
}

async fn tree(State(app): State<Arc<App>>, Path(raw): Path<String>) -> Response {
    match checked(&raw) {
        Ok(p) => list(app, p).await,
        Err(e) => fail(&app, &e),
    }
}

async fn list(app: Arc<App>, path: String) -> Response {
    let p = path.clone();
    match blocking(&app, move |fs| fs.api_tree(&p)).await {
        Ok(Some(entries)) => {
            let items: Vec<String> = entries
                .iter()
                .filter(|(n, _)| !(path.is_empty() && n == ".valuesfs"))
                .map(|(n, t)| {
                    format!(
                        "{{\"name\":{},\"type\":\"{t}\"}}",
                        crate::crypto::json::quote(n)
                    )
                })
                .collect();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                format!("{{\"entries\":[{}]}}\n", items.join(",")),
            )
                .into_response()
        }
        Ok(None) => fail(
            &app,
            &Error::new(Kind::NotFound, format!("{path}: no folder")),
        ),
        Err(e) => fail(&app, &e),
    }
}

async fn status(State(app): State<Arc<App>>) -> Response {
    match blocking(&app, |fs| fs.api_status()).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => fail(&app, &e),
    }
}

async fn sync(State(app): State<Arc<App>>) -> Response {
    match blocking(&app, |fs| fs.api_sync()).await {
        Ok(()) => (StatusCode::ACCEPTED, "fetching\n").into_response(),
        Err(e) => fail(&app, &e),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let c = &app.counters;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut text = format!(
        "# TYPE valuesfs_http_requests_total counter\nvaluesfs_http_requests_total {}\n\
         # TYPE valuesfs_http_writes_total counter\nvaluesfs_http_writes_total {}\n\
         # TYPE valuesfs_http_errors_total counter\nvaluesfs_http_errors_total {}\n\
         # TYPE valuesfs_http_unauthorized_total counter\nvaluesfs_http_unauthorized_total {}\n\
         # TYPE valuesfs_cache_bytes gauge\nvaluesfs_cache_bytes {}\n",
        g(&c.requests),
        g(&c.writes),
        g(&c.errors),
        g(&c.unauthorized),
        app.fs.cache_bytes(),
    );
    text.push_str(&crate::metrics::global().render());
    if let Some(more) = &app.cfg.extra_metrics {
        text.push_str(&more());
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn paths_are_checked_before_the_mount_sees_them() {
        assert_eq!(api_path("a/b.yaml").ok().as_deref(), Some("a/b.yaml"));
        for bad in [
            "/etc/passwd",
            "a/../b",
            "./a",
            "a//b",
            ".valuesfs/status",
            ".git/config",
        ] {
            assert!(api_path(bad).is_err(), "{bad}");
        }
    }
}

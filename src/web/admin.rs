//! Admins' routes: the dashboard, the ledger browser, the ledger download
//! with its checksum files, the head API; and `/metrics`.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::Admin;
use crate::clock::rfc3339;
use crate::domain::{Outcome, Username};
use crate::error::{Error, Result};
use crate::ledger::Snapshot;
use crate::ledger::read::{self, EntryFilter, StoredEntry};
use crate::state::AppState;
use crate::store::downloads::Download;
use crate::store::sessions::BrowserSession;
use crate::store::{downloads, users};
use crate::views;
use crate::views::admin::{DownloadRow, EntryRow};

/// Entries per ledger page.
const PAGE_SIZE: i64 = 50;
/// Newest entries shown on the dashboard.
const LATEST_ENTRIES: i64 = 5;
/// Downloads listed on the dashboard.
const RECENT_DOWNLOADS: i64 = 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/ledger", get(ledger_page))
        .route("/admin/exports/ledger.sqlite", get(download))
        .route("/admin/exports/ledger.sqlite.sha256", get(sha256_file))
        .route("/admin/exports/ledger.sqlite.b3", get(blake3_file))
        .route(
            "/admin/exports/ledger.sqlite.checkpoint",
            get(checkpoint_file),
        )
        .route("/api/v1/admin/ledger/head", get(head_api))
        .route("/metrics", get(metrics))
}

async fn current_snapshot(app: &AppState) -> Result<std::sync::Arc<Snapshot>> {
    app.ledger
        .snapshots
        .current()
        .await
        .map_err(|e| Error::Unavailable(format!("The ledger snapshot could not be made: {e:#}")))
}

async fn dashboard(State(app): State<AppState>, Admin(admin): Admin) -> Result<Response> {
    let snapshot = current_snapshot(&app).await?;
    let kpis = read::kpis(&app.ledger.reader, app.clock.now()).await?;
    let recent = downloads::recent(&app.db, RECENT_DOWNLOADS).await?;
    let recent: Vec<_> = recent.iter().map(download_row).collect();
    let latest = read::page(&app.ledger.reader, &EntryFilter::default(), LATEST_ENTRIES).await?;
    let latest: Vec<_> = latest.iter().map(entry_row).collect();
    let checkpoint = String::from_utf8_lossy(&snapshot_checkpoint(&app, &snapshot)?).into_owned();
    Ok(views::admin::dashboard(&views::admin::AdminView {
        user: super::viewer(&admin.user),
        head: app.ledger.writer.head(),
        snapshot: &snapshot,
        kpis: &kpis,
        pending_now: app.registry.len(),
        reviewers_online: app.registry.reviewers_online(),
        downloads: &recent,
        latest: &latest,
        log: views::admin::LogView {
            checkpoint: &checkpoint,
            vkey: app.transparency.vkey(),
            witnesses: app.settings.transparency.witness.len(),
        },
    })
    .into_response())
}

#[derive(Deserialize)]
struct LedgerParams {
    before: Option<String>,
    outcome: Option<String>,
    user: Option<String>,
}

async fn ledger_page(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Query(params): Query<LedgerParams>,
) -> Result<Response> {
    let before = match params.before.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => Some(b.parse::<i64>().map_err(|_| {
            Error::Invalid(format!("`before` must be a sequence number, not `{b}`"))
        })?),
        None => None,
    };
    let outcome_text = params.outcome.as_deref().filter(|o| !o.is_empty());
    let outcome = outcome_text
        .map(|o| o.parse::<Outcome>().map_err(Error::Invalid))
        .transpose()?;
    let username = params
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let mut notice = None;
    let mut user_id = None;
    if let Some(name) = username {
        let found = match Username::parse(name) {
            Ok(username) => users::find_by_username(&app.db, &username).await?,
            Err(_) => None,
        };
        match found {
            Some(u) => user_id = Some(u.id),
            None => notice = Some(format!("There is no user named `{name}`.")),
        }
    }
    let filter = EntryFilter {
        before,
        outcome,
        user_id,
    };
    let entries = if notice.is_some() {
        Vec::new()
    } else {
        read::page(&app.ledger.reader, &filter, PAGE_SIZE).await?
    };
    let next_before = (i64::try_from(entries.len()).ok() == Some(PAGE_SIZE))
        .then(|| entries.last().map(|e| e.fields.seq))
        .flatten();
    let query = views::admin::LedgerQuery {
        outcome: outcome_text,
        user: username,
    };
    let rows: Vec<_> = entries.iter().map(entry_row).collect();
    Ok(views::admin::ledger_page(
        super::viewer(&admin.user),
        &rows,
        &query,
        next_before,
        notice.as_deref(),
    )
    .into_response())
}

fn entry_row(e: &StoredEntry) -> EntryRow<'_> {
    let f = &e.fields;
    EntryRow {
        seq: f.seq,
        entry_id: &f.entry_id,
        // The writer only records known outcomes; an unknown one is shown as
        // what it most resembles rather than hiding the row.
        outcome: f.outcome.parse().unwrap_or(Outcome::Denied),
        requester_id: &f.requester_id,
        requester_name: &f.requester_name,
        requester_ip: &f.requester_ip,
        requester_user_agent: &f.requester_user_agent,
        reviewer_id: &f.reviewer_id,
        reviewer_name: &f.reviewer_name,
        channel: &f.channel,
        code_confirmed: f.code_confirmed == 1,
        note: &f.note,
        session_created_at: &f.session_created_at,
        decided_at: &f.decided_at,
        prev_hash: &e.prev_hash,
        entry_hash: &e.entry_hash,
    }
}

fn download_row(d: &Download) -> DownloadRow<'_> {
    DownloadRow {
        username: &d.username,
        downloaded_at: &d.downloaded_at,
        filename: &d.filename,
        head_seq: d.head_seq,
        head_hash: &d.head_hash,
    }
}

fn head_headers(snapshot: &Snapshot) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let pairs = [
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", snapshot.filename),
        ),
        (header::ETAG, format!("\"{}\"", snapshot.blake3)),
        (
            header::HeaderName::from_static("repr-digest"),
            snapshot.repr_digest(),
        ),
        (
            header::HeaderName::from_static("x-ledger-head"),
            snapshot.head.to_arg(),
        ),
        (header::CACHE_CONTROL, "no-store".to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    headers
}

async fn log_download(app: &AppState, admin: &BrowserSession, snapshot: &Snapshot) -> Result<()> {
    downloads::record(
        &app.db,
        &admin.user.id,
        &admin.user.username,
        &rfc3339(app.clock.now()),
        snapshot.head.seq,
        &snapshot.head.hash_hex(),
        &snapshot.filename,
    )
    .await?;
    tracing::info!(user_id = %admin.user.id, seq = snapshot.head.seq, entry_hash = %snapshot.head.hash_hex(), "ledger downloaded");
    Ok(())
}

/// The snapshot for the current head, streamed from its file.
async fn download(State(app): State<AppState>, Admin(admin): Admin) -> Result<Response> {
    let snapshot = current_snapshot(&app).await?;
    let file = tokio::fs::File::open(&snapshot.path)
        .await
        .map_err(|e| Error::Unavailable(format!("The snapshot file could not be opened: {e}")))?;
    log_download(&app, &admin, &snapshot).await?;
    let mut headers = head_headers(&snapshot);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.sqlite3"),
    );
    if let Ok(length) = HeaderValue::from_str(&snapshot.bytes.to_string()) {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((StatusCode::OK, headers, body).into_response())
}

fn checksum_file(snapshot: &Snapshot, hex: &str, ext: &str) -> Response {
    let mut headers = head_headers(snapshot);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.{ext}\"",
        snapshot.filename
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.remove(header::ETAG);
    headers.remove("repr-digest");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    (
        StatusCode::OK,
        headers,
        format!("{hex}  {}\n", snapshot.filename),
    )
        .into_response()
}

async fn sha256_file(State(app): State<AppState>, Admin(_): Admin) -> Result<Response> {
    let snapshot = current_snapshot(&app).await?;
    Ok(checksum_file(&snapshot, &snapshot.sha256, "sha256"))
}

async fn blake3_file(State(app): State<AppState>, Admin(_): Admin) -> Result<Response> {
    let snapshot = current_snapshot(&app).await?;
    Ok(checksum_file(&snapshot, &snapshot.blake3, "b3"))
}

/// The signed checkpoint whose size is the snapshot's seq (DESIGN.md §11).
async fn checkpoint_file(State(app): State<AppState>, Admin(_): Admin) -> Result<Response> {
    let snapshot = current_snapshot(&app).await?;
    let note = snapshot_checkpoint(&app, &snapshot)?;
    let mut headers = head_headers(&snapshot);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.checkpoint\"",
        snapshot.filename
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.remove(header::ETAG);
    headers.remove("repr-digest");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok((StatusCode::OK, headers, note).into_response())
}

fn snapshot_checkpoint(app: &AppState, snapshot: &Snapshot) -> Result<Vec<u8>> {
    let size = u64::try_from(snapshot.head.seq).map_err(anyhow::Error::from)?;
    Ok(app.transparency.checkpoint_at(size)?)
}

/// `GET /api/v1/admin/ledger/head`'s answer.
#[derive(Serialize)]
struct HeadResponse<'a> {
    seq: i64,
    head_hash: String,
    snapshot: SnapshotInfo<'a>,
}

#[derive(Serialize)]
struct SnapshotInfo<'a> {
    filename: &'a str,
    bytes: u64,
    blake3: &'a str,
    sha256: &'a str,
}

async fn head_api(State(app): State<AppState>, Admin(_): Admin) -> Result<Response> {
    let snapshot = current_snapshot(&app).await?;
    Ok(Json(HeadResponse {
        seq: snapshot.head.seq,
        head_hash: snapshot.head.hash_hex(),
        snapshot: SnapshotInfo {
            filename: &snapshot.filename,
            bytes: snapshot.bytes,
            blake3: &snapshot.blake3,
            sha256: &snapshot.sha256,
        },
    })
    .into_response())
}

/// Prometheus text format; with `metrics_token` set, only for its bearer.
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let token = &app.settings.server.metrics_token;
    if !token.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::domain::constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Err(Error::Unauthenticated);
        }
    }
    crate::metrics::set_pending(app.registry.len(), app.registry.reviewers_online());
    let body = crate::metrics::prometheus()
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
        .unwrap_or_default();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

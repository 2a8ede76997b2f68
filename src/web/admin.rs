//! Admins' routes: the dashboard, the ledger browser, the ledger download
//! with its checksum files, the head API; and `/metrics`.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Admin;
use crate::clock::rfc3339;
use crate::config::WebhookFormat;
use crate::domain::{Outcome, Username};
use crate::error::{Error, ErrorBody, Result};
use crate::ledger::Snapshot;
use crate::ledger::export::ExportFormat;
use crate::ledger::read::{self, EntryFilter, StoredEntry};
use crate::state::AppState;
use crate::store::downloads::Download;
use crate::store::mismatches::{self, Mismatch};
use crate::store::sessions::BrowserSession;
use crate::store::{downloads, outbox, users};
use crate::views;
use crate::views::admin::{DownloadRow, EndpointRow, EntryRow, MismatchRow, WebhooksView};

/// Entries per ledger page.
const PAGE_SIZE: i64 = 50;
/// Newest entries shown on the dashboard.
const LATEST_ENTRIES: i64 = 5;
/// Downloads listed on the dashboard.
const RECENT_DOWNLOADS: i64 = 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(dashboard))
        .route(
            "/admin/mismatches/{session_id}/acknowledge",
            post(acknowledge_mismatch),
        )
        .route("/admin/ledger", get(ledger_page))
        .route("/admin/exports/ledger.sqlite", get(download))
        .route("/admin/exports/ledger.sqlite.sha256", get(sha256_file))
        .route("/admin/exports/ledger.sqlite.b3", get(blake3_file))
        .route("/admin/exports/ledger.jsonl", get(export_jsonl))
        .route("/admin/exports/ledger.csv", get(export_csv))
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

/// Webhook deliveries listed on the dashboard, and failures.
const RECENT_DELIVERIES: i64 = 20;
const RECENT_FAILURES: i64 = 10;

/// What the dashboard's webhooks section lists, read from the outbox.
struct WebhookData {
    depths: Vec<(String, i64)>,
    recent: Vec<outbox::DeliveryRow>,
    failures: Vec<outbox::DeliveryRow>,
}

async fn webhook_data(app: &AppState) -> Result<WebhookData> {
    let db = app.alerts.db();
    Ok(WebhookData {
        depths: outbox::queue_depths(db).await?,
        recent: outbox::recent(db, false, RECENT_DELIVERIES).await?,
        failures: outbox::recent(db, true, RECENT_FAILURES).await?,
    })
}

fn delivery_row<'a>(app: &AppState, d: &'a outbox::DeliveryRow) -> views::admin::DeliveryRow<'a> {
    views::admin::DeliveryRow {
        event_id: &d.event_id,
        event_type: &d.event_type,
        endpoint: app.alerts.label_of(&d.endpoint),
        created_at: &d.created_at,
        status: &d.status,
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: &d.last_error,
        settled_at: d.settled_at.as_deref(),
    }
}

fn endpoint_rows<'a>(app: &'a AppState, depths: &[(String, i64)]) -> Vec<EndpointRow<'a>> {
    app.alerts
        .endpoints()
        .iter()
        .map(|e| EndpointRow {
            label: &e.label,
            format: match e.settings.format {
                WebhookFormat::Standard => "standard",
                WebhookFormat::Slack => "slack",
            },
            events: e.settings.events.len(),
            queued: depths
                .iter()
                .find(|(key, _)| *key == e.key)
                .map_or(0, |(_, n)| *n),
        })
        .collect()
}

fn mismatch_row(m: &Mismatch) -> MismatchRow<'_> {
    MismatchRow {
        session_id: &m.session_id,
        username: &m.username,
        requester_name: &m.requester_name,
        requester_ip: &m.requester_ip,
        reviewer_name: &m.reviewer_name,
        seq: m.seq,
        entry_hash: &m.entry_hash,
        recorded_at: &m.recorded_at,
        account_locked: m.account_locked,
        locked_now: m.locked_now,
    }
}

async fn dashboard(State(app): State<AppState>, Admin(admin): Admin) -> Result<Response> {
    let open_mismatches = mismatches::open(&app.db).await?;
    let mismatch_rows: Vec<_> = open_mismatches.iter().map(mismatch_row).collect();
    let hooks = webhook_data(&app).await?;
    let endpoints = endpoint_rows(&app, &hooks.depths);
    let recent_hooks: Vec<_> = hooks.recent.iter().map(|d| delivery_row(&app, d)).collect();
    let failed_hooks: Vec<_> = hooks
        .failures
        .iter()
        .map(|d| delivery_row(&app, d))
        .collect();
    let snapshot = current_snapshot(&app).await?;
    let kpis = read::kpis(&app.ledger.reader, app.clock.now()).await?;
    let recent = downloads::recent(&app.db, RECENT_DOWNLOADS).await?;
    let recent: Vec<_> = recent.iter().map(download_row).collect();
    let latest = read::page(&app.ledger.reader, &EntryFilter::default(), LATEST_ENTRIES).await?;
    let latest: Vec<_> = latest.iter().map(entry_row).collect();
    let checkpoint = String::from_utf8_lossy(&snapshot_checkpoint(&app, &snapshot)?).into_owned();
    Ok(views::admin::dashboard(&views::admin::AdminView {
        user: super::viewer(&admin.user),
        mismatches: &mismatch_rows,
        webhooks: WebhooksView {
            endpoints: &endpoints,
            recent: &recent_hooks,
            failures: &failed_hooks,
        },
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

/// Records that an admin has seen a mismatch alarm: who and when. It leaves
/// the top of the dashboard; the account stays locked until `user unlock`.
async fn acknowledge_mismatch(
    State(app): State<AppState>,
    Admin(admin): Admin,
    Path(session_id): Path<String>,
) -> Result<Response> {
    let now = rfc3339(app.clock.now());
    let user = &admin.user;
    if mismatches::acknowledge(&app.db, &session_id, &user.id, &user.display_name, &now).await? {
        tracing::info!(session_id = %session_id, admin_id = %user.id, "mismatch acknowledged");
    }
    Ok(Redirect::to("/admin").into_response())
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
async fn export_jsonl(State(app): State<AppState>, Admin(admin): Admin) -> Result<Response> {
    export(&app, &admin, ExportFormat::Jsonl).await
}

async fn export_csv(State(app): State<AppState>, Admin(admin): Admin) -> Result<Response> {
    export(&app, &admin, ExportFormat::Csv).await
}

/// The current snapshot as JSON Lines or CSV: made once per snapshot (next to
/// it, so it goes when the snapshot does), then streamed like the download.
async fn export(app: &AppState, admin: &BrowserSession, format: ExportFormat) -> Result<Response> {
    let snapshot = current_snapshot(app).await?;
    let (extension, content_type) = match format {
        ExportFormat::Jsonl => ("jsonl", "application/jsonl"),
        ExportFormat::Csv => ("csv", "text/csv; charset=utf-8"),
    };
    let path = snapshot.path.with_extension(extension);
    if !path.exists() {
        let (from, to) = (snapshot.path.clone(), path.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let partial = to.with_extension("partial");
            let file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
            crate::ledger::export::export(&from, format, file)?;
            std::fs::rename(&partial, &to)?;
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(e.into()))??;
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::Unavailable(format!("The export could not be opened: {e}")))?;
    log_download(app, admin, &snapshot).await?;
    let name = format!("ledger-{}.{extension}", snapshot.head.seq);
    let headers = [
        (header::CONTENT_TYPE, content_type.to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ),
        (header::CACHE_CONTROL, "no-store".to_string()),
    ];
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((StatusCode::OK, headers, body).into_response())
}

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
#[derive(Serialize, ToSchema)]
struct HeadResponse<'a> {
    /// The last entry's sequence number (0 for an empty ledger).
    seq: i64,
    /// The last entry's hash (hex): pin it with `ledger verify --expect-head SEQ:HASH`.
    head_hash: String,
    snapshot: SnapshotInfo<'a>,
}

/// The ledger snapshot `/admin/exports/ledger.sqlite` serves, with its checksums.
#[derive(Serialize, ToSchema)]
struct SnapshotInfo<'a> {
    filename: &'a str,
    /// Its size in bytes.
    bytes: u64,
    /// BLAKE3 of the file (hex), as in `ledger.sqlite.b3`.
    blake3: &'a str,
    /// SHA-256 of the file (hex), as in `ledger.sqlite.sha256`.
    sha256: &'a str,
}

/// The ledger head and the current snapshot's checksums.
#[utoipa::path(
    get,
    path = "/api/v1/admin/ledger/head",
    operation_id = "ledger_head",
    tag = "admin",
    security(("session" = [])),
    responses(
        (status = 200, description = "The head and the snapshot", body = HeadResponse),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 503, description = "`unavailable`: the snapshot could not be made", body = ErrorBody),
    )
)]
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
    if !app.alerts.endpoints().is_empty() {
        let depths = outbox::queue_depths(app.alerts.db()).await?;
        for row in endpoint_rows(&app, &depths) {
            crate::metrics::set_webhook_queue(row.label, row.queued);
        }
    }
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

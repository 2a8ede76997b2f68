//! The webhook outbox in `app.sqlite`: one row per event per endpoint,
//! written before anyone hears of the event, read by that endpoint's sender
//! task, and kept afterwards as the delivery history `/admin` lists.

use anyhow::Context;
use sqlx::{FromRow, SqlitePool};

/// An event to put in the outbox for some endpoints.
pub struct NewEvent<'a> {
    /// The webhook-id: the same for every endpoint and every retry.
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub dedupe_key: &'a str,
    pub payload: &'a str,
    pub created_at: &'a str,
    /// When the first attempt is due (Unix ms, wall clock).
    pub due_ms: i64,
}

/// A delivery waiting for (another) attempt.
#[derive(Debug, Clone, FromRow)]
pub struct Due {
    pub id: i64,
    pub event_id: String,
    pub payload: String,
    pub attempts: i64,
}

/// One row of the delivery history.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub event_id: String,
    pub endpoint: String,
    pub event_type: String,
    pub created_at: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: String,
    pub last_status: Option<i64>,
    pub settled_at: Option<String>,
}

/// Records `event` for each endpoint key, once: an event already recorded for
/// an endpoint (same dedupe key) is left as it is.
pub async fn insert(
    db: &SqlitePool,
    event: &NewEvent<'_>,
    endpoints: &[&str],
) -> anyhow::Result<()> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    for endpoint in endpoints {
        sqlx::query(
            "INSERT OR IGNORE INTO webhook_outbox
                (event_id, endpoint, event_type, dedupe_key, payload, created_at, status, next_attempt_ms)
             VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
        )
        .bind(event.event_id)
        .bind(endpoint)
        .bind(event.event_type)
        .bind(event.dedupe_key)
        .bind(event.payload)
        .bind(event.created_at)
        .bind(event.due_ms)
        .execute(&mut *tx)
        .await
        .context("writing an event to the webhook outbox")?;
    }
    tx.commit()
        .await
        .context("committing to the webhook outbox")
}

/// Deliveries for `endpoint` due at `now_ms`, oldest first.
pub async fn due(
    db: &SqlitePool,
    endpoint: &str,
    now_ms: i64,
    limit: i64,
) -> anyhow::Result<Vec<Due>> {
    sqlx::query_as(
        "SELECT id, event_id, payload, attempts FROM webhook_outbox
         WHERE endpoint = ? AND status = 'pending' AND next_attempt_ms <= ?
         ORDER BY next_attempt_ms, id LIMIT ?",
    )
    .bind(endpoint)
    .bind(now_ms)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("reading due webhook deliveries")
}

/// When the next pending delivery for `endpoint` is due, if any is pending.
pub async fn next_due_ms(db: &SqlitePool, endpoint: &str) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT min(next_attempt_ms) FROM webhook_outbox WHERE endpoint = ? AND status = 'pending'",
    )
    .bind(endpoint)
    .fetch_one(db)
    .await
    .context("reading the next webhook delivery time")
}

/// The receiver took it.
pub async fn mark_delivered(
    db: &SqlitePool,
    id: i64,
    attempts: i64,
    status: u16,
    now: &str,
) -> anyhow::Result<()> {
    // `last_error` stays: a delivery that needed retries still shows why.
    sqlx::query(
        "UPDATE webhook_outbox SET status = 'delivered', attempts = ?, last_status = ?,
                settled_at = ? WHERE id = ?",
    )
    .bind(attempts)
    .bind(i64::from(status))
    .bind(now)
    .bind(id)
    .execute(db)
    .await
    .context("marking a webhook delivered")?;
    Ok(())
}

/// An attempt failed: try again at `retry_at_ms`, or give up when it is `None`.
pub async fn mark_attempt_failed(
    db: &SqlitePool,
    id: i64,
    attempts: i64,
    status: Option<u16>,
    error: &str,
    retry_at_ms: Option<i64>,
    now: &str,
) -> anyhow::Result<()> {
    let (state, settled) = match retry_at_ms {
        Some(_) => ("pending", None),
        None => ("failed", Some(now)),
    };
    sqlx::query(
        "UPDATE webhook_outbox SET status = ?, attempts = ?, last_status = ?, last_error = ?,
                next_attempt_ms = coalesce(?, next_attempt_ms), settled_at = ? WHERE id = ?",
    )
    .bind(state)
    .bind(attempts)
    .bind(status.map(i64::from))
    .bind(error)
    .bind(retry_at_ms)
    .bind(settled)
    .bind(id)
    .execute(db)
    .await
    .context("recording a failed webhook attempt")?;
    Ok(())
}

/// Pending deliveries per endpoint key: the queue depth.
pub async fn queue_depths(db: &SqlitePool) -> anyhow::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT endpoint, count(*) FROM webhook_outbox WHERE status = 'pending' GROUP BY endpoint",
    )
    .fetch_all(db)
    .await
    .context("counting pending webhook deliveries")
}

/// Gives up on the oldest pending deliveries of `endpoint` beyond `keep`, so
/// that an endpoint that is down for days cannot grow the outbox without
/// bound. Returns how many were dropped.
pub async fn shed_excess(
    db: &SqlitePool,
    endpoint: &str,
    keep: i64,
    now: &str,
) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "UPDATE webhook_outbox SET status = 'failed', settled_at = ?,
                last_error = 'dropped: too many undelivered events for this endpoint'
         WHERE id IN (SELECT id FROM webhook_outbox WHERE endpoint = ? AND status = 'pending'
                      ORDER BY id DESC LIMIT -1 OFFSET ?)",
    )
    .bind(now)
    .bind(endpoint)
    .bind(keep)
    .execute(db)
    .await
    .context("dropping excess webhook deliveries")?;
    Ok(done.rows_affected())
}

/// At start-up: every pending delivery is due now, whatever its backoff said
/// (a restart is a good moment to try again; attempts are not reset).
pub async fn due_now(db: &SqlitePool, now_ms: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE webhook_outbox SET next_attempt_ms = ? WHERE status = 'pending' AND next_attempt_ms > ?",
    )
    .bind(now_ms)
    .bind(now_ms)
    .execute(db)
    .await
    .context("rescheduling pending webhook deliveries")?;
    Ok(())
}

/// The most recent deliveries, newest first; with `failed_only`, those that
/// failed or needed more than one try.
pub async fn recent(
    db: &SqlitePool,
    failed_only: bool,
    limit: i64,
) -> anyhow::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "SELECT event_id, endpoint, event_type, created_at, status, attempts, last_error,
                last_status, settled_at
         FROM webhook_outbox WHERE (? = 0 OR status = 'failed' OR last_error != '')
         ORDER BY id DESC LIMIT ?",
    )
    .bind(failed_only)
    .bind(limit)
    .fetch_all(db)
    .await
    .context("reading recent webhook deliveries")
}

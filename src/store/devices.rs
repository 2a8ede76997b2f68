//! Trusted devices: browsers that completed peer review for a user, and may
//! skip it on later sign-ins until the cookie expires.

use anyhow::Context;
use sqlx::SqliteExecutor;

use crate::domain::TokenHash;

pub async fn insert(
    db: impl SqliteExecutor<'_>,
    token_hash: &TokenHash,
    user_id: &str,
    now: &str,
    expires_at: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO trusted_devices (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(&token_hash.0)
    .bind(user_id)
    .bind(now)
    .bind(expires_at)
    .execute(db)
    .await
    .context("remembering a trusted device")?;
    Ok(())
}

/// Whether this device token is trusted for this user right now.
pub async fn is_trusted(
    db: impl SqliteExecutor<'_>,
    token_hash: &TokenHash,
    user_id: &str,
    now: &str,
) -> anyhow::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM trusted_devices WHERE token_hash = ? AND user_id = ? AND expires_at > ?",
    )
    .bind(&token_hash.0)
    .bind(user_id)
    .bind(now)
    .fetch_optional(db)
    .await
    .context("checking a trusted device")?;
    Ok(found.is_some())
}

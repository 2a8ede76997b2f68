//! Trusted devices: browsers that completed peer review for a user, and may
//! skip it on later sign-ins until the cookie expires.

use anyhow::Context;
use sqlx::{SqliteConnection, SqlitePool};

use crate::domain::TokenHash;

pub async fn insert(
    conn: &mut SqliteConnection,
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
    .execute(conn)
    .await
    .context("remembering a trusted device")?;
    Ok(())
}

/// Whether this device token is trusted for this user right now.
pub async fn is_trusted(
    pool: &SqlitePool,
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
    .fetch_optional(pool)
    .await
    .context("checking a trusted device")?;
    Ok(found.is_some())
}

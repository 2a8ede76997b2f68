//! Accounts: who can sign in, with which roles.

use anyhow::Context;
use sqlx::SqliteExecutor;
use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use super::flag;
use crate::domain::{Roles, Username};

/// An account as the service sees it. The password hash never leaves the store
/// except through [`password_hash`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub is_reviewer: bool,
    pub is_admin: bool,
    /// Skips peer review always (bootstrap admins).
    pub is_exempt: bool,
    pub disabled: bool,
    /// Locked by a mismatch until `peergate user unlock`: sign-ins are refused.
    pub locked: bool,
}

impl User {
    pub fn roles(&self) -> Roles {
        Roles {
            reviewer: self.is_reviewer,
            admin: self.is_admin,
            exempt: self.is_exempt,
        }
    }
}

/// What `user add` and the demo seed create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    pub is_reviewer: bool,
    pub is_admin: bool,
    pub is_exempt: bool,
}

pub(crate) const USER_COLUMNS: &str =
    "u.id, u.username, u.display_name, u.is_reviewer, u.is_admin, u.is_exempt, u.disabled,
     (u.locked_at IS NOT NULL) AS locked";

pub(crate) fn user_from_row(row: &SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        is_reviewer: flag(row.try_get("is_reviewer")?),
        is_admin: flag(row.try_get("is_admin")?),
        is_exempt: flag(row.try_get("is_exempt")?),
        disabled: flag(row.try_get("disabled")?),
        locked: flag(row.try_get("locked")?),
    })
}

/// Adds an account. The username is parsed here, once, into its one
/// normalised form (see [`Username`]); an invalid one is refused with the
/// rule it breaks.
pub async fn insert_user(pool: &SqlitePool, user: &NewUser, now: &str) -> anyhow::Result<User> {
    let username = Username::parse(&user.username)
        .map_err(|e| anyhow::anyhow!("`{}` is not a valid username: {e}", user.username))?;
    let id = crate::domain::ids::new_user_id();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, is_reviewer, is_admin, is_exempt, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(username.as_str())
    .bind(&user.display_name)
    .bind(&user.password_hash)
    .bind(user.is_reviewer)
    .bind(user.is_admin)
    .bind(user.is_exempt)
    .bind(now)
    .execute(pool)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            anyhow::anyhow!("a user named `{username}` already exists")
        }
        other => anyhow::Error::new(other).context("adding a user"),
    })?;
    find_by_id(pool, &id)
        .await?
        .context("the new user vanished")
}

pub async fn find_by_username(
    db: impl SqliteExecutor<'_>,
    username: &Username,
) -> anyhow::Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username.as_str())
        .fetch_optional(db)
        .await
        .context("looking up a user")?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub async fn find_by_id(db: impl SqliteExecutor<'_>, id: &str) -> anyhow::Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await
        .context("looking up a user")?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

/// The stored argon2 hash for a username, with the user, for sign-in.
pub async fn password_hash(
    db: impl SqliteExecutor<'_>,
    username: &Username,
) -> anyhow::Result<Option<(User, String)>> {
    let sql = format!("SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.username = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username.as_str())
        .fetch_optional(db)
        .await
        .context("looking up a password hash")?;
    match row {
        Some(row) => Ok(Some((user_from_row(&row)?, row.try_get("password_hash")?))),
        None => Ok(None),
    }
}

pub async fn list_users(db: impl SqliteExecutor<'_>) -> anyhow::Result<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.username");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(db)
        .await
        .context("listing users")?;
    Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
}

/// Sets the roles of a user; returns false when there is no such user.
pub async fn set_roles(
    db: impl SqliteExecutor<'_>,
    username: &Username,
    roles: Roles,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET is_reviewer = ?, is_admin = ?, is_exempt = ? WHERE username = ?",
    )
    .bind(roles.reviewer)
    .bind(roles.admin)
    .bind(roles.exempt)
    .bind(username.as_str())
    .execute(db)
    .await
    .context("setting roles")?;
    Ok(done.rows_affected() == 1)
}

/// Disables a user and ends every browser session they hold; returns false
/// when there is no such user.
pub async fn disable(pool: &SqlitePool, username: &Username) -> anyhow::Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let done = sqlx::query("UPDATE users SET disabled = 1 WHERE username = ?")
        .bind(username.as_str())
        .execute(&mut *tx)
        .await
        .context("disabling a user")?;
    sqlx::query(
        "DELETE FROM browser_sessions WHERE user_id = (SELECT id FROM users WHERE username = ?)",
    )
    .bind(username.as_str())
    .execute(&mut *tx)
    .await
    .context("ending a disabled user's sessions")?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Lifts a lock left by a mismatch; returns false when there is no such user.
pub async fn unlock(db: impl SqliteExecutor<'_>, username: &Username) -> anyhow::Result<bool> {
    let done = sqlx::query("UPDATE users SET locked_at = NULL WHERE username = ?")
        .bind(username.as_str())
        .execute(db)
        .await
        .context("unlocking a user")?;
    Ok(done.rows_affected() == 1)
}

/// The counter a trigger moves whenever a user row changes.
pub async fn accounts_version(db: impl SqliteExecutor<'_>) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT version FROM account_changes WHERE id = 1")
        .fetch_one(db)
        .await
        .context("reading the account change counter")
}

/// Brings usernames stored by earlier versions (which kept them as typed) to
/// their one normalised form, so that they can sign in. A name that no longer
/// parses, or whose normal form is taken, is left alone and logged.
pub async fn normalise_usernames(pool: &SqlitePool) -> anyhow::Result<()> {
    let stored: Vec<(String, String)> = sqlx::query_as("SELECT id, username FROM users")
        .fetch_all(pool)
        .await
        .context("listing usernames")?;
    for (id, name) in stored {
        match Username::parse(&name) {
            Ok(normal) if normal.as_str() == name => {}
            Ok(normal) => {
                let renamed = sqlx::query("UPDATE users SET username = ? WHERE id = ?")
                    .bind(normal.as_str())
                    .bind(&id)
                    .execute(pool)
                    .await;
                match renamed {
                    Ok(_) => {
                        tracing::info!(user_id = %id, username = %normal, "username normalised");
                    }
                    Err(e) => {
                        tracing::warn!(user_id = %id, error = %e, "username could not be normalised; that account cannot sign in until renamed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(user_id = %id, rule = %e, "a stored username breaks the username rules; that account cannot sign in");
            }
        }
    }
    Ok(())
}

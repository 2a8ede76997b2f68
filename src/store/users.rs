//! Accounts: who can sign in, with which roles.

use anyhow::Context;
use sqlx::SqliteExecutor;
use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use super::flag;
use crate::domain::Roles;

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
    "u.id, u.username, u.display_name, u.is_reviewer, u.is_admin, u.is_exempt, u.disabled";

pub(crate) fn user_from_row(row: &SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        is_reviewer: flag(row.try_get("is_reviewer")?),
        is_admin: flag(row.try_get("is_admin")?),
        is_exempt: flag(row.try_get("is_exempt")?),
        disabled: flag(row.try_get("disabled")?),
    })
}

/// Checks a username: 1 to 64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn validate_username(username: &str) -> Result<(), String> {
    let ok_len = (1..=64).contains(&username.chars().count());
    let ok_chars = username
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "`{username}` is not a valid username: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

pub async fn insert_user(pool: &SqlitePool, user: &NewUser, now: &str) -> anyhow::Result<User> {
    validate_username(&user.username).map_err(anyhow::Error::msg)?;
    let id = crate::domain::ids::new_user_id();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, is_reviewer, is_admin, is_exempt, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&user.username)
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
            anyhow::anyhow!("a user named `{}` already exists", user.username)
        }
        other => anyhow::Error::new(other).context("adding a user"),
    })?;
    find_by_id(pool, &id)
        .await?
        .context("the new user vanished")
}

pub async fn find_by_username(
    db: impl SqliteExecutor<'_>,
    username: &str,
) -> anyhow::Result<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
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
    username: &str,
) -> anyhow::Result<Option<(User, String)>> {
    let sql = format!("SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.username = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(username)
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
    username: &str,
    roles: Roles,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET is_reviewer = ?, is_admin = ?, is_exempt = ? WHERE username = ?",
    )
    .bind(roles.reviewer)
    .bind(roles.admin)
    .bind(roles.exempt)
    .bind(username)
    .execute(db)
    .await
    .context("setting roles")?;
    Ok(done.rows_affected() == 1)
}

/// Disables a user and ends every browser session they hold; returns false
/// when there is no such user.
pub async fn disable(pool: &SqlitePool, username: &str) -> anyhow::Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let done = sqlx::query("UPDATE users SET disabled = 1 WHERE username = ?")
        .bind(username)
        .execute(&mut *tx)
        .await
        .context("disabling a user")?;
    sqlx::query(
        "DELETE FROM browser_sessions WHERE user_id = (SELECT id FROM users WHERE username = ?)",
    )
    .bind(username)
    .execute(&mut *tx)
    .await
    .context("ending a disabled user's sessions")?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// The counter a trigger moves whenever a user row changes.
pub async fn accounts_version(db: impl SqliteExecutor<'_>) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT version FROM account_changes WHERE id = 1")
        .fetch_one(db)
        .await
        .context("reading the account change counter")
}

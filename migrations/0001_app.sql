-- app.sqlite: accounts, browser sessions, pending peer reviews, trusted devices,
-- and the ledger download log. Outcomes live in ledger.sqlite, not here.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,             -- usr_..., stable, written to the ledger
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,                -- argon2id PHC string
    is_reviewer   INTEGER NOT NULL DEFAULT 0,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    is_exempt     INTEGER NOT NULL DEFAULT 0,   -- skips peer review (bootstrap admins)
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);

-- A pending peer review. Codes are never stored: they live in memory only.
CREATE TABLE pending_sessions (
    id             TEXT PRIMARY KEY,            -- ps_..., public
    user_id        TEXT NOT NULL REFERENCES users(id),
    status         TEXT NOT NULL CHECK (status IN
                     ('pending','approved','completed','denied','expired','withdrawn')),
    client_ip      TEXT NOT NULL,
    user_agent     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    code_rotations INTEGER NOT NULL DEFAULT 0,
    settled_at     TEXT
);
CREATE INDEX pending_sessions_by_status ON pending_sessions(status, created_at);
CREATE INDEX pending_sessions_by_user ON pending_sessions(user_id, status);

-- Server-side browser sessions; the cookie holds the token, this table its BLAKE3 hash.
CREATE TABLE browser_sessions (
    token_hash         TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id),
    state              TEXT NOT NULL CHECK (state IN ('half_authenticated','authenticated')),
    pending_session_id TEXT REFERENCES pending_sessions(id),
    created_at         TEXT NOT NULL,
    expires_at         TEXT NOT NULL
);
CREATE INDEX browser_sessions_by_user ON browser_sessions(user_id);
CREATE INDEX browser_sessions_by_pending ON browser_sessions(pending_session_id);

-- Browsers that completed peer review; the cookie holds the token, this table its hash.
CREATE TABLE trusted_devices (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- Who downloaded which ledger snapshot, and when.
CREATE TABLE ledger_downloads (
    id            INTEGER PRIMARY KEY,
    user_id       TEXT NOT NULL,
    username      TEXT NOT NULL,
    downloaded_at TEXT NOT NULL,
    head_seq      INTEGER NOT NULL,
    head_hash     TEXT NOT NULL,
    filename      TEXT NOT NULL
);

-- Reaching reviewers in time and raising the alarm (DESIGN.md §12): account
-- locks left by a mismatch, the mismatches admins must acknowledge, and the
-- webhook outbox.

-- Set when a reviewer records a mismatch (peer_review.lock_on_mismatch);
-- cleared by `peergate user unlock`. NULL = not locked.
ALTER TABLE users ADD COLUMN locked_at TEXT;

-- One row per mismatch outcome, shown at the top of /admin until an admin
-- acknowledges it. The ledger holds the outcome itself (seq, entry_hash); in
-- pending_sessions such a session is mirrored as 'denied'.
CREATE TABLE mismatches (
    session_id          TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users(id),
    requester_name      TEXT NOT NULL,      -- display name at the time
    requester_ip        TEXT NOT NULL,
    reviewer_id         TEXT NOT NULL,
    reviewer_name       TEXT NOT NULL,
    seq                 INTEGER NOT NULL,   -- the ledger entry
    entry_hash          TEXT NOT NULL,
    recorded_at         TEXT NOT NULL,
    account_locked      INTEGER NOT NULL,   -- whether this mismatch locked the account
    acknowledged_by     TEXT,               -- the admin's user id
    acknowledged_by_name TEXT,              -- and display name at the time
    acknowledged_at     TEXT
);
CREATE INDEX mismatches_open ON mismatches(acknowledged_at, recorded_at);

-- Webhook deliveries: one row per event per endpoint, written before anyone
-- is told of the event and deleted by nobody (delivered and failed rows stay
-- for the admin page's history). `event_id` is the webhook-id, the same on
-- every retry.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL,
    endpoint        TEXT NOT NULL,          -- a hash of the endpoint's URL, never the URL (it may hold a secret)
    event_type      TEXT NOT NULL,
    dedupe_key      TEXT NOT NULL,          -- type and session: an event is recorded once however often it is re-derived
    payload         TEXT NOT NULL,          -- the Standard Webhooks body
    created_at      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending','delivered','failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,       -- Unix milliseconds, wall clock
    last_error      TEXT NOT NULL DEFAULT '',
    last_status     INTEGER,                -- the receiver's last HTTP status, if it answered
    settled_at      TEXT,
    UNIQUE (endpoint, dedupe_key)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(endpoint, status, next_attempt_ms);

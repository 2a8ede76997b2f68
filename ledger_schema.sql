-- peergate ledger, format peergate-ledger-v1 (DESIGN.md section 5).
-- Applied by the ledger writer at start-up to a new ledger.sqlite. The rows of
-- ledger_meta are inserted next, and only then are its triggers created
-- (the part after the marker line below), so the table is append-only once written.

CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS ledger_entries (
  seq                  INTEGER PRIMARY KEY,          -- 1, 2, 3, ... no gaps
  entry_id             TEXT NOT NULL UNIQUE,
  session_id           TEXT NOT NULL UNIQUE,         -- one outcome per session
  outcome              TEXT NOT NULL,                -- approved | denied | expired | withdrawn
  requester_id         TEXT NOT NULL,                -- the user's stable id (not the username)
  requester_name       TEXT NOT NULL,                -- display name at the time of the outcome
  requester_ip         TEXT NOT NULL,
  requester_user_agent TEXT NOT NULL,
  reviewer_id          TEXT NOT NULL,                -- stable id; '' for expired / withdrawn
  reviewer_name        TEXT NOT NULL,                -- display name; '' for expired / withdrawn
  channel              TEXT NOT NULL,                -- '' for expired / withdrawn
  code_confirmed       INTEGER NOT NULL,             -- 0 or 1
  note                 TEXT NOT NULL,
  session_created_at   TEXT NOT NULL,
  decided_at           TEXT NOT NULL,
  prev_hash            TEXT NOT NULL,                -- 64 lowercase hex
  entry_hash           TEXT NOT NULL UNIQUE          -- 64 lowercase hex
);

CREATE TRIGGER IF NOT EXISTS ledger_entries_no_update
BEFORE UPDATE ON ledger_entries
BEGIN
  SELECT RAISE(ABORT, 'ledger_entries is append-only: UPDATE refused');
END;

CREATE TRIGGER IF NOT EXISTS ledger_entries_no_delete
BEFORE DELETE ON ledger_entries
BEGIN
  SELECT RAISE(ABORT, 'ledger_entries is append-only: DELETE refused');
END;

-- @after-meta-rows
-- Created right after the ledger_meta rows are written: from then on the meta
-- table can be neither changed nor emptied.
CREATE TRIGGER IF NOT EXISTS ledger_meta_no_update
BEFORE UPDATE ON ledger_meta
BEGIN
  SELECT RAISE(ABORT, 'ledger_meta is append-only: UPDATE refused');
END;

CREATE TRIGGER IF NOT EXISTS ledger_meta_no_delete
BEFORE DELETE ON ledger_meta
BEGIN
  SELECT RAISE(ABORT, 'ledger_meta is append-only: DELETE refused');
END;

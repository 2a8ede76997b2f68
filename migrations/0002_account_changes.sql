-- A version number that moves whenever an account changes (roles, disabled),
-- so a running server notices changes made from the command line within a
-- second, and closes the sockets of sessions that lost their access.
CREATE TABLE account_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO account_changes (id, version) VALUES (1, 0);

CREATE TRIGGER users_changed AFTER UPDATE ON users
BEGIN
    UPDATE account_changes SET version = version + 1 WHERE id = 1;
END;

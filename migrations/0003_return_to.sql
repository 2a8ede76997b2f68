-- Forward auth (DESIGN.md §10): where the requester was going (`rd`), kept with
-- the pending session so that it survives the wait for review, a page reload
-- and a restart. Only a checked address is stored; it is checked again on use.
ALTER TABLE pending_sessions ADD COLUMN return_to TEXT;

//! The ledger (filled in with the ledger issue).

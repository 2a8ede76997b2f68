//! peergate: a stalled sign-in becomes a short, audited conversation between
//! two colleagues. A half-authenticated requester reads a 6-digit code to a
//! reviewer, who approves or denies; every outcome lands in an append-only,
//! hash-chained SQLite ledger.
//!
//! # Layout
//!
//! - `cli`: the command tree (serve, demo, user, ledger verify).
//! - `alerts`: webhooks to chat and incident tools, through a durable outbox.
//! - `config`: layered, validated configuration.
//! - `datadir_lock`: one server per data dir (an exclusive lock file).
//! - `startup`: build the service, run it until stopped.
//! - `state`: the shared handle every handler sees.
//! - `clock`: the injectable clock every time rule reads.
//! - `domain`: codes, tokens, ids, outcomes, notes, forward auth's host
//!   patterns, rules and return-to (`rd`) checks; no I/O.
//! - `registry`: pending sessions in memory and their events.
//! - `review`: the peer-review flow (sign in, withdraw, expire, complete).
//! - `ledger`: the hash-chained ledger, its writer, Merkle tree, snapshots and verification.
//! - `transparency`: the ledger as a C2SP transparency log: key, signed
//!   checkpoints, witness pushes, the `witness` server, offline proofs.
//! - `store`: `app.sqlite` (users, sessions, pending sessions, devices).
//! - `passwords`: argon2id hashing off the runtime.
//! - `password_checks`: the bounded pool sign-in password checks run on.
//! - `limiter`: failed sign-ins per username and per IP.
//! - `web`: routers, extractors and middleware (`web::authz` answers reverse
//!   proxies' forward-auth questions from `web::session_cache`; `web::openapi`
//!   serves the API's OpenAPI document); `views`: maud pages.
//! - `loadtest`: the load generator behind BENCHMARKS.md.
//! - `error`: the HTTP error type; `metrics`: metric names; `telemetry`: logs.

// The library's public face: what the binary, auditors' scripts and the
// benchmarks use.
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod ledger;
pub mod startup;
pub mod transparency;

// The service's insides: private, so that the compiler reports dead code.
mod alerts;
mod backup;
mod datadir_lock;
mod error;
mod limiter;
mod metrics;
mod password_checks;
mod registry;
mod review;
mod telemetry;
mod views;
mod web;

// Private too, except to the test suite (the `test-hooks` feature, which only
// the tests' dev-dependency turns on): tests make accounts and look inside.
#[cfg(feature = "test-hooks")]
pub mod loadtest;
#[cfg(not(feature = "test-hooks"))]
mod loadtest;
#[cfg(feature = "test-hooks")]
pub mod passwords;
#[cfg(not(feature = "test-hooks"))]
mod passwords;
#[cfg(feature = "test-hooks")]
pub mod state;
#[cfg(not(feature = "test-hooks"))]
mod state;
#[cfg(feature = "test-hooks")]
pub mod store;
#[cfg(not(feature = "test-hooks"))]
mod store;

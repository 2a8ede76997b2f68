//! peergate's integration tests: one binary, real servers on 127.0.0.1:0,
//! real `SQLite` files in temporary dirs.

// Test scenarios read top to bottom, as the story they check.
#![allow(clippy::too_many_lines)]

mod admin;
mod alerts;
mod backup;
mod browser;
mod child;
mod config;
mod crash;
mod deploy;
mod export;
mod fuzz;
mod fwd;
mod hardening;
mod helpers;
mod invariants;
mod ledger;
mod live;
mod loadtest;
mod logs;
mod mismatch;
mod openapi;
mod shutdown;
mod signin;
mod tlog;
mod upgrade;

//! Structured logs to stderr. `RUST_LOG` picks the levels (default `info`).
//! Nothing secret is logged: codes and tokens have redacting `Debug` impls and
//! are never passed to a log macro.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

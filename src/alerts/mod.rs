//! Webhooks to chat and incident tools (DESIGN.md §12): which events go
//! where, the durable outbox they pass through, and one sender task per
//! endpoint.
//!
//! - `event`: the six events and their bodies (pure).
//! - `sender`: the per-endpoint delivery task: signing, timeouts, backoff.
//!
//! The review flow calls [`Alerts::record`] after the ledger commit and before
//! anyone is told; it writes the outbox and wakes the senders, and never
//! waits for a delivery.

mod event;
mod sender;

use std::sync::Arc;

pub use event::{AlertEvent, EventKind, LedgerRef, slack_body};
pub use sender::{client, now_ms, run_sender};

use crate::clock::rfc3339;
use crate::config::{Settings, WebhookSettings};
use crate::domain::PublicUrl;
use crate::store::Db;
use crate::store::outbox::{self, NewEvent};

/// Whether this build can deliver to https URLs (reqwest is built without
/// TLS; see README, "Alerts").
pub const HTTPS_SUPPORTED: bool = false;

/// A Standard Webhooks secret: `whsec_` and base64 of at least 24 bytes.
pub fn secret_is_valid(secret: &str) -> bool {
    use base64::Engine;
    secret.strip_prefix("whsec_").is_some_and(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok_and(|key| key.len() >= 24)
    })
}

/// One configured endpoint, as the senders and the admin page know it.
pub struct Endpoint {
    /// A hash of the URL: the outbox's name for the endpoint. URLs may hold
    /// secrets (Slack's do), so they are never stored, logged or shown.
    pub key: String,
    /// What people see: `#N host`.
    pub label: String,
    pub settings: WebhookSettings,
    /// Wakes the sender when an event for it is in the outbox.
    pub wake: tokio::sync::Notify,
}

impl Endpoint {
    fn new(index: usize, settings: WebhookSettings) -> Self {
        let key = blake3::hash(settings.url.as_str().as_bytes()).to_hex()[..16].to_string();
        let label = format!("#{} {}", index + 1, settings.url.host_str().unwrap_or("?"));
        Self {
            key,
            label,
            settings,
            wake: tokio::sync::Notify::new(),
        }
    }
}

/// A cheap `Clone` handle: where events go, and the outbox pool.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    /// The outbox pool (see `store::open_outbox`).
    db: Db,
    public_url: PublicUrl,
    endpoints: Vec<Arc<Endpoint>>,
}

impl Alerts {
    pub fn new(settings: &Settings, db: Db) -> Self {
        let endpoints = settings
            .alerts
            .webhook
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, s)| Arc::new(Endpoint::new(i, s)))
            .collect();
        Self {
            inner: Arc::new(Inner {
                db,
                public_url: settings.server.public_url.clone(),
                endpoints,
            }),
        }
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.inner.endpoints
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The label of an endpoint key, for the admin page.
    pub fn label_of(&self, key: &str) -> String {
        self.inner
            .endpoints
            .iter()
            .find(|e| e.key == key)
            .map_or_else(|| "(no longer configured)".to_string(), |e| e.label.clone())
    }

    /// Puts `event` in the outbox for every endpoint that wants it, then wakes
    /// their senders. A failure is logged and counted, never returned: an
    /// alert must not undo or hold up what it reports.
    pub async fn record(&self, event: &AlertEvent) {
        let targets: Vec<&Arc<Endpoint>> = self
            .inner
            .endpoints
            .iter()
            .filter(|e| e.settings.events.contains(&event.kind))
            .collect();
        if targets.is_empty() {
            return;
        }
        let keys: Vec<&str> = targets.iter().map(|e| e.key.as_str()).collect();
        let event_id = format!(
            "msg_{}",
            crate::domain::ids::new_pending_id().trim_start_matches("ps_")
        );
        let payload = event.standard_body(&self.inner.public_url);
        let dedupe = event.dedupe_key();
        let written = outbox::insert(
            &self.inner.db,
            &NewEvent {
                event_id: &event_id,
                event_type: event.kind.as_str(),
                dedupe_key: &dedupe,
                payload: &payload,
                created_at: &rfc3339(event.at),
                due_ms: now_ms(),
            },
            &keys,
        )
        .await;
        match written {
            Ok(()) => {
                for endpoint in targets {
                    endpoint.wake.notify_one();
                }
            }
            Err(e) => {
                crate::metrics::webhook_not_recorded();
                tracing::error!(event = event.kind.as_str(), session_id = %event.session_id, error = format!("{e:#}"), "a webhook event could not be written to the outbox");
            }
        }
    }
}

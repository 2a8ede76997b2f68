//! One sender task per endpoint: takes what is due from the outbox, one
//! delivery at a time, signs it (Standard Webhooks) or shapes it (Slack),
//! and records the result. A slow or dead endpoint holds up only its own
//! task: other endpoints have their own, and decisions never wait on any.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Endpoint;
use crate::clock::rfc3339;
use crate::config::WebhookFormat;
use crate::store::Db;
use crate::store::outbox::{self, Due};

/// Attempts per delivery, the first included.
pub const MAX_ATTEMPTS: i64 = 8;

/// The wait after the first failed attempt; it doubles after each further one
/// (1 s, 2 s, 4 s, … 64 s).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// How long one attempt may take, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries read from the outbox at a time.
const BATCH: i64 = 32;

/// Undelivered events kept per endpoint; older ones beyond it are given up,
/// so that an endpoint that is down for days cannot grow the outbox forever.
pub const MAX_QUEUED: i64 = 10_000;

/// How long a sender sleeps when nothing is due and nobody wakes it.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// How long a sender waits after the outbox could not be read.
const STORAGE_PAUSE: Duration = Duration::from_secs(5);

/// Longest error text kept per delivery.
const MAX_ERROR_CHARS: usize = 300;

/// Wall-clock Unix milliseconds: delivery times are about the real world,
/// whatever clock the review flow runs on.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn now_text() -> String {
    rfc3339(chrono::Utc::now())
}

/// The HTTP client senders share: no redirects (a 3xx is a failed attempt),
/// the attempt timeout on every request.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("peergate/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Delivers `endpoint`'s outbox until its owner (startup) stops it.
pub async fn run_sender(endpoint: Arc<Endpoint>, db: Db, client: reqwest::Client) {
    loop {
        match outbox::due(&db, &endpoint.key, now_ms(), BATCH).await {
            Ok(batch) if batch.is_empty() => idle(&endpoint, &db).await,
            Ok(batch) => {
                for delivery in batch {
                    attempt(&endpoint, &db, &client, delivery).await;
                }
            }
            Err(e) => {
                tracing::warn!(endpoint = %endpoint.label, error = format!("{e:#}"), "the webhook outbox could not be read; retrying");
                tokio::time::sleep(STORAGE_PAUSE).await;
            }
        }
    }
}

/// Nothing is due: keep the queue bounded, report its depth, and sleep until
/// the next retry is due or a new event arrives.
async fn idle(endpoint: &Endpoint, db: &Db) {
    match outbox::shed_excess(db, &endpoint.key, MAX_QUEUED, &now_text()).await {
        Ok(0) => {}
        Ok(dropped) => {
            crate::metrics::webhook_dropped(&endpoint.label, dropped);
            tracing::error!(endpoint = %endpoint.label, dropped, "too many undelivered webhook events; the oldest were given up");
        }
        Err(e) => {
            tracing::warn!(endpoint = %endpoint.label, error = format!("{e:#}"), "could not bound the webhook queue");
        }
    }
    let next = outbox::next_due_ms(db, &endpoint.key).await.ok().flatten();
    let wait = next.map_or(IDLE_POLL, |at| {
        Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(IDLE_POLL)
    });
    tokio::select! {
        () = endpoint.wake.notified() => {}
        () = tokio::time::sleep(wait) => {}
    }
}

/// One attempt at one delivery, and its record in the outbox.
async fn attempt(endpoint: &Endpoint, db: &Db, client: &reqwest::Client, delivery: Due) {
    let attempts = delivery.attempts + 1;
    let result = send(endpoint, client, &delivery).await;
    let now = now_text();
    let recorded = match result {
        Ok(status) => {
            crate::metrics::webhook_delivered(&endpoint.label);
            outbox::mark_delivered(db, delivery.id, attempts, status, &now).await
        }
        Err((status, error)) => {
            let retry_at = (attempts < MAX_ATTEMPTS).then(|| now_ms() + backoff_ms(attempts));
            crate::metrics::webhook_failed(&endpoint.label, retry_at.is_none());
            tracing::warn!(endpoint = %endpoint.label, event_id = %delivery.event_id, attempts, error = %error, gave_up = retry_at.is_none(), "webhook delivery failed");
            outbox::mark_attempt_failed(db, delivery.id, attempts, status, &error, retry_at, &now)
                .await
        }
    };
    if let Err(e) = recorded {
        // The attempt is retried as it stands (at least once, never lost).
        tracing::warn!(endpoint = %endpoint.label, error = format!("{e:#}"), "a webhook result could not be recorded");
        tokio::time::sleep(STORAGE_PAUSE).await;
    }
}

/// The wait after `attempts` failed attempts: 1 s, then doubling.
fn backoff_ms(attempts: i64) -> i64 {
    let base = i64::try_from(FIRST_BACKOFF.as_millis()).unwrap_or(1000);
    base << (attempts - 1).clamp(0, 16)
}

/// POSTs one delivery; `Ok` with a 2xx status, else the status (if any) and why.
async fn send(
    endpoint: &Endpoint,
    client: &reqwest::Client,
    delivery: &Due,
) -> Result<u16, (Option<u16>, String)> {
    let settings = &endpoint.settings;
    let mut request = client
        .post(settings.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    let body = match settings.format {
        WebhookFormat::Slack => super::slack_body(&delivery.payload),
        WebhookFormat::Standard => {
            let signer = standardwebhooks::Webhook::new(&settings.secret)
                .map_err(|e| (None, format!("bad secret: {e}")))?;
            let timestamp = now_ms() / 1000;
            let signature = signer
                .sign(&delivery.event_id, timestamp, delivery.payload.as_bytes())
                .map_err(|e| (None, format!("signing failed: {e}")))?;
            request = request
                .header("webhook-id", &delivery.event_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature);
            delivery.payload.clone()
        }
    };
    match request.body(body).send().await {
        Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
        Ok(response) => {
            let status = response.status();
            Err((
                Some(status.as_u16()),
                format!("the receiver answered {status}"),
            ))
        }
        Err(e) => Err((None, describe(e))),
    }
}

/// A transport error in words, without the URL (it may hold a secret).
fn describe(error: reqwest::Error) -> String {
    let what = if error.is_timeout() {
        format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())
    } else if error.is_connect() {
        "could not connect".to_string()
    } else {
        error.without_url().to_string()
    };
    what.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second() {
        let waits: Vec<i64> = (1..MAX_ATTEMPTS).map(backoff_ms).collect();
        assert_eq!(waits, [1000, 2000, 4000, 8000, 16000, 32000, 64000]);
    }

    /// The crate's signature checked against the Standard Webhooks spec:
    /// HMAC-SHA256 over `id.timestamp.body`, keyed with the base64 after
    /// `whsec_`, written `v1,` + base64 — computed here independently.
    #[test]
    fn signatures_follow_the_spec() {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        let signed = standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign(id, ts, body.as_bytes())
            .unwrap();
        // The spec's own example.
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // And HMAC (RFC 2104) by hand.
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.decode(&secret["whsec_".len()..]).unwrap();
        let mut block = [0u8; 64];
        block[..key.len()].copy_from_slice(&key);
        let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(format!("{id}.{ts}.{body}"))
            .finalize();
        let mac = Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize();
        assert_eq!(signed, format!("v1,{}", b64.encode(mac)));
    }
}

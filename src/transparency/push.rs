//! Sending checkpoints to a witness (c2sp.org/tlog-witness `add-checkpoint`),
//! one task per witness: a down or slow witness delays only its own task,
//! never a decision or another witness.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use signed_note::{Note, Verifier, VerifierList};
use tokio::sync::watch;

use super::{SignedCheckpoint, Transparency, WitnessKey, base64_hash};

/// One request may take this long before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry after a failure; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_mins(1);
/// The most of a witness's answer that is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How one push ended.
enum Pushed {
    Cosigned,
    /// The witness holds another size (409 `text/x.tlog.size`): retry from it.
    Conflict(u64),
}

/// A witness as the pusher sees it.
struct Target {
    slot: usize,
    endpoint: String,
    key: WitnessKey,
    client: reqwest::Client,
}

/// Pushes every new checkpoint to the witness at `url` until the log stops.
pub(super) async fn run(log: Transparency, slot: usize, url: String, key: WitnessKey) {
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for the witness pusher");
            return;
        }
    };
    let target = Target {
        slot,
        endpoint: format!("{}/add-checkpoint", url.trim_end_matches('/')),
        key,
        client,
    };
    let mut latest = log.subscribe();
    // Unknown until the witness says: 0 first, and a 409 tells the truth.
    let mut witness_size = 0;
    loop {
        let checkpoint = latest.borrow_and_update().clone();
        let superseded =
            push_until_done(&log, &target, &checkpoint, &mut witness_size, &mut latest).await;
        if !superseded && latest.changed().await.is_err() {
            return;
        }
    }
}

/// Pushes `checkpoint` until the witness cosigns it, retrying with backoff.
/// Returns true when a newer checkpoint arrived first (push that instead).
async fn push_until_done(
    log: &Transparency,
    target: &Target,
    checkpoint: &SignedCheckpoint,
    witness_size: &mut u64,
    latest: &mut watch::Receiver<Arc<SignedCheckpoint>>,
) -> bool {
    let mut retry = FIRST_RETRY;
    let mut conflicts = 0;
    loop {
        let failure = match push_once(log, target, checkpoint, *witness_size).await {
            Ok(Pushed::Cosigned) => {
                *witness_size = checkpoint.size;
                return false;
            }
            // One 409 is normal (after a restart); the same size twice means
            // the witness holds another root for it: a fork, not a race.
            Ok(Pushed::Conflict(size)) if size != *witness_size && conflicts < 3 => {
                conflicts += 1;
                *witness_size = size;
                continue;
            }
            Ok(Pushed::Conflict(size)) => anyhow::anyhow!(
                "the witness holds a different checkpoint of size {size}: it may have seen another history"
            ),
            Err(e) => e,
        };
        tracing::warn!(
            witness = %target.endpoint,
            size = checkpoint.size,
            error = format!("{failure:#}"),
            retry_in_ms = retry.as_millis(),
            "a witness did not cosign; retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            changed = latest.changed() => return changed.is_ok(),
        }
        retry = (retry * 2).min(MAX_RETRY);
        conflicts = 0;
    }
}

async fn push_once(
    log: &Transparency,
    target: &Target,
    checkpoint: &SignedCheckpoint,
    old: u64,
) -> anyhow::Result<Pushed> {
    if old > checkpoint.size {
        bail!(
            "the witness has cosigned size {old}, more than this log's {}: was the ledger rolled back?",
            checkpoint.size
        );
    }
    let proof = log.tree().read(|t| t.prove_tree(checkpoint.size, old))?;
    let mut body = format!("old {old}\n");
    for hash in &proof {
        body.push_str(&base64_hash(hash));
        body.push('\n');
    }
    body.push('\n');
    let mut body = body.into_bytes();
    body.extend_from_slice(&checkpoint.note);
    let response = target
        .client
        .post(&target.endpoint)
        .body(body)
        .send()
        .await
        .context("sending the checkpoint")?;
    let status = response.status();
    let answer = response.bytes().await.context("reading the answer")?;
    let answer = &answer[..answer.len().min(MAX_ANSWER_BYTES)];
    match status.as_u16() {
        200 => {
            let line = verified_cosignature(&target.key, checkpoint, answer)?;
            log.record_cosignature(target.slot, &checkpoint.text, line);
            tracing::debug!(witness = %target.endpoint, size = checkpoint.size, "cosigned");
            Ok(Pushed::Cosigned)
        }
        409 => {
            let size = std::str::from_utf8(answer)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .context("a 409 without a size")?;
            Ok(Pushed::Conflict(size))
        }
        _ => bail!(
            "the witness answered {status}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)]).trim()
        ),
    }
}

/// The witness's signature line from its answer, once it verifies over the
/// checkpoint (signature lines from other keys are ignored, as the protocol says).
fn verified_cosignature(
    key: &WitnessKey,
    checkpoint: &SignedCheckpoint,
    answer: &[u8],
) -> anyhow::Result<String> {
    let note = Note::from_bytes(&[checkpoint.note.as_slice(), answer].concat())
        .map_err(|e| anyhow::anyhow!("the answer is not signature lines: {e}"))?;
    let verifiers = VerifierList::new(vec![Box::new(key.clone())]);
    let (verified, _) = note
        .verify(&verifiers)
        .map_err(|e| anyhow::anyhow!("the cosignature does not verify: {e}"))?;
    let signature = verified
        .into_iter()
        .find(|s| s.name() == key.name() && s.id() == key.key_id())
        .context("no signature from this witness")?;
    String::from_utf8(signature.to_bytes()).context("a signature line is text")
}

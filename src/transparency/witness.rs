//! `peergate witness`: a c2sp.org/tlog-witness server. It cosigns a log's
//! checkpoint only when it extends the last one it cosigned for that log, so
//! a log cannot show two histories to two people without one of its
//! witnesses holding the proof.
//!
//! A standalone program with its own two-route router (it shares nothing
//! with the service but the formats). State is one file per log in
//! `DIR/logs/`, written and fsynced before a cosignature leaves; a refused
//! fork is kept in `DIR/evidence/` and logged at error level.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use signed_note::{Note, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, tlog};

use super::{Cosigner, load_or_create_key, unix_now};

/// The most proof lines a request may carry (the protocol's limit).
const MAX_PROOF_LINES: usize = 63;
/// The largest request body read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// `peergate witness`'s arguments.
#[derive(Debug, clap::Args)]
pub struct WitnessArgs {
    /// Where the last cosigned checkpoint of each log, and any evidence of a
    /// fork, are kept.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// The witness's signed-note private key; made (mode 0600) when missing.
    #[arg(long, value_name = "F")]
    pub key_file: PathBuf,
    /// A log to witness, by its verifier key (whose name is the log's
    /// origin). Repeat for more logs.
    #[arg(long = "log", value_name = "VKEY", required = true)]
    pub logs: Vec<String>,
    /// Where the witness listens, e.g. 0.0.0.0:7380.
    #[arg(long, value_name = "ADDR")]
    pub bind: SocketAddr,
    /// The witness's name on its cosignatures, when the key file is made.
    #[arg(long, default_value = "peergate-witness")]
    pub name: String,
}

/// Runs the witness until Ctrl-C or SIGTERM.
pub async fn run(args: WitnessArgs) -> anyhow::Result<()> {
    let witness = Arc::new(Witness::open(&args)?);
    // Scripts and tests read these two lines.
    println!("peergate witness vkey {}", witness.cosigner.vkey());
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let addr = listener.local_addr()?;
    println!("peergate witness listening on http://{addr}");
    tracing::info!(%addr, vkey = witness.cosigner.vkey(), logs = witness.logs.len(), "witness listening");
    let app = Router::new()
        .route("/", get(about))
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(witness);
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::startup::shutdown_signal())
        .await
        .context("serving the witness")
}

/// A witness: its key, the logs it knows, and what it last cosigned.
struct Witness {
    cosigner: Cosigner,
    /// The logs' keys by origin.
    logs: HashMap<String, StandardVerifier>,
    state_dir: PathBuf,
    /// The last cosigned checkpoint of each log. A Tokio mutex, held from the
    /// size check until the new state is on disk (awaited), so that two
    /// requests can never roll each other back.
    held: tokio::sync::Mutex<HashMap<String, Held>>,
}

/// A checkpoint the witness cosigned.
#[derive(Clone)]
struct Held {
    size: u64,
    root: Hash,
    /// The note as submitted, kept as evidence.
    note: Vec<u8>,
}

impl Witness {
    fn open(args: &WitnessArgs) -> anyhow::Result<Self> {
        let (key, created) = load_or_create_key(&args.key_file, &args.name)?;
        let name = key_name(&args.key_file)?.unwrap_or_else(|| args.name.clone());
        let cosigner = Cosigner::new(&name, &key, unix_now)?;
        if created {
            tracing::info!(file = %args.key_file.display(), vkey = cosigner.vkey(), "witness key created");
        }
        let mut logs = HashMap::new();
        for vkey in &args.logs {
            let verifier =
                StandardVerifier::new(vkey).map_err(|e| anyhow::anyhow!("--log {vkey}: {e}"))?;
            logs.insert(verifier.name().to_string(), verifier);
        }
        std::fs::create_dir_all(args.state.join("logs"))
            .with_context(|| format!("creating {}", args.state.display()))?;
        let mut held = HashMap::new();
        for origin in logs.keys() {
            if let Some(h) = read_held(&state_file(&args.state, origin), origin)? {
                tracing::info!(origin, size = h.size, "witness state loaded");
                held.insert(origin.clone(), h);
            }
        }
        Ok(Self {
            cosigner,
            logs,
            state_dir: args.state.clone(),
            held: tokio::sync::Mutex::new(held),
        })
    }
}

/// The name written in a key file (`PRIVATE+KEY+<name>+…`).
fn key_name(path: &Path) -> anyhow::Result<Option<String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim().split('+').nth(2).map(str::to_string))
}

/// `DIR/logs/<first 16 hex of SHA-256(origin)>.checkpoint`: origins hold `/`.
fn state_file(dir: &Path, origin: &str) -> PathBuf {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(origin.as_bytes()));
    dir.join("logs")
        .join(format!("{}.checkpoint", &digest[..16]))
}

fn read_held(path: &Path, origin: &str) -> anyhow::Result<Option<Held>> {
    let note = match std::fs::read(path) {
        Ok(note) => note,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let parsed = Note::from_bytes(&note).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let checkpoint = Checkpoint::from_bytes(parsed.text())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if checkpoint.origin() != origin {
        bail!("{} holds another log's checkpoint", path.display());
    }
    Ok(Some(Held {
        size: checkpoint.size(),
        root: *checkpoint.hash(),
        note,
    }))
}

async fn about(State(witness): State<Arc<Witness>>) -> String {
    format!("peergate witness {}\n", witness.cosigner.vkey())
}

/// Why a submission was not cosigned, as the protocol's statuses.
#[derive(Debug)]
enum Refusal {
    /// 409 with the size held (`text/x.tlog.size`).
    Conflict(u64),
    Status(StatusCode, String),
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal::Status(status, message.into())
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    match witness.add(&body).await {
        Ok(lines) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            lines,
        )
            .into_response(),
        Err(Refusal::Conflict(size)) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        )
            .into_response(),
        Err(Refusal::Status(status, message)) => (status, format!("{message}\n")).into_response(),
    }
}

/// A parsed `add-checkpoint` body.
struct Submission<'a> {
    old: u64,
    proof: Vec<Hash>,
    note_bytes: &'a [u8],
}

fn parse_submission(body: &[u8]) -> Result<Submission<'_>, Refusal> {
    let bad = |m: &str| refuse(StatusCode::BAD_REQUEST, m);
    let mut rest = body;
    let mut next_line = || -> Result<&str, Refusal> {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("a line without its newline"))?;
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| bad("not UTF-8"))?;
        rest = &rest[end + 1..];
        Ok(line)
    };
    let old = next_line()?
        .strip_prefix("old ")
        .filter(|n| *n == "0" || !n.starts_with('0'))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    let mut proof = Vec::new();
    loop {
        let line = next_line()?;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        proof.push(Hash::parse_hash(line).map_err(|_| bad("a proof line is not a base64 hash"))?);
    }
    Ok(Submission {
        old,
        proof,
        note_bytes: rest,
    })
}

impl Witness {
    /// The protocol's checks in its order; on success the new state is on
    /// disk before the cosignature lines are returned.
    async fn add(&self, body: &[u8]) -> Result<String, Refusal> {
        let submission = parse_submission(body)?;
        let note = Note::from_bytes(submission.note_bytes)
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("not a signed note: {e}")))?;
        let checkpoint = Checkpoint::from_bytes(note.text())
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("not a checkpoint: {e}")))?;
        let origin = checkpoint.origin().to_string();
        let log_key = self
            .logs
            .get(&origin)
            .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("unknown log `{origin}`")))?;
        note.verify(&VerifierList::new(vec![Box::new(log_key.clone())]))
            .map_err(|e| refuse(StatusCode::FORBIDDEN, format!("not signed by the log: {e}")))?;
        if submission.old > checkpoint.size() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "old size beyond the checkpoint",
            ));
        }
        let submitted = Held {
            size: checkpoint.size(),
            root: *checkpoint.hash(),
            note: submission.note_bytes.to_vec(),
        };
        let mut held = self.held.lock().await;
        let current = held.get(&origin).cloned();
        self.check_extends(&origin, current.as_ref(), &submission, &submitted, body)?;
        let path = state_file(&self.state_dir, &origin);
        let bytes = submitted.note.clone();
        tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                tracing::error!(
                    error = format!("{e:#}"),
                    "the witness state could not be written"
                );
                refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the state could not be saved",
                )
            })?;
        held.insert(origin, submitted);
        drop(held);
        self.cosign(note.text())
    }

    /// The submission must start where this witness stands and extend it.
    fn check_extends(
        &self,
        origin: &str,
        current: Option<&Held>,
        submission: &Submission<'_>,
        submitted: &Held,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let held_size = current.map_or(0, |h| h.size);
        if submission.old != held_size {
            return Err(Refusal::Conflict(held_size));
        }
        let Some(current) = current else {
            // The first checkpoint of a log is taken on trust.
            return if submission.proof.is_empty() {
                Ok(())
            } else {
                Err(refuse(StatusCode::BAD_REQUEST, "a proof from size 0"))
            };
        };
        if submitted.size == current.size {
            if submitted.root == current.root {
                return Ok(());
            }
            self.keep_evidence(
                origin,
                current,
                submitted,
                body,
                "the same size with another root",
            );
            return Err(Refusal::Conflict(held_size));
        }
        if tlog::check_tree(
            &submission.proof,
            submitted.size,
            submitted.root,
            current.size,
            current.root,
        )
        .is_err()
        {
            self.keep_evidence(
                origin,
                current,
                submitted,
                body,
                "no proof that it extends what was cosigned",
            );
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the consistency proof does not verify",
            ));
        }
        Ok(())
    }

    /// Both checkpoints, both signed by the log: proof that it showed two
    /// histories. Written to disk and logged at error level.
    fn keep_evidence(&self, origin: &str, held: &Held, submitted: &Held, body: &[u8], why: &str) {
        let dir = self.state_dir.join("evidence").join(format!(
            "{}-{}-{}-{}",
            unix_now(),
            &BASE64.encode(held.root.0)[..8].replace(['/', '+'], "_"),
            held.size,
            submitted.size
        ));
        let written = std::fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| write_durably(&dir.join("cosigned.checkpoint"), &held.note))
            .and_then(|()| write_durably(&dir.join("submitted.checkpoint"), &submitted.note))
            .and_then(|()| write_durably(&dir.join("request.txt"), body));
        tracing::error!(
            origin,
            cosigned_size = held.size,
            submitted_size = submitted.size,
            why,
            evidence = %dir.display(),
            evidence_written = written.is_ok(),
            "FORK: the log signed a checkpoint that does not extend the one this witness cosigned; refused, both kept as evidence"
        );
    }

    /// This witness's cosignature line(s) for `text`.
    fn cosign(&self, text: &[u8]) -> Result<String, Refusal> {
        let internal =
            |e: signed_note::NoteError| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        let mut note = Note::new(text, &[]).map_err(internal)?;
        note.add_sigs(&[&self.cosigner]).map_err(internal)?;
        let signed = note.to_bytes();
        let lines = &signed[text.len() + 1..];
        Ok(String::from_utf8_lossy(lines).into_owned())
    }
}

/// Writes `bytes` to `path` so that it survives a crash: a temporary file,
/// fsynced, renamed over the old one, then the folder fsynced.
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

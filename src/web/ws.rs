//! The live sockets: `/ws/inbox` for reviewers and `/ws/pending` for the
//! waiting requester. Authentication and the origin are checked before the
//! upgrade (extractors and the origin middleware); after it, the server never
//! trusts what arrives on a socket: reviewers act through HTTP, where every
//! decision is checked again.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};

use super::events::{self, Format, Published};
use super::extract::{HalfAuthenticated, ReviewerSession};
use crate::domain::TokenHash;
use crate::error::Error;
use crate::registry::RequesterStatus;
use crate::state::AppState;

/// tungstenite's read buffer per socket (its default, 128 KiB, would cost
/// ~1.3 GB for 10,000 idle sockets).
const READ_BUFFER: usize = 4 * 1024;
/// The largest message or frame a client may send; they need to send nothing.
const MAX_INCOMING: usize = 4 * 1024;
/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(20);
/// A socket that has sent nothing (not even a pong) for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_mins(1);
/// How often a socket re-reads its browser session, so that changes made from
/// the command line (disabled user, removed role) close it too.
const RECHECK_EVERY: Duration = Duration::from_secs(15);

/// Sockets one browser session may hold at once (a few tabs); more is a flood.
pub const MAX_SOCKETS_PER_SESSION: usize = 8;

/// WebSocket close code for "policy violation": the session ended or lost its role.
const POLICY_CLOSE: u16 = 1008;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws/inbox", get(inbox_socket))
        .route("/ws/pending", get(pending_socket))
}

#[derive(Deserialize)]
pub struct FormatQuery {
    format: Option<String>,
}

/// Holds one of a browser session's socket places until dropped.
struct SocketPlace {
    app: AppState,
    token: TokenHash,
}

impl SocketPlace {
    /// Takes a place, or refuses with 429 when the session holds its maximum.
    fn take(app: &AppState, token: &TokenHash) -> Result<Self, Error> {
        let mut count = app.sockets.entry(token.clone()).or_insert(0);
        if *count >= MAX_SOCKETS_PER_SESSION {
            return Err(Error::RateLimited {
                retry_after_secs: 5,
            });
        }
        *count += 1;
        Ok(Self {
            app: app.clone(),
            token: token.clone(),
        })
    }
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        self.app.sockets.remove_if_mut(&self.token, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
}

fn close(reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: POLICY_CLOSE,
        reason: Utf8Bytes::from_static(reason),
    }))
}

async fn inbox_socket(
    State(app): State<AppState>,
    ReviewerSession(session): ReviewerSession,
    Query(query): Query<FormatQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Error> {
    let format = Format::from_query(query.format.as_deref());
    let place = SocketPlace::take(&app, &session.token_hash)?;
    Ok(configure(upgrade).on_upgrade(move |socket| async move {
        let _place = place;
        crate::metrics::socket_opened("inbox");
        serve_inbox(app, session.token_hash, session.user.id, format, socket).await;
        crate::metrics::socket_closed("inbox");
    }))
}

/// Still signed in, still a reviewer?
async fn still_reviewer(app: &AppState, token: &TokenHash) -> bool {
    match crate::review::browser_session(&app.flow, token).await {
        Ok(Some(s)) => s.may_review(),
        Ok(None) => false,
        // A database hiccup is not a reason to drop people; look again later.
        Err(_) => true,
    }
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// The whole inbox for one reviewer, in the socket's format.
fn inbox_snapshot(app: &AppState, me: &str, format: Format) -> Utf8Bytes {
    let sessions = app.registry.summaries_for(me, app.clock.now());
    events::inbox_snapshot(&sessions, format)
}

/// Sends a step's frame; false when the loop should end.
async fn deliver(tx: &mut Sink, step: Step) -> bool {
    let frame = match step {
        Step::Send(frame) => frame,
        Step::Skip => return true,
        Step::Stop => return false,
    };
    let closing = matches!(frame, Message::Close(_));
    tx.send(frame).await.is_ok() && !closing
}

/// The frame for one published inbox event, as this reviewer sees it.
fn inbox_step(
    app: &AppState,
    me: &str,
    format: Format,
    received: Result<Arc<Published>, RecvError>,
) -> Step {
    match received {
        Ok(published) => match published.event() {
            // A reviewer's own sign-in never shows in their inbox.
            Some(event) if event.requester_id() == Some(me) => Step::Skip,
            Some(event) => Step::text(published.frame(event, format)),
            None => Step::text(inbox_snapshot(app, me, format)),
        },
        // Fell behind: a fresh snapshot replaces what was missed.
        Err(RecvError::Lagged(_)) => Step::text(inbox_snapshot(app, me, format)),
        Err(RecvError::Closed) => Step::Stop,
    }
}

async fn serve_inbox(
    app: AppState,
    token: TokenHash,
    me: String,
    format: Format,
    socket: WebSocket,
) {
    let (mut tx, mut rx) = socket.split();
    // Subscribe before the snapshot, so nothing falls between the two.
    let mut frames = app.frames.subscribe();
    let mut presence = app.registry.watch_presence();
    let mut ended = app.session_ended.subscribe();
    let mut going_away = app.going_away.subscribe();
    let mut accounts = app.accounts_version.subscribe();
    let _online = app.registry.reviewer_connected(&me);
    let online = *presence.borrow_and_update();
    for first in [
        inbox_snapshot(&app, &me, format),
        events::presence(online, format),
    ] {
        if tx.send(Message::Text(first)).await.is_err() {
            return;
        }
    }
    let mut timers = Timers::new();
    loop {
        let step = tokio::select! {
            received = frames.recv() => inbox_step(&app, &me, format, received),
            changed = presence.changed() => match changed {
                Ok(()) => Step::text(events::presence(*presence.borrow_and_update(), format)),
                Err(_) => Step::Stop,
            },
            incoming = rx.next() => heard(incoming.as_ref(), &mut timers.last_heard),
            gone = ended.recv() => signed_out(gone, &token),
            changed = going_away.changed() => shutting_down(&changed, &mut going_away),
            // A periodic check, and an immediate one when an account changed.
            _ = timers.recheck.tick() => reviewer_check(still_reviewer(&app, &token).await),
            changed = accounts.changed() => {
                reviewer_check(changed.is_ok() && still_reviewer(&app, &token).await)
            },
            _ = timers.ping.tick() => keepalive(timers.last_heard),
        };
        if !deliver(&mut tx, step).await {
            break;
        }
    }
}

/// A socket's keepalive and re-check clocks.
struct Timers {
    ping: tokio::time::Interval,
    recheck: tokio::time::Interval,
    last_heard: Instant,
}

impl Timers {
    fn new() -> Self {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            ping,
            recheck,
            last_heard: Instant::now(),
        }
    }
}

async fn pending_socket(
    State(app): State<AppState>,
    requester: HalfAuthenticated,
    Query(query): Query<FormatQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Error> {
    let format = Format::from_query(query.format.as_deref());
    let place = SocketPlace::take(&app, &requester.session.token_hash)?;
    Ok(configure(upgrade).on_upgrade(move |socket| async move {
        let _place = place;
        crate::metrics::socket_opened("pending");
        serve_pending(app, requester, format, socket).await;
        crate::metrics::socket_closed("pending");
    }))
}

/// What a requester's socket remembers between status changes.
struct Requesting {
    current: RequesterStatus,
    claimed: Option<String>,
    format: Format,
}

/// The first frames: the whole status, and who is looking (JSON). `None` when
/// the session is already settled (its outcome has been sent).
async fn start_pending(
    tx: &mut Sink,
    status: RequesterStatus,
    online: usize,
    format: Format,
) -> Option<Requesting> {
    let RequesterStatus::Pending {
        code,
        expires_at,
        claimed_by,
    } = &status
    else {
        if let RequesterStatus::Settled(outcome) = status {
            finish(tx, outcome, format).await;
        }
        return None;
    };
    let mut first = vec![events::requester_status(
        code,
        *expires_at,
        online,
        claimed_by.as_deref(),
        format,
    )];
    if let (Some(name), Format::Json) = (claimed_by, format) {
        first.push(events::requester_claimed(name, online, format));
    }
    for frame in first {
        tx.send(Message::Text(frame)).await.ok()?;
    }
    Some(Requesting {
        claimed: claimed_by.clone(),
        current: status,
        format,
    })
}

/// Sends what changed in the requester's status; `false` once it is over.
async fn status_changed(
    tx: &mut Sink,
    state: &mut Requesting,
    next: RequesterStatus,
    online: usize,
) -> bool {
    let frames = diff(
        &state.current,
        &next,
        &mut state.claimed,
        online,
        state.format,
    );
    state.current = next;
    if let RequesterStatus::Settled(outcome) = state.current {
        finish(tx, outcome, state.format).await;
        return false;
    }
    for frame in frames {
        if tx.send(Message::Text(frame)).await.is_err() {
            return false;
        }
    }
    true
}

/// The number of reviewers online, read without holding the watch's guard.
fn online_now(presence: &tokio::sync::watch::Receiver<usize>) -> usize {
    *presence.borrow()
}

/// Tells a requester whose session is no longer waiting how it ended.
async fn not_waiting(app: &AppState, tx: &mut Sink, pending_id: &str, format: Format) {
    let outcome = crate::ledger::read::outcome_of(&app.ledger.reader, pending_id)
        .await
        .ok()
        .flatten();
    if let Some(frame) = outcome.and_then(|o| events::requester_outcome(o, format)) {
        let _ = tx.send(Message::Text(frame)).await;
    }
    let _ = tx.send(close("not pending")).await;
}

async fn serve_pending(
    app: AppState,
    requester: HalfAuthenticated,
    format: Format,
    socket: WebSocket,
) {
    let (mut tx, mut rx) = socket.split();
    let token = requester.session.token_hash.clone();
    let mut ended = app.session_ended.subscribe();
    let mut going_away = app.going_away.subscribe();
    let mut accounts = app.accounts_version.subscribe();
    let mut presence = app.registry.watch_presence();
    let Some(mut status) = app.registry.watch_requester(&requester.pending_id) else {
        // Not waiting any more: approved (awaiting completion) or over.
        return not_waiting(&app, &mut tx, &requester.pending_id, format).await;
    };
    let first = status.borrow_and_update().clone();
    let online = *presence.borrow_and_update();
    let Some(mut state) = start_pending(&mut tx, first, online, format).await else {
        return;
    };
    let mut timers = Timers::new();
    loop {
        let step = tokio::select! {
            // `biased`: an outcome goes out before anything else that is ready.
            biased;
            changed = status.changed() => {
                let next = status.borrow_and_update().clone();
                if changed.is_err() && next == state.current {
                    // The session left the registry without a final status.
                    Step::Stop
                } else if status_changed(&mut tx, &mut state, next, online_now(&presence)).await {
                    Step::Skip
                } else {
                    return;
                }
            },
            changed = presence.changed() => match changed {
                Ok(()) => {
                    let online = *presence.borrow_and_update();
                    Step::text(events::requester_presence(online, state.claimed.as_deref(), format))
                }
                Err(_) => Step::Stop,
            },
            incoming = rx.next() => heard(incoming.as_ref(), &mut timers.last_heard),
            gone = ended.recv() => signed_out(gone, &token),
            changed = going_away.changed() => shutting_down(&changed, &mut going_away),
            changed = accounts.changed() => {
                let alive = crate::review::browser_session(&app.flow, &token).await;
                if changed.is_ok() && !matches!(alive, Ok(None)) {
                    Step::Skip
                } else {
                    Step::Send(close("session ended"))
                }
            },
            _ = timers.ping.tick() => keepalive(timers.last_heard),
        };
        if !deliver(&mut tx, step).await {
            break;
        }
    }
}

/// Closes the socket with 1001 once the server starts shutting down.
fn shutting_down(
    changed: &Result<(), tokio::sync::watch::error::RecvError>,
    going_away: &mut tokio::sync::watch::Receiver<bool>,
) -> Step {
    match changed {
        Ok(()) if *going_away.borrow_and_update() => Step::Send(going_away_frame()),
        Ok(()) => Step::Skip,
        Err(_) => Step::Stop,
    }
}

/// The close frame for a server that is shutting down: the page reconnects
/// to the next process.
fn going_away_frame() -> Message {
    Message::Close(Some(CloseFrame {
        code: 1001,
        reason: Utf8Bytes::from_static("going away"),
    }))
}

/// What a socket loop does after one of its events.
enum Step {
    /// Send this frame (a close frame ends the loop after sending).
    Send(Message),
    /// Nothing to send.
    Skip,
    /// End the loop without a frame (the peer is gone).
    Stop,
}

impl Step {
    fn text(bytes: Utf8Bytes) -> Self {
        Step::Send(Message::Text(bytes))
    }
}

/// Anything from the client counts as a sign of life; a close or an error ends it.
fn heard(incoming: Option<&Result<Message, axum::Error>>, last_heard: &mut Instant) -> Step {
    match incoming {
        Some(Ok(Message::Close(_)) | Err(_)) | None => Step::Stop,
        Some(Ok(_)) => {
            *last_heard = Instant::now();
            Step::Skip
        }
    }
}

/// Closes the socket when its own browser session signed out.
fn signed_out(gone: Result<TokenHash, RecvError>, token: &TokenHash) -> Step {
    match gone {
        Ok(hash) if &hash == token => Step::Send(close("signed out")),
        Ok(_) | Err(RecvError::Lagged(_)) => Step::Skip,
        Err(RecvError::Closed) => Step::Stop,
    }
}

/// Pings, or gives up on a peer silent for longer than [`IDLE_TIMEOUT`].
fn keepalive(last_heard: Instant) -> Step {
    if last_heard.elapsed() > IDLE_TIMEOUT {
        Step::Stop
    } else {
        Step::Send(Message::Ping(axum::body::Bytes::default()))
    }
}

fn reviewer_check(still_reviewer: bool) -> Step {
    if still_reviewer {
        Step::Skip
    } else {
        Step::Send(close("no longer a reviewer"))
    }
}

/// The frames that tell a requester what changed between two statuses.
fn diff(
    before: &RequesterStatus,
    after: &RequesterStatus,
    claimed: &mut Option<String>,
    online: usize,
    format: Format,
) -> Vec<Utf8Bytes> {
    let mut frames = Vec::new();
    if let (
        RequesterStatus::Pending { code: old, .. },
        RequesterStatus::Pending {
            code,
            expires_at,
            claimed_by,
        },
    ) = (before, after)
    {
        if old != code {
            frames.push(events::requester_code(code, *expires_at, format));
        }
        if claimed_by != claimed {
            claimed.clone_from(claimed_by);
            if let Some(name) = claimed_by {
                frames.push(events::requester_claimed(name, online, format));
            }
        }
    }
    frames
}

/// Sends the outcome and closes: normally after approval (the page moves on),
/// with 1008 when the session has ended.
async fn finish(tx: &mut Sink, outcome: crate::domain::Outcome, format: Format) {
    if let Some(frame) = events::requester_outcome(outcome, format) {
        let _ = tx.send(Message::Text(frame)).await;
    }
    let close_frame = if outcome == crate::domain::Outcome::Approved {
        Message::Close(Some(CloseFrame {
            code: 1000,
            reason: Utf8Bytes::from_static("approved"),
        }))
    } else {
        close("session ended")
    };
    let _ = tx.send(close_frame).await;
}

//! The transparency log's read side (DESIGN.md §11, c2sp.org/tlog-tiles):
//! the checkpoint with its cosignatures, the verifier key, hash tiles and
//! entry bundles. Readable by admins, by the read token's bearer, or by
//! anyone when `transparency.public` is on: they hold only counts and hashes.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::extract::LogReader;
use crate::error::{Error, Result};
use crate::ledger::read;
use crate::ledger::tree::TILE_WIDTH;
use crate::state::AppState;
use crate::transparency::tiles::TileRequest;

/// How long a full tile may be cached: it never changes.
const IMMUTABLE: &str = "max-age=31536000, immutable";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ledger/checkpoint", get(checkpoint))
        .route("/ledger/key", get(key))
        .route("/ledger/tile/{*path}", get(tile))
}

fn text(body: impl Into<axum::body::Body>, cache: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, cache),
        ],
        body.into(),
    )
        .into_response()
}

/// The newest checkpoint, with every cosignature collected for it.
async fn checkpoint(State(app): State<AppState>, _: LogReader) -> Response {
    text(app.transparency.checkpoint(), "no-cache")
}

/// The log's verifier key, one line.
async fn key(State(app): State<AppState>, _: LogReader) -> Response {
    text(format!("{}\n", app.transparency.vkey()), "no-cache")
}

async fn tile(
    State(app): State<AppState>,
    _: LogReader,
    Path(path): Path<String>,
) -> Result<Response> {
    let request = TileRequest::parse(&path)
        .ok_or_else(|| Error::NotFound("There is no such tile.".into()))?;
    let data = match request {
        TileRequest::Hashes {
            level,
            index,
            width,
        } => app
            .transparency
            .tree()
            .read(|tree| tree.hash_tile(level, index, width)),
        TileRequest::Entries { index, width } => entry_bundle(&app, index, width).await?,
    }
    .ok_or_else(|| Error::NotFound("The log does not reach that tile yet.".into()))?;
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response();
    let cache = if !request.is_full() {
        "no-cache".to_string()
    } else if app.settings.transparency.public {
        format!("public, {IMMUTABLE}")
    } else {
        format!("private, {IMMUTABLE}")
    };
    if let Ok(value) = HeaderValue::from_str(&cache) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    Ok(response)
}

/// Entry bundle `index` of `width` records: each a big-endian `uint16`
/// length (always 32) and the entry hash. `None` past the tree's size.
async fn entry_bundle(app: &AppState, index: u64, width: u32) -> Result<Option<Vec<u8>>> {
    let first = index.checked_mul(TILE_WIDTH);
    let end = first.and_then(|f| f.checked_add(u64::from(width)));
    let (Some(first), Some(end)) = (first, end) else {
        return Ok(None);
    };
    if end > app.transparency.tree().size() {
        return Ok(None);
    }
    let first_seq = i64::try_from(first + 1).map_err(anyhow::Error::from)?;
    let hashes = read::entry_hashes(&app.ledger.reader, first_seq, i64::from(width)).await?;
    if hashes.len() != width as usize {
        return Ok(None);
    }
    let mut bundle = Vec::with_capacity(hashes.len() * 34);
    for hash in hashes {
        bundle.extend_from_slice(&32u16.to_be_bytes());
        bundle.extend_from_slice(&hash);
    }
    Ok(Some(bundle))
}

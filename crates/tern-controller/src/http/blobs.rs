//! Content-addressed blobs (modules and files), uploaded and fetched by digest.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tern_snapshot::digest;

use super::{bad, blocking, ApiError, ApiResult};
use crate::shared::Shared;

pub(super) fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(super) async fn put_blob(
    State(s): State<Arc<Shared>>,
    UrlPath(d): UrlPath<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    if !is_digest(&d) {
        return Err(bad(format!(
            "{d:?} is not a digest (sha256:<64 hex digits>)"
        )));
    }
    let got = digest(&body);
    if got != d {
        return Err(bad(format!("body has digest {got}, not {d}")));
    }
    blocking(&s, move |s| {
        if s.store.has_blob(&d)? {
            return Ok(StatusCode::OK);
        }
        s.store.write(|tx| tx.put_blob(&d, &body))?;
        Ok(StatusCode::CREATED)
    })
    .await
}

pub(super) async fn get_blob(
    State(s): State<Arc<Shared>>,
    UrlPath(d): UrlPath<String>,
) -> ApiResult<Response> {
    blocking(&s, move |s| {
        let bytes = s
            .store
            .blob(&d)?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no blob {d}")))?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
    })
    .await
}

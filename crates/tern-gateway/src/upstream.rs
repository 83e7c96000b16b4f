//! The request as the service receives it, and what a failed send means.

use std::net::SocketAddr;

use hyper::Request;

use crate::response::Body;

/// Headers that belong to one connection, not to the request.
pub(crate) fn hop_by_hop(name: &hyper::header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The request never reached the service: no connection, or a kept-alive one that had closed
/// before it was written (hyper cancels it). Anything else may have been processed.
pub(crate) fn not_delivered(e: &hyper_util::client::legacy::Error) -> bool {
    e.is_connect()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<hyper::Error>())
            .is_some_and(|h| h.is_canceled())
}

pub(crate) fn upstream(
    parts: &hyper::http::request::Parts,
    endpoint: &str,
    body: Body,
    peer: SocketAddr,
) -> Request<Body> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = format!("http://{endpoint}{pq}")
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            req.headers_mut().append(k, v.clone());
        }
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(&peer.ip().to_string()) {
        req.headers_mut().append("x-forwarded-for", v);
    }
    req
}

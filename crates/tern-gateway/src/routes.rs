//! Which workload a request belongs to (pure): by host name and path prefix, as the profiles'
//! `[http]` tables say.

use tern_api::{Route, RouteTable};

/// The route for a request to `host` (its Host header, port or not) and `path`: among the
/// routes whose host (if any) and path prefix (if any) match, the one that names a host wins
/// over one that does not, then the longest prefix; ties go to the workload name.
pub fn resolve<'a>(table: &'a RouteTable, host: Option<&str>, path: &str) -> Option<&'a Route> {
    let host = host.map(strip_port);
    table
        .routes
        .iter()
        .filter(|r| match (&r.host, host) {
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
            (None, _) => true,
        })
        .filter(|r| r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p)))
        .max_by(|a, b| {
            let rank = |r: &Route| {
                (
                    r.host.is_some(),
                    r.path_prefix.as_deref().map_or(0, str::len),
                )
            };
            rank(a)
                .cmp(&rank(b))
                .then_with(|| b.workload.cmp(&a.workload))
        })
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, prefix: Option<&str>) -> Route {
        Route {
            workload: name.into(),
            host: host.map(Into::into),
            path_prefix: prefix.map(Into::into),
            endpoint: None,
            node: None,
            node_region: None,
            moving: false,
            migration: None,
        }
    }

    #[test]
    fn host_then_longest_prefix_decides() {
        let table = RouteTable {
            routes: vec![
                route("api", None, Some("/api")),
                route("api-v2", None, Some("/api/v2")),
                route("counter", Some("counter.example"), None),
                route("counter-admin", Some("counter.example"), Some("/admin")),
            ],
        };
        let name = |host: Option<&str>, path: &str| {
            resolve(&table, host, path).map(|r| r.workload.clone())
        };
        assert_eq!(
            name(Some("Counter.Example:8080"), "/inc/a"),
            Some("counter".into())
        );
        assert_eq!(
            name(Some("counter.example"), "/admin/x"),
            Some("counter-admin".into())
        );
        assert_eq!(
            name(Some("other.example"), "/api/v2/x"),
            Some("api-v2".into())
        );
        assert_eq!(name(None, "/api/x"), Some("api".into()));
        assert_eq!(name(Some("other.example"), "/nothing"), None);
        assert_eq!(name(None, "/"), None);
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}

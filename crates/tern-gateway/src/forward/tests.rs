//! The request path's pure steps, each alone.

use super::*;

fn route(workload: &str, host: &str, endpoint: Option<&str>, moving: bool) -> Route {
    Route {
        workload: workload.into(),
        host: Some(host.into()),
        path_prefix: None,
        endpoint: endpoint.map(str::to_string),
        node: Some("n1".into()),
        node_region: Some("eu-west".into()),
        moving,
        migration: moving.then(|| "m1".to_string()),
    }
}

fn table(routes: Vec<Route>) -> RouteTable {
    RouteTable { routes }
}

#[test]
fn pick_finds_the_route_and_withholds_an_endpoint_that_must_not_be_sent_to() {
    let t = table(vec![
        route("up", "up.example", Some("10.0.0.1:80"), false),
        route("moving", "moving.example", Some("10.0.0.2:80"), true),
        route("down", "down.example", Some("10.0.0.3:80"), false),
        route("none", "none.example", None, false),
    ]);
    let is_down = |e: &str| e == "10.0.0.3:80";
    let endpoint = |host: &str| match pick(Some(&t), Some(host), "/", is_down) {
        Pick::Route { route, endpoint } => (route.workload.clone(), endpoint.map(str::to_string)),
        other => panic!("{host}: {other:?}"),
    };
    assert_eq!(
        endpoint("up.example"),
        ("up".into(), Some("10.0.0.1:80".into()))
    );
    assert_eq!(endpoint("moving.example"), ("moving".into(), None));
    assert_eq!(endpoint("down.example"), ("down".into(), None));
    assert_eq!(endpoint("none.example"), ("none".into(), None));
    assert_eq!(
        pick(Some(&t), Some("nobody.example"), "/", is_down),
        Pick::NotFound
    );
    assert_eq!(pick(None, Some("up.example"), "/", is_down), Pick::NoTable);
}

fn parts(headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().method("POST").uri("/x?y=1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

#[test]
fn only_a_request_without_a_body_is_replayable() {
    assert!(replayable(&parts(&[])));
    assert!(replayable(&parts(&[("content-length", "0")])));
    assert!(!replayable(&parts(&[("content-length", "5")])));
    assert!(!replayable(&parts(&[("transfer-encoding", "chunked")])));
}

#[test]
fn each_failure_answers_with_its_status_and_names_the_workload() {
    let cases = [
        (
            Failure::Timeout(Duration::from_secs(30)),
            504,
            "did not answer within 30s",
        ),
        (Failure::Refused, 503, "does not accept connections"),
        (Failure::Broken("reset".into()), 502, "svc: reset"),
        (Failure::TooManyHeld, 503, "too many requests waiting"),
        (Failure::NoInstance, 503, "has no running instance"),
    ];
    for (f, status, words) in cases {
        let r = failure("svc", f.clone());
        assert_eq!(r.status().as_u16(), status, "{f:?}");
        // Only a 503 says when to come back: the others may have been processed.
        assert_eq!(
            r.headers().contains_key(hyper::header::RETRY_AFTER),
            status == 503,
            "{f:?}"
        );
        let body = futures_body(r);
        assert!(body.contains(words) && body.contains("svc"), "{body}");
    }
    let r = failure(
        "",
        Failure::NotFound {
            host: "a.example".into(),
            path: "/p".into(),
        },
    );
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(futures_body(r).contains("no workload serves a.example/p"));
}

fn futures_body(r: Response<Body>) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let bytes = rt
        .block_on(r.into_body().collect())
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_upstream_request_drops_hop_by_hop_headers_and_names_the_client() {
    let p = parts(&[
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("x-app", "1"),
        ("host", "svc.example"),
    ]);
    let peer: SocketAddr = "192.0.2.7:5555".parse().expect("addr");
    let req = upstream(&p, "10.0.0.1:8080", empty(), peer);
    assert_eq!(req.uri(), "http://10.0.0.1:8080/x?y=1");
    assert_eq!(req.method(), "POST");
    assert!(req.headers().get("connection").is_none());
    assert!(req.headers().get("transfer-encoding").is_none());
    assert_eq!(req.headers()["x-app"], "1");
    assert_eq!(req.headers()["host"], "svc.example");
    assert_eq!(req.headers()["x-forwarded-for"], "192.0.2.7");
}

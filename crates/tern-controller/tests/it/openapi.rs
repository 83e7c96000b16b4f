//! `/openapi.json` documents exactly the routes the router serves, with exactly their methods:
//! checked against the router itself, so the document cannot drift from it.

use std::collections::BTreeSet;

use tern_controller::{api_paths, Config, Controller};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

#[test]
fn openapi_documents_every_route_and_method_the_router_serves() {
    let data = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = Config::new(data.path(), "127.0.0.1:0".parse().expect("addr"));
    let controller = rt.block_on(Controller::start(config)).expect("controller");
    let (url, token) = (controller.url(), controller.token.clone());
    let http = reqwest::blocking::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{url}/openapi.json"))
        .bearer_auth(&token)
        .send()
        .and_then(|r| r.json())
        .expect("the document");
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    let served: BTreeSet<&str> = api_paths().into_iter().collect();
    assert_eq!(documented, served, "documented paths vs the router's");
    assert!(served.len() >= 30, "{served:?}");

    for path in served {
        // Any value fills a path parameter: the router matches before a handler looks.
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // Only the status line is read: the route stream would not end.
            let status = http
                .request(m, format!("{url}{concrete}"))
                .bearer_auth(&token)
                .send()
                .expect("an answer")
                .status();
            let routed = status != reqwest::StatusCode::METHOD_NOT_ALLOWED;
            let listed = doc["paths"][path].get(method).is_some();
            assert_eq!(
                routed,
                listed,
                "{} {path}: the router answers {status}, the document {}",
                method.to_uppercase(),
                if listed { "lists it" } else { "does not" }
            );
        }
    }
    rt.block_on(controller.stop());
}

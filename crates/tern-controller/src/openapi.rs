//! The OpenAPI document served at `/openapi.json`: the routes of `http/mod.rs`, their bodies
//! and answers (a test checks it against the router's routes and methods). The workload profile's own schema is generated from its types (`/v1/profile-schema`).

use serde_json::{json, Value};

fn op(summary: &str, body: Option<&str>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "security": [{"token": []}],
        "responses": {
            ok: {"description": "success"},
            "401": {"description": "missing or wrong token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "400": {"description": "bad input", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
    });
    if let Some(b) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
    }
    o
}

fn name_param(what: &str) -> Value {
    json!([{"name": what, "in": "path", "required": true, "schema": {"type": "string"}}])
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/openapi.json".into(),
        json!({"get": op("This document", None, "200")}),
    );
    paths.insert(
        "/v1/profile-schema".into(),
        json!({"get": op("JSON Schema of the workload profile (tern.toml)", None, "200")}),
    );
    paths.insert(
        "/v1/nodes".into(),
        json!({
            "get": op("List nodes", None, "200"),
            "post": op("Register a node (agents; 409 if the name is taken by a node that is up)", Some("RegisterRequest"), "200"),
        }),
    );
    paths.insert(
        "/v1/gateways".into(),
        json!({"get": op("Gateways following the route stream now", None, "200")}),
    );
    paths.insert(
        "/v1/migrations/{id}/quiesce".into(),
        json!({"parameters": name_param("id"), "post": op("The source is about to pause: have the gateways hold the workload's requests; answers once they have none in flight (at most 2 s)", None, "200")}),
    );
    paths.insert(
        "/v1/migrations/{id}/quiet".into(),
        json!({"parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                               {"name": "gateway", "in": "query", "required": true, "schema": {"type": "string"}}],
               "post": op("A gateway holds the migration's workload's requests and has none in flight", None, "204")}),
    );
    paths.insert(
        "/v1/workloads/{name}/explain".into(),
        json!({"parameters": name_param("name"), "get": op("Why the workload runs where it does: its score on its node and on the best alternatives, term by term, and the verdict (stay, move, pending)", None, "200")}),
    );
    paths.insert(
        "/v1/network".into(),
        json!({"get": op("What the nodes' probes measured: round-trip time and bandwidth node to node, and the median by region pair", None, "200")}),
    );
    paths.insert(
        "/v1/placement".into(),
        json!({"get": op("Automatic placement: paused or not, and the last rebalance pass", None, "200")}),
    );
    paths.insert(
        "/v1/placement/pause".into(),
        json!({"post": op("Stop automatic moves", None, "200")}),
    );
    paths.insert(
        "/v1/placement/resume".into(),
        json!({"post": op("Start automatic moves again", None, "200")}),
    );
    paths.insert(
        "/v1/traffic".into(),
        json!({"post": op("A gateway's counts since its previous report: requests by client region, errors, latency, per workload", None, "204")}),
    );
    paths.insert(
        "/v1/workloads/{name}/traffic".into(),
        json!({"parameters": name_param("name"), "get": op("The workload's traffic over the last minute: rate, error rate, latency percentiles, demand by client region", None, "200")}),
    );
    paths.insert(
        "/v1/routes".into(),
        json!({"get": op("Where the gateways send each workload's requests", None, "200")}),
    );
    paths.insert(
        "/v1/routes/watch".into(),
        json!({"get": op("The route table as a stream of JSON lines: now, after every change, and every 15 s", None, "200")}),
    );
    paths.insert(
        "/v1/nodes/{name}".into(),
        json!({"parameters": name_param("name"), "get": op("One node", None, "200")}),
    );
    paths.insert(
        "/v1/nodes/{name}/heartbeat".into(),
        json!({"parameters": name_param("name"), "post": op("Report usage, instances and output; the reply lists the instances the node should run", Some("Heartbeat"), "200")}),
    );
    paths.insert(
        "/v1/blobs/{digest}".into(),
        json!({
            "parameters": name_param("digest"),
            "put": {"summary": "Upload a blob; the body must hash to the digest (sha256:<hex>)", "security": [{"token": []}],
                    "requestBody": {"content": {"application/octet-stream": {}}},
                    "responses": {"201": {"description": "stored"}, "200": {"description": "already stored"}, "400": {"description": "digest mismatch"}, "413": {"description": "too large"}}},
            "get": {"summary": "Download a blob", "security": [{"token": []}], "responses": {"200": {"description": "the bytes", "content": {"application/octet-stream": {}}}, "404": {"description": "unknown digest"}}},
        }),
    );
    paths.insert(
        "/v1/workloads".into(),
        json!({
            "get": op("List workloads", None, "200"),
            "post": op("Deploy a workload (201 created or replaced, 200 unchanged)", Some("WorkloadSpec"), "201"),
        }),
    );
    paths.insert(
        "/v1/workloads/{name}".into(),
        json!({"parameters": name_param("name"), "get": op("One workload with its history", None, "200"), "delete": op("Remove a workload and its logs", None, "204")}),
    );
    paths.insert(
        "/v1/workloads/{name}/stop".into(),
        json!({"parameters": name_param("name"), "post": op("Stop a workload (it stays listed)", None, "200")}),
    );
    paths.insert(
        "/v1/workloads/{name}/logs".into(),
        json!({"parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                               {"name": "from", "in": "query", "schema": {"type": "integer"}, "description": "first sequence number"}],
               "get": op("Output chunks from `from` on; `next` continues", None, "200")}),
    );
    paths.insert(
        "/v1/nodes/{name}/drain".into(),
        json!({"parameters": name_param("name"), "post": op("Drain a node: move its workloads off live and place nothing new there", None, "200")}),
    );
    paths.insert(
        "/v1/nodes/{name}/undrain".into(),
        json!({"parameters": name_param("name"), "post": op("Take a node back into placement", None, "200")}),
    );
    paths.insert(
        "/v1/workloads/{name}/migrate".into(),
        json!({"parameters": name_param("name"), "post": op("Move a running workload live to another node (409 refused: constraints, room, limits)", Some("MigrateRequest"), "201")}),
    );
    paths.insert(
        "/v1/workloads/{name}/clone".into(),
        json!({"parameters": name_param("name"), "post": op("Fork a running workload live: a new workload (`name`) continues from the same state", Some("MigrateRequest"), "201")}),
    );
    paths.insert(
        "/v1/migrations".into(),
        json!({"get": op("Every migration: phase or outcome, rounds, bytes, pause, total time, why", None, "200")}),
    );
    paths.insert(
        "/v1/migrations/{id}".into(),
        json!({"parameters": name_param("id"), "get": op("One migration", None, "200")}),
    );
    paths.insert(
        "/v1/migrations/{id}/commit".into(),
        json!({"parameters": name_param("id"), "post": op("The source's commit question (agents); the answer is final", Some("CommitRequest"), "200")}),
    );
    paths.insert(
        "/v1/migrations/{id}/news".into(),
        json!({"parameters": name_param("id"), "post": op("A node's news about its part in a migration, sent at once (agents)", Some("MigrationNews"), "204")}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Tern controller", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer", "description": "the token in <controller data>/token"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
                "RegisterRequest": {"type": "object", "required": ["name", "labels", "capacity", "address", "session"],
                    "properties": {"name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "capacity": {"type": "object", "properties": {"cpus": {"type": "number"}, "memory": {"type": "integer"}}},
                        "capabilities": {"type": "object", "properties": {"cpu_limit": {"type": "boolean", "description": "the node enforces CPU limits (cgroup)"}}},
                        "address": {"type": "string"}, "session": {"type": "string"}}},
                "Heartbeat": {"type": "object", "required": ["session", "usage", "instances"],
                    "properties": {"session": {"type": "string"},
                        "usage": {"type": "object", "properties": {"cpu_load": {"type": "number"}, "memory_used": {"type": "integer"}, "memory_free": {"type": "integer"}}},
                        "instances": {"type": "array", "items": {"type": "object"}}, "logs": {"type": "array", "items": {"type": "object"}}}},
                "MigrateRequest": {"type": "object", "required": ["to"],
                    "properties": {"to": {"type": "string", "description": "the destination node"}, "name": {"type": "string", "description": "a clone's new workload"},
                        "options": {"type": "object", "properties": {"bandwidth": {"type": "integer"}, "max_rounds": {"type": "integer"}, "force_hashing": {"type": "boolean"}, "link_delay_ms": {"type": "integer"}}}}},
                "CommitRequest": {"type": "object", "required": ["report", "tail"],
                    "properties": {"report": {"type": "object"}, "tail": {"type": "array", "items": {"type": "object"}}}},
                "MigrationNews": {"type": "object", "required": ["node", "update"],
                    "properties": {"node": {"type": "string"}, "update": {"type": "object"}}},
                "WorkloadSpec": {"type": "object", "required": ["profile", "module"],
                    "properties": {"profile": {"$ref": "/v1/profile-schema"}, "module": {"type": "string"},
                        "files": {"type": "array", "items": {"type": "object", "properties": {"guest": {"type": "string"}, "digest": {"type": "string"}}}}}}
            }
        }
    })
}

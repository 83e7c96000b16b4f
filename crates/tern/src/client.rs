//! The client of the controller's API: where the cluster is (the context file `tern up`
//! writes, or `--controller`/`--token`) and a blocking HTTP client that turns the controller's
//! error replies into errors that say what went wrong.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tern_api::ErrorReply;

use crate::home::tern_home;

/// Where the CLI finds the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterContext {
    pub controller: String,
    pub token: String,
    /// Processes started by `tern up --detach`, for `tern down`.
    #[serde(default)]
    pub pids: Vec<u32>,
}

/// `$TERN_HOME/context.json`.
pub fn context_path() -> Result<PathBuf> {
    Ok(tern_home()?.join("context.json"))
}

/// The cluster to talk to: both flags given, they are it; otherwise the context file, with
/// whichever flag was given taking its place there.
pub fn load_context(controller: Option<String>, token: Option<String>) -> Result<ClusterContext> {
    if let (Some(c), Some(t)) = (&controller, &token) {
        return Ok(ClusterContext {
            controller: c.clone(),
            token: t.clone(),
            pids: Vec::new(),
        });
    }
    let path = context_path()?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no cluster: {} is missing (start one with `tern up`, or give --controller and --token)",
            path.display()
        )
    })?;
    let mut ctx: ClusterContext =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if let Some(c) = controller {
        ctx.controller = c;
    }
    if let Some(t) = token {
        ctx.token = t;
    }
    Ok(ctx)
}

/// A blocking client of the controller's API.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Api {
    pub fn new(ctx: &ClusterContext) -> Result<Api> {
        Ok(Api {
            base: ctx.controller.trim_end_matches('/').to_string(),
            token: ctx.token.clone(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
        })
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("cannot reach the controller at {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().unwrap_or_default();
        let msg = serde_json::from_slice::<ErrorReply>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        bail!("{msg} ({status})")
    }

    pub fn get<R: serde::de::DeserializeOwned>(&self, path: &str) -> Result<R> {
        Ok(self
            .send(self.http.get(format!("{}{path}", self.base)))?
            .json()?)
    }

    pub fn post<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R> {
        Ok(self
            .send(self.http.post(format!("{}{path}", self.base)).json(body))?
            .json()?)
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.send(self.http.delete(format!("{}{path}", self.base)))?;
        Ok(())
    }

    /// Upload a module or file; the controller stores it under its digest, which is returned.
    pub fn put_blob(&self, bytes: Vec<u8>) -> Result<String> {
        let d = tern_snapshot::digest(&bytes);
        self.send(
            self.http
                .put(format!("{}/v1/blobs/{d}", self.base))
                .body(bytes),
        )?;
        Ok(d)
    }
}

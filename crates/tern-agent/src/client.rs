//! A small blocking client for the controller's API.

use std::time::Duration;

use crate::{Error, Result};

/// A small blocking client for the controller's API.
pub(crate) struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Client {
    pub(crate) fn new(base: &str, token: &str) -> Result<Client> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Controller {
                url: base.into(),
                message: e.to_string(),
            })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        Error::Controller {
            url: self.base.clone(),
            message: message.to_string(),
        }
    }

    pub(crate) fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .map_err(|e| self.err(e))?;
        self.decode(resp)
    }

    pub(crate) fn get<R: serde::de::DeserializeOwned>(&self, path: &str) -> Result<R> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| self.err(e))?;
        self.decode(resp)
    }

    fn decode<R: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::blocking::Response,
    ) -> Result<R> {
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| self.err(e))?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<tern_api::ErrorReply>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(self.err(format!("{status}: {msg}")));
        }
        serde_json::from_slice(&bytes).map_err(|e| self.err(format!("bad reply: {e}")))
    }

    pub(crate) fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let resp = self
            .http
            .get(format!("{}/v1/blobs/{digest}", self.base))
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| self.err(e))?;
        if !resp.status().is_success() {
            return Err(self.err(format!("blob {digest}: {}", resp.status())));
        }
        Ok(resp.bytes().map_err(|e| self.err(e))?.to_vec())
    }
}

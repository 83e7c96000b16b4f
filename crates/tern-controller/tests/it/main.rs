//! The controller's integration tests: a real controller on a loopback port, spoken to over
//! HTTP as the agents and the CLI do.

mod openapi;

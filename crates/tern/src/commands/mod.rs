//! One module per subcommand of `tern`, each with its flags (`Args`, wrapped by a variant of
//! `cli::Command`, whose doc comment is the command's help) and `execute`. Commands use the
//! lower modules (the API client, tables, reports, the launcher); none uses another command
//! but `clone`, which is `migrate` with a new name.

pub mod agent;
pub mod clone;
pub mod controller;
pub mod demo;
pub mod deploy;
pub mod down;
pub mod drain;
pub mod explain;
pub mod gateway;
pub mod gateways;
pub mod inspect;
pub mod instance;
pub mod logs;
pub mod migrate;
pub mod migrations;
pub mod network;
pub mod nodes;
pub mod placement;
pub mod ps;
pub mod receive;
pub mod resume;
pub mod rm;
pub mod run;
pub mod sim;
pub mod snapshot;
pub mod stop;
pub mod undrain;
pub mod up;

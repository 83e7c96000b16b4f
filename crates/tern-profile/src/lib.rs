//! Tern's workload profile, `tern.toml`: what to run (a WASI module, its arguments, environment,
//! files and persistent volumes), within which limits, where it may be placed, and how it is
//! migrated and restarted. The CLI reads the file and the controller stores the result, so this
//! crate is the one place that decides what a valid profile is.
//!
//! The crate is pure: callers hand [`parse`] the file's name and text, and nothing here touches
//! the file system (paths such as `module` are kept as written, for the caller to resolve).
//! Anything wrong with the text is a [`ProfileError`] that names the file, the line and column,
//! the field (`limits.memory`) and what was expected, never a panic: profiles are written by
//! hand and arrive over the network. A parsed [`Profile`] serializes to JSON and back unchanged,
//! which is how the controller keeps it, and [`json_schema`] describes the TOML form for editors.

mod delays;
mod error;
mod locate;
mod parse;
mod units;
mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use delays::{parse_delays, DelayLink, DelayScope, DelayTable, End};
pub use error::{ErrorKind, ProfileError};
pub use parse::parse;
pub use units::{format_duration, format_size, parse_duration, parse_size};

/// A workload profile (`tern.toml`), parsed and validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Tern workload profile (tern.toml)")]
pub struct Profile {
    /// The workload's name: 1 to 63 characters of lowercase letters, digits and '-', neither
    /// starting nor ending with '-' (a DNS label, since it names the workload in URLs and on
    /// nodes).
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// Path of the WebAssembly module to run (WASI preview 1). Relative paths are resolved
    /// against the directory holding the profile.
    #[schemars(length(min = 1))]
    pub module: String,
    /// Command-line arguments passed to the program after its name.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables of the program.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host files shipped with the workload (as content-addressed blobs) and placed at a guest
    /// path.
    #[serde(default)]
    pub files: Vec<FileMount>,
    /// Persistent guest directories, kept across restarts and carried along on migration.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// TCP ports the workload listens on (1 to 65535, each at most once).
    #[serde(default, with = "ports")]
    #[schemars(schema_with = "ports::schema")]
    pub ports: Vec<u16>,
    /// Constraints and preferences for choosing the node the workload runs on.
    #[serde(default)]
    pub placement: Placement,
    /// How and when the workload is moved between nodes.
    #[serde(default)]
    pub migration: Migration,
    /// What happens when the program exits.
    #[serde(default)]
    pub restart: Restart,
    /// HTTP routing to the workload.
    #[serde(default)]
    pub http: Http,
}

/// A host file shipped with the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileMount {
    /// Path of the file on the machine that deploys the profile (relative paths are resolved
    /// against the directory holding the profile).
    #[schemars(length(min = 1))]
    pub host: String,
    /// Absolute path at which the program sees the file.
    #[schemars(regex(pattern = "^/"))]
    pub guest: String,
}

/// A persistent guest directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// The volume's name, unique within the profile: letters, digits, '.', '_' and '-' (it
    /// names the volume's directory on nodes).
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub name: String,
    /// Absolute path at which the program sees the directory.
    #[schemars(regex(pattern = "^/"))]
    pub guest: String,
}

/// Resource limits. An unset limit adds nothing to what the node and the module itself allow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most linear memory the program may use, in bytes; written as a size such as "512MiB",
    /// "1GiB", "64MB" or an integer number of bytes.
    #[serde(
        default,
        with = "units::size::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "units::size::schema")]
    pub memory: Option<u64>,
    /// CPU share, in cores: 0.5 is half a core, 2 is two cores. Greater than zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub cpu: Option<f64>,
    /// Longest the program may run before it is stopped, such as "30s", "5m" or "1h".
    #[serde(
        default,
        with = "units::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "units::duration::schema")]
    pub wall_time: Option<Duration>,
}

/// Where the workload may run and where it would rather run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Node labels the node must have, each with the values allowed, such as
    /// `region = ["eu-west", "us-east"]` or `arch = ["x86_64"]`. Every label listed must
    /// match.
    #[serde(default)]
    pub require: BTreeMap<String, Vec<String>>,
    /// Names of nodes the workload must never run on.
    #[serde(default)]
    pub exclude_nodes: Vec<String>,
    /// Node labels and the value preferred for each, such as `region = "eu-west"`; a node
    /// that matches scores higher but one that does not is still eligible.
    #[serde(default)]
    pub prefer: BTreeMap<String, String>,
    /// Names of workloads this one talks to: being close to where they run counts towards
    /// the proximity score, like being close to its clients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub talks_to: Vec<String>,
}

/// How and when the workload is moved between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// Whether the program's state travels with it ("stateful": it continues where it was) or
    /// it starts afresh on the new node ("stateless").
    #[serde(default)]
    pub mode: MigrationMode,
    /// For stateful migration: keep the program running while its memory is copied, pausing it
    /// only for the final difference, rather than stopping it for the whole transfer.
    #[serde(default = "yes")]
    pub live: bool,
    /// How much each factor counts when deciding whether another node is better.
    #[serde(default)]
    pub weights: Weights,
    /// How much better (in weighted score) another node must be before the workload moves
    /// there. Zero or more; unset means the controller's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub threshold: Option<f64>,
    /// Shortest time between two migrations of the workload, such as "5m".
    #[serde(
        default,
        with = "units::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "units::duration::schema")]
    pub cooldown: Option<Duration>,
}

impl Default for Migration {
    fn default() -> Self {
        Migration {
            mode: MigrationMode::default(),
            live: true,
            weights: Weights::default(),
            threshold: None,
            cooldown: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// Whether a migration carries the program's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationMode {
    /// The program starts afresh on the new node.
    Stateless,
    /// The program is captured and continues on the new node where it was.
    #[default]
    Stateful,
}

/// Weights of the factors in a node's score. Each is zero or more; unset weights take the
/// controller's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// Weight of how fast the node runs this workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub performance: Option<f64>,
    /// Weight of how close the node is to the workload's clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub proximity: Option<f64>,
    /// Weight of the node's free resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub resources: Option<f64>,
    /// Weight of matching the `placement.prefer` labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub affinity: Option<f64>,
    /// Weight of the node's running cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub cost: Option<f64>,
    /// Weight of the cost of moving there (state to transfer, pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub move_cost: Option<f64>,
}

/// What happens when the program exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// When the program is started again after it exits.
    #[serde(default)]
    pub policy: RestartPolicy,
    /// Wait before the first restart, such as "1s"; each further restart in a row waits
    /// twice as long, up to `max_backoff`.
    #[serde(default = "default_backoff", with = "units::duration")]
    #[schemars(schema_with = "units::duration::schema")]
    pub backoff: Duration,
    /// Longest wait between restarts, such as "60s". Not shorter than `backoff`.
    #[serde(default = "default_max_backoff", with = "units::duration")]
    #[schemars(schema_with = "units::duration::schema")]
    pub max_backoff: Duration,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::default(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

/// When a program that exited is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never: the workload is done when the program exits.
    Never,
    /// When the program exits with a non-zero status or traps.
    #[default]
    OnFailure,
    /// Whenever the program exits, however it exits.
    Always,
}

/// HTTP routing to the workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// Host name that requests must carry (the `Host` header) to reach this workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix that requests must start with to reach this workload; starts with '/'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^/"))]
    pub path_prefix: Option<String>,
}

/// The JSON Schema (draft 2020-12) of the profile as written in `tern.toml`, with the doc
/// comments above as descriptions.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Profile).to_value();
    drop_null_types(&mut schema);
    schema
}

/// TOML has no null: an unset optional field is simply absent, so `"type": ["number", "null"]`
/// (how schemars describes an `Option`) becomes `"type": "number"`.
fn drop_null_types(schema: &mut serde_json::Value) {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".to_owned(), only);
                }
            }
            map.values_mut().for_each(drop_null_types);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_types),
        _ => {}
    }
}

/// Ports: each element is checked as it is read, so that a bad one is reported at its own
/// position rather than at the array's.
mod ports {
    use std::fmt;

    use schemars::{json_schema, Schema, SchemaGenerator};
    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use serde::{Deserialize, Serialize, Serializer};

    pub fn serialize<S: Serializer>(ports: &[u16], serializer: S) -> Result<S::Ok, S::Error> {
        ports.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u16>, D::Error> {
        deserializer.deserialize_seq(PortsVisitor)
    }

    struct Port(u16);

    impl<'de> Deserialize<'de> for Port {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(PortVisitor)
        }
    }

    const EXPECTED: &str = "a port number from 1 to 65535";

    struct PortVisitor;

    impl Visitor<'_> for PortVisitor {
        type Value = Port;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
            match u16::try_from(v) {
                Ok(port) if port != 0 => Ok(Port(port)),
                _ => Err(E::custom(format!("expected {EXPECTED}, got {v}"))),
            }
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
            match u16::try_from(v) {
                Ok(port) if port != 0 => Ok(Port(port)),
                _ => Err(E::custom(format!("expected {EXPECTED}, got {v}"))),
            }
        }
    }

    struct PortsVisitor;

    impl<'de> Visitor<'de> for PortsVisitor {
        type Value = Vec<u16>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of port numbers")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u16>, A::Error> {
            let mut ports = Vec::new();
            while let Some(Port(port)) = seq.next_element()? {
                ports.push(port);
            }
            Ok(ports)
        }
    }

    pub fn schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "array",
            "items": { "type": "integer", "minimum": 1, "maximum": 65535 },
            "uniqueItems": true
        })
    }
}

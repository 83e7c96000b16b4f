//! A per-link delay table (`delays.toml`): made-up geography for a cluster that runs on one
//! machine. Agents add a link's delay to their node-to-node traffic (probes, migrations) and
//! gateways to the requests they send to a node, so that tests and demos see what a real
//! spread of regions would show, and the scheduler has to measure it rather than be told.
//!
//! ```toml
//! [[link]]
//! between = ["eu-west", "ap-south"]   # region or node names, either order
//! delay = "120ms"                      # one round trip
//! applies_to = "all"                   # or "nodes" (between agents) or "clients" (gateways)
//! ```
//!
//! When several entries match a link, the most specific one wins (a node's name is more
//! specific than its region); among equally specific ones, the last written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{self, ProfileError};

/// The parsed table; empty means no link is delayed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayTable {
    #[serde(default)]
    pub link: Vec<DelayLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayLink {
    /// The two ends: each a node name or a region.
    pub between: [String; 2],
    /// Added to every round trip over the link.
    #[serde(with = "crate::units::duration")]
    pub delay: Duration,
    #[serde(default)]
    pub applies_to: DelayScope,
}

/// Which traffic a link's delay applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelayScope {
    /// Between agents and from gateways.
    #[default]
    All,
    /// Between agents only (probes, migrations).
    Nodes,
    /// From gateways (client traffic) only.
    Clients,
}

/// One end of a link: a node (its name and region) or a place clients come from (a region).
#[derive(Debug, Clone, Copy)]
pub struct End<'a> {
    pub name: Option<&'a str>,
    pub region: &'a str,
}

impl End<'_> {
    /// How specifically `pattern` names this end: 2 by name, 1 by region, None not at all.
    fn matches(&self, pattern: &str) -> Option<u8> {
        if self.name == Some(pattern) {
            Some(2)
        } else if !self.region.is_empty() && self.region == pattern {
            Some(1)
        } else {
            None
        }
    }
}

/// Read a delay table; errors name the file, line and field.
pub fn parse_delays(file_name: &str, text: &str) -> Result<DelayTable, ProfileError> {
    let tree =
        toml::de::DeTable::parse(text).map_err(|e| error::from_toml(file_name, text, None, &e))?;
    DelayTable::deserialize(toml::de::Deserializer::from(tree.clone()))
        .map_err(|e| error::from_toml(file_name, text, Some(&tree), &e))
}

impl DelayTable {
    /// The delay of one round trip between two nodes.
    pub fn between_nodes(&self, a: End<'_>, b: End<'_>) -> Duration {
        self.find(a, b, DelayScope::Nodes)
    }

    /// The delay of one round trip from a gateway (serving clients of `gateway`) to a node.
    pub fn client_to_node(&self, gateway: End<'_>, node: End<'_>) -> Duration {
        self.find(gateway, node, DelayScope::Clients)
    }

    fn find(&self, a: End<'_>, b: End<'_>, scope: DelayScope) -> Duration {
        let mut best: Option<(u8, Duration)> = None;
        for l in &self.link {
            if l.applies_to != DelayScope::All && l.applies_to != scope {
                continue;
            }
            let [x, y] = &l.between;
            let forward = a.matches(x).zip(b.matches(y)).map(|(p, q)| p + q);
            let backward = a.matches(y).zip(b.matches(x)).map(|(p, q)| p + q);
            let Some(rank) = forward.max(backward) else {
                continue;
            };
            if best.is_none_or(|(r, _)| rank >= r) {
                best = Some((rank, l.delay));
            }
        }
        best.map(|(_, d)| d).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node<'a>(name: &'a str, region: &'a str) -> End<'a> {
        End {
            name: Some(name),
            region,
        }
    }

    #[test]
    fn the_most_specific_entry_of_the_right_scope_wins() {
        let t = parse_delays(
            "delays.toml",
            r#"
[[link]]
between = ["eu-west", "ap-south"]
delay = "120ms"

[[link]]
between = ["eu-west", "b"]
delay = "30ms"

[[link]]
between = ["eu-west", "c"]
delay = "80ms"
applies_to = "clients"
"#,
        )
        .expect("parses");
        let ms = |d: Duration| d.as_millis();
        assert_eq!(
            ms(t.between_nodes(node("a", "eu-west"), node("b", "ap-south"))),
            30
        );
        assert_eq!(
            ms(t.between_nodes(node("b", "ap-south"), node("a", "eu-west"))),
            30
        );
        assert_eq!(
            ms(t.between_nodes(node("a", "eu-west"), node("d", "ap-south"))),
            120
        );
        assert_eq!(
            ms(t.between_nodes(node("a", "eu-west"), node("c", "eu-west"))),
            0
        );
        let gw = End {
            name: None,
            region: "eu-west",
        };
        assert_eq!(ms(t.client_to_node(gw, node("c", "eu-west"))), 80);
        assert_eq!(ms(t.client_to_node(gw, node("d", "ap-south"))), 120);
        assert_eq!(ms(t.client_to_node(gw, node("e", "us-east"))), 0);
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let e = parse_delays(
            "d.toml",
            "[[link]]\nbetween = [\"a\", \"b\"]\ndelay = \"soon\"\n",
        )
        .expect_err("bad delay");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("delay"), "{e}");
        let e = parse_delays("d.toml", "[[link]]\nbetween = [\"a\"]\ndelay = \"1ms\"\n")
            .expect_err("one end");
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse_delays("d.toml", "[[lnk]]\n").expect_err("unknown table");
        assert!(e.to_string().contains("lnk"), "{e}");
    }
}

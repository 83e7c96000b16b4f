//! The measured network between regions, and what to assume where nothing was measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What was measured between two regions (or inside one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// Bytes per second.
    pub bandwidth: f64,
}

/// Region pair → measured link, including `(r, r)` for inside a region. Links are symmetric: an
/// entry `(a, b)` also answers for `(b, a)`.
///
/// Serialized as `{"links": [{"a", "b", "rtt_ms", "bandwidth"}, ..]}` because JSON objects cannot
/// have pairs as keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Network {
    #[serde(with = "as_list")]
    pub links: BTreeMap<(String, String), Link>,
}

/// Round trip assumed between two regions when nothing at all was measured.
pub const UNKNOWN_RTT_MS: f64 = 100.0;
/// Bandwidth assumed between two regions when nothing at all was measured (100 MiB/s).
pub const UNKNOWN_BANDWIDTH: f64 = 100.0 * (1u64 << 20) as f64;
/// Inside a region with no entry of its own: a LAN.
pub const LOCAL: Link = Link {
    rtt_ms: 0.5,
    bandwidth: (1u64 << 30) as f64,
};

impl Network {
    /// Records a measurement (replacing an earlier one for the same pair, in either order).
    pub fn insert(&mut self, a: &str, b: &str, link: Link) {
        self.links.remove(&(b.to_string(), a.to_string()));
        self.links.insert((a.to_string(), b.to_string()), link);
    }

    /// The link between regions `a` and `b`, symmetric. A pair nobody measured is assumed to be
    /// as bad as the worst measured one (the largest rtt, the smallest bandwidth; or
    /// [`UNKNOWN_RTT_MS`] and [`UNKNOWN_BANDWIDTH`] when nothing was measured): the scheduler
    /// should not be drawn to a region because nothing is known about it. A region with no entry
    /// for itself is a LAN ([`LOCAL`]). A measurement that is not a number, or a negative rtt, or
    /// a bandwidth that is not positive, counts as not measured.
    pub fn between(&self, a: &str, b: &str) -> Link {
        self.between_with(a, b, self.unmeasured())
    }

    pub(crate) fn between_with(&self, a: &str, b: &str, unmeasured: Link) -> Link {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let measured = [(lo, hi), (hi, lo)].into_iter().find_map(|(x, y)| {
            self.links
                .get(&(x.to_string(), y.to_string()))
                .copied()
                .filter(valid)
        });
        match measured {
            Some(link) => link,
            None if a == b => LOCAL,
            None => unmeasured,
        }
    }

    /// What [`Network::between`] assumes for a pair of different regions nobody measured.
    pub(crate) fn unmeasured(&self) -> Link {
        let mut rtt: Option<f64> = None;
        let mut bandwidth: Option<f64> = None;
        for link in self.links.values().filter(|l| valid(l)) {
            rtt = Some(rtt.map_or(link.rtt_ms, |r| r.max(link.rtt_ms)));
            bandwidth = Some(bandwidth.map_or(link.bandwidth, |b| b.min(link.bandwidth)));
        }
        Link {
            rtt_ms: rtt.unwrap_or(UNKNOWN_RTT_MS),
            bandwidth: bandwidth.unwrap_or(UNKNOWN_BANDWIDTH),
        }
    }
}

fn valid(l: &Link) -> bool {
    l.rtt_ms.is_finite() && l.rtt_ms >= 0.0 && l.bandwidth.is_finite() && l.bandwidth > 0.0
}

mod as_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize)]
    struct Out<'a> {
        a: &'a str,
        b: &'a str,
        rtt_ms: f64,
        bandwidth: f64,
    }

    #[derive(Deserialize)]
    struct In {
        a: String,
        b: String,
        rtt_ms: f64,
        bandwidth: f64,
    }

    pub fn serialize<S: Serializer>(
        links: &BTreeMap<(String, String), Link>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(links.iter().map(|((a, b), l)| Out {
            a,
            b,
            rtt_ms: l.rtt_ms,
            bandwidth: l.bandwidth,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(String, String), Link>, D::Error> {
        let list = Vec::<In>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|e| {
                let link = Link {
                    rtt_ms: e.rtt_ms,
                    bandwidth: e.bandwidth,
                };
                ((e.a, e.b), link)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pairs_are_as_bad_as_the_worst_known_and_regions_are_lans() {
        let mut n = Network::default();
        assert_eq!(n.between("x", "y").rtt_ms, UNKNOWN_RTT_MS);
        assert_eq!(n.between("x", "y").bandwidth, UNKNOWN_BANDWIDTH);
        n.insert(
            "a",
            "b",
            Link {
                rtt_ms: 20.0,
                bandwidth: 5e8,
            },
        );
        n.insert(
            "c",
            "b",
            Link {
                rtt_ms: 80.0,
                bandwidth: 1e9,
            },
        );
        assert_eq!(n.between("b", "a").rtt_ms, 20.0);
        assert_eq!(n.between("b", "c").rtt_ms, 80.0);
        assert_eq!(
            n.between("a", "c"),
            Link {
                rtt_ms: 80.0,
                bandwidth: 5e8
            }
        );
        assert_eq!(n.between("a", "a"), LOCAL);
        n.insert(
            "a",
            "b",
            Link {
                rtt_ms: f64::NAN,
                bandwidth: 1.0,
            },
        );
        assert_eq!(
            n.between("a", "b"),
            Link {
                rtt_ms: 80.0,
                bandwidth: 1e9
            }
        );
    }
}

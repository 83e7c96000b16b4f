//! When the source stops pre-copying: the rule on its own, a pure function of the rounds so
//! far, so that every case can be tested without a program or a connection.
//!
//! Pre-copy sends all of memory, then, round after round, what the program wrote meanwhile.
//! It stops when what is left is small (the pause will be short), when rounds stop shrinking
//! (the program writes as fast as we send: more rounds would not shorten the pause), or at the
//! round limit.

/// The stopping rule, from the migration's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PreCopy {
    /// Stop once a round (after the first, full one) finds no more than this many bytes.
    pub(super) stop_below: u64,
    /// Stop after this many rounds in any case.
    pub(super) max_rounds: u32,
}

/// Why pre-copy stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The last round found little enough to send while the program is paused.
    Small,
    /// The last round was not clearly smaller than the one before.
    NotShrinking,
    /// The round limit is reached.
    RoundLimit,
}

impl PreCopy {
    /// After a round: `rounds` holds the bytes each pre-copy round sent, the one just finished
    /// last. None: go on with another round.
    pub(super) fn after(&self, rounds: &[u64]) -> Option<Stop> {
        let done = rounds.len();
        let last = *rounds.last()?;
        // The first round sends everything there is: its size says nothing about the writes.
        if done > 1 && last <= self.stop_below {
            return Some(Stop::Small);
        }
        // Shrinking means by a tenth at least; the first two rounds are not compared (the
        // second is the first to hold only writes).
        if done >= 3 && last >= rounds[done - 2] * 9 / 10 {
            return Some(Stop::NotShrinking);
        }
        if done >= self.max_rounds as usize {
            return Some(Stop::RoundLimit);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: PreCopy = PreCopy {
        stop_below: 100,
        max_rounds: 5,
    };

    #[test]
    fn nothing_is_decided_before_a_round() {
        assert_eq!(RULE.after(&[]), None);
    }

    #[test]
    fn the_first_round_never_stops_for_being_small() {
        assert_eq!(RULE.after(&[0]), None);
        assert_eq!(RULE.after(&[50]), None);
        assert_eq!(RULE.after(&[1 << 30]), None);
    }

    #[test]
    fn a_later_round_at_or_below_the_bound_stops() {
        assert_eq!(RULE.after(&[1000, 100]), Some(Stop::Small));
        assert_eq!(RULE.after(&[1000, 0]), Some(Stop::Small));
        assert_eq!(RULE.after(&[1000, 101]), None);
        // Small wins over the other reasons when several hold.
        assert_eq!(RULE.after(&[1000, 90, 90, 90, 90]), Some(Stop::Small));
        let none = PreCopy {
            stop_below: 0,
            ..RULE
        };
        assert_eq!(none.after(&[1000, 0]), Some(Stop::Small));
        assert_eq!(none.after(&[1000, 1]), None);
    }

    #[test]
    fn rounds_that_stop_shrinking_by_a_tenth_stop() {
        // The second round is not compared with the first.
        assert_eq!(RULE.after(&[1000, 5000]), None);
        assert_eq!(RULE.after(&[1000, 5000, 4499]), None);
        assert_eq!(RULE.after(&[1000, 5000, 4500]), Some(Stop::NotShrinking));
        assert_eq!(RULE.after(&[1000, 500, 600]), Some(Stop::NotShrinking));
        // A tenth of the previous round, rounded down.
        assert_eq!(RULE.after(&[1000, 1005, 903]), None);
        assert_eq!(RULE.after(&[1000, 1005, 904]), Some(Stop::NotShrinking));
    }

    #[test]
    fn the_round_limit_stops() {
        assert_eq!(RULE.after(&[1000, 800, 600, 400]), None);
        assert_eq!(
            RULE.after(&[1000, 800, 600, 400, 200]),
            Some(Stop::RoundLimit)
        );
        // A limit of one, or none at all, allows the first round only.
        for max_rounds in [0, 1] {
            let one = PreCopy { max_rounds, ..RULE };
            assert_eq!(one.after(&[1000]), Some(Stop::RoundLimit));
        }
        let two = PreCopy {
            max_rounds: 2,
            ..RULE
        };
        assert_eq!(two.after(&[1000, 800]), Some(Stop::RoundLimit));
    }
}

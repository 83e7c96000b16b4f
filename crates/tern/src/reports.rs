//! Migration reports as people read them: a cluster's migration (`tern migrate`, `clone`,
//! `drain`) and a migration between two processes (`tern instance migrate`).

use tern_api::{Migration, TransferReport};
use tern_profile::format_size;

pub fn print_migration(m: &Migration) {
    println!(
        "{} {}: {} → {}: {}",
        m.id,
        m.workload,
        m.from,
        m.to,
        m.state()
    );
    if let (Some(step), Some(reason)) = (&m.failed_step, &m.reason) {
        println!("  failed at {step}: {reason}");
    }
    for (i, r) in m.rounds.iter().enumerate() {
        println!(
            "  round {:>2}  {:>10} raw  {:>10} wire  {:>8.1} ms{}",
            i,
            format_size(r.raw_bytes),
            format_size(r.wire_bytes),
            r.ms,
            if i + 1 == m.rounds.len() {
                "  stop-and-copy"
            } else {
                ""
            }
        );
    }
    if m.committed() {
        println!(
            "  pause {:.2} ms, total {:.1} ms, {} on the wire ({} raw) at {:.0} MiB/s; written pages found by {}",
            m.pause_ms,
            m.total_ms,
            format_size(m.bytes),
            format_size(m.bytes_raw),
            m.bandwidth_mib_s,
            m.tracker
        );
    }
}

pub fn print_report(r: &TransferReport) {
    println!("outcome:   {}", r.outcome);
    if let Some(reason) = &r.reason {
        println!(
            "failed:    at {}: {reason}",
            r.failed_step.map_or("?", |s| s.as_str())
        );
    }
    println!(
        "rounds:    {} (written pages found by {})",
        r.rounds.len(),
        r.tracker
    );
    for (i, round) in r.rounds.iter().enumerate() {
        println!(
            "  {:>3}  {:>10} raw  {:>10} wire  {:>8.1} ms{}",
            i,
            format_size(round.raw_bytes),
            format_size(round.wire_bytes),
            round.ms,
            if i + 1 == r.rounds.len() {
                "  (stop-and-copy)"
            } else {
                ""
            }
        );
    }
    println!("pause:     {:.2} ms", r.pause_ms);
    println!(
        "total:     {:.1} ms, {} on the wire ({:.0} MiB/s)",
        r.total_ms,
        format_size(r.bytes_wire),
        r.bandwidth_mib_s
    );
}

//! The daemon's last log line. It counts every event the watches read, and a watch's `events` filter (e.g.
//! `events = ["ADDED", "DELETED"]`) drops some of them before any sink sees them: said alone, the total
//! disagrees with the sinks' own counts logged just before it. So the line says, per watch, how many events
//! went on to its sinks and how many the filter left out.

use crate::config::EventType;
use crate::watch::WatchStats;

/// `stopped after 23 events (pods: 18 to its sinks; web-pods: 2 to its sinks, 3 MODIFIED left out by its
/// events filter)`.
pub(crate) fn stopped_line<'a>(
    watches: impl IntoIterator<Item = (&'a str, WatchStats, &'a [EventType])>,
) -> String {
    let mut total = 0;
    let mut parts = Vec::new();
    for (name, stats, wanted) in watches {
        total += stats.events;
        let mut delivered = 0;
        let mut left_out = Vec::new();
        for t in EventType::ALL {
            let n = stats.events_by_type[t as usize];
            if wanted.contains(&t) {
                delivered += n;
            } else if n > 0 {
                left_out.push(format!("{n} {}", t.as_str()));
            }
        }
        let mut part = format!("{name}: {delivered} to its sinks");
        if !left_out.is_empty() {
            part.push_str(&format!(
                ", {} left out by its events filter",
                left_out.join(" and ")
            ));
        }
        parts.push(part);
    }
    if parts.is_empty() {
        return format!("stopped after {total} events");
    }
    format!("stopped after {total} events ({})", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(by_type: [u64; 3]) -> WatchStats {
        WatchStats {
            events: by_type.iter().sum(),
            events_by_type: by_type,
            ..WatchStats::default()
        }
    }

    #[test]
    fn per_watch_counts_add_up_to_the_total() {
        let all = EventType::ALL;
        let arrivals = [EventType::Added, EventType::Deleted];
        let line = stopped_line([
            ("pods", stats([10, 6, 2]), &all[..]),
            ("web-pods", stats([1, 3, 1]), &arrivals[..]),
        ]);
        assert_eq!(
            line,
            "stopped after 23 events (pods: 18 to its sinks; web-pods: 2 to its sinks, 3 MODIFIED left out by its events filter)"
        );
        assert_eq!(stopped_line([]), "stopped after 0 events");
    }
}

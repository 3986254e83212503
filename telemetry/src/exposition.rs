//! Turns prometheus-client's OpenMetrics text into the Prometheus text format
//! 0.0.4: a counter's `# HELP` and `# TYPE` lines name its `_total` series
//! (as the Go client writes them), and `# UNIT` / `# EOF` lines are left out.
//!
//! Sample lines pass through unchanged; this file parses nothing else.

use std::collections::HashSet;

/// `open_metrics` (without `# EOF`) as Prometheus 0.0.4 text.
pub(crate) fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = descriptor {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_descriptors_name_the_total_series() {
        let om = "# HELP a_batches Batches.\n# TYPE a_batches counter\n\
                  a_batches_total{outcome=\"stored\"} 2\n\
                  # HELP a_lag Lag.\n# TYPE a_lag gauge\n# UNIT a_lag seconds\na_lag 1.5\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_batches_total Batches.\n# TYPE a_batches_total counter\n\
             a_batches_total{outcome=\"stored\"} 2\n\
             # HELP a_lag Lag.\n# TYPE a_lag gauge\na_lag 1.5\n"
        );
    }
}

//! Per-device summaries of stored windows, for `GET /v1/devices` (the
//! dashboard's device list): which series each device has, how many windows,
//! the newest window, rows judged, alarms, escalations, log lines.
//!
//! A pure fold over [`StoredWindow`]s, in any order; it reads no store and
//! serves nothing itself (the handler is in `http/query.rs`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::StoredWindow;

/// Metric whose window count is the device's log lines (one reading per line).
pub const LOG_LINE_METRIC: &str = "log.line_bytes";

/// What the store holds of one device of one gateway.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceSummary {
    pub gateway: String,
    pub device: String,
    /// Windows stored, every series.
    pub windows: u64,
    /// Newest window end (event time, ms since the Unix epoch).
    pub last_end_ms: i64,
    /// Rows judged by a model (sum of verdict `judged`).
    pub judged: u64,
    /// Judged rows above the device threshold.
    pub alarms: u64,
    /// Judgement windows whose verdict is anomalous.
    pub anomalous_windows: u64,
    /// Rows escalated to the cloud model (carried in judgement windows).
    pub escalations: u64,
    /// Log lines (count of `log.line_bytes` windows).
    pub log_lines: u64,
    /// Per series (metric name).
    pub metrics: BTreeMap<String, MetricSummary>,
}

/// One series of a device.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricSummary {
    pub windows: u64,
    /// Oldest and newest window start (event time).
    pub first_start_ms: i64,
    pub last_start_ms: i64,
    /// Width of the newest window (end − start), ms.
    pub last_width_ms: i64,
    /// Its windows carry a model's verdict (a judgement series).
    pub judgement: bool,
    /// Its windows carry a log template (a `log.template.<id>` series).
    pub template: bool,
}

/// Summaries per (gateway, device), ordered by gateway then device.
pub fn summarize<'a>(windows: impl IntoIterator<Item = &'a StoredWindow>) -> Vec<DeviceSummary> {
    let mut out: BTreeMap<(&str, &str), DeviceSummary> = BTreeMap::new();
    for stored in windows {
        let w = &stored.window;
        let d = out
            .entry((stored.gateway.as_str(), w.device.as_str()))
            .or_insert_with(|| DeviceSummary {
                gateway: stored.gateway.clone(),
                device: w.device.clone(),
                last_end_ms: i64::MIN,
                ..DeviceSummary::default()
            });
        d.windows += 1;
        d.last_end_ms = d.last_end_ms.max(w.end_ms);
        if let Some(v) = &w.verdict {
            d.judged += v.judged;
            d.alarms += v.alarms;
            d.anomalous_windows += u64::from(v.anomalous);
        }
        d.escalations += w.escalations.len() as u64;
        if w.metric == LOG_LINE_METRIC {
            d.log_lines += w.count;
        }
        let m = d.metrics.entry(w.metric.clone()).or_insert(MetricSummary {
            first_start_ms: w.start_ms,
            last_start_ms: w.start_ms,
            last_width_ms: w.end_ms - w.start_ms,
            ..MetricSummary::default()
        });
        m.windows += 1;
        m.first_start_ms = m.first_start_ms.min(w.start_ms);
        if w.start_ms >= m.last_start_ms {
            m.last_start_ms = w.start_ms;
            m.last_width_ms = w.end_ms - w.start_ms;
        }
        m.judgement |= w.verdict.is_some();
        m.template |= w.template.is_some();
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{Escalation, LogTemplate, Verdict, WindowSummary};

    fn stored(device: &str, metric: &str, start_ms: i64) -> StoredWindow {
        StoredWindow {
            gateway: "gw".into(),
            epoch: 1,
            seq: 0,
            window: WindowSummary {
                device: device.into(),
                metric: metric.into(),
                start_ms,
                end_ms: start_ms + 60_000,
                count: 3,
                sum: 3.0,
                min: 1.0,
                max: 1.0,
                mean: 1.0,
                stddev: 0.0,
                p50: 1.0,
                p95: 1.0,
                p99: 1.0,
                sketch_alpha: 0.01,
                first: 1.0,
                first_ms: start_ms,
                last: 1.0,
                last_ms: start_ms,
                verdict: None,
                rolled_up: 0,
                template: None,
                escalations: Vec::new(),
            },
        }
    }

    #[test]
    fn folds_windows_per_device_and_series() {
        let mut judged = stored("d1", "anomaly", 60_000);
        judged.window.verdict = Some(Verdict {
            anomalous: true,
            judged: 3,
            alarms: 2,
            score: 1.5,
            confidence: 0.4,
        });
        judged.window.escalations = vec![Escalation {
            ts_ms: 61_000,
            alarm: true,
            score: 1.01,
            confidence: 0.01,
            features: vec![0.0],
            indices: Vec::new(),
            exemplar: None,
        }];
        let mut template = stored("d2", "log.template.3", 0);
        template.window.template = Some(LogTemplate {
            text: "open <*>".into(),
            exemplars: Vec::new(),
        });
        let all = [
            stored("d1", "temp", 120_000),
            judged,
            stored("d1", "temp", 0),
            template,
            stored("d2", LOG_LINE_METRIC, 0),
        ];
        let list = summarize(&all);
        assert_eq!(list.len(), 2);
        let d1 = &list[0];
        assert_eq!((d1.device.as_str(), d1.windows), ("d1", 3));
        assert_eq!(d1.last_end_ms, 180_000);
        assert_eq!((d1.judged, d1.alarms, d1.anomalous_windows), (3, 2, 1));
        assert_eq!(d1.escalations, 1);
        let temp = &d1.metrics["temp"];
        assert_eq!((temp.windows, temp.first_start_ms), (2, 0));
        assert_eq!((temp.last_start_ms, temp.last_width_ms), (120_000, 60_000));
        assert!(d1.metrics["anomaly"].judgement && !temp.judgement);
        let d2 = &list[1];
        assert!(d2.metrics["log.template.3"].template);
        assert_eq!(d2.log_lines, 3);
    }
}

//! The reads of the PostgreSQL store: gateway totals, series windows,
//! escalations and agreement rows, in the embedded store's order.
//!
//! Filters become a WHERE clause with only the conditions given (so indexes
//! apply); text columns are `COLLATE "C"`, so ORDER BY is byte order like the
//! embedded store's keys. It never writes.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use wire::{BatchKey, Escalation, LogTemplate, Verdict, WindowSummary};

use super::rows::to_u64;
use super::{PgError, PgStore};
use crate::agreement;
use crate::store::{
    EscalationQuery, GatewayInfo, SeriesQuery, StoredEscalation, StoredWindow, TeacherSkip,
    TeacherVerdict,
};

/// A WHERE clause under construction, with its parameters.
#[derive(Default)]
struct Filter<'a> {
    conditions: Vec<String>,
    params: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Filter<'a> {
    fn add(&mut self, condition: &str, value: &'a (dyn ToSql + Sync)) {
        self.params.push(value);
        self.conditions
            .push(condition.replace('?', &format!("${}", self.params.len())));
    }

    fn eq(&mut self, column: &str, value: Option<&'a String>) {
        if let Some(v) = value {
            self.add(&format!("{column} = ?"), v);
        }
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

const WINDOW_COLUMNS: &str = "gateway, epoch, seq, idx, device, metric, start_ms, end_ms, count, \
    sum, min, max, mean, stddev, p50, p95, p99, sketch_alpha, first, first_ms, last, last_ms, \
    rolled_up, verdict_anomalous, verdict_judged, verdict_alarms, verdict_score, \
    verdict_confidence, template_text, template_exemplars, escalations";

const ESCALATION_COLUMNS: &str = "gateway, epoch, seq, window_idx, idx, device, series, \
    window_start_ms, ts_ms, alarm, score, confidence, features, teacher_score, \
    teacher_threshold, teacher_alarm, teacher_skipped, feature_indices, exemplar";

impl PgStore {
    /// Totals of every gateway that has stored at least one batch, by id.
    pub async fn gateways(&self) -> Result<Vec<GatewayInfo>, PgError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, batches, windows, last_seen_ms, last_epoch, last_seq, counters, \
                 gauges, gauges_ms, gauges_epoch, gauges_seq FROM gateways ORDER BY id",
                &[],
            )
            .await?;
        rows.iter().map(gateway_info).collect()
    }

    /// Windows matching `q` in (gateway, device, metric, start_ms, epoch, seq,
    /// index) order, at most `q.limit`, each with its escalations.
    pub async fn series(&self, q: &SeriesQuery) -> Result<Vec<StoredWindow>, PgError> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let mut f = Filter::default();
        f.eq("gateway", q.gateway.as_ref());
        f.eq("device", q.device.as_ref());
        f.eq("metric", q.metric.as_ref());
        if let Some(from) = &q.from_ms {
            f.add("start_ms >= ?", from);
        }
        if let Some(to) = &q.to_ms {
            f.add("start_ms < ?", to);
        }
        let sql = format!(
            "SELECT {WINDOW_COLUMNS} FROM windows {} \
             ORDER BY gateway, device, metric, start_ms, epoch, seq, idx LIMIT {limit}",
            f.sql()
        );
        let client = self.pool.get().await?;
        let rows = client.query(&sql, &f.params).await?;
        let mut out = Vec::with_capacity(rows.len());
        // (gateway, epoch, seq, idx) of the windows that carry escalations.
        let mut wanted: HashMap<(String, i64, i64, i32), usize> = HashMap::new();
        for row in &rows {
            let (w, escalations) = stored_window(row)?;
            if escalations > 0 {
                let key = (w.gateway.clone(), row.get(1), row.get(2), row.get(3));
                wanted.insert(key, out.len());
            }
            out.push(w);
        }
        if !wanted.is_empty() {
            let keys: Vec<_> = wanted.keys().cloned().collect();
            let gateways: Vec<&String> = keys.iter().map(|k| &k.0).collect();
            let epochs: Vec<i64> = keys.iter().map(|k| k.1).collect();
            let seqs: Vec<i64> = keys.iter().map(|k| k.2).collect();
            let idxs: Vec<i32> = keys.iter().map(|k| k.3).collect();
            let sql = format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations \
                 WHERE (gateway, epoch, seq, window_idx) IN \
                   (SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int4[])) \
                 ORDER BY gateway, epoch, seq, window_idx, idx"
            );
            let rows = client
                .query(&sql, &[&gateways, &epochs, &seqs, &idxs])
                .await?;
            for row in &rows {
                let key = (row.get(0), row.get(1), row.get(2), row.get(3));
                let e = stored_escalation(row)?;
                if let Some(&i) = wanted.get(&key) {
                    out[i].window.escalations.push(e.escalation);
                }
            }
        }
        Ok(out)
    }

    /// Escalations matching `q` in (gateway, device, ts_ms, epoch, seq,
    /// window, index) order, at most `q.limit`.
    pub async fn escalations(&self, q: &EscalationQuery) -> Result<Vec<StoredEscalation>, PgError> {
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let mut f = Filter::default();
        f.eq("gateway", q.gateway.as_ref());
        f.eq("device", q.device.as_ref());
        f.eq("series", q.series.as_ref());
        let sql = format!(
            "SELECT {ESCALATION_COLUMNS} FROM escalations {} \
             ORDER BY gateway, device, ts_ms, epoch, seq, window_idx, idx LIMIT {limit}",
            f.sql()
        );
        let client = self.pool.get().await?;
        let rows = client.query(&sql, &f.params).await?;
        rows.iter().map(stored_escalation).collect()
    }

    /// What the agreement statistics need of every escalation under the
    /// filters (the feature rows are not read).
    pub async fn agreement_rows(
        &self,
        gateway: Option<&String>,
        device: Option<&String>,
        series: Option<&String>,
    ) -> Result<Vec<agreement::Row>, PgError> {
        let mut f = Filter::default();
        f.eq("gateway", gateway);
        f.eq("device", device);
        f.eq("series", series);
        let sql = format!(
            "SELECT series, confidence, alarm, teacher_alarm, teacher_skipped FROM escalations {} \
             ORDER BY gateway, device, ts_ms, epoch, seq, window_idx, idx",
            f.sql()
        );
        let client = self.pool.get().await?;
        let rows = client.query(&sql, &f.params).await?;
        rows.iter()
            .map(|row| {
                let teacher_alarm = match (row.get::<_, Option<bool>>(3), row.get(4)) {
                    (Some(alarm), _) => Ok(alarm),
                    (None, Some(why)) => Err(skip(why)?.as_str()),
                    (None, None) => Err("not_judged"),
                };
                Ok(agreement::Row {
                    series: row.get(0),
                    confidence: row.get(1),
                    local_alarm: row.get(2),
                    teacher_alarm,
                })
            })
            .collect()
    }
}

fn gateway_info(row: &Row) -> Result<GatewayInfo, PgError> {
    let id: String = row.get(0);
    let last_batch = match (row.get::<_, Option<i64>>(4), row.get::<_, Option<i64>>(5)) {
        (Some(epoch), Some(seq)) => Some(BatchKey {
            gateway: id.clone(),
            epoch: to_u64(epoch),
            seq: to_u64(seq),
        }),
        _ => None,
    };
    let counters = serde_json::from_value(row.get(6))
        .map_err(|e| PgError::Corrupt(format!("gateways.counters of {id}: {e}")))?;
    let gauges = serde_json::from_value(row.get(7))
        .map_err(|e| PgError::Corrupt(format!("gateways.gauges of {id}: {e}")))?;
    Ok(GatewayInfo {
        batches: to_u64(row.get(1)),
        windows: to_u64(row.get(2)),
        last_seen_ms: row.get(3),
        last_batch,
        counters,
        gauges,
        gauges_ms: row.get(8),
        gauges_batch: (to_u64(row.get(9)), to_u64(row.get(10))),
        id,
    })
}

/// A window row (escalations still empty) and how many escalations it carries.
fn stored_window(row: &Row) -> Result<(StoredWindow, i32), PgError> {
    let verdict = row.get::<_, Option<bool>>(23).map(|anomalous| Verdict {
        anomalous,
        judged: to_u64(row.get::<_, Option<i64>>(24).unwrap_or(0)),
        alarms: to_u64(row.get::<_, Option<i64>>(25).unwrap_or(0)),
        score: row.get::<_, Option<f64>>(26).unwrap_or(f64::NAN),
        confidence: row.get::<_, Option<f64>>(27).unwrap_or(f64::NAN),
    });
    let template = match row.get::<_, Option<String>>(28) {
        None => None,
        Some(text) => {
            let exemplars = match row.get::<_, Option<serde_json::Value>>(29) {
                None => Vec::new(),
                Some(v) => serde_json::from_value(v)
                    .map_err(|e| PgError::Corrupt(format!("windows.template_exemplars: {e}")))?,
            };
            Some(LogTemplate { text, exemplars })
        }
    };
    let window = WindowSummary {
        device: row.get(4),
        metric: row.get(5),
        start_ms: row.get(6),
        end_ms: row.get(7),
        count: to_u64(row.get(8)),
        sum: row.get(9),
        min: row.get(10),
        max: row.get(11),
        mean: row.get(12),
        stddev: row.get(13),
        p50: row.get(14),
        p95: row.get(15),
        p99: row.get(16),
        sketch_alpha: row.get(17),
        first: row.get(18),
        first_ms: row.get(19),
        last: row.get(20),
        last_ms: row.get(21),
        verdict,
        rolled_up: row.get::<_, i32>(22) as u32,
        template,
        escalations: Vec::new(),
    };
    let stored = StoredWindow {
        gateway: row.get(0),
        epoch: to_u64(row.get(1)),
        seq: to_u64(row.get(2)),
        window,
    };
    Ok((stored, row.get(30)))
}

fn skip(name: &str) -> Result<TeacherSkip, PgError> {
    TeacherSkip::ALL
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| PgError::Corrupt(format!("escalations.teacher_skipped {name:?}")))
}

fn stored_escalation(row: &Row) -> Result<StoredEscalation, PgError> {
    let teacher = match (row.get(13), row.get(14), row.get(15)) {
        (Some(score), Some(threshold), Some(alarm)) => Some(TeacherVerdict {
            score,
            threshold,
            alarm,
        }),
        _ => None,
    };
    let teacher_skipped = row.get::<_, Option<&str>>(16).map(skip).transpose()?;
    Ok(StoredEscalation {
        gateway: row.get(0),
        epoch: to_u64(row.get(1)),
        seq: to_u64(row.get(2)),
        device: row.get(5),
        series: row.get(6),
        window_start_ms: row.get(7),
        escalation: Escalation {
            ts_ms: row.get(8),
            alarm: row.get(9),
            score: row.get(10),
            confidence: row.get(11),
            features: row.get(12),
            indices: row
                .get::<_, Option<Vec<i64>>>(17)
                .unwrap_or_default()
                .into_iter()
                .map(|i| {
                    u32::try_from(i)
                        .map_err(|_| PgError::Corrupt(format!("escalations.feature_indices {i}")))
                })
                .collect::<Result<_, _>>()?,
            exemplar: row.get(18),
        },
        teacher,
        teacher_skipped,
    })
}

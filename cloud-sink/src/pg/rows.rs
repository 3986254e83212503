//! How records map onto PostgreSQL rows: the write statements, the column
//! arrays a batch's windows are inserted from (one `unnest` statement per
//! batch), and the checks a batch must pass to be storable.
//!
//! Reading rows back into records is in `query.rs`; no I/O happens here.

use tokio_postgres::types::ToSql;
use wire::{Body, Envelope};

use crate::store::{TeacherJudgement, TeacherSkip};

/// The batch ledger row; inserts nothing when the key is already there.
pub(super) const INSERT_BATCH: &str = "INSERT INTO batches \
    (gateway, epoch, seq, body_sha256, created_ms, received_ms, windows) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING";

/// Milliseconds to timestamptz, clamped into PostgreSQL's range.
macro_rules! ms_to_time {
    ($col:literal) => {
        concat!(
            "to_timestamp(least(greatest(",
            $col,
            ", -210000000000000), 9000000000000000) / 1000.0)"
        )
    };
}

/// Every window of a batch, from parallel arrays.
pub(super) const INSERT_WINDOWS: &str = concat!(
    "INSERT INTO windows (gateway, epoch, seq, idx, device, metric, time, start_ms, end_ms, \
     count, sum, min, max, mean, stddev, p50, p95, p99, sketch_alpha, first, first_ms, last, \
     last_ms, rolled_up, verdict_anomalous, verdict_judged, verdict_alarms, verdict_score, \
     verdict_confidence, template_text, template_exemplars, escalations) \
     SELECT $1, $2, $3, u.idx, u.device, u.metric, ",
    ms_to_time!("u.start_ms"),
    ", u.start_ms, u.end_ms, \
     u.count, u.sum, u.min, u.max, u.mean, u.stddev, u.p50, u.p95, u.p99, u.sketch_alpha, \
     u.first, u.first_ms, u.last, u.last_ms, u.rolled_up, u.va, u.vj, u.vl, u.vs, u.vc, \
     u.tt, u.te, u.esc \
     FROM unnest($4::int4[], $5::text[], $6::text[], $7::int8[], $8::int8[], $9::int8[], \
     $10::float8[], $11::float8[], $12::float8[], $13::float8[], $14::float8[], $15::float8[], \
     $16::float8[], $17::float8[], $18::float8[], $19::float8[], $20::int8[], $21::float8[], \
     $22::int8[], $23::int4[], $24::bool[], $25::int8[], $26::int8[], $27::float8[], \
     $28::float8[], $29::text[], $30::jsonb[], $31::int4[]) \
     AS u(idx, device, metric, start_ms, end_ms, count, sum, min, max, mean, stddev, p50, p95, \
     p99, sketch_alpha, first, first_ms, last, last_ms, rolled_up, va, vj, vl, vs, vc, tt, te, esc)"
);

/// One escalation with its teacher verdict.
pub(super) const INSERT_ESCALATION: &str = concat!(
    "INSERT INTO escalations (gateway, epoch, seq, window_idx, idx, device, series, \
     window_start_ms, time, ts_ms, alarm, score, confidence, features, teacher_score, \
     teacher_threshold, teacher_alarm, teacher_skipped, feature_indices, exemplar) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, ",
    ms_to_time!("$9::int8"),
    ", $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
);

/// The gateway's totals: created by its first batch, summed in after that
/// (the row lock orders concurrent batches of one gateway). Gauges are
/// replaced, not summed, and only by a batch that carries some (`$7` is `{}`
/// when it carries none) with a higher (epoch, seq) than theirs, as in the
/// embedded store (`$4`, `$5` are bigints; epochs and seqs stay below 2^63).
/// The condition under which a batch's gauges replace the stored ones.
macro_rules! newer_gauges {
    () => {
        "EXCLUDED.gauges <> '{}'::jsonb AND \
         (EXCLUDED.last_epoch, EXCLUDED.last_seq) > (gateways.gauges_epoch, gateways.gauges_seq)"
    };
}

pub(super) const UPSERT_GATEWAY: &str = concat!(
    "INSERT INTO gateways \
    (id, batches, windows, last_seen_ms, last_epoch, last_seq, counters, \
     gauges, gauges_epoch, gauges_seq, gauges_ms) \
    VALUES ($1, 1, $2, $3, $4, $5, merge_counters('{}'::jsonb, $6), $7, \
      CASE WHEN $7 = '{}'::jsonb THEN 0::bigint ELSE $4 END, \
      CASE WHEN $7 = '{}'::jsonb THEN 0::bigint ELSE $5 END, \
      CASE WHEN $7 = '{}'::jsonb THEN 0::bigint ELSE $3 END) \
    ON CONFLICT (id) DO UPDATE SET \
      batches = gateways.batches + 1, \
      windows = gateways.windows + EXCLUDED.windows, \
      last_seen_ms = EXCLUDED.last_seen_ms, \
      last_epoch = EXCLUDED.last_epoch, \
      last_seq = EXCLUDED.last_seq, \
      counters = merge_counters(gateways.counters, EXCLUDED.counters), \
      gauges = CASE WHEN ",
    newer_gauges!(),
    " THEN EXCLUDED.gauges ELSE gateways.gauges END, \
      gauges_epoch = CASE WHEN ",
    newer_gauges!(),
    " THEN EXCLUDED.last_epoch ELSE gateways.gauges_epoch END, \
      gauges_seq = CASE WHEN ",
    newer_gauges!(),
    " THEN EXCLUDED.last_seq ELSE gateways.gauges_seq END, \
      gauges_ms = CASE WHEN ",
    newer_gauges!(),
    " THEN EXCLUDED.last_seen_ms ELSE gateways.gauges_ms END"
);

/// A wire `u64` as stored in a bigint (two's complement; lossless both ways).
pub(super) fn to_i64(v: u64) -> i64 {
    v as i64
}

/// A bigint back to the wire's `u64`.
pub(super) fn to_u64(v: i64) -> u64 {
    v as u64
}

/// `Err(what)` when the batch holds text PostgreSQL cannot store (NUL) in
/// a field [`without_nul`] does not replace: the gateway id (from the
/// sink's own config) and counter names (the agent's fixed reason codes).
pub(super) fn check_storable(env: &Envelope, body: &Body) -> Result<(), String> {
    let nul = |field: &str, s: &str| {
        if s.contains('\0') {
            Err(format!("{field} contains a NUL character"))
        } else {
            Ok(())
        }
    };
    nul("gateway", &env.gateway)?;
    for reason in body.counters.0.keys() {
        nul("counter name", reason)?;
    }
    Ok(())
}

/// PostgreSQL text cannot hold NUL, but field data can (a device name in a
/// JSON payload, a binary log line kept as an exemplar). Refusing the batch
/// would block its gateway's outbox for good (the agent retries all but
/// 409), so a copy of the body with each NUL in a window's device, metric,
/// template text or exemplar, or an escalation's exemplar, replaced by U+FFFD
/// is stored instead; `None`
/// when there is none. The embedded store keeps the original bytes.
pub(super) fn without_nul(body: &Body) -> Option<Body> {
    let has = |s: &String| s.contains('\0');
    let any = body.windows.iter().any(|w| {
        has(&w.device)
            || has(&w.metric)
            || w.template
                .as_ref()
                .is_some_and(|t| has(&t.text) || t.exemplars.iter().any(has))
            || w.escalations
                .iter()
                .any(|e| e.exemplar.as_ref().is_some_and(has))
    });
    if !any {
        return None;
    }
    let fix = |s: &mut String| {
        if s.contains('\0') {
            *s = s.replace('\0', "\u{FFFD}");
        }
    };
    let mut copy = body.clone();
    for w in &mut copy.windows {
        fix(&mut w.device);
        fix(&mut w.metric);
        if let Some(t) = &mut w.template {
            fix(&mut t.text);
            t.exemplars.iter_mut().for_each(fix);
        }
        for e in &mut w.escalations {
            if let Some(x) = &mut e.exemplar {
                fix(x);
            }
        }
    }
    Some(copy)
}

/// The windows of one batch as column arrays (parameters $4..$31).
#[derive(Debug, Default)]
pub(super) struct WindowColumns {
    gateway: String,
    epoch: i64,
    seq: i64,
    idx: Vec<i32>,
    device: Vec<String>,
    metric: Vec<String>,
    start_ms: Vec<i64>,
    end_ms: Vec<i64>,
    count: Vec<i64>,
    stats: [Vec<f64>; 9],
    first: Vec<f64>,
    first_ms: Vec<i64>,
    last: Vec<f64>,
    last_ms: Vec<i64>,
    rolled_up: Vec<i32>,
    va: Vec<Option<bool>>,
    vj: Vec<Option<i64>>,
    vl: Vec<Option<i64>>,
    vs: Vec<Option<f64>>,
    vc: Vec<Option<f64>>,
    tt: Vec<Option<String>>,
    te: Vec<Option<serde_json::Value>>,
    esc: Vec<i32>,
}

impl WindowColumns {
    pub(super) fn of(env: &Envelope, body: &Body) -> WindowColumns {
        let mut c = WindowColumns {
            gateway: env.gateway.clone(),
            epoch: to_i64(env.epoch),
            seq: to_i64(env.seq),
            ..WindowColumns::default()
        };
        for (i, w) in body.windows.iter().enumerate() {
            c.idx.push(i32::try_from(i).unwrap_or(i32::MAX));
            c.device.push(w.device.clone());
            c.metric.push(w.metric.clone());
            c.start_ms.push(w.start_ms);
            c.end_ms.push(w.end_ms);
            c.count.push(to_i64(w.count));
            let stats = [
                w.sum,
                w.min,
                w.max,
                w.mean,
                w.stddev,
                w.p50,
                w.p95,
                w.p99,
                w.sketch_alpha,
            ];
            for (column, v) in c.stats.iter_mut().zip(stats) {
                column.push(v);
            }
            c.first.push(w.first);
            c.first_ms.push(w.first_ms);
            c.last.push(w.last);
            c.last_ms.push(w.last_ms);
            c.rolled_up.push(w.rolled_up as i32);
            c.va.push(w.verdict.map(|v| v.anomalous));
            c.vj.push(w.verdict.map(|v| to_i64(v.judged)));
            c.vl.push(w.verdict.map(|v| to_i64(v.alarms)));
            c.vs.push(w.verdict.map(|v| v.score));
            c.vc.push(w.verdict.map(|v| v.confidence));
            c.tt.push(w.template.as_ref().map(|t| t.text.clone()));
            c.te.push(
                w.template
                    .as_ref()
                    .map(|t| serde_json::Value::from(t.exemplars.clone())),
            );
            c.esc
                .push(i32::try_from(w.escalations.len()).unwrap_or(i32::MAX));
        }
        c
    }

    /// Statement parameters in `INSERT_WINDOWS` order ($1..$31).
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let s = &self.stats;
        vec![
            &self.gateway,
            &self.epoch,
            &self.seq,
            &self.idx,
            &self.device,
            &self.metric,
            &self.start_ms,
            &self.end_ms,
            &self.count,
            &s[0],
            &s[1],
            &s[2],
            &s[3],
            &s[4],
            &s[5],
            &s[6],
            &s[7],
            &s[8],
            &self.first,
            &self.first_ms,
            &self.last,
            &self.last_ms,
            &self.rolled_up,
            &self.va,
            &self.vj,
            &self.vl,
            &self.vs,
            &self.vc,
            &self.tt,
            &self.te,
            &self.esc,
        ]
    }
}

/// One escalation row's values (parameters of `INSERT_ESCALATION`).
#[derive(Debug)]
pub(super) struct EscalationRow {
    gateway: String,
    epoch: i64,
    seq: i64,
    window_idx: i32,
    idx: i32,
    device: String,
    series: String,
    window_start_ms: i64,
    ts_ms: i64,
    alarm: bool,
    score: f64,
    confidence: f64,
    features: Vec<f32>,
    teacher_score: Option<f64>,
    teacher_threshold: Option<f64>,
    teacher_alarm: Option<bool>,
    teacher_skipped: Option<&'static str>,
    /// Columns of a sparse row; `None` for a dense one.
    feature_indices: Option<Vec<i64>>,
    exemplar: Option<String>,
}

impl EscalationRow {
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.gateway,
            &self.epoch,
            &self.seq,
            &self.window_idx,
            &self.idx,
            &self.device,
            &self.series,
            &self.window_start_ms,
            &self.ts_ms,
            &self.alarm,
            &self.score,
            &self.confidence,
            &self.features,
            &self.teacher_score,
            &self.teacher_threshold,
            &self.teacher_alarm,
            &self.teacher_skipped,
            &self.feature_indices,
            &self.exemplar,
        ]
    }
}

/// Every escalation of the batch with its judgement (`no_teacher` when the
/// caller gave none), as in `EmbeddedStore::put_batch`.
pub(super) fn escalation_rows(
    env: &Envelope,
    body: &Body,
    teacher: &[Vec<TeacherJudgement>],
) -> Vec<EscalationRow> {
    let mut out = Vec::new();
    for (w_index, w) in body.windows.iter().enumerate() {
        let judged = teacher.get(w_index);
        for (e_index, e) in w.escalations.iter().enumerate() {
            let judgement = judged.and_then(|j| j.get(e_index)).copied();
            let (verdict, skipped) = match judgement {
                Some(TeacherJudgement::Judged(v)) => (Some(v), None),
                Some(TeacherJudgement::Skipped(why)) => (None, Some(why)),
                None => (None, Some(TeacherSkip::NoTeacher)),
            };
            out.push(EscalationRow {
                gateway: env.gateway.clone(),
                epoch: to_i64(env.epoch),
                seq: to_i64(env.seq),
                window_idx: i32::try_from(w_index).unwrap_or(i32::MAX),
                idx: i32::try_from(e_index).unwrap_or(i32::MAX),
                device: w.device.clone(),
                series: w.metric.clone(),
                window_start_ms: w.start_ms,
                ts_ms: e.ts_ms,
                alarm: e.alarm,
                score: e.score,
                confidence: e.confidence,
                features: e.features.clone(),
                teacher_score: verdict.map(|v| v.score),
                teacher_threshold: verdict.map(|v| v.threshold),
                teacher_alarm: verdict.map(|v| v.alarm),
                teacher_skipped: skipped.map(TeacherSkip::as_str),
                feature_indices: (!e.indices.is_empty())
                    .then(|| e.indices.iter().map(|&i| i64::from(i)).collect()),
                exemplar: e.exemplar.clone(),
            });
        }
    }
    out
}

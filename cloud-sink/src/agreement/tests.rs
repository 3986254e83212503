//! Agreement statistics on a crafted set whose every count is known by hand.

use super::*;

fn row(series: &str, confidence: f64, local: bool, teacher: Result<bool, &'static str>) -> Row {
    Row {
        series: series.into(),
        confidence,
        local_alarm: local,
        teacher_alarm: teacher,
    }
}

fn crafted() -> Vec<Row> {
    vec![
        row("anomaly", 0.001, true, Ok(true)),
        row("anomaly", 0.004, true, Ok(false)),
        row("anomaly", 0.012, false, Ok(false)),
        row("anomaly", 0.019, false, Ok(true)),
        row("anomaly", 0.0349, false, Ok(false)),
        row("anomaly", 0.02, false, Err("no_teacher")),
        row("anomaly", 0.025, true, Err("width")),
        row("other", 0.5, true, Ok(true)),
    ]
}

fn counts(b: &Bucket) -> (u64, u64, u64) {
    (b.judged, b.agree, b.disagree)
}

#[test]
fn totals_table_and_buckets_on_a_crafted_set() {
    let r = report(&crafted(), 4, Some(0.04));
    assert_eq!(r.range, [0.0, 0.04]);
    let all = &r.overall;
    assert_eq!((all.escalations, all.judged), (8, 6));
    assert_eq!((all.agree, all.disagree), (4, 2));
    assert_eq!(all.agreement_rate, Some(4.0 / 6.0));
    assert_eq!(all.not_judged["no_teacher"], 1);
    assert_eq!(all.not_judged["width"], 1);
    assert_eq!(all.not_judged["model_error"], 0);
    assert_eq!(
        all.table,
        Table {
            local_alarm_teacher_alarm: 2,
            local_alarm_teacher_normal: 1,
            local_normal_teacher_alarm: 1,
            local_normal_teacher_normal: 2,
        }
    );
    let b: Vec<_> = all.buckets.iter().map(counts).collect();
    // [0, .01): 0.001 agree, 0.004 not; [.01, .02): 0.012 agree, 0.019 not;
    // [.02, .03): only unjudged rows; [.03, .04]: 0.0349 and 0.5 (clamped), both agree.
    assert_eq!(b, [(2, 1, 1), (2, 1, 1), (0, 0, 0), (2, 2, 0)]);
    assert_eq!(all.buckets[0].agreement_rate, Some(0.5));
    assert_eq!(all.buckets[2].agreement_rate, None);
    assert!((all.buckets[1].from - 0.01).abs() < 1e-12);
    assert!((all.buckets[3].to - 0.04).abs() < 1e-12);

    let anomaly = &r.by_series["anomaly"];
    assert_eq!(
        (anomaly.escalations, anomaly.judged, anomaly.agree),
        (7, 5, 3)
    );
    assert_eq!(anomaly.buckets[3].judged, 1);
    let other = &r.by_series["other"];
    assert_eq!((other.escalations, other.judged, other.agree), (1, 1, 1));
    assert_eq!(other.table.local_alarm_teacher_alarm, 1);
}

#[test]
fn default_range_is_the_largest_confidence_rounded_up() {
    let rows: Vec<Row> = crafted()
        .into_iter()
        .filter(|r| r.series == "anomaly")
        .collect();
    let r = report(&rows, DEFAULT_BUCKETS, None);
    assert!((r.range[1] - 0.035).abs() < 1e-12, "{:?}", r.range);
    assert_eq!(r.overall.buckets.len(), 10);
    // 0.0349 is in the last bucket, 0.001 and 0.004 in [0, 0.0035) and [0.0035, 0.007).
    assert_eq!(r.overall.buckets[9].judged, 1);
    assert_eq!(counts(&r.overall.buckets[0]), (1, 1, 0));
    assert_eq!(counts(&r.overall.buckets[1]), (1, 0, 1));
    let judged: u64 = r.overall.buckets.iter().map(|b| b.judged).sum();
    assert_eq!(judged, r.overall.judged);
}

#[test]
fn empty_input_and_nice_ceil() {
    let r = report(&[], 10, None);
    assert_eq!(r.range, [0.0, 1.0]);
    assert_eq!(r.overall.escalations, 0);
    assert_eq!(r.overall.agreement_rate, None);
    assert!(r.by_series.is_empty());
    assert!((nice_ceil(0.0349) - 0.035).abs() < 1e-12);
    assert!((nice_ceil(0.035) - 0.035).abs() < 1e-12);
    assert!((nice_ceil(0.31) - 0.31).abs() < 1e-12);
    assert!((nice_ceil(0.999) - 1.0).abs() < 1e-12);
    assert_eq!(nice_ceil(0.0), 1.0);
    assert_eq!(nice_ceil(f64::NAN), 1.0);
}

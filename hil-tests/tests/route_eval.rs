//! Hybrid routing meets its targets on SKAB and BGL: at the chosen student-confidence threshold
//! at least 80% of events are decided on the gateway and the routed F1 is within 0.5 point of
//! the teacher alone (both models through the agent's Rust path; data read in place).

use hil_tests::route_eval::{bgl_events, route, skab_events, MIN_LOCAL};

#[test]
fn routing_keeps_most_events_local_at_the_teachers_f1() {
    let data = hil_tests::paths::data_dir();
    if !data.join("SKAB").is_dir() || !data.join("loghub/BGL").is_dir() {
        hil_tests::require_or_skip(&format!(
            "SKAB or BGL data not found under {}",
            data.display()
        ));
        return;
    }
    let models = hil_tests::paths::workspace_root().join("models");
    let skab = skab_events(&data.join("SKAB"), &models).unwrap();
    let bgl = bgl_events(
        &data.join("loghub/BGL/BGL_first1000.log_structured.csv"),
        &models,
    )
    .unwrap();
    for (name, events) in [("SKAB", skab), ("BGL", bgl)] {
        let t = route(&events);
        let p = t.points[t.chosen.expect("some threshold decides 80% locally")];
        eprintln!(
            "{name}: {} events, student F1 {:.4}, teacher F1 {:.4}, routed F1 {:.4} with {:.1}% local (threshold {:.4})",
            t.events,
            t.student.f1(),
            t.teacher.f1(),
            p.routed.f1(),
            100.0 * p.local,
            p.threshold
        );
        assert!(t.events > 900, "{name}: too few events");
        assert!(p.local >= MIN_LOCAL);
        assert!(t.meets_targets(), "{name}: {t:?}");
    }
}

//! Log summaries are smaller than the raw log: HDFS and OpenSSH samples replayed through the
//! agent's pipeline at 1,000 lines a minute ship a fraction of their bytes, every line is
//! counted by exactly one template window, and with `exemplars = 0` no line text leaves.
//! Reads Loghub in place; the full table per system comes from `log-uplink` (BENCHMARKS.md).

use hil_tests::log_uplink::{raw_log, read_lines, replay};
use hil_tests::loghub_eval::discover;

#[test]
fn summaries_ship_a_fraction_of_the_raw_bytes() {
    let loghub = hil_tests::paths::data_dir().join("loghub");
    let systems = match discover(&loghub) {
        Ok(s) if !s.is_empty() => s,
        other => {
            assert!(
                std::env::var_os("EDGE_REQUIRE_SERVICES").is_none(),
                "no Loghub data under {}: {other:?}",
                loghub.display()
            );
            eprintln!("SKIP: no Loghub data under {}", loghub.display());
            return;
        }
    };
    for name in ["HDFS", "OpenSSH"] {
        let system = systems.iter().find(|s| s.name == name).unwrap();
        let lines = read_lines(&raw_log(system)).unwrap();
        let with = replay(&lines, 1000, 3).unwrap();
        let without = replay(&lines, 1000, 0).unwrap();
        eprintln!("{name}: with exemplars {with:?}\n{name}: without {without:?}");
        for r in [&with, &without] {
            assert_eq!(r.lines, lines.len() as u64);
            assert_eq!(
                r.template_lines, r.lines,
                "every line in one template window"
            );
            assert!(r.new_templates > 0 && r.new_templates < r.lines / 10);
            assert!(
                r.reduction() > 4.0,
                "{name}: {} raw bytes became {} shipped",
                r.raw_bytes,
                r.shipped_bytes
            );
        }
        assert!(with.exemplars > 0);
        assert_eq!(without.exemplars, 0);
        assert!(without.shipped_bytes < with.shipped_bytes);
    }
}

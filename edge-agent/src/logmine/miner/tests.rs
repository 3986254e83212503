//! The miner's tests: lines sharing a template, variables, constants kept
//! apart, the bounded store, the mode rule.

use super::*;

fn miner() -> TemplateMiner {
    TemplateMiner::new(MinerConfig::default()).expect("default config is valid")
}

#[test]
fn same_shape_lines_share_a_template() {
    let mut m = miner();
    let a = m.mine("Received block blk_123 of size 67108864 from /10.0.0.1");
    let b = m.mine("Received block blk_456 of size 1024 from /10.0.0.2");
    assert!(a.is_new);
    assert!(!b.is_new);
    assert_eq!(a.id, b.id);
    assert_eq!(b.params.as_slice(), &[1024.0]);
    assert_eq!(
        m.template_text(a.id).as_deref(),
        Some("Received block <*> of size <*> from <*>")
    );
}

#[test]
fn a_varying_word_becomes_a_variable_after_enough_values() {
    let mut m = miner();
    let ids: Vec<u32> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| m.mine(&format!("session opened for user {u} by sshd")).id)
        .collect();
    let last = m.resolve(ids[3]);
    assert!(ids.iter().all(|&i| m.resolve(i) == last), "{ids:?}");
    assert_eq!(
        m.template_text(last).as_deref(),
        Some("session opened for user <*> by sshd")
    );
    assert!(m.stats().merges >= 3);
}

#[test]
fn two_constants_do_not_merge() {
    let mut m = miner();
    let mut acc = 0;
    let mut fail = 0;
    for i in 0..20 {
        acc = m
            .mine(&format!(
                "Accepted password for root from 10.0.0.{i} port 22"
            ))
            .id;
        fail = m
            .mine(&format!("Failed password for root from 10.0.0.{i} port 22"))
            .id;
    }
    assert_ne!(m.resolve(acc), m.resolve(fail));
}

#[test]
fn store_stays_bounded() {
    let cfg = MinerConfig {
        max_templates: 32,
        ..MinerConfig::default()
    };
    let mut m = TemplateMiner::new(cfg).expect("valid");
    let words = [
        "alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta",
    ];
    for i in 0..2000usize {
        let line = format!(
            "{} {} {}",
            words[i % 8],
            words[(i / 8) % 8],
            words[(i / 64) % 8]
        );
        m.mine(&line);
        assert!(m.stats().templates <= 32);
    }
    assert!(m.stats().evictions > 0);
}

#[test]
fn mode_prefers_most_common_then_lowest() {
    assert_eq!(mode_lowest([5, 3, 5, 3, 9].into_iter()), Some(3));
    assert_eq!(mode_lowest([5, 5, 3].into_iter()), Some(5));
    assert_eq!(mode_lowest(std::iter::empty()), None);
}

//! The template store's tests: LRU eviction counted with ids never reused,
//! aliases moving counts, the cap on raw value sets.

use super::*;
use crate::logmine::token::{tokenize, Masks};

fn template(line: &str, now: u64) -> Template {
    let mut toks = Vec::new();
    tokenize(line, &Masks::default(), 64, &mut toks);
    Template::from_line(&toks, line, 3, now)
}

#[test]
fn eviction_is_lru_and_counted_and_ids_are_not_reused() {
    let mut s = Store::new(16, 3);
    let mut ids = Vec::new();
    for i in 0..16u64 {
        let line = format!("event {}", ["a", "b", "c", "d"][(i % 4) as usize]).repeat(1)
            + &" x".repeat(i as usize);
        ids.push(s.insert(template(&line, i)));
    }
    // Touch the oldest so it survives.
    if let Some(t) = s.templates.get_mut(&ids[0]) {
        t.last_used = 100;
    }
    let new = s.insert(template("fresh line", 101));
    assert_eq!(new, 16);
    assert_eq!(s.counters.evictions, 1);
    assert!(s.templates.contains_key(&ids[0]));
    assert!(!s.templates.contains_key(&ids[1]));
    assert!(s.templates.len() <= 16);
}

#[test]
fn alias_moves_counts_and_resolves() {
    let mut s = Store::new(100, 3);
    let a = s.insert(template("user alice logged in", 1));
    let b = s.insert(template("user bob logged in", 2));
    s.alias(a, b);
    assert_eq!(s.resolve(a), b);
    assert_eq!(s.templates[&b].count, 2);
    assert_eq!(s.counters.merges, 1);
    assert!(s.bytes() > 0);
}

#[test]
fn raw_sets_cap_at_k() {
    let mut t = template("size 1", 0);
    assert!(!t.add_raw(1, 7, 3));
    assert!(t.add_raw(1, 8, 3));
    assert!(!t.add_raw(1, 9, 3));
    assert_eq!(t.raw_set(1, 3).len(), 3);
    assert!(!t.add_raw(99, 1, 3));
}

//! The store's behaviour: dedupe, coalescing, parking, pruning, counters, damaged records,
//! reopening.

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    (dir, store)
}

const DAY: Duration = Duration::from_secs(86400);

#[test]
fn the_same_delivery_is_recorded_once() {
    let (_d, s) = store();
    assert!(matches!(
        s.record_event("k1", 5, 1000, DAY).expect("ok"),
        Recorded::New { .. }
    ));
    assert_eq!(
        s.record_event("k1", 5, 2000, DAY).expect("ok"),
        Recorded::Duplicate { requeued: true }
    );
    let q = s.queued(5).expect("ok").expect("queued");
    assert_eq!(q.event_ids.len(), 1, "not recorded as an event");
    assert_eq!(
        q.generation, 2,
        "but a round already reading the deal runs again"
    );
    // Processed since: the same key queues one more read, without recording an event.
    s.complete(5, q.generation).expect("ok");
    assert_eq!(
        s.record_event("k1", 5, 3000, DAY).expect("ok"),
        Recorded::Duplicate { requeued: true }
    );
    let q = s.queued(5).expect("ok").expect("queued again");
    assert!(q.event_ids.is_empty());
}

#[test]
fn a_delivery_outside_the_window_is_recorded_again() {
    let (_d, s) = store();
    s.record_event("k1", 5, 0, Duration::from_secs(1))
        .expect("ok");
    assert!(matches!(
        s.record_event("k1", 5, 5000, Duration::from_secs(1))
            .expect("ok"),
        Recorded::New { .. }
    ));
}

#[test]
fn events_for_one_deal_coalesce_and_a_late_event_survives_completion() {
    let (_d, s) = store();
    s.record_event("a", 7, 0, DAY).expect("ok");
    s.record_event("b", 7, 0, DAY).expect("ok");
    let q = s.queued(7).expect("ok").expect("queued");
    assert_eq!((q.events, q.generation), (2, 2));
    // A worker read generation 2; an event arrives while it works.
    s.record_event("c", 7, 0, DAY).expect("ok");
    assert!(
        s.complete(7, 2).expect("ok").is_some(),
        "the late event keeps the deal queued"
    );
    assert!(s.complete(7, 3).expect("ok").is_none());
    assert!(s.queued(7).expect("ok").is_none());
}

#[test]
fn failures_park_the_job_after_max_attempts_and_it_can_be_retried() {
    let (_d, s) = store();
    s.enqueue(9, 0).expect("ok");
    for _ in 0..3 {
        s.fail(9, "boom", 0, 3).expect("ok");
    }
    let q = s.queued(9).expect("ok").expect("queued");
    assert!(q.parked);
    assert_eq!(q.last_error.as_deref(), Some("boom"));
    assert_eq!(s.retry_parked(None).expect("ok"), vec![9]);
    assert!(!s.queued(9).expect("ok").expect("queued").parked);
}

#[test]
fn old_entries_are_pruned_but_not_those_with_pending_effects() {
    let (_d, s) = store();
    let entry = |id: u64, at: u64| EntryRecord {
        v: RECORD_VERSION,
        deal_id: 1,
        entry: crate::rules::StageEntry {
            id,
            type_id: 2,
            stage_id: "NEW".into(),
            category_id: 0,
            semantic: crate::rules::StageSemantic::Process,
            created_time: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00")
                .expect("time"),
        },
        recorded_at_ms: at,
        action: EntryAction::Acted,
        ruleset_version: "v".into(),
        decisions: Vec::new(),
        event_ids: Vec::new(),
        note: None,
    };
    let effect = |entry_id: u64, state: EffectState| EffectRecord {
        v: RECORD_VERSION,
        deal_id: 1,
        entry_id,
        rule: "r".into(),
        index: 0,
        kind: EffectKind::Task,
        method: "tasks.task.add".into(),
        params: serde_json::Value::Null,
        marker: "m".into(),
        state,
        attempts: 1,
        updated_at_ms: 0,
        subject: None,
    };
    s.commit_deal(
        1,
        &DealState::default(),
        (
            &[entry(10, 100), entry(11, 100), entry(12, 5_000)],
            &[
                effect(10, EffectState::Done { id: "7".into() }),
                effect(11, EffectState::Pending),
            ],
        ),
        &[],
    )
    .expect("commit");
    assert_eq!(s.prune_entries(1_000).expect("prune"), 1);
    let left: Vec<u64> = s
        .entries(1)
        .expect("entries")
        .iter()
        .map(|e| e.entry.id)
        .collect();
    assert_eq!(left, vec![11, 12]);
    assert_eq!(s.effects(1).expect("effects").len(), 1);
}

#[test]
fn the_queue_counters_agree_with_the_tree_after_every_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agree = |s: &Store, what: &str| {
        let counted = s.trees().expect("open").count_queue().expect("count");
        assert_eq!((s.queue_len(), s.parked_len()), counted, "after {what}");
    };
    {
        let s = Store::open(dir.path()).expect("open");
        s.record_event("a", 1, 0, DAY).expect("ok");
        s.record_event("a", 1, 0, DAY).expect("ok");
        s.record_event("b", 2, 0, DAY).expect("ok");
        s.enqueue(3, 0).expect("ok");
        s.enqueue(3, 0).expect("ok");
        agree(&s, "recording and queueing");
        s.fail(2, "boom", 0, 1).expect("ok");
        s.fail(2, "boom", 0, 1).expect("ok");
        agree(&s, "parking");
        s.postpone(3, 10, "later").expect("ok");
        s.record_event("c", 2, 0, DAY).expect("ok");
        agree(&s, "an event for a parked deal");
        s.fail(2, "boom", 0, 1).expect("ok");
        assert_eq!(s.retry_parked(None).expect("ok"), vec![2]);
        agree(&s, "a retry");
        let generation = s.queued(1).expect("ok").expect("queued").generation;
        s.complete(1, generation).expect("ok");
        s.complete(1, generation).expect("ok");
        s.complete(99, 1).expect("ok");
        agree(&s, "completions");
        assert_eq!((s.queue_len(), s.parked_len()), (2, 0));
        s.fail(3, "boom", 0, 1).expect("ok");
        s.flush().expect("flush");
    }
    let s = reopen(dir.path());
    assert_eq!((s.queue_len(), s.parked_len()), (2, 1), "counted at open");
}

#[test]
fn the_first_start_is_recorded_once() {
    let (_d, s) = store();
    assert_eq!(s.first_start_ms().expect("ok"), None);
    assert_eq!(s.init_first_start_ms(1_000).expect("ok"), 1_000);
    assert_eq!(
        s.init_first_start_ms(2_000).expect("ok"),
        1_000,
        "the first is kept"
    );
    assert_eq!(s.first_start_ms().expect("ok"), Some(1_000));
}

#[test]
fn the_history_floor_is_set_once() {
    let (_d, s) = store();
    assert_eq!(s.history_floor().expect("ok"), None);
    assert_eq!(s.init_history_floor(42).expect("ok"), 42);
    assert_eq!(s.init_history_floor(99).expect("ok"), 42);
    assert_eq!(s.sweep_cursor().expect("ok"), Some(42));
}

#[test]
fn a_damaged_record_is_counted_and_check_reports_its_tree_and_key() {
    let (_d, s) = store();
    s.enqueue(3, 0).expect("ok");
    s.put_deal_state(3, &DealState::default()).expect("ok");
    s.put_deal_state(4, &DealState::default()).expect("ok");
    assert_eq!(s.check().damaged, Vec::new(), "a healthy store");
    s.put_raw_for_tests("deals", &4u64.to_be_bytes(), &[0; 8])
        .expect("damaged");
    assert!(s.deal_state(4).expect_err("unreadable").is_unreadable());
    assert_eq!(s.read_errors(), 1);
    assert!(
        s.deal_state(3).expect("readable").is_some(),
        "the others read"
    );
    let report = s.check();
    assert_eq!(report.records, 3);
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    let damaged = &report.damaged[0];
    assert_eq!(
        (damaged.tree.as_str(), damaged.key.as_str(), damaged.deal_id),
        ("deals", "0000000000000004", Some(4))
    );
    assert!(damaged.error.contains("cannot be read"), "{damaged:?}");
    assert_eq!(s.read_errors(), 1, "checking is not a failed read");
}

#[test]
fn a_record_filed_under_another_deal_is_damaged() {
    let (_d, s) = store();
    s.enqueue(3, 0).expect("ok");
    let bytes = s
        .trees()
        .expect("open")
        .queue
        .get(3u64.to_be_bytes())
        .expect("ok")
        .expect("queued");
    s.put_raw_for_tests("queue", &9u64.to_be_bytes(), &bytes)
        .expect("written");
    let report = s.check();
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].deal_id, Some(9));
}

#[test]
fn new_work_for_an_unreadable_queue_record_replaces_it_and_says_so() {
    let (_d, s) = store();
    for (deal, via_event) in [(5u64, true), (6, false)] {
        s.put_raw_for_tests("queue", &deal.to_be_bytes(), b"\0garbage")
            .expect("damaged");
        if via_event {
            s.record_event("k", deal, 0, DAY).expect("recorded");
        } else {
            s.enqueue(deal, 0).expect("queued");
        }
        let q = s.queued(deal).expect("readable again").expect("queued");
        assert!(!q.parked);
        assert!(
            q.last_error
                .as_deref()
                .is_some_and(|e| e.contains("could not be read and was replaced")),
            "{q:?}"
        );
    }
    assert_eq!(s.read_errors(), 2);
}

#[test]
fn parking_replaces_an_unreadable_queue_record_with_a_parked_job() {
    let (_d, s) = store();
    s.put_raw_for_tests("queue", &7u64.to_be_bytes(), &[0; 4])
        .expect("damaged");
    let error = s.queued(7).expect_err("unreadable").to_string();
    s.park(7, &error).expect("parked");
    let q = s.queued(7).expect("readable").expect("queued");
    assert!(q.parked);
    assert_eq!(q.last_error.as_deref(), Some(error.as_str()));
    assert_eq!(s.retry_parked(Some(7)).expect("ok"), vec![7]);
}

#[test]
fn records_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = Store::open(dir.path()).expect("open");
        s.record_event("k", 3, 0, DAY).expect("ok");
        s.flush().expect("flush");
    }
    let s = reopen(dir.path());
    assert!(s.queued(3).expect("ok").is_some());
}

/// Opens the store again after its last handle was dropped: sled's own threads let go of the
/// file lock a moment later (as `Store::recover` allows for), longer on a loaded machine.
fn reopen(dir: &std::path::Path) -> Store {
    let start = std::time::Instant::now();
    loop {
        match Store::open(dir) {
            Err(StoreError::Locked { .. })
                if start.elapsed() < std::time::Duration::from_secs(5) =>
            {
                // Real time: the lock is released by sled's background thread.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.expect("reopen"),
        }
    }
}

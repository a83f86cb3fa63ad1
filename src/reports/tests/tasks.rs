//! The `tasks` report: created in the period, completed on time or late, open and overdue now.

use super::*;

fn task(
    id: u64,
    user: u64,
    created: &str,
    deadline: Option<&str>,
    closed: Option<&str>,
) -> ReportTask {
    ReportTask {
        id,
        responsible: user,
        pipeline: Some(1),
        created: at(created),
        deadline: deadline.map(at),
        closed: closed.map(at),
    }
}

#[test]
fn tasks_on_time_late_open_and_overdue_per_person() {
    let deadline = Some("2026-12-03T18:00:00+03:00");
    let tasks_ = vec![
        // 10: closed an hour early, on time.
        task(
            1,
            10,
            "2026-12-01T10:00:00+03:00",
            deadline,
            Some("2026-12-03T17:00:00+03:00"),
        ),
        // 10: closed the next morning, late.
        task(
            2,
            10,
            "2026-12-02T10:00:00+03:00",
            deadline,
            Some("2026-12-04T10:00:00+03:00"),
        ),
        // 10: open past its deadline: open and overdue.
        task(
            3,
            10,
            "2026-12-05T10:00:00+03:00",
            Some("2026-12-08T18:00:00+03:00"),
            None,
        ),
        // 10: open, due tomorrow: open only.
        task(
            4,
            10,
            "2026-12-09T10:00:00+03:00",
            Some("2026-12-11T18:00:00+03:00"),
            None,
        ),
        // 10: no deadline, completed: on time.
        task(
            5,
            10,
            "2026-12-02T10:00:00+03:00",
            None,
            Some("2026-12-09T10:00:00+03:00"),
        ),
        // 10: created in November: not this period's.
        task(6, 10, "2026-11-28T10:00:00+03:00", deadline, None),
        // 11: closed at the deadline itself: on time.
        task(7, 11, "2026-12-01T10:00:00+03:00", deadline, deadline),
    ];
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-10T12:00:00+03:00");
    let body = serde_json::to_value(tasks(&tasks_, &scope)).unwrap();
    assert_eq!(
        body["rows"],
        json!([
            { "user_id": 10, "created": 5, "on_time": 2, "late": 1, "open": 2, "overdue": 1 },
            { "user_id": 11, "created": 1, "on_time": 1, "late": 0, "open": 0, "overdue": 0 },
        ])
    );
}

//! The demo's week on one clock. The portal and the service share a [`Clock`] that the demo
//! moves on itself with [`Clock::advance`] (no waiting, and the same weekdays and times on every
//! run), so that what the time-driven rules of `rules/40-control.toml` wait for comes in
//! seconds: a deal without a next step, an overdue task, a moved deadline, an SLA, the evening
//! review.
//!
//! Why these moments: a `[[digest]]` (09:30 and 17:30) lists what stands when its slot comes,
//! and a jump past a slot sends that slot's digest at once; so every jump lands where no new
//! slot is due (before 09:30, or within a slot already handled), except the jump to the evening
//! review. Every landing is working time, where notices are not held
//! (`control.quiet_outside_hours`). After each jump the demo waits for the control sweep the
//! jump sets off (the service's `/metrics`), so that what the sweep found is printed in its step.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};
use serde_json::Value;

use super::{Story, value_text as text};
use crate::calendar::{Calendar, Period, PeriodUnit};
use crate::clock::Clock;
use crate::commands::output::outln;
use crate::rules::RuleSet;
use crate::sandbox::SimPortal;
use crate::text::count;

/// The `TAG` prefix of a digest's notification (`crate::worker::control::digests`): how the demo tells
/// a digest from the other notifications the portal got.
const DIGEST_TAG: &str = "b24robot:digest:";

/// At most this long for the control sweep a jump sets off, and for a digest expected.
const WAIT: Duration = Duration::from_secs(15);

/// The deals of the first day that the rest of the week is about.
pub(super) struct Deals {
    /// Won on Monday: its tasks get done, and its copy waits in the repeat-clients pipeline.
    pub(super) won: u64,
    /// Lost on Monday: its review gets done.
    pub(super) lost: u64,
    /// Left in the offer stage on Monday: its offer is late, and it stays there too long.
    pub(super) offer: u64,
}

pub(super) struct Timeline {
    clock: Clock,
    calendar: Calendar,
    http: reqwest::Client,
    /// Whether the rules give the control sweep anything to do: otherwise none is waited for.
    sweeps: bool,
    /// Whether they have a `[[digest]]`: otherwise none is waited for.
    digests: bool,
    /// The first `[[sla]]`'s `within` (3 workdays in the shipped rules): when Thursday comes.
    sla_within: Period,
}

impl Timeline {
    pub(super) fn new(clock: Clock, calendar: Calendar, rules: &RuleSet) -> Timeline {
        let controls = rules.controls();
        Timeline {
            clock,
            calendar,
            http: reqwest::Client::new(),
            sweeps: controls.sweeps(),
            digests: !controls.digests().is_empty(),
            sla_within: controls.sla().first().map_or(
                Period {
                    amount: 3,
                    unit: PeriodUnit::Workdays,
                },
                |sla| sla.within(),
            ),
        }
    }

    /// Five minutes into the working day of `monday`: the week starts before the morning
    /// review, and ends on Thursday within the same week.
    pub(super) fn morning(&self, monday: NaiveDate) -> DateTime<FixedOffset> {
        self.on(monday, self.calendar.day_start(), 5)
    }

    /// `at` as the story prints it: "Monday 7 December, 09:05", in the calendar's zone.
    pub(super) fn show(&self, at: DateTime<FixedOffset>) -> String {
        at.with_timezone(&self.calendar.tz())
            .format("%A %-d %B, %H:%M")
            .to_string()
    }

    fn local_date(&self, at: DateTime<FixedOffset>) -> NaiveDate {
        at.with_timezone(&self.calendar.tz()).date_naive()
    }

    /// `minutes` past `time` on `date`, in the calendar's zone.
    fn on(&self, date: NaiveDate, time: NaiveTime, minutes: i64) -> DateTime<FixedOffset> {
        self.calendar
            .at_local(date.and_time(time) + chrono::Duration::minutes(minutes))
    }

    /// `hh:mm` on the day of `at`.
    fn same_day(&self, at: DateTime<FixedOffset>, hh: u32, mm: u32) -> DateTime<FixedOffset> {
        let time = NaiveTime::from_hms_opt(hh, mm, 0).unwrap_or(NaiveTime::MIN);
        self.on(self.local_date(at), time, 0)
    }

    /// Moves the clock on to `at` (never back), waits for the control sweep this sets off, and
    /// prints what the service did then. A moment already past sets nothing off: the story
    /// goes on as it is.
    pub(super) async fn jump_to(&self, story: &mut Story, at: DateTime<FixedOffset>) {
        let before = self.sweeps_done(story).await;
        let ahead = at.timestamp_millis() - self.clock.now_ms();
        if ahead > 0 {
            self.clock.advance(Duration::from_millis(ahead as u64));
        }
        if self.sweeps && ahead > 0 {
            let start = Instant::now();
            while start.elapsed() < WAIT && self.sweeps_done(story).await <= before {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        story.settle().await;
    }

    /// A step of the story: the moment and what happens, the jump there, and the digests sent
    /// then (with `review`, one is waited for).
    async fn step(
        &self,
        (sim, story): (&SimPortal, &mut Story),
        at: DateTime<FixedOffset>,
        what: &str,
        review: bool,
    ) {
        story.say(&format!("{}: {what}", self.show(at)));
        self.jump_to(story, at).await;
        self.print_digests(sim, story, review && self.digests).await;
    }

    /// How many control sweeps the service has run (ok or failed), by its `/metrics`.
    async fn sweeps_done(&self, story: &Story) -> f64 {
        let Ok(answer) = self.http.get(&story.metrics_url).send().await else {
            return 0.0;
        };
        let text = answer.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("b24robot_control_sweeps_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The rest of the week, after Monday's deals: the time-driven rules at work.
    pub(super) async fn control(&self, sim: &SimPortal, story: &mut Story, deals: Deals) {
        let monday = self.clock.now().fixed_offset();
        let copies: Vec<u64> = sim
            .deals()
            .iter()
            .filter(|d| d["CATEGORY_ID"] == "1")
            .filter_map(|d| id(&d["ID"]))
            // The won deal's copy, not the repeat deals of the month before the week.
            .filter(|copy| *copy > deals.won)
            .collect();
        story.say(&format!(
            "{}: Vera and Gleb finish the tasks of the won and the lost deal; Vera calls the repeat client, but plans no next step",
            self.show(monday)
        ));
        let mut done = 0;
        for deal in [deals.won, deals.lost].into_iter().chain(copies) {
            for task in open_tasks(sim, deal) {
                sim.complete_task(task);
                done += 1;
            }
        }
        outln!("  {} completed on the portal", count(done, "task", "tasks"));

        let review = self.same_day(monday, 9, 31);
        self.step(
            (sim, story),
            review,
            "the morning review: nothing stands yet, so no digest is sent",
            false,
        )
        .await;
        let afternoon = self.same_day(monday, 13, 40);
        self.step(
            (sim, story),
            afternoon,
            "the repeat client's deal has gone 4 hours without a next step",
            false,
        )
        .await;

        // Thursday, a minute past the SLA of the deal left in the offer stage on Monday; its
        // offer was due the evening before.
        let offer_task = open_tasks(sim, deals.offer).into_iter().next();
        let due = offer_task
            .and_then(|t| sim.task(t))
            .and_then(|t| t["DEADLINE"].as_str().map(str::to_string))
            .and_then(|d| DateTime::parse_from_rfc3339(&d).ok())
            .map_or_else(|| "yesterday".to_string(), |d| self.show(d));
        let thursday = self.calendar.add(monday, self.sla_within) + chrono::Duration::minutes(1);
        self.step(
            (sim, story),
            thursday,
            &format!(
                "the offer was due {due}, and the deal has been in the offer stage for {}",
                self.sla_within
            ),
            false,
        )
        .await;
        let Some(task) = offer_task else {
            return;
        };
        let moved_to = self.same_day(thursday, 17, 0);
        story.say(&format!(
            "{}: Vera moves the offer's deadline to {} the same day",
            self.show(thursday),
            moved_to.with_timezone(&self.calendar.tz()).format("%H:%M")
        ));
        sim.set_task_deadline(task, Some(moved_to));
        self.step(
            (sim, story),
            thursday + chrono::Duration::minutes(6),
            "the control sweep sees the deadline moved",
            false,
        )
        .await;
        let evening = self.same_day(thursday, 17, 31);
        self.step(
            (sim, story),
            evening,
            "the new deadline has passed too; the evening review",
            true,
        )
        .await;
    }

    /// Prints the digests the portal got since the last ones printed; with `expect`, waits for
    /// one first (they are sent by the control loop, after the sweep the story waited for).
    async fn print_digests(&self, sim: &SimPortal, story: &mut Story, expect: bool) {
        let digests = || -> Vec<Value> {
            sim.notifications()
                .into_iter()
                .filter(|n| n["TAG"].as_str().is_some_and(|t| t.starts_with(DIGEST_TAG)))
                .collect()
        };
        let start = Instant::now();
        while expect && digests().len() <= story.digests_shown && start.elapsed() < WAIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for digest in digests().iter().skip(story.digests_shown) {
            let tag = digest["TAG"].as_str().unwrap_or_default();
            let rule = tag
                .trim_start_matches(DIGEST_TAG)
                .split('/')
                .next()
                .unwrap_or_default();
            outln!("    [{rule}] digest to user {}:", text(&digest["USER_ID"]));
            for line in digest["MESSAGE"].as_str().unwrap_or_default().lines() {
                if !line.is_empty() {
                    outln!("      {line}");
                }
            }
            story.digests_shown += 1;
        }
    }
}

/// The deal's tasks that are still open (`REAL_STATUS` 1-3: new, pending, in progress).
fn open_tasks(sim: &SimPortal, deal: u64) -> Vec<u64> {
    sim.tasks_for_deal(deal)
        .iter()
        .filter(|t| matches!(text(&t["REAL_STATUS"]).as_str(), "1" | "2" | "3"))
        .filter_map(|t| id(&t["ID"]))
        .collect()
}

fn id(v: &Value) -> Option<u64> {
    text(v).parse().ok()
}

//! The `[[digest]]`: which slot is due, who gets which items, and the text of each recipient's
//! notification. Pure: the control loop finds the items (re-read from the portal at the slot)
//! and the people's supervisors and names, and sends what this composes.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::{Digest, DigestTo};
use crate::calendar::Calendar;
use crate::rules::deal::{Deal, FieldCatalog};
use crate::rules::template::{MESSAGE_CAP, RenderContext, Template};
use crate::rules::texts::Language;

/// At most this many items in one digest; the rest are counted ("and N more").
pub const MAX_ITEMS: usize = 50;

/// What kind of problem an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Overdue,
    NoTask,
    Sla,
}

/// A task an item is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemTask {
    pub id: u64,
    pub title: String,
    pub url: String,
    pub deadline: Option<DateTime<FixedOffset>>,
}

/// One problem that stands now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub kind: ItemKind,
    /// The rule that finds it.
    pub rule: String,
    /// Whose it is: the task's responsible, or the deal's assigned user.
    pub person: Option<u64>,
    pub deal_id: u64,
    pub deal_title: String,
    pub deal_url: String,
    pub task: Option<ItemTask>,
    /// Since when it stands: the deadline (plus grace), the moment the SLA was due, the moment
    /// the deal was past its rule's `after`. Newest problems are listed last.
    pub since: DateTime<FixedOffset>,
}

/// One slot of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub date: NaiveDate,
    pub time: NaiveTime,
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.date, self.time.format("%H:%M"))
    }
}

impl Digest {
    /// The moment of `slot` in the calendar's zone.
    pub fn slot_moment(&self, calendar: &Calendar, slot: Slot) -> DateTime<FixedOffset> {
        calendar.at_local(slot.date.and_time(slot.time))
    }

    /// The latest slot at or before `now` on a working day, looking back a week at most.
    pub fn latest_slot(&self, calendar: &Calendar, now: DateTime<FixedOffset>) -> Option<Slot> {
        let today = now.with_timezone(&calendar.tz()).date_naive();
        for back in 0..8 {
            let date = today - Duration::days(back);
            if !calendar.is_working_day(date) {
                continue;
            }
            for &time in self.at.iter().rev() {
                let slot = Slot { date, time };
                if self.slot_moment(calendar, slot) <= now {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// The next slot after `now` on a working day (two weeks ahead at most).
    pub fn next_slot(&self, calendar: &Calendar, now: DateTime<FixedOffset>) -> Option<Slot> {
        let today = now.with_timezone(&calendar.tz()).date_naive();
        for ahead in 0..15 {
            let date = today + Duration::days(ahead);
            if !calendar.is_working_day(date) {
                continue;
            }
            for &time in &self.at {
                let slot = Slot { date, time };
                if self.slot_moment(calendar, slot) > now {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// Whether `slot` is still the working period it opens at `now`: before the day's next
    /// slot, and before the end of that working day (or of the day, for a slot set after
    /// working hours). A slot missed while the service was stopped is sent at start only then.
    pub fn still_current(
        &self,
        calendar: &Calendar,
        slot: Slot,
        now: DateTime<FixedOffset>,
    ) -> bool {
        let start = self.slot_moment(calendar, slot);
        let next = self.at.iter().find(|&&t| t > slot.time).copied();
        let end = match next {
            Some(time) => self.slot_moment(calendar, Slot { time, ..slot }),
            None if slot.time < calendar.day_end() => {
                calendar.at_local(slot.date.and_time(calendar.day_end()))
            }
            None => calendar
                .tz()
                .from_local_datetime(&(slot.date + Duration::days(1)).and_time(NaiveTime::MIN))
                .earliest()
                .map_or(start + Duration::hours(1), |at| at.fixed_offset()),
        };
        start <= now && now < end
    }

    /// Who gets which items: with `to = "supervisor"` an item goes to the supervisor of its
    /// person (`supervisor_of`; `None`: nobody to send it to, returned apart); with user ids,
    /// each of them gets every item. Items keep their order.
    pub fn recipients(
        &self,
        items: &[Item],
        supervisor_of: &dyn Fn(u64) -> Option<u64>,
    ) -> (BTreeMap<u64, Vec<Item>>, Vec<Item>) {
        let mut out: BTreeMap<u64, Vec<Item>> = BTreeMap::new();
        let mut nobody = Vec::new();
        match &self.to {
            DigestTo::Users(users) => {
                for &user in users {
                    out.insert(user, items.to_vec());
                }
            }
            DigestTo::Supervisor => {
                for item in items {
                    match item.person.and_then(supervisor_of) {
                        Some(head) => out.entry(head).or_default().push(item.clone()),
                        None => nobody.push(item.clone()),
                    }
                }
            }
        }
        (out, nobody)
    }

    /// The text of one recipient's digest at `slot`, or `None` when there is nothing to say
    /// and `send_empty` is off. `name_of` names a person (`user.get`); links are Bitrix24's
    /// BB-code (`[URL=...]...[/URL]`).
    pub fn compose(
        &self,
        items: &[Item],
        (calendar, language): (&Calendar, Language),
        at: DateTime<FixedOffset>,
        name_of: &dyn Fn(u64) -> String,
    ) -> Option<String> {
        if items.is_empty() && !self.send_empty {
            return None;
        }
        let local = at.with_timezone(&calendar.tz());
        let extra = [
            ("DATE", local.format("%Y-%m-%d").to_string()),
            ("TIME", local.format("%H:%M").to_string()),
        ];
        let empty = Deal::new(Map::new());
        let catalog = FieldCatalog::default();
        let ctx = RenderContext {
            deal: &empty,
            catalog: &catalog,
            portal_origin: "",
            extra: &extra,
        };
        let default = Template::parse(language.digest_title())
            .unwrap_or_else(|_| Template::text(language.digest_title()));
        let title = self.title.as_ref().unwrap_or(&default).render(
            &ctx,
            None,
            ("the digest title", MESSAGE_CAP),
            &mut Vec::new(),
        );
        let mut text = format!("[B]{title}[/B]");
        if items.is_empty() {
            text.push('\n');
            text.push_str(language.nothing_to_report());
            return Some(text);
        }
        // Newest problems last; past the limit, the newest are counted, not listed.
        let mut sorted: Vec<&Item> = items.iter().collect();
        sorted.sort_by_key(|i| (i.since, i.deal_id, i.task.as_ref().map(|t| t.id)));
        let shown = &sorted[..sorted.len().min(MAX_ITEMS)];
        // Grouped by person, the people in the order of their oldest problem.
        let mut people: Vec<Option<u64>> = Vec::new();
        for item in shown {
            if !people.contains(&item.person) {
                people.push(item.person);
            }
        }
        for person in people {
            let who = person.map_or_else(|| "—".to_string(), name_of);
            text.push_str(&format!("\n\n[B]{who}[/B]"));
            for item in shown.iter().filter(|i| i.person == person) {
                text.push('\n');
                text.push_str(&line(item, calendar, language));
            }
        }
        if sorted.len() > shown.len() {
            text.push_str("\n\n");
            text.push_str(&language.and_more(sorted.len() - shown.len()));
        }
        Some(text)
    }
}

/// One item's line: what, the link to the task or deal, since when.
fn line(item: &Item, calendar: &Calendar, language: Language) -> String {
    let heading = language.digest_heading(item.kind);
    let deal = format!(
        "[URL={}]{}[/URL]",
        item.deal_url,
        bb_escape(&item.deal_title)
    );
    let since = super::evaluate::print_moment(calendar, item.since);
    match &item.task {
        Some(task) => format!(
            "• {heading}: [URL={}]{}[/URL] ({since}), {deal}",
            task.url,
            bb_escape(&task.title)
        ),
        None => format!("• {heading}: {deal} ({since})"),
    }
}

/// A title inside a BB-code link: square brackets would end or open a tag.
fn bb_escape(text: &str) -> String {
    text.replace('[', "(").replace(']', ")")
}

//! CRM activities ("дела": calls, meetings, to-dos) bound to deals: what a person plans as the
//! deal's next step besides a task. Stored as `crm.activity.list` prints them
//! (`api-reference/crm/timeline/activities/activity-base/crm-activity-list.md`): upper-case
//! keys, every value a string, `COMPLETED` `"Y"`/`"N"`, `STATUS` 1 waiting / 2 completed.
//! The simulated people plan the universal to-do (`PROVIDER_ID` `CRM_TODO`, `TYPE_ID` 6).

use serde_json::{Map, Value, json};

use super::{ApiError, PortalState};

/// `OWNER_TYPE_ID` of a deal (`api-reference/crm/index.md`: 1 lead, 2 deal, 3 contact...).
pub const DEAL_OWNER_TYPE: u64 = 2;

impl PortalState {
    /// A person plans an activity on a deal (a to-do for `responsible`), open or already done;
    /// its start and deadline are now, by the portal's clock.
    pub fn add_activity(
        &mut self,
        deal_id: u64,
        responsible: u64,
        subject: &str,
        completed: bool,
    ) -> u64 {
        let id = self.next_activity_id;
        self.next_activity_id += 1;
        let now = self.now();
        let yes_no = if completed { "Y" } else { "N" };
        let mut activity = Map::new();
        let entries = [
            ("ID", json!(id.to_string())),
            ("OWNER_ID", json!(deal_id.to_string())),
            ("OWNER_TYPE_ID", json!(DEAL_OWNER_TYPE.to_string())),
            ("TYPE_ID", json!("6")),
            ("PROVIDER_ID", json!("CRM_TODO")),
            ("PROVIDER_TYPE_ID", json!("TODO")),
            ("SUBJECT", json!(subject)),
            ("CREATED", json!(now)),
            ("LAST_UPDATED", json!(now)),
            ("START_TIME", json!(now)),
            ("END_TIME", json!(now)),
            ("DEADLINE", json!(now)),
            ("COMPLETED", json!(yes_no)),
            ("STATUS", json!(if completed { "2" } else { "1" })),
            ("RESPONSIBLE_ID", json!(responsible.to_string())),
            ("PRIORITY", json!("2")),
            ("DESCRIPTION", json!("")),
            ("DIRECTION", json!("0")),
            ("AUTHOR_ID", json!(responsible.to_string())),
            ("EDITOR_ID", json!(responsible.to_string())),
        ];
        for (k, v) in entries {
            activity.insert(k.to_string(), v);
        }
        self.activities.push(activity);
        id
    }

    /// Marks an activity done (`COMPLETED` `"Y"`, `STATUS` 2).
    pub fn complete_activity(&mut self, id: u64) -> Result<(), ApiError> {
        let now = self.now();
        let id = id.to_string();
        let activity = self
            .activities
            .iter_mut()
            .find(|a| a.get("ID").and_then(Value::as_str) == Some(id.as_str()))
            .ok_or_else(|| ApiError::new(400, "", "Not found"))?;
        activity.insert("COMPLETED".into(), json!("Y"));
        activity.insert("STATUS".into(), json!("2"));
        activity.insert("LAST_UPDATED".into(), json!(now));
        Ok(())
    }
}

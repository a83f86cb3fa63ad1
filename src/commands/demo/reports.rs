//! The end of the demo: the head of sales reads the month's plan and NPS, as
//! `b24-robot report plan` and `b24-robot report nps` print them, from the service's admin API
//! (`GET /admin/reports/{name}`): the same JSON the dashboard draws.

use serde_json::Value;

use super::Service;
use crate::commands::output::outln;
use crate::commands::report::text;
use crate::rules::ReportPeriod;

/// Prints the `plan` and `nps` reports of `period`, indented under a line saying what they are.
pub(super) async fn print(service: &Service, period: &ReportPeriod) -> Result<(), String> {
    let http = reqwest::Client::new();
    for (name, what) in [
        (
            "plan",
            "the month's plan: target, done, % done and the forecast at this pace",
        ),
        (
            "nps",
            "NPS: promoters − detractors among the clients won this month",
        ),
    ] {
        let url = format!("{}/admin/reports/{name}?period={period}", service.base);
        let answer = http
            .get(&url)
            .bearer_auth(&service.admin_token)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = answer.status();
        let body: Value = answer
            .json()
            .await
            .map_err(|e| format!("{url}: the answer is no JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url}: {status}: {body}"));
        }
        outln!();
        outln!("* The head of sales opens {what} (b24-robot report {name}):");
        for line in text(&body).lines() {
            if line.is_empty() {
                outln!();
            } else {
                outln!("  {line}");
            }
        }
    }
    Ok(())
}

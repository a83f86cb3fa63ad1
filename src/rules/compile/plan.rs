//! `[[plan]]`: its period, pipeline (one, or the file's), measure and currency, and exactly one
//! of `target` and `targets`.
//!
//! The currency is required with `measure = "amount"` and refused with `"count"`: a sum in no
//! stated currency would silently mix roubles and dollars, and a currency on a count would read
//! as a filter that the spec does not define.

use toml::Spanned;
use toml::de::DeValue;

use super::FileCx;
use super::control::FilePipeline;
use super::keys::MEASURE_WORDS;
use super::sections::Section;
use super::values::did_you_mean;
use crate::diagnostics::spanned::{entries_in_order, entry, integer, number};
use crate::rules::control::Origin;
use crate::rules::period::{PERIOD_FORMS, ReportPeriod};
use crate::rules::plan::{Amount, Measure, Plan, PlanTarget};

impl<'s> FileCx<'_, 's> {
    pub(super) fn plan(
        &mut self,
        at: &Section<'_, 's>,
        file: FilePipeline,
        (name, origin): (Option<String>, Origin),
    ) -> Option<Plan> {
        let period = self
            .required(
                at,
                "period",
                "add period = \"2026-12\" (or \"2026-Q4\", \"2026-H2\", \"2026\")",
            )
            .and_then(|v| self.plan_period(v));
        let pipeline = self.one_pipeline(at, file);
        let measure = self
            .required(
                at,
                "measure",
                "add measure = \"amount\" (the sum of OPPORTUNITY) or \"count\" (won deals)",
            )
            .and_then(|v| self.measure(v));
        let currency = self.optional(at.table, "currency", |cx, (_, v)| cx.currency(v));
        let currency = match (measure, currency) {
            (Some(Measure::Amount), Some(None)) => {
                self.error(
                    at.span.clone(),
                    "[[plan]] of measure = \"amount\" without \"currency\"",
                    "add currency = \"RUB\": only deals in that currency are summed, the others are reported apart",
                );
                None
            }
            (Some(Measure::Count), Some(Some(_))) => {
                if let Some((key, _)) = entry(at.table, "currency") {
                    self.error(
                        key.span(),
                        "\"currency\" is only for measure = \"amount\"",
                        "remove it: a count plan counts the won deals of every currency",
                    );
                }
                None
            }
            (_, currency) => currency,
        };
        let target = self.plan_target(at, measure);
        Some(Plan {
            name: name?,
            origin,
            period: period?,
            pipeline: pipeline?,
            measure: measure?,
            currency: currency?,
            target: target?,
        })
    }

    fn plan_period(&mut self, v: &Spanned<DeValue<'s>>) -> Option<ReportPeriod> {
        let text = self.string(v, "period", "\"2026-12\"")?;
        let parsed = text.trim().parse::<ReportPeriod>();
        if parsed.is_err() {
            self.error(v.span(), format!("bad period \"{text}\""), PERIOD_FORMS);
        }
        parsed.ok()
    }

    fn measure(&mut self, v: &Spanned<DeValue<'s>>) -> Option<Measure> {
        let help = "write measure = \"amount\" (the sum of OPPORTUNITY) or \"count\" (won deals)";
        match self.string(v, "measure", "\"amount\"")? {
            "amount" => Some(Measure::Amount),
            "count" => Some(Measure::Count),
            other => {
                let help = did_you_mean(other, MEASURE_WORDS, help);
                self.error(v.span(), format!("unknown measure \"{other}\""), help);
                None
            }
        }
    }

    /// Three letters, upper case: an ISO 4217 code as Bitrix24's `CURRENCY_ID` spells it.
    fn currency(&mut self, v: &Spanned<DeValue<'s>>) -> Option<String> {
        let text = self.string(v, "currency", "\"RUB\"")?;
        let letters = text.len() == 3 && text.bytes().all(|b| b.is_ascii_alphabetic());
        if letters && text.bytes().all(|b| b.is_ascii_uppercase()) {
            return Some(text.to_string());
        }
        let help = if letters {
            format!(
                "write currency = \"{}\", in capitals, as CURRENCY_ID spells it",
                text.to_ascii_uppercase()
            )
        } else {
            "write the three-letter code of CURRENCY_ID: \"RUB\", \"USD\", \"EUR\"".to_string()
        };
        self.error(v.span(), format!("bad currency \"{text}\""), help);
        None
    }

    /// Exactly one of `target` and `targets`.
    fn plan_target(
        &mut self,
        at: &Section<'_, 's>,
        measure: Option<Measure>,
    ) -> Option<PlanTarget> {
        match (entry(at.table, "target"), entry(at.table, "targets")) {
            (Some(_), Some((key, _))) => {
                self.error(
                    key.span(),
                    "[[plan]] with both \"target\" and \"targets\"",
                    "keep one: target = N for the whole plan, or targets = { user_id = N } per person",
                );
                None
            }
            (None, None) => {
                self.error(
                    at.span.clone(),
                    "[[plan]] without \"target\" or \"targets\"",
                    "add targets = { 10 = 1500000 } (per user id) or target = 3000000 (the whole plan)",
                );
                None
            }
            (Some((_, v)), None) => self
                .target_value(v, "target", measure)
                .map(PlanTarget::Whole),
            (None, Some((_, v))) => self.targets(v, measure).map(PlanTarget::People),
        }
    }

    fn targets(
        &mut self,
        v: &Spanned<DeValue<'s>>,
        measure: Option<Measure>,
    ) -> Option<Vec<(u64, Amount)>> {
        let help = "write targets = { 10 = 1500000, 11 = 1200000 }: user ids (ASSIGNED_BY_ID) and their targets";
        let DeValue::Table(table) = v.get_ref() else {
            self.mistyped(v, "targets", "a table", help);
            return None;
        };
        let entries = entries_in_order(table);
        if entries.is_empty() {
            self.error(v.span(), "\"targets\" is empty", help);
            return None;
        }
        let mut people = Vec::new();
        let mut ok = true;
        for (key, value) in entries {
            let user = match key.get_ref().trim().parse::<u64>() {
                Ok(id @ 1..) => Some(id),
                _ => {
                    self.error(
                        key.span(),
                        format!("\"{}\" is not a user id", key.get_ref()),
                        "each key of targets is a user id (ASSIGNED_BY_ID), a number from 1: { 10 = 1500000 }",
                    );
                    None
                }
            };
            let target = self.target_value(value, "targets", measure);
            match (user, target) {
                (Some(user), Some(target)) => people.push((user, target)),
                _ => ok = false,
            }
        }
        ok.then_some(people)
    }

    /// A target: a number, never negative; a whole one for a count.
    fn target_value(
        &mut self,
        v: &Spanned<DeValue<'s>>,
        key: &str,
        measure: Option<Measure>,
    ) -> Option<Amount> {
        let Some(x) = number(v.get_ref()) else {
            let help = match v
                .get_ref()
                .as_str()
                .and_then(|s| s.trim().parse::<f64>().ok())
            {
                Some(_) => format!(
                    "write the number without quotes: {key} = {}",
                    v.get_ref().as_str().unwrap_or_default().trim()
                ),
                None => "write a number: the amount or the count of won deals".to_string(),
            };
            self.mistyped(v, key, "a number", help);
            return None;
        };
        if x < 0.0 {
            self.error(
                v.span(),
                format!("a negative target ({x})"),
                "a target is 0 or more",
            );
            return None;
        }
        if measure == Some(Measure::Count) && integer(v.get_ref()).is_none() {
            self.error(
                v.span(),
                format!("a count target of {x}"),
                "a count plan counts won deals: write a whole number",
            );
            return None;
        }
        let amount = Amount::from_f64(x);
        if amount.is_none() {
            self.error(
                v.span(),
                format!("a target of {x} is too large"),
                "write the target in the plan's currency",
            );
        }
        amount
    }
}

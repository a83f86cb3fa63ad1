//! The texts the service itself writes into the portal, in each language `portal.language`
//! offers, side by side: the default messages of the gates (`[[require]]`, `[[loss_reason]]`),
//! the sentence saying where a deal was moved back, the notification around a gate's message,
//! and the comments linking a tunnel copy with its source. Pure: the callers bring the names
//! (a stage by its portal name, a deal's title) and the addresses.
//!
//! What a rule writes itself (its `message`, a task's title) is the integrator's and is never
//! translated; the decision log's notes are for operators and stay in English.

use serde::{Deserialize, Serialize};

/// `portal.language`: the language of the portal's people, which the service's own texts are
/// written in. Russian by default: most Bitrix24 portals are Russian-speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Ru,
    En,
}

impl Language {
    /// Every language, as written in the configuration.
    pub const NAMES: [&'static str; 2] = ["ru", "en"];

    /// From the configuration's value: `"ru"` or `"en"`.
    pub fn parse(text: &str) -> Option<Language> {
        match text {
            "ru" => Some(Language::Ru),
            "en" => Some(Language::En),
            _ => None,
        }
    }

    /// The default message of a `[[require]]` gate (a template: `{MISSING}` is the labels of the
    /// empty fields).
    pub fn require_message(self) -> &'static str {
        match self {
            Language::Ru => "Чтобы перевести сделку на эту стадию, заполните поля: {MISSING}",
            Language::En => "Fill in {MISSING} before moving the deal to this stage",
        }
    }

    /// The default message of a `[[loss_reason]]` gate (a template: `{MISSING}` is the label of
    /// the reason's field).
    pub fn loss_reason_message(self) -> &'static str {
        match self {
            Language::Ru => "Укажите, почему сделка провалена (поле «{MISSING}»)",
            Language::En => "Give the reason ({MISSING}) the deal was lost",
        }
    }

    /// Why a given loss reason is refused: `rejected` as shown (option labels), `accepted` as
    /// the rule lists them. Appended to the gate's message as a sentence of its own.
    pub fn reason_not_accepted(self, rejected: &[String], accepted: &[String]) -> String {
        match self {
            Language::Ru => {
                let quoted: Vec<String> = rejected.iter().map(|r| format!("«{r}»")).collect();
                let what = if rejected.len() > 1 {
                    "недопустимые причины"
                } else {
                    "недопустимая причина"
                };
                format!(
                    "{} — {what} (допустимы: {})",
                    quoted.join(", "),
                    accepted.join(", ")
                )
            }
            Language::En => format!(
                "\"{}\" is not an accepted reason (accepted: {})",
                rejected.join("\", \""),
                accepted.join(", ")
            ),
        }
    }

    /// The default message of an `[[sla]]` (a template).
    pub fn sla_message(self) -> &'static str {
        match self {
            Language::Ru => {
                "Сделка «{TITLE}» слишком долго на стадии (просрочено на {SLA_OVERDUE}): {DEAL_URL}"
            }
            Language::En => {
                "{TITLE} has been in its stage too long ({SLA_OVERDUE} past the limit): {DEAL_URL}"
            }
        }
    }

    /// The default message of an `[[overdue]]` (a template).
    pub fn overdue_message(self) -> &'static str {
        match self {
            Language::Ru => {
                "Просрочена задача «{TASK_TITLE}» (срок {TASK_DEADLINE}): {TASK_URL}, сделка «{TITLE}»"
            }
            Language::En => {
                "Overdue since {TASK_DEADLINE}: {TASK_TITLE} ({TASK_URL}), deal {TITLE}"
            }
        }
    }

    /// The default message of an `[overdue.deadline_moved]` (a template).
    pub fn deadline_moved_message(self) -> &'static str {
        match self {
            Language::Ru => {
                "Срок задачи «{TASK_TITLE}» перенесён с {TASK_OLD_DEADLINE} на {TASK_DEADLINE}: {TASK_URL}"
            }
            Language::En => {
                "{TASK_TITLE}: deadline moved from {TASK_OLD_DEADLINE} to {TASK_DEADLINE} ({TASK_URL})"
            }
        }
    }

    /// The default message of a `[[no_task]]` (a template).
    pub fn no_task_message(self) -> &'static str {
        match self {
            Language::Ru => {
                "У сделки «{TITLE}» нет открытой задачи: запланируйте следующий шаг ({DEAL_URL})"
            }
            Language::En => "{TITLE} has no open task: plan the next step ({DEAL_URL})",
        }
    }

    /// The default title of a `[[digest]]` (a template).
    pub fn digest_title(self) -> &'static str {
        match self {
            Language::Ru => "Контроль продаж, {DATE} {TIME}",
            Language::En => "Sales control, {DATE} {TIME}",
        }
    }

    /// The headings of a digest's three kinds of items.
    pub fn digest_heading(self, kind: crate::rules::control::digest::ItemKind) -> &'static str {
        use crate::rules::control::digest::ItemKind;
        match (self, kind) {
            (Language::Ru, ItemKind::Overdue) => "просроченная задача",
            (Language::Ru, ItemKind::NoTask) => "нет следующего шага",
            (Language::Ru, ItemKind::Sla) => "превышен срок стадии",
            (Language::En, ItemKind::Overdue) => "overdue task",
            (Language::En, ItemKind::NoTask) => "no next step",
            (Language::En, ItemKind::Sla) => "over the stage SLA",
        }
    }

    /// The last line of a digest cut at its items' limit.
    pub fn and_more(self, n: usize) -> String {
        match self {
            Language::Ru => format!("…и ещё {n}"),
            Language::En => format!("…and {n} more"),
        }
    }

    /// The body of a digest with nothing to report (`send_empty`).
    pub fn nothing_to_report(self) -> &'static str {
        match self {
            Language::Ru => "Просроченных задач и сделок без следующего шага нет.",
            Language::En => "Nothing overdue, every deal has a next step.",
        }
    }

    /// The sentence a moved-back deal's comment ends with; `stage` is the stage's portal name
    /// (its id where no name is known).
    pub fn moved_back(self, stage: &str) -> String {
        match self {
            Language::Ru => format!("Сделка возвращена на стадию «{stage}»."),
            Language::En => format!("The deal was moved back to {stage}."),
        }
    }

    /// A gate's notification to the deal's responsible: the deal, its address and the comment.
    pub fn gate_notice(self, title: &str, url: &str, text: &str) -> String {
        match self {
            Language::Ru => format!("Сделка «{title}» {url}: {text}"),
            Language::En => format!("Deal \"{title}\" {url}: {text}"),
        }
    }

    /// The comment on a tunnel's source deal: where its copy is.
    pub fn copied_into(self, pipeline: &str, copy_id: &str, url: &str, rule: &str) -> String {
        match self {
            Language::Ru => format!(
                "Создана копия сделки в воронке {pipeline}: сделка №{copy_id}, {url} (правило «{rule}»)"
            ),
            Language::En => format!(
                "Copied into pipeline {pipeline} as deal #{copy_id}: {url} (rule \"{rule}\")"
            ),
        }
    }

    /// The comment on a tunnel's copy: the deal it was copied from.
    pub fn copy_of(self, source: u64, url: &str, rule: &str) -> String {
        match self {
            Language::Ru => format!("Копия сделки №{source}: {url} (правило «{rule}»)"),
            Language::En => format!("Copy of deal #{source}: {url} (rule \"{rule}\")"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_each_language_and_russian_is_the_default() {
        assert_eq!(Language::default(), Language::Ru);
        for name in Language::NAMES {
            let language = Language::parse(name).expect("a language");
            assert_eq!(
                serde_json::to_value(language).expect("serialises"),
                serde_json::json!(name)
            );
        }
        assert_eq!(Language::parse("de"), None);
    }

    #[test]
    fn every_text_exists_in_russian_and_english() {
        let reasons = ["Дорого".to_string(), "Не отвечает".to_string()];
        assert_eq!(
            Language::Ru.reason_not_accepted(&["Выбрали конкурента".into()], &reasons),
            "«Выбрали конкурента» — недопустимая причина (допустимы: Дорого, Не отвечает)"
        );
        assert_eq!(
            Language::Ru.reason_not_accepted(&["А".into(), "Б".into()], &reasons),
            "«А», «Б» — недопустимые причины (допустимы: Дорого, Не отвечает)"
        );
        assert_eq!(
            Language::Ru.moved_back("Счёт на предоплату"),
            "Сделка возвращена на стадию «Счёт на предоплату»."
        );
        assert_eq!(
            Language::En.moved_back("Prepayment invoice"),
            "The deal was moved back to Prepayment invoice."
        );
        assert_eq!(
            Language::Ru.gate_notice("Окна", "https://x/", "Текст."),
            "Сделка «Окна» https://x/: Текст."
        );
        assert_eq!(
            Language::Ru.copied_into("2", "77", "https://x/77/", "доставка"),
            "Создана копия сделки в воронке 2: сделка №77, https://x/77/ (правило «доставка»)"
        );
        assert_eq!(
            Language::Ru.copy_of(5, "https://x/5/", "доставка"),
            "Копия сделки №5: https://x/5/ (правило «доставка»)"
        );
        for language in [Language::Ru, Language::En] {
            assert!(language.require_message().contains("{MISSING}"));
            assert!(language.loss_reason_message().contains("{MISSING}"));
        }
    }
}

//! The shipped rule set (`rules/`, also built into the binary for `demo`): it loads without a
//! problem, and a new client's deal goes through the sales standard it describes.

use std::path::Path;
use std::time::Duration;

use b24_robot::rules::{RuleKind, RuleSet};
use serde_json::{Value, json};

use crate::helpers::{TestApp, seeded_portal, start_on, text};

const LIMIT: Duration = Duration::from_secs(20);

/// Every rule's name and kind: the stage-entry rules, then the time-driven ones.
fn names(set: &RuleSet) -> Vec<(String, RuleKind)> {
    set.rules()
        .iter()
        .map(|r| (r.name().to_string(), r.kind()))
        .chain(
            set.controls()
                .names()
                .into_iter()
                .map(|(name, kind)| (name.to_string(), kind)),
        )
        .collect()
}

#[test]
fn the_rules_folder_loads_without_errors_or_warnings() {
    // Tests run in the package root: this is the folder the project ships.
    let (set, warnings) = RuleSet::load_dir(Path::new("rules")).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(set.rules().len(), 12, "{:#?}", names(&set));
    assert_eq!(set.plans().len(), 4, "{:#?}", names(&set));
    assert_eq!(set.len(), 21, "{:#?}", names(&set));
    for kind in [
        RuleKind::Task,
        RuleKind::Require,
        RuleKind::LossReason,
        RuleKind::Nps,
        RuleKind::Tunnel,
    ] {
        assert!(
            set.rules().iter().any(|r| r.kind() == kind),
            "no {kind:?} rule in the shipped set"
        );
    }
}

/// `rules/40-control.toml`: the department's control rules, named as the digest includes them
/// (and as the demo and the docs refer to them), all written in that file.
#[test]
fn the_control_rules_load_from_their_own_file_with_the_names_the_digest_includes() {
    let (set, _) = RuleSet::load_dir(Path::new("rules")).expect("rules/ loads");
    let controls = set.controls();
    let expected = [
        ("offer-sla", RuleKind::Sla),
        ("overdue-tasks", RuleKind::Overdue),
        ("new-without-next-step", RuleKind::NoTask),
        ("repeat-without-next-step", RuleKind::NoTask),
        ("daily-control", RuleKind::Digest),
    ];
    assert_eq!(controls.names(), expected);
    let files: Vec<&str> = controls
        .sla()
        .iter()
        .map(|r| r.location().0)
        .chain(controls.overdue().iter().map(|r| r.location().0))
        .chain(controls.no_task().iter().map(|r| r.location().0))
        .chain(controls.digests().iter().map(|r| r.location().0))
        .collect();
    assert_eq!(files.len(), expected.len());
    assert!(
        files.iter().all(|f| f.ends_with("40-control.toml")),
        "{files:?}"
    );

    // The SLA watches the stage where "new-offer" has the offer sent.
    let sla = controls.sla_named("offer-sla").expect("offer-sla");
    assert_eq!((sla.pipeline(), sla.stage_text()), (0, "PREPARATION"));
    let offer = set
        .rules()
        .iter()
        .find(|r| r.name() == "new-offer")
        .expect("new-offer");
    assert_eq!(offer.kind(), RuleKind::Task);
    let overdue = controls.overdue_named("overdue-tasks").expect("overdue");
    assert_eq!(overdue.tasks(), b24_robot::rules::control::TaskScope::Rules);
    assert_eq!(overdue.pipeline(), None, "both pipelines");
    assert!(overdue.watches_moves());
    // Both pipelines, every in-progress stage, activities counted.
    let pipelines: Vec<u64> = controls.no_task().iter().map(|r| r.pipeline()).collect();
    assert_eq!(pipelines, [0, 1]);
    for rule in controls.no_task() {
        assert_eq!(rule.stages(), None, "{}", rule.name());
        assert!(rule.count_activities(), "{}", rule.name());
        assert_eq!(rule.after().to_string(), "4 hours");
    }
    let digest = controls.digest_named("daily-control").expect("digest");
    assert_eq!(
        digest.to(),
        &b24_robot::rules::control::DigestTo::Supervisor
    );
    let at = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0).expect("a time");
    assert_eq!(digest.slots(), [at(9, 30), at(17, 30)]);
    let mut included = digest.include().to_vec();
    included.sort();
    let mut watching: Vec<String> = expected[..4].iter().map(|(n, _)| n.to_string()).collect();
    watching.sort();
    assert_eq!(included, watching, "the digest includes every control rule");

    // The stage tasks that end with their stage close with it; the others stay.
    let closing: Vec<&str> = set
        .rules()
        .iter()
        .map(|r| r.name())
        .filter(|n| set.close_on_leave(n).is_some())
        .collect();
    assert_eq!(closing, ["new-qualify", "repeat-first-call"]);
    assert_eq!(
        set.close_on_leave("new-qualify"),
        Some(b24_robot::rules::control::CloseOnLeave::Complete)
    );
}

#[test]
fn the_embedded_rules_are_the_rules_folder() {
    let embedded = b24_robot::sandbox::seed::embedded_rules().unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let (on_disk, _) = RuleSet::load_dir(Path::new("rules")).expect("rules/ loads");
    assert_eq!(names(&embedded), names(&on_disk));
    // Same names and texts: the same version.
    assert_eq!(
        embedded.version(),
        on_disk.version(),
        "the binary embeds other rules than rules/ holds"
    );
    let files: Vec<String> = std::fs::read_dir("rules")
        .expect("rules/")
        .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
        .filter(|p| p.ends_with(".toml"))
        .collect();
    assert_eq!(
        files.len(),
        b24_robot::sandbox::seed::EMBEDDED_RULES.len(),
        "a rule file is not embedded: {files:?}"
    );
}

async fn shipped_app() -> TestApp {
    let sim = seeded_portal(Default::default()).await;
    let rules: Vec<(String, String)> = b24_robot::sandbox::seed::EMBEDDED_RULES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    start_on(
        sim,
        tempfile::tempdir().expect("temp dir"),
        &rules,
        &[],
        true,
    )
    .await
}

fn titles(app: &TestApp, deal: u64) -> Vec<String> {
    app.sim
        .tasks_for_deal(deal)
        .iter()
        .map(|t| text(&t["TITLE"]))
        .collect()
}

fn task(app: &TestApp, deal: u64, title: &str) -> Value {
    let found: Vec<Value> = app
        .sim
        .tasks_for_deal(deal)
        .into_iter()
        .filter(|t| t["TITLE"] == title)
        .collect();
    assert_eq!(found.len(), 1, "{title:?} among {:?}", titles(app, deal));
    found.into_iter().next().unwrap_or_default()
}

#[tokio::test]
async fn a_new_clients_deal_goes_through_the_shipped_sales_standard() {
    let app = shipped_app().await;
    let deal = app
        .sim
        .create_deal(
            json!({"TITLE": "Romashka LLC", "ASSIGNED_BY_ID": "3", "OPPORTUNITY": "240000.00",
            "CURRENCY_ID": "RUB", "CATEGORY_ID": "0", "STAGE_ID": "NEW"}),
        )
        .await;
    app.settle(LIMIT).await;
    task(&app, deal, "Qualify the request: call Romashka LLC");

    app.move_to(deal, "PREPARATION", LIMIT).await;
    let offer = task(&app, deal, "Send the commercial offer: Romashka LLC");
    assert_eq!(text(&offer["RESPONSIBLE_ID"]), "3");
    assert_eq!(
        offer["AUDITORS"],
        json!(["2"]),
        "the head of Sales watches the offer"
    );
    assert!(
        text(&offer["DEADLINE"]).ends_with("T18:00:00+03:00"),
        "{offer:#?}"
    );

    // Without the tax id and the contract number: moved back, told why.
    app.move_to(deal, "PREPAYMENT_INVOICE", LIMIT).await;
    app.wait_until(LIMIT, "moved back", |sim| {
        sim.deal(deal)
            .is_some_and(|d| d["STAGE_ID"] == "PREPARATION")
    })
    .await;
    app.settle(LIMIT).await;
    let comments: Vec<String> = app
        .sim
        .comments()
        .iter()
        .filter(|c| text(&c["ENTITY_ID"]) == deal.to_string())
        .map(|c| text(&c["COMMENT"]))
        .collect();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0]
            .starts_with("Fill in Tax ID (INN), Contract number before the prepayment invoice"),
        "{comments:?}"
    );
    assert_eq!(app.sim.notifications().len(), 1);
    assert_eq!(
        app.sim.tasks_for_deal(deal).len(),
        2,
        "no invoice task, no second offer task: {:?}",
        titles(&app, deal)
    );

    app.next_second().await;
    app.sim
        .update_deal(
            deal,
            json!({"UF_CRM_INN": "7701234567", "UF_CRM_CONTRACT_NO": "2026-117"}),
        )
        .await;
    app.settle(LIMIT).await;
    app.move_to(deal, "PREPAYMENT_INVOICE", LIMIT).await;
    assert_eq!(
        text(&app.sim.deal(deal).expect("deal")["STAGE_ID"]),
        "PREPAYMENT_INVOICE"
    );
    task(
        &app,
        deal,
        "Issue the prepayment invoice and get it paid: Romashka LLC",
    );

    app.move_to(deal, "WON", LIMIT).await;
    app.wait_until(LIMIT, "the repeat-sales copy", |sim| {
        sim.deals().iter().any(|d| d["CATEGORY_ID"] == "1")
    })
    .await;
    app.settle(LIMIT).await;
    let nps = task(
        &app,
        deal,
        "NPS: ask Romashka LLC how likely, 0 to 10, they would recommend us, and why",
    );
    assert_eq!(text(&nps["RESPONSIBLE_ID"]), "3");

    let copies: Vec<Value> = app
        .sim
        .deals()
        .into_iter()
        .filter(|d| d["CATEGORY_ID"] == "1")
        .collect();
    assert_eq!(copies.len(), 1, "{copies:#?}");
    let copy = &copies[0];
    assert_eq!(copy["TITLE"], "Repeat sale: Romashka LLC");
    assert_eq!(copy["STAGE_ID"], "C1:NEW");
    assert_eq!(copy["UF_CRM_INN"], "7701234567");
    assert_eq!(copy["ORIGINATOR_ID"], "b24-robot");
    let copy_id: u64 = text(&copy["ID"]).parse().expect("an id");
    let first_call = task(
        &app,
        copy_id,
        "Call Repeat sale: Romashka LLC: what do they need next?",
    );
    assert!(
        text(&first_call["DEADLINE"]).ends_with("T12:00:00+03:00"),
        "{first_call:#?}"
    );

    assert_eq!(
        titles(&app, deal),
        [
            "Qualify the request: call Romashka LLC",
            "Send the commercial offer: Romashka LLC",
            "Issue the prepayment invoice and get it paid: Romashka LLC",
            "NPS: ask Romashka LLC how likely, 0 to 10, they would recommend us, and why",
        ]
    );
    app.stop().await;
}

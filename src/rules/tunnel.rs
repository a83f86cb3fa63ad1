//! Tunnels that could feed themselves, found at load time, and the origin a copy carries, read
//! back at evaluation.
//!
//! A tunnel's copy is a new deal entering `to_stage`; if that entry fires a tunnel, whose copy
//! fires another, and so on back to the first, deals are made forever with no one moving one.
//! [`cycle_diagnostics`] finds every such cycle in the rules (strongly connected components of
//! the graph "the copy of T fires U", so a thousand tunnels cost a thousand, not a factorial)
//! and names one chain of each.
//!
//! Whether a copy's entry fires a `"won"`/`"lost"` tunnel depends on the kind of stage it
//! enters, which only the portal knows for sure. Offline, Bitrix24's standard codes decide
//! ([`offline_semantic`]); a custom stage (`UC_...`) may be of any kind, so a cycle through it
//! is only a warning, and `check --portal` decides it with the portal's own semantics.
//!
//! At run time the copy's `ORIGIN_ID` says which rule made it and how deep in a chain of copies
//! it is ([`CopyOrigin`]), so that a copy never fires the tunnel that made it and a chain that
//! slipped past the check stops at `rules.max_tunnel_depth`.

use std::collections::{BTreeSet, VecDeque};

use serde_json::Value;

use crate::diagnostics::{Diagnostic, Severity};
use crate::rules::deal::{Deal, StageSemantic};
use crate::rules::model::{Body, Rule, StageMatch, Tunnel, stage_id};

/// `ORIGINATOR_ID` of the deals the service creates: with `ORIGIN_ID` it is the documented pair
/// "for linking to an external source" (reference §6.4), and the key by which a copy is found
/// again.
pub const ORIGINATOR: &str = "b24-robot";

/// Where a copy came from, as its `ORIGIN_ID` says:
/// `<source deal>:<stage entry>:<rule>:<effect index>`, followed by `:<depth>` when the copy is
/// itself the copy of a copy (depth 2 or more). Without the depth part (every copy of depth 1,
/// and every copy made before depths were written) the depth is 1. Rule names hold no `:`, so
/// the parts are unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOrigin {
    pub deal_id: u64,
    pub entry_id: u64,
    pub rule: String,
    pub index: u32,
    /// 1 for a copy of a deal made by people, 2 for a copy of such a copy, ...
    pub depth: u32,
}

impl CopyOrigin {
    /// The origin of a deal the service made; `None` for any other deal (no or another
    /// `ORIGINATOR_ID`, or an `ORIGIN_ID` not of our shape).
    pub fn of(deal: &Deal) -> Option<CopyOrigin> {
        if deal.get("ORIGINATOR_ID").and_then(Value::as_str) != Some(ORIGINATOR) {
            return None;
        }
        CopyOrigin::parse(deal.get("ORIGIN_ID")?.as_str()?)
    }

    pub fn parse(text: &str) -> Option<CopyOrigin> {
        let mut parts = text.split(':');
        let deal_id = parts.next()?.parse().ok()?;
        let entry_id = parts.next()?.parse().ok()?;
        let rule = parts.next().filter(|r| !r.is_empty())?.to_string();
        let index = parts.next()?.parse().ok()?;
        let depth = match parts.next() {
            None => 1,
            Some(depth) => depth.parse().ok().filter(|d| *d >= 1)?,
        };
        parts.next().is_none().then_some(CopyOrigin {
            deal_id,
            entry_id,
            rule,
            index,
            depth,
        })
    }

    /// The effect that made the copy.
    pub fn id(&self) -> super::EffectId<'_> {
        super::EffectId {
            deal_id: self.deal_id,
            entry_id: self.entry_id,
            rule: &self.rule,
            index: self.index,
        }
    }
}

/// Deal fields Bitrix24 fills in itself: `crm.deal.fields` marks them `isReadOnly` (reference
/// §6.5 names the flag; the list is that of the standard deal fields of §6.1 which the portal
/// computes: creation and change stamps, the stage's kind, the repeat-deal flags, the lead and
/// quote a deal was converted from, the last activity). `check --portal` also reads the live
/// portal's `isReadOnly`, for custom fields.
pub const READ_ONLY_FIELDS: &[&str] = &[
    "DATE_CREATE",
    "DATE_MODIFY",
    "CREATED_BY_ID",
    "MODIFY_BY_ID",
    "MOVED_BY_ID",
    "MOVED_TIME",
    "STAGE_SEMANTIC_ID",
    "IS_NEW",
    "IS_RETURN_CUSTOMER",
    "IS_REPEATED_APPROACH",
    "LEAD_ID",
    "QUOTE_ID",
    "LAST_ACTIVITY_TIME",
    "LAST_ACTIVITY_BY",
];

/// Why a tunnel's `copy`/`set` may not name `field` (the fix, for the message), or `None` when
/// it may.
pub(crate) fn unwritable(field: &str) -> Option<&'static str> {
    Some(match field {
        "ID" => "Bitrix24 gives the copy its own ID: remove it",
        "STAGE_ID" => "the copy enters to_stage: remove it, and set to_stage instead",
        "CATEGORY_ID" => "the copy goes into to_pipeline: remove it, and set to_pipeline instead",
        "ORIGINATOR_ID" | "ORIGIN_ID" => "the service writes it to find the copy again: remove it",
        f if READ_ONLY_FIELDS.contains(&f) => {
            "a read-only field of crm.deal.fields: Bitrix24 fills it in itself; remove it"
        }
        _ => return None,
    })
}

/// The kind of a stage from its id alone, by Bitrix24's standard codes (reference §6.6: `WON`
/// is the success stage, `LOSE` and `APOLOGY` failure stages, `NEW` ... `FINAL_INVOICE` in
/// progress), in any pipeline (`C2:WON`). `None` for a custom stage (`C2:UC_7XK2QD`): it may be
/// of any kind.
pub fn offline_semantic(stage_id: &str) -> Option<StageSemantic> {
    let code = stage_id.rsplit(':').next().unwrap_or_default();
    match code {
        "WON" => Some(StageSemantic::Success),
        "LOSE" | "APOLOGY" => Some(StageSemantic::Failure),
        "NEW" | "PREPARATION" | "PREPAYMENT_INVOICE" | "EXECUTING" | "FINAL_INVOICE" => {
            Some(StageSemantic::Process)
        }
        _ => None,
    }
}

/// Whether the copy of one tunnel, entering its `to_stage`, fires another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fires {
    Surely,
    /// Only if the stage is of the kind the other tunnel waits for, which is not known.
    Maybe,
}

fn fires(
    from: &Tunnel,
    rule: &Rule,
    semantic: &dyn Fn(&str) -> Option<StageSemantic>,
) -> Option<Fires> {
    if !rule.in_pipeline(from.to_pipeline) {
        return None;
    }
    let wanted = match &rule.stage {
        StageMatch::Exact(code) => {
            return (stage_id(from.to_pipeline, code) == from.to_stage).then_some(Fires::Surely);
        }
        StageMatch::Won => StageSemantic::Success,
        StageMatch::Lost => StageSemantic::Failure,
    };
    match semantic(&from.to_stage) {
        Some(kind) if kind == wanted => Some(Fires::Surely),
        Some(_) => None,
        None => Some(Fires::Maybe),
    }
}

/// Every tunnel cycle of `rules`, one diagnostic per group of tunnels that feed each other, at
/// the `to_stage` of its first tunnel in load order: an error when every step surely fires, a
/// warning when a step depends on a stage of unknown kind. `semantic` tells a stage's kind
/// (offline: [`offline_semantic`]; `check --portal`: the portal's).
pub(crate) fn cycle_diagnostics(
    rules: &[Rule],
    semantic: &dyn Fn(&str) -> Option<StageSemantic>,
) -> Vec<Diagnostic> {
    let tunnels: Vec<(&Rule, &Tunnel)> = rules
        .iter()
        .filter_map(|r| match &r.body {
            Body::Tunnel(t) => Some((r, t)),
            _ => None,
        })
        .collect();
    // edges[i]: the tunnels the copy of tunnel i fires, with how surely.
    let edges: Vec<Vec<(usize, Fires)>> = tunnels
        .iter()
        .map(|(_, from)| {
            tunnels
                .iter()
                .enumerate()
                .filter_map(|(j, (rule, _))| fires(from, rule, semantic).map(|f| (j, f)))
                .collect()
        })
        .collect();
    let sure: Vec<Vec<usize>> = edges
        .iter()
        .map(|out| {
            out.iter()
                .filter(|(_, f)| *f == Fires::Surely)
                .map(|(j, _)| *j)
                .collect()
        })
        .collect();
    let all: Vec<Vec<usize>> = edges
        .iter()
        .map(|out| out.iter().map(|(j, _)| *j).collect())
        .collect();

    let mut found = Vec::new();
    let mut in_sure_cycle = BTreeSet::new();
    for group in cyclic_groups(&sure) {
        in_sure_cycle.extend(group.iter().copied());
        if let Some(path) = shortest_cycle(group[0], &sure, &group) {
            found.push((path, Severity::Error));
        }
    }
    for group in cyclic_groups(&all) {
        // A group made only of tunnels already refused would add nothing but noise.
        let Some(start) = group.iter().copied().find(|i| !in_sure_cycle.contains(i)) else {
            continue;
        };
        if let Some(path) = shortest_cycle(start, &all, &group) {
            found.push((path, Severity::Warning));
        }
    }
    found
        .into_iter()
        .map(|(path, severity)| {
            let (rule, tunnel) = tunnels[path[0]];
            let steps: Vec<String> = path
                .iter()
                .map(|&i| {
                    let (rule, tunnel) = tunnels[i];
                    format!("{} ({} → {})", rule.name, entered(rule), tunnel.to_stage)
                })
                .collect();
            let chain = format!(
                "{}, whose copy fires {} again",
                steps.join(", whose copy fires "),
                rule.name
            );
            let (message, help) = match severity {
                Severity::Error => (
                    format!("tunnel cycle: {chain}"),
                    "each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel".to_string(),
                ),
                Severity::Warning => {
                    let unknown: BTreeSet<String> = path
                        .iter()
                        .zip(path.iter().skip(1).chain(path.first()))
                        .filter(|&(&i, &j)| {
                            edges[i].iter().any(|&(k, f)| k == j && f == Fires::Maybe)
                        })
                        .map(|(&i, &j)| {
                            let kind = match tunnels[j].0.stage {
                                StageMatch::Won => "a success",
                                _ => "a failure",
                            };
                            format!("{} is {kind} stage", tunnels[i].1.to_stage)
                        })
                        .collect();
                    (
                        format!(
                            "possible tunnel cycle: {chain}, if {}",
                            unknown.into_iter().collect::<Vec<_>>().join(" and ")
                        ),
                        "only the portal knows: b24-robot check --portal tells; at run time a chain stops after rules.max_tunnel_depth copies".to_string(),
                    )
                }
            };
            let (line, column) = tunnel.to_stage_at;
            Diagnostic {
                file: rule.file.clone(),
                line,
                column,
                rule: Some(rule.name.clone()),
                message,
                help: Some(help),
                severity,
            }
        })
        .collect()
}

/// The stage entries a rule waits for, in a cycle's description.
fn entered(rule: &Rule) -> String {
    let scope = match rule.pipelines.as_deref() {
        Some([p]) => format!("in pipeline {p}"),
        Some(ps) => format!(
            "in pipelines {}",
            ps.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        ),
        None => "in any pipeline".to_string(),
    };
    match &rule.stage {
        StageMatch::Exact(_) => rule.stage_ids().join(" or "),
        StageMatch::Won => format!("won {scope}"),
        StageMatch::Lost => format!("lost {scope}"),
    }
}

/// The strongly connected components that hold a cycle (more than one node, or a node with an
/// edge to itself), each sorted, in order of their first node (Kosaraju's algorithm, without
/// recursion so that a long chain cannot overflow the stack).
fn cyclic_groups(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut reverse = vec![Vec::new(); n];
    for (i, out) in edges.iter().enumerate() {
        for &j in out {
            reverse[j].push(i);
        }
    }
    // First pass: nodes in order of finishing.
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for root in 0..n {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            if let Some(&to) = edges[*node].get(*next) {
                *next += 1;
                if !seen[to] {
                    seen[to] = true;
                    stack.push((to, 0));
                }
            } else {
                order.push(*node);
                stack.pop();
            }
        }
    }
    // Second pass, on the reversed graph, in reverse finishing order.
    let mut group_of = vec![usize::MAX; n];
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &root in order.iter().rev() {
        if group_of[root] != usize::MAX {
            continue;
        }
        let id = groups.len();
        let mut members = Vec::new();
        group_of[root] = id;
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            members.push(node);
            for &from in &reverse[node] {
                if group_of[from] == usize::MAX {
                    group_of[from] = id;
                    stack.push(from);
                }
            }
        }
        members.sort_unstable();
        groups.push(members);
    }
    let mut cyclic: Vec<Vec<usize>> = groups
        .into_iter()
        .filter(|g| g.len() > 1 || edges[g[0]].contains(&g[0]))
        .collect();
    cyclic.sort_by_key(|g| g[0]);
    cyclic
}

/// The shortest path from `start` back to itself within `group` (breadth first), as the nodes
/// it visits from `start` on.
fn shortest_cycle(start: usize, edges: &[Vec<usize>], group: &[usize]) -> Option<Vec<usize>> {
    let mut came_from: Vec<Option<usize>> = vec![None; edges.len()];
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &to in &edges[node] {
            if group.binary_search(&to).is_err() {
                continue;
            }
            if to == start {
                let mut path = vec![node];
                let mut at = node;
                while at != start {
                    at = came_from[at]?;
                    path.push(at);
                }
                path.reverse();
                return Some(path);
            }
            if came_from[to].is_none() {
                came_from[to] = Some(node);
                queue.push_back(to);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_without_a_depth_is_a_copy_of_depth_1_and_depths_from_2_are_written() {
        let old = CopyOrigin::parse("5:100:to-repeat-sales:0").expect("an origin");
        assert_eq!(
            old,
            CopyOrigin {
                deal_id: 5,
                entry_id: 100,
                rule: "to-repeat-sales".into(),
                index: 0,
                depth: 1
            }
        );
        assert_eq!(
            crate::rules::EffectId {
                deal_id: 5,
                entry_id: 100,
                rule: "to-repeat-sales",
                index: 0
            }
            .origin_id(1),
            "5:100:to-repeat-sales:0"
        );
        let deep = crate::rules::EffectId {
            deal_id: 7,
            entry_id: 3,
            rule: "back",
            index: 0,
        }
        .origin_id(3);
        assert_eq!(deep, "7:3:back:0:3");
        assert_eq!(CopyOrigin::parse(&deep).map(|o| o.depth), Some(3));
        for foreign in [
            "",
            "crm-import-17",
            "5:100:r",
            "5:x:r:0",
            "5:1:r:0:0",
            "5:1:r:0:2:9",
        ] {
            assert_eq!(CopyOrigin::parse(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn standard_stage_codes_have_their_kind_and_custom_ones_none() {
        assert_eq!(offline_semantic("C2:WON"), Some(StageSemantic::Success));
        assert_eq!(offline_semantic("APOLOGY"), Some(StageSemantic::Failure));
        assert_eq!(offline_semantic("C1:NEW"), Some(StageSemantic::Process));
        assert_eq!(offline_semantic("C1:UC_7XK2QD"), None);
    }

    #[test]
    fn groups_and_cycles_are_found_without_recursion_in_a_long_chain() {
        // 0 → 1 → ... → 9999 → 0, and 10000 alone.
        let n = 10_000;
        let mut edges: Vec<Vec<usize>> = (0..n).map(|i| vec![(i + 1) % n]).collect();
        edges.push(Vec::new());
        let groups = cyclic_groups(&edges);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].len(), n);
        let path = shortest_cycle(0, &edges, &groups[0]).expect("a cycle");
        assert_eq!(path.len(), n);
        assert_eq!(path[1], 1);
    }
}

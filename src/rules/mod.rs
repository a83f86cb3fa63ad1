//! TEMPORARY STUB on main: replaced by the rules branch.
#![allow(dead_code, unused_variables)]
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use crate::calendar::Calendar;
#[derive(Debug, Clone)]
pub struct RuleSet;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity { Error, Warning }
#[derive(Debug, Clone)]
pub struct Diagnostic { pub file: String, pub line: usize, pub column: usize, pub rule: Option<String>, pub message: String, pub help: Option<String>, pub severity: Severity }
impl std::fmt::Display for Diagnostic { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}", self.message) } }
impl RuleSet {
    pub fn load_dir(dir: &std::path::Path) -> Result<(RuleSet, Vec<Diagnostic>), Vec<Diagnostic>> { Ok((RuleSet, vec![])) }
    pub fn from_sources(files: &[(String, String)]) -> Result<(RuleSet, Vec<Diagnostic>), Vec<Diagnostic>> { Ok((RuleSet, vec![])) }
    pub fn version(&self) -> &str { "" }
    pub fn len(&self) -> usize { 0 }
    pub fn is_empty(&self) -> bool { true }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleKind { Task, Require, LossReason, Nps, Tunnel }
#[derive(Debug, Clone)]
pub struct Deal(Map<String, Value>);
impl Deal {
    pub fn new(map: Map<String, Value>) -> Deal { Deal(map) }
    pub fn id(&self) -> Option<u64> { None }
    pub fn get(&self, field: &str) -> Option<&Value> { self.0.get(field) }
    pub fn stage_id(&self) -> Option<&str> { None }
    pub fn category_id(&self) -> Option<u64> { None }
    pub fn assigned_by(&self) -> Option<u64> { None }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageSemantic { Process, Success, Failure }
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEntry { pub id: u64, pub type_id: u8, pub stage_id: String, pub category_id: u64, pub semantic: StageSemantic, pub created_time: chrono::DateTime<chrono::FixedOffset> }
#[derive(Debug, Clone, Default)]
pub struct FieldCatalog;
impl FieldCatalog { pub fn empty() -> Self { FieldCatalog } pub fn from_deal_fields(fields: &Value) -> Self { FieldCatalog } }
pub struct Input<'a> { pub deal: &'a Deal, pub entry: &'a StageEntry, pub previous_stage: Option<&'a str>, pub catalog: &'a FieldCatalog, pub calendar: &'a Calendar, pub portal_origin: &'a str }
pub fn evaluate(rules: &RuleSet, input: &Input) -> Evaluation { Evaluation { decisions: vec![] } }
#[derive(Debug, Clone)]
pub struct Evaluation { pub decisions: Vec<Decision> }
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision { pub rule: String, pub kind: RuleKind, pub outcome: Outcome, pub notes: Vec<String> }
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SkipReason { ConditionFalse, Reverted { by: String } }
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome { Fired(Vec<Effect>), Skipped(SkipReason), Failed(String) }
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect { CreateTask(TaskSpec), AddComment { text: String }, Notify { user: Person, message: String }, MoveBack { to_stage: String }, CopyDeal(CopySpec) }
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec { pub title: String, pub description: Option<String>, pub responsible: Person, pub auditors: Vec<Person>, pub deadline: Option<chrono::DateTime<chrono::FixedOffset>> }
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopySpec { pub to_pipeline: u64, pub to_stage: String, pub fields: Map<String, Value>, pub responsible: Person }
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Person { User(u64), SupervisorOf(u64), Unresolved(String) }

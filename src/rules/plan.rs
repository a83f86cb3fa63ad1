//! `[[plan]]`: a sales plan for a period, per person or for a whole direction (`control.md`).
//!
//! Valid plans only, as [`super::model`]: built by `compile`, fields private to `rules`, read
//! through the accessors. A plan does nothing by itself; the `plan` report
//! (`crate::reports::plan`) measures the won deals against it.

use super::control::Origin;
use super::period::ReportPeriod;

/// A figure in hundredths: money to the kopeck (or cent), exactly, and counts as whole
/// hundreds. Sums of `OPPORTUNITY` must not drift as `f64` sums do, and one type lets a plan's
/// target, done and remaining be the same whatever its measure. Written to JSON as a number
/// (`1500000`, `99.5`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// From hundredths: `Amount::from_hundredths(150)` is 1.50.
    pub const fn from_hundredths(hundredths: i64) -> Amount {
        Amount(hundredths)
    }

    /// A whole number: a count, or money without kopecks.
    pub const fn whole(n: i64) -> Amount {
        Amount(n.saturating_mul(100))
    }

    pub const fn hundredths(self) -> i64 {
        self.0
    }

    /// A number as written in a rule file or sent by Bitrix24, rounded to the hundredth.
    pub fn from_f64(x: f64) -> Option<Amount> {
        let scaled = (x * 100.0).round();
        (scaled.is_finite() && scaled.abs() < i64::MAX as f64).then_some(Amount(scaled as i64))
    }

    /// A decimal as Bitrix24 writes money (`"150000.00"`, `"99.5"`, `"-3"`), exactly; more
    /// than two decimals are rounded half away from zero.
    pub fn parse(text: &str) -> Option<Amount> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return None;
        }
        let mut hundredths: i64 = whole.parse::<i64>().ok()?.checked_mul(100)?;
        let mut tail = fraction.bytes().map(|b| i64::from(b - b'0'));
        hundredths += 10 * tail.next().unwrap_or(0) + tail.next().unwrap_or(0);
        if tail.next().is_some_and(|d| d >= 5) {
            hundredths += 1;
        }
        Some(Amount(if negative { -hundredths } else { hundredths }))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }

    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }
}

impl std::ops::Add for Amount {
    type Output = Amount;
    fn add(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }
}

impl std::ops::AddAssign for Amount {
    fn add_assign(&mut self, other: Amount) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Amount {
    fn sum<I: Iterator<Item = Amount>>(iter: I) -> Amount {
        iter.fold(Amount::ZERO, |a, b| a + b)
    }
}

/// A JSON number: whole when it is whole (`1500000`, not `1500000.0`).
impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            s.serialize_i64(self.0 / 100)
        } else {
            s.serialize_f64(self.as_f64())
        }
    }
}

/// As a text table prints it: whole when whole (`1500000`), else with two decimals (`99.50`).
impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let (whole, cents) = (self.0.unsigned_abs() / 100, self.0.unsigned_abs() % 100);
        if cents == 0 {
            write!(f, "{sign}{whole}")
        } else {
            write!(f, "{sign}{whole}.{cents:02}")
        }
    }
}

/// Read back from the number [`serde::Serialize`] writes, so a stored copy keeps its amounts.
impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        let x = f64::deserialize(d)?;
        Amount::from_f64(x).ok_or_else(|| serde::de::Error::custom(format!("{x} is no amount")))
    }
}

/// What a plan sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The deals' `OPPORTUNITY`, in the plan's currency only.
    Amount,
    /// The number of won deals, of every currency.
    Count,
}

/// Whom a plan's target is set for.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanTarget {
    /// `target = N`: one figure for the whole plan.
    Whole(Amount),
    /// `targets = { user_id = N }`: per `ASSIGNED_BY_ID`, in the order written.
    People(Vec<(u64, Amount)>),
}

/// `[[plan]]`: a target for the deals won in `period`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub(in crate::rules) name: String,
    pub(in crate::rules) origin: Origin,
    pub(in crate::rules) period: ReportPeriod,
    pub(in crate::rules) pipeline: Option<u64>,
    pub(in crate::rules) measure: Measure,
    /// Set exactly when `measure` is `Amount` (the loader requires it then and refuses it
    /// otherwise), upper-case ISO 4217: `"RUB"`.
    pub(in crate::rules) currency: Option<String>,
    pub(in crate::rules) target: PlanTarget,
}

impl Plan {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file and line of its `[[plan]]`.
    pub fn origin(&self) -> (&str, usize) {
        (&self.origin.file, self.origin.line)
    }

    pub fn period(&self) -> ReportPeriod {
        self.period
    }

    /// `None`: deals of every pipeline count.
    pub fn pipeline(&self) -> Option<u64> {
        self.pipeline
    }

    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// The one currency summed (`measure = "amount"`); `None` for a count.
    pub fn currency(&self) -> Option<&str> {
        self.currency.as_deref()
    }

    pub fn target(&self) -> &PlanTarget {
        &self.target
    }

    /// The plan's whole target: the sum of the people's with `targets` (a company plan is the
    /// sum of personal plans, as Bitrix24's own plan shows it).
    pub fn total_target(&self) -> Amount {
        match &self.target {
            PlanTarget::Whole(t) => *t,
            PlanTarget::People(people) => people.iter().map(|(_, t)| *t).sum(),
        }
    }
}

//! The request accounting of a run as the summaries print it: one line of
//! requests by kind with the body bytes each way, the estimated cost with
//! `--cost-per-1000`, and the `cost_usd` field `--json` adds
//! (`docs/json.md`).

use serde::Serialize;

use crate::cli::output::{OutputError, outln};
use crate::cost::CostSpec;
use crate::store::RequestCounts;

/// `requests: 14 (list 2, put 8, …); 12.0 MiB out, 3.4 KiB in`: the
/// kinds with any request, in a fixed order, and the body bytes (not
/// "sent" and "received": the summaries' own lines say those of files).
pub(crate) fn line(label: &str, r: &RequestCounts) -> String {
    let kinds: Vec<String> = r
        .kinds()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{} {n}", kind.replace('_', " ")))
        .collect();
    let by_kind = if kinds.is_empty() {
        String::new()
    } else {
        format!(" ({})", kinds.join(", "))
    };
    format!(
        "{label}: {}{by_kind}; {} out, {} in",
        r.total(),
        indicatif::HumanBytes(r.bytes_sent),
        indicatif::HumanBytes(r.bytes_received)
    )
}

/// Prints the requests line, and the estimate when SPEC was given.
///
/// # Errors
/// Writing stdout failed.
pub(crate) fn print(r: &RequestCounts, cost: Option<&CostSpec>) -> Result<(), OutputError> {
    outln!("  {}", line("requests", r))?;
    if let Some(spec) = cost {
        outln!(
            "  estimated cost: {} USD (an estimate, at --cost-per-1000 {spec})",
            usd(spec.prices.estimate(r))
        )?;
    }
    Ok(())
}

/// A dollar amount with enough digits to show a small run's cost.
pub(crate) fn usd(x: f64) -> String {
    format!("{x:.6}")
}

/// A `--json` report with the estimated cost added (`cost_usd`, and for a
/// dry run `would_cost_usd`, of what the real run would send).
#[derive(Serialize)]
pub(crate) struct WithCost<'a, T: Serialize> {
    /// The report as it is.
    #[serde(flatten)]
    pub(crate) report: &'a T,
    /// The estimate of the run's requests, with `--cost-per-1000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cost_usd: Option<f64>,
    /// The estimate of what the real run would send (dry runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) would_cost_usd: Option<f64>,
}

impl<'a, T: Serialize> WithCost<'a, T> {
    /// `report` with the cost of `requests` at `spec`'s prices (none without SPEC).
    pub(crate) fn new(report: &'a T, requests: &RequestCounts, spec: Option<&CostSpec>) -> Self {
        WithCost {
            report,
            cost_usd: spec.map(|s| s.prices.estimate(requests)),
            would_cost_usd: None,
        }
    }
}

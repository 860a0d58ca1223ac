//! The order state machine: one transition table, no I/O.
//!
//! Guarantees, whatever order and however often news arrives:
//! - a status never moves backwards (a late `pending` after `filled` changes nothing);
//! - a terminal status (`filled`, `cancelled`, `rejected`, `expired`) never reopens;
//! - the filled quantity never decreases (news is merged with `max`).
//!
//! An unknown venue status is kept verbatim by the caller and resolved by a REST query.

use crate::model::checked::{div, mul, sub};
use crate::model::Overflow;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Written locally with its `clientOrderId`; not yet sent.
    Intent,
    /// Sent, but the outcome is not known (timeout, 5xx, reset): to be resolved by asking the venue.
    Unknown,
    Pending,
    Open,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
    Expired,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Unknown => "unknown",
            Self::Pending => "pending",
            Self::Open => "open",
            Self::PartiallyFilled => "partially_filled",
            Self::Filled => "filled",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    /// Parses our stored form, which for venue statuses is also the venue's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "intent" => Self::Intent,
            "unknown" => Self::Unknown,
            "pending" => Self::Pending,
            "open" => Self::Open,
            "partially_filled" => Self::PartiallyFilled,
            "filled" => Self::Filled,
            "cancelled" => Self::Cancelled,
            "rejected" => Self::Rejected,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// **[decided]** the venue's full status set; anything else is unknown news.
    pub fn from_venue(s: &str) -> Option<Self> {
        Self::parse(s).filter(|s| !matches!(s, Self::Intent | Self::Unknown))
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Filled | Self::Cancelled | Self::Rejected | Self::Expired
        )
    }

    /// Counts toward exposure: the order may still fill.
    pub fn is_working(self) -> bool {
        !self.is_terminal()
    }
}

/// What news about an order does to its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move to this status.
    To(OrderStatus),
    /// Same status again, or older news: keep the status (fills may still be merged).
    Keep,
    /// News contradicting a terminal status (e.g. `cancelled` after `filled`): keep, and report.
    Conflict,
}

/// The one transition table. `seen` is the status the news reports.
pub fn transition(current: OrderStatus, seen: OrderStatus) -> Transition {
    use OrderStatus::*;
    use Transition::{Conflict, Keep, To};
    match (current, seen) {
        // The same news again.
        (Intent, Intent)
        | (Unknown, Unknown)
        | (Pending, Pending)
        | (Open, Open)
        | (PartiallyFilled, PartiallyFilled)
        | (Filled, Filled)
        | (Cancelled, Cancelled)
        | (Rejected, Rejected)
        | (Expired, Expired) => Keep,
        // Our own submission bookkeeping.
        (Intent, Unknown) => To(Unknown),
        (Unknown, Intent) => Keep,
        // First news from the venue, whatever it is.
        (Intent | Unknown, s) => To(s),
        // Ordinary progress.
        (Pending, Open | PartiallyFilled | Filled | Cancelled | Rejected | Expired) => To(seen),
        (Open, PartiallyFilled | Filled | Cancelled | Expired) => To(seen),
        (PartiallyFilled, Filled | Cancelled | Expired) => To(seen),
        // Late news about an earlier stage.
        (Pending | Open | PartiallyFilled, Intent | Unknown | Pending) => Keep,
        (PartiallyFilled, Open) => Keep,
        // An accepted order cannot become rejected; treat as contradictory news.
        (Open | PartiallyFilled, Rejected) => Conflict,
        // Terminal states never reopen; older stages are just late.
        (
            Filled | Cancelled | Rejected | Expired,
            Intent | Unknown | Pending | Open | PartiallyFilled,
        ) => Keep,
        (Filled | Cancelled | Rejected | Expired, _) => Conflict,
    }
}

/// An order's venue-facing progress, merged from every piece of news.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub status: OrderStatus,
    pub filled_quantity: Decimal,
    pub average_price: Option<Decimal>,
}

/// What applying news changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub progress: Progress,
    /// A fill not seen before: `(quantity, price)`, to be booked into the position.
    pub new_fill: Option<(Decimal, Decimal)>,
    pub conflict: bool,
}

/// Merges news (`seen` status, cumulative filled quantity and average price) into `current`;
/// numbers a `Decimal` cannot compute with are an [`Overflow`].
pub fn apply(
    current: &Progress,
    seen: OrderStatus,
    filled_quantity: Option<Decimal>,
    average_price: Option<Decimal>,
) -> Result<Applied, Overflow> {
    let (status, conflict) = match transition(current.status, seen) {
        Transition::To(s) => (s, false),
        Transition::Keep => (current.status, false),
        Transition::Conflict => (current.status, true),
    };
    let mut progress = Progress {
        status,
        ..current.clone()
    };
    let mut new_fill = None;
    if let (Some(filled), Some(avg)) = (filled_quantity, average_price) {
        if filled > current.filled_quantity {
            // Cumulative quantity and average price give the new fill's size and price exactly.
            let before = mul(
                current.filled_quantity,
                current.average_price.unwrap_or_default(),
            )?;
            let delta_qty = sub(filled, current.filled_quantity)?;
            let delta_price = div(sub(mul(filled, avg)?, before)?, delta_qty)?;
            new_fill = Some((delta_qty, delta_price));
            progress.filled_quantity = filled;
            progress.average_price = Some(avg);
        }
    }
    Ok(Applied {
        progress,
        new_fill,
        conflict,
    })
}

/// The deterministic `clientOrderId` of an order leg: the same strategy, signal and leg always give
/// the same id, so a replay or a retry after a crash can never create a second order.
/// Charset `[A-Za-z0-9_-]`, 35 characters.
pub fn client_order_id(strategy: &str, signal_key: &str, leg: &str) -> String {
    let mut h = Sha256::new();
    for part in [strategy, signal_key, leg] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    format!("sx-{}", &hex::encode(h.finalize())[..32])
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn transition_table() {
        let cases: &[(&str, OrderStatus, OrderStatus, Transition)] = &[
            (
                "submission times out",
                Intent,
                Unknown,
                Transition::To(Unknown),
            ),
            ("venue accepts", Intent, Pending, Transition::To(Pending)),
            (
                "unknown resolved as filled",
                Unknown,
                Filled,
                Transition::To(Filled),
            ),
            (
                "unknown resolved as rejected",
                Unknown,
                Rejected,
                Transition::To(Rejected),
            ),
            ("pending fills", Pending, Filled, Transition::To(Filled)),
            (
                "open partially fills",
                Open,
                PartiallyFilled,
                Transition::To(PartiallyFilled),
            ),
            (
                "partial completes",
                PartiallyFilled,
                Filled,
                Transition::To(Filled),
            ),
            (
                "partial cancelled",
                PartiallyFilled,
                Cancelled,
                Transition::To(Cancelled),
            ),
            ("late pending after open", Open, Pending, Transition::Keep),
            (
                "late open after partial",
                PartiallyFilled,
                Open,
                Transition::Keep,
            ),
            ("duplicate filled", Filled, Filled, Transition::Keep),
            (
                "late pending after filled",
                Filled,
                Pending,
                Transition::Keep,
            ),
            (
                "late partial after filled",
                Filled,
                PartiallyFilled,
                Transition::Keep,
            ),
            (
                "cancelled after filled",
                Filled,
                Cancelled,
                Transition::Conflict,
            ),
            (
                "filled after cancelled",
                Cancelled,
                Filled,
                Transition::Conflict,
            ),
            ("rejected after open", Open, Rejected, Transition::Conflict),
            (
                "accepted order goes back to unknown",
                Pending,
                Unknown,
                Transition::Keep,
            ),
        ];
        for (name, from, seen, want) in cases {
            assert_eq!(transition(*from, *seen), *want, "{name}");
        }
    }

    #[test]
    fn every_pair_is_total_and_terminal_states_never_reopen() {
        let all = [
            Intent,
            Unknown,
            Pending,
            Open,
            PartiallyFilled,
            Filled,
            Cancelled,
            Rejected,
            Expired,
        ];
        for from in all {
            for seen in all {
                if let Transition::To(to) = transition(from, seen) {
                    assert!(!from.is_terminal(), "{from:?} reopened to {to:?}");
                }
            }
        }
    }

    #[test]
    fn filled_quantity_never_decreases_and_fills_are_priced_exactly() {
        let start = Progress {
            status: Pending,
            filled_quantity: Decimal::ZERO,
            average_price: None,
        };
        let a = apply(&start, PartiallyFilled, Some(dec("0.4")), Some(dec("100"))).unwrap();
        assert_eq!(a.new_fill, Some((dec("0.4"), dec("100"))));
        let b = apply(&a.progress, Filled, Some(dec("1.0")), Some(dec("106"))).unwrap();
        assert_eq!(b.new_fill, Some((dec("0.6"), dec("110"))));
        assert_eq!(b.progress.status, Filled);
        // A late, smaller report changes nothing.
        let c = apply(
            &b.progress,
            PartiallyFilled,
            Some(dec("0.4")),
            Some(dec("100")),
        )
        .unwrap();
        assert_eq!(c.progress, b.progress);
        assert_eq!(c.new_fill, None);
    }

    #[test]
    fn client_order_ids_are_deterministic_and_valid() {
        let a = client_order_id("momentum", "sig-1", "entry");
        assert_eq!(a, client_order_id("momentum", "sig-1", "entry"));
        assert_ne!(a, client_order_id("momentum", "sig-2", "entry"));
        assert_ne!(a, client_order_id("momentu", "msig-1", "entry"));
        assert!(a.len() <= 36);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}

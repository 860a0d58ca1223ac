//! The trading sections of the config: account-wide `[limits]`, `[maintenance]`, `[alerts.LEVEL]`,
//! symbol specs (`[symbol_defaults]`, `[symbols."BTC/USD"]`). Strict like the rest: unknown keys
//! and impossible values stop start-up naming the section, the key and what would be valid.

use crate::risk::alerts::{AlertAction, AlertPolicy};
use crate::risk::limits::AccountLimits;
use crate::risk::maintenance::MaintenanceSettings;
use crate::risk::sizing::SymbolSpec;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Everything the risk manager and the trading-state controls take from the config.
#[derive(Debug, Clone, Default)]
pub struct TradingConfig {
    pub limits: AccountLimits,
    pub maintenance: MaintenanceSettings,
    pub alerts: AlertPolicy,
    /// Specs for listed symbols; others get `symbol_defaults`.
    pub symbols: BTreeMap<String, SymbolSpec>,
    pub symbol_defaults: SymbolSpec,
}

impl TradingConfig {
    /// Fee rates by symbol, `""` for every symbol not listed: what `Store::set_fee_rates` keeps.
    pub fn fee_rates(&self) -> Vec<(String, Decimal)> {
        std::iter::once((String::new(), self.symbol_defaults.fee_bps))
            .chain(
                self.symbols
                    .iter()
                    .map(|(s, spec)| (s.clone(), spec.fee_bps)),
            )
            .collect()
    }

    pub fn spec(&self, symbol: &str) -> SymbolSpec {
        self.symbols
            .get(symbol)
            .copied()
            .unwrap_or(self.symbol_defaults)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_order_notional: Option<Decimal>,
    max_position_notional: Option<Decimal>,
    max_gross_exposure: Option<Decimal>,
    #[serde(default, deserialize_with = "whole")]
    max_open_orders: Option<u32>,
    #[serde(default, deserialize_with = "whole")]
    max_orders_per_minute: Option<u32>,
    daily_loss_limit: Option<Decimal>,
    max_drawdown_percent: Option<Decimal>,
    max_margin_ratio: Option<Decimal>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    #[serde(default, deserialize_with = "whole")]
    lead_secs: Option<i64>,
    #[serde(default, deserialize_with = "whole")]
    settle_secs: Option<i64>,
    #[serde(default, deserialize_with = "flag")]
    cancel_open_orders: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    action: String,
    factor: Option<Decimal>,
    #[serde(default, deserialize_with = "whole")]
    duration_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSymbol {
    lot_step: Option<Decimal>,
    tick_size: Option<Decimal>,
    min_quantity: Option<Decimal>,
    fee_bps: Option<Decimal>,
}

pub(super) struct RawTrading {
    pub limits: RawLimits,
    pub maintenance: RawMaintenance,
    pub alerts: BTreeMap<String, RawAlert>,
    pub symbols: BTreeMap<String, RawSymbol>,
    pub symbol_defaults: RawSymbol,
}

/// A whole number written as a TOML integer or, from a `SIGEX_*` environment override, as text.
fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64> + std::str::FromStr,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    let bad = || serde::de::Error::custom("expected a whole number");
    match Raw::deserialize(d)? {
        Raw::Int(n) => T::try_from(n).map(Some).map_err(|_| bad()),
        Raw::Text(s) => s.trim().parse().map(Some).map_err(|_| bad()),
    }
}

/// `true`/`false` as a TOML boolean or, from an environment override, as text.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(b) => Ok(Some(b)),
        Raw::Text(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("expected true or false")),
    }
}

fn positive(key: &str, v: Option<Decimal>) -> Result<Option<Decimal>, String> {
    match v {
        Some(v) if v <= Decimal::ZERO => Err(format!(
            "{key} = {v} must be above zero (remove it to disable the limit)"
        )),
        v => Ok(v),
    }
}

fn spec(section: &str, raw: &RawSymbol, base: SymbolSpec) -> Result<SymbolSpec, String> {
    let key = |k: &str| format!("[{section}] {k}");
    let s = SymbolSpec {
        lot_step: positive(&key("lot_step"), raw.lot_step)?.unwrap_or(base.lot_step),
        tick_size: positive(&key("tick_size"), raw.tick_size)?.unwrap_or(base.tick_size),
        min_quantity: positive(&key("min_quantity"), raw.min_quantity)?
            .unwrap_or(base.min_quantity),
        fee_bps: match raw.fee_bps {
            Some(f) if f.is_sign_negative() || f > Decimal::from(1000) => {
                return Err(format!(
                    "{} = {f}: a fee is between 0 and 1000 basis points",
                    key("fee_bps")
                ))
            }
            f => f.unwrap_or(base.fee_bps),
        },
    };
    Ok(s)
}

pub(super) fn resolve(raw: RawTrading) -> Result<TradingConfig, String> {
    let l = raw.limits;
    let count = |key: &str, v: Option<u32>| match v {
        Some(0) => Err(format!(
            "[limits] {key} = 0 would refuse every order; use at least 1 or remove it"
        )),
        v => Ok(v),
    };
    let limits = AccountLimits {
        max_order_notional: positive("[limits] max_order_notional", l.max_order_notional)?,
        max_position_notional: positive("[limits] max_position_notional", l.max_position_notional)?,
        max_gross_exposure: positive("[limits] max_gross_exposure", l.max_gross_exposure)?,
        max_open_orders: count("max_open_orders", l.max_open_orders)?,
        max_orders_per_minute: count("max_orders_per_minute", l.max_orders_per_minute)?,
        daily_loss_limit: positive("[limits] daily_loss_limit", l.daily_loss_limit)?,
        max_drawdown_percent: positive("[limits] max_drawdown_percent", l.max_drawdown_percent)?,
        max_margin_ratio: positive("[limits] max_margin_ratio", l.max_margin_ratio)?,
    };
    if limits
        .max_drawdown_percent
        .is_some_and(|p| p > Decimal::ONE_HUNDRED)
    {
        return Err("[limits] max_drawdown_percent must be at most 100".into());
    }
    let secs = |key: &str, v: Option<i64>, default: chrono::Duration| match v {
        None => Ok(default),
        Some(n) if (0..=86_400).contains(&n) => Ok(chrono::Duration::seconds(n)),
        Some(n) => Err(format!(
            "[maintenance] {key} = {n} must be from 0 to 86400 seconds"
        )),
    };
    let d = MaintenanceSettings::default();
    let maintenance = MaintenanceSettings {
        lead: secs("lead_secs", raw.maintenance.lead_secs, d.lead)?,
        settle: secs("settle_secs", raw.maintenance.settle_secs, d.settle)?,
        cancel_open_orders: raw.maintenance.cancel_open_orders.unwrap_or(false),
    };
    let mut alerts = AlertPolicy::default();
    for (level, a) in raw.alerts {
        let section = format!("[alerts.{level}]");
        let action = match a.action.as_str() {
            "ignore" => AlertAction::Ignore,
            "reduce" => AlertAction::Reduce,
            "halt" => AlertAction::Halt,
            "scale" => {
                let factor = a.factor.ok_or_else(|| {
                    format!("{section} action = \"scale\" needs factor (e.g. 0.5)")
                })?;
                if factor <= Decimal::ZERO || factor > Decimal::ONE {
                    return Err(format!(
                        "{section} factor = {factor} must be above 0 and at most 1"
                    ));
                }
                let duration = match a.duration_secs {
                    Some(n) if n > 0 => chrono::Duration::seconds(n),
                    None => chrono::Duration::hours(1),
                    Some(n) => {
                        return Err(format!("{section} duration_secs = {n} must be above zero"))
                    }
                };
                AlertAction::Scale { factor, duration }
            }
            other => {
                return Err(format!(
                    "{section} action {other:?} is unknown; valid: \"ignore\", \"scale\", \
                     \"reduce\", \"halt\""
                ))
            }
        };
        if !matches!(action, AlertAction::Scale { .. })
            && (a.factor.is_some() || a.duration_secs.is_some())
        {
            return Err(format!(
                "{section} factor and duration_secs only apply to action = \"scale\""
            ));
        }
        alerts.levels.insert(level.to_ascii_lowercase(), action);
    }
    let symbol_defaults = spec(
        "symbol_defaults",
        &raw.symbol_defaults,
        SymbolSpec::default(),
    )?;
    let mut symbols = BTreeMap::new();
    for (name, s) in &raw.symbols {
        crate::model::Symbol::parse(name).map_err(|e| format!("[symbols.\"{name}\"]: {e}"))?;
        symbols.insert(
            name.clone(),
            spec(&format!("symbols.\"{name}\""), s, symbol_defaults)?,
        );
    }
    Ok(TradingConfig {
        limits,
        maintenance,
        alerts,
        symbols,
        symbol_defaults,
    })
}

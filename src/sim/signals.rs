//! Synthetic `signal.generated` payloads, shaped like the venue's example
//! (`fixtures/seed-events/signal.generated.json`).
//!
//! Guarantees: all randomness comes from the caller's seeded generator; the caller's symbol,
//! recommendation and confidence are sent verbatim (even invalid ones, so tests can feed the bot bad
//! signals); `rsi` has one decimal; `support`/`resistance` are the current price ×0.97/×1.03 to the
//! cent, and are left out when the symbol has no price (an unknown symbol).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::book::num;

const HORIZONS: [&str; 3] = ["short_term", "medium_term", "long_term"];
const RISK_LEVELS: [&str; 3] = ["low", "medium", "high"];

const BUY_REASONS: [&str; 5] = [
    "Strong bullish momentum detected",
    "High volume confirmation",
    "Positive sentiment from social media",
    "Price bounced off support",
    "Golden cross on the 4h chart",
];
const SELL_REASONS: [&str; 5] = [
    "Bearish divergence on RSI",
    "Resistance rejected the price twice",
    "Declining volume on rallies",
    "Negative funding sentiment",
    "Death cross on the 4h chart",
];
const HOLD_REASONS: [&str; 4] = [
    "Range-bound price action",
    "Mixed signals across timeframes",
    "Low volume, no clear direction",
    "Awaiting macro data",
];

/// A timer signal: a symbol among `symbols`, buy/sell/hold weighted 45/45/10, confidence 40..=99.
pub(crate) fn random_signal(
    rng: &mut StdRng,
    symbols: &[String],
) -> Option<(String, &'static str, u8)> {
    let symbol = symbols.choose(rng)?.clone();
    let recommendation = match rng.gen_range(0..100) {
        0..=44 => "buy",
        45..=89 => "sell",
        _ => "hold",
    };
    Some((symbol, recommendation, rng.gen_range(40..=99)))
}

/// The `data` object of one `signal.generated` event.
pub(crate) fn signal_data(
    rng: &mut StdRng,
    symbol: &str,
    recommendation: &str,
    confidence: u8,
    price: Option<Decimal>,
) -> Value {
    // Indicators lean the way of the recommendation so a strategy reading them sees a coherent story.
    let (rsi_tenths, macd, pool): (std::ops::RangeInclusive<i64>, &str, &[&str]) =
        match recommendation {
            "buy" => (200..=450, "bullish", &BUY_REASONS),
            "sell" => (550..=800, "bearish", &SELL_REASONS),
            _ => (
                400..=600,
                if rng.gen::<bool>() {
                    "bullish"
                } else {
                    "bearish"
                },
                &HOLD_REASONS,
            ),
        };
    let count = rng.gen_range(1..=3);
    let reasoning: Vec<&str> = pool.choose_multiple(rng, count).copied().collect();

    let mut technical = Map::new();
    technical.insert(
        "rsi".into(),
        num(Decimal::new(rng.gen_range(rsi_tenths), 1)),
    );
    technical.insert("macd".into(), macd.into());
    if let Some(price) = price {
        let support = (price * Decimal::new(97, 2)).round_dp(2);
        let resistance = (price * Decimal::new(103, 2)).round_dp(2);
        technical.insert("support".into(), num(support));
        technical.insert("resistance".into(), num(resistance));
    }

    json!({
        "symbol": symbol,
        "recommendation": recommendation,
        "confidence": confidence,
        "timeHorizon": HORIZONS.choose(rng).copied().unwrap_or("short_term"),
        "riskLevel": RISK_LEVELS.choose(rng).copied().unwrap_or("medium"),
        "reasoning": reasoning,
        "technicalAnalysis": technical,
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn signal_has_the_fixture_shape_and_coherent_levels() {
        let mut rng = StdRng::seed_from_u64(7);
        let data = signal_data(&mut rng, "BTC/USD", "buy", 87, Some(Decimal::new(50000, 0)));
        assert_eq!(data["symbol"], "BTC/USD");
        assert_eq!(data["recommendation"], "buy");
        assert_eq!(data["confidence"], 87);
        assert_eq!(data["technicalAnalysis"]["macd"], "bullish");
        assert_eq!(
            data["technicalAnalysis"]["support"],
            num(Decimal::new(4850000, 2))
        );
        assert_eq!(
            data["technicalAnalysis"]["resistance"],
            num(Decimal::new(5150000, 2))
        );
        let rsi = data["technicalAnalysis"]["rsi"].to_string();
        assert_eq!(rsi.split('.').nth(1).map(str::len), Some(1), "rsi {rsi}");
        let reasons = data["reasoning"].as_array().map_or(0, Vec::len);
        assert!((1..=3).contains(&reasons));
        assert!(HORIZONS.contains(&data["timeHorizon"].as_str().unwrap_or("")));
        assert!(RISK_LEVELS.contains(&data["riskLevel"].as_str().unwrap_or("")));
    }

    #[test]
    fn timer_signals_follow_the_weights_and_confidence_range() {
        let mut rng = StdRng::seed_from_u64(42);
        let symbols = vec!["BTC/USD".to_string(), "ETH/USD".to_string()];
        let mut holds = 0;
        for _ in 0..1000 {
            let (symbol, rec, confidence) = random_signal(&mut rng, &symbols).expect("symbols");
            assert!(symbols.contains(&symbol));
            assert!((40..=99).contains(&confidence));
            holds += usize::from(rec == "hold");
        }
        assert!((50..=150).contains(&holds), "holds {holds}");
        assert!(random_signal(&mut rng, &[]).is_none());
    }
}

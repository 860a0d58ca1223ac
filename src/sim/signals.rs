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

/// One configurable source of timer signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalGenerator {
    pub interval: std::time::Duration,
    /// Symbols to pick from, uniformly; empty means every traded symbol.
    pub symbols: Vec<String>,
    /// Confidence is drawn uniformly from `min_confidence..=max_confidence`.
    pub min_confidence: u8,
    pub max_confidence: u8,
    /// Relative weights of buy, sell and hold.
    pub weights: [u32; 3],
}

impl SignalGenerator {
    /// Every traded symbol, buy/sell/hold 45/45/10, confidence 40..=99.
    pub fn every(interval: std::time::Duration) -> Self {
        Self {
            interval,
            symbols: Vec::new(),
            min_confidence: 40,
            max_confidence: 99,
            weights: [45, 45, 10],
        }
    }

    /// `INTERVAL_MS[:SYMBOLS[:MIN-MAX[:BUY/SELL/HOLD]]]`, e.g. `1000:BTC/USD,ETH/USD:70-99:60/30/10`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let ms: u64 = parts
            .next()
            .and_then(|p| p.trim().parse().ok())
            .filter(|ms| *ms >= 10)
            .ok_or_else(|| format!("{text:?}: the interval must be at least 10 ms"))?;
        let mut g = Self::every(std::time::Duration::from_millis(ms));
        if let Some(symbols) = parts.next().filter(|p| !p.is_empty()) {
            g.symbols = symbols.split(',').map(|s| s.trim().to_string()).collect();
        }
        if let Some(range) = parts.next().filter(|p| !p.is_empty()) {
            let (lo, hi) = range
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse::<u8>().ok()?, b.parse::<u8>().ok()?)))
                .filter(|(a, b)| a <= b && *b <= 100)
                .ok_or_else(|| format!("{text:?}: confidence must be MIN-MAX within 0-100"))?;
            (g.min_confidence, g.max_confidence) = (lo, hi);
        }
        if let Some(w) = parts.next().filter(|p| !p.is_empty()) {
            let weights: Vec<u32> = w.split('/').filter_map(|n| n.parse().ok()).collect();
            match weights[..] {
                [b, s, h] if b + s + h > 0 => g.weights = [b, s, h],
                _ => {
                    return Err(format!(
                        "{text:?}: weights must be BUY/SELL/HOLD, not all 0"
                    ))
                }
            }
        }
        if parts.next().is_some() {
            return Err(format!("{text:?}: too many parts"));
        }
        Ok(g)
    }

    /// One signal: a symbol among `traded` (or this generator's own list), a recommendation by
    /// weight, a confidence in range.
    pub(crate) fn pick(
        &self,
        rng: &mut StdRng,
        traded: &[String],
    ) -> Option<(String, &'static str, u8)> {
        let pool = if self.symbols.is_empty() {
            traded
        } else {
            &self.symbols
        };
        let symbol = pool.choose(rng)?.clone();
        let [b, s, h] = self.weights;
        let roll = rng.gen_range(0..(b + s + h).max(1));
        let recommendation = if roll < b {
            "buy"
        } else if roll < b + s {
            "sell"
        } else {
            "hold"
        };
        Some((
            symbol,
            recommendation,
            rng.gen_range(self.min_confidence..=self.max_confidence),
        ))
    }
}

/// A timer signal: a symbol among `symbols`, buy/sell/hold weighted 45/45/10, confidence 40..=99.
#[cfg(test)]
pub(crate) fn random_signal(
    rng: &mut StdRng,
    symbols: &[String],
) -> Option<(String, &'static str, u8)> {
    SignalGenerator::every(std::time::Duration::from_secs(1)).pick(rng, symbols)
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

    #[test]
    fn generators_are_parsed_from_one_line_and_follow_their_settings() {
        let g = SignalGenerator::parse("250:SOL/USD:85-90:0/1/0").expect("valid");
        assert_eq!(g.interval, std::time::Duration::from_millis(250));
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let (symbol, rec, confidence) = g.pick(&mut rng, &[]).expect("own symbols");
            assert_eq!((symbol.as_str(), rec), ("SOL/USD", "sell"));
            assert!((85..=90).contains(&confidence));
        }
        assert_eq!(
            SignalGenerator::parse("1000").expect("valid"),
            SignalGenerator::every(std::time::Duration::from_secs(1))
        );
        for bad in [
            "5",
            "x",
            "100::90-80",
            "100::1-101",
            "100:::0/0/0",
            "100:::1/2",
            "100:a:1-2:1/1/1:x",
        ] {
            assert!(SignalGenerator::parse(bad).is_err(), "{bad}");
        }
    }
}

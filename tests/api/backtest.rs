//! `sigex backtest` on small hand-made recordings whose every figure is computed by hand below,
//! one refusal per limit, determinism, bad inputs, the HTML report in a real browser, the README's
//! example, venue prices and their cache, and parity with a paper-mode run.
//!
//! The paper venue's defaults make the arithmetic: a market order fills at the touch, the mid
//! plus (buy) or minus (sell) half of the 2 bps spread, one level of 50,000 USD holding far more
//! than the 0.02 BTC traded here; the taker fee is 5 bps of the fill's notional.

use crate::helpers::database::TestDatabase;
use rust_decimal::Decimal;
use serde_json::json;
use sigex::backtest::report::Report;
use sigex::backtest::{BacktestError, Options};
use std::path::{Path, PathBuf};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// One hand-made recording: strategy files, a config, candles and events, in a temp directory.
pub struct Scenario {
    pub dir: tempfile::TempDir,
    strategies: Vec<(String, String)>,
    config: Option<String>,
    candles: Vec<(String, String)>,
    events: Vec<String>,
}

impl Scenario {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            strategies: Vec::new(),
            config: None,
            candles: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn strategy(mut self, name: &str, toml: &str) -> Self {
        self.strategies.push((name.into(), toml.into()));
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// Hourly flat bars of `symbol` from 2026-01-05 00:00 UTC for `hours` hours: `prices` gives
    /// the price from each hour on (`(hour, price)`, in order).
    pub fn hourly(mut self, symbol: &str, hours: u32, prices: &[(u32, &str)]) -> Self {
        let mut csv = String::from("timestamp,open,high,low,close,volume\n");
        let mut price = prices[0].1;
        for h in 0..hours {
            if let Some((_, p)) = prices.iter().find(|(at, _)| *at == h) {
                price = p;
            }
            csv.push_str(&format!(
                "{},{price},{price},{price},{price},10\n",
                at(h, 0)
            ));
        }
        self.candles.push((symbol.into(), csv));
        self
    }

    /// Candles written as given.
    pub fn candles(mut self, symbol: &str, csv: &str) -> Self {
        self.candles.push((symbol.into(), csv.into()));
        self
    }

    pub fn event(mut self, line: serde_json::Value) -> Self {
        self.events.push(line.to_string());
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the files; returns the options of a plain run over them.
    pub fn write(&self) -> Options {
        let strategies = self.path("strategies");
        std::fs::create_dir_all(&strategies).unwrap();
        for (name, text) in &self.strategies {
            std::fs::write(strategies.join(format!("{name}.toml")), text).unwrap();
        }
        let config = self.config.as_ref().map(|c| {
            std::fs::write(self.path("sigex.toml"), c).unwrap();
            self.path("sigex.toml")
        });
        let mut prices = Vec::new();
        for (symbol, csv) in &self.candles {
            let file = self.path(&format!("{}.csv", symbol.replace('/', "-").to_lowercase()));
            std::fs::write(&file, csv).unwrap();
            prices.push(format!("{symbol}={}", file.display()));
        }
        std::fs::write(self.path("signals.jsonl"), self.events.join("\n") + "\n").unwrap();
        Options {
            strategies,
            config,
            signals: self.path("signals.jsonl").display().to_string(),
            prices,
            ..Options::default()
        }
    }

    pub async fn run(&self) -> Result<Report, BacktestError> {
        self.run_with(|_| {}).await
    }

    pub async fn run_with(
        &self,
        tweak: impl FnOnce(&mut Options),
    ) -> Result<Report, BacktestError> {
        let mut opts = self.write();
        tweak(&mut opts);
        sigex::backtest::run(&opts, Vec::<(String, String)>::new()).await
    }
}

/// 2026-01-05 00:00 UTC plus `hours` and `secs`, RFC 3339.
pub fn at(hours: u32, secs: u32) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z").unwrap()
        + chrono::Duration::hours(hours.into())
        + chrono::Duration::seconds(secs.into());
    t.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A recorded `signal.generated` (a bare webhook line: its timestamp is the replay's clock).
pub fn signal(when: &str, symbol: &str, rec: &str, confidence: u32) -> serde_json::Value {
    json!({"event": "signal.generated", "timestamp": when, "data": {
        "symbol": symbol, "recommendation": rec, "confidence": confidence,
        "timeHorizon": "short_term", "riskLevel": "medium", "reasoning": ["test"],
        "technicalAnalysis": {"rsi": 40, "support": 49000, "resistance": 52000}}})
}

pub const STRATEGY: &str = r#"
name = "t"
symbols = ["BTC/USD"]
recommendations = ["buy", "sell"]
min_confidence = 50
[sizing]
method = "fixed_quantity"
quantity = 0.02
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_winning_and_a_losing_trade_give_the_hand_computed_figures() {
    // Day 1: buy at mid 50000 (fills 50005.00), the mid rises to 51000, sell (fills 50994.90).
    // Day 2: buy at 51000 (fills 51005.10), the mid falls to 50000, sell (fills 49995.00).
    let s = Scenario::new()
        .strategy("t", STRATEGY)
        .hourly("BTC/USD", 61, &[(0, "50000"), (12, "51000"), (36, "50000")])
        .event(signal(&at(10, 0), "BTC/USD", "buy", 80))
        .event(signal(&at(14, 0), "BTC/USD", "sell", 80))
        .event(signal(&at(34, 0), "BTC/USD", "buy", 65))
        .event(signal(&at(38, 0), "BTC/USD", "sell", 65));
    let report = s
        .run_with(|o| {
            o.from = Some(at(0, 0).parse().unwrap());
            o.to = Some(at(60, 0).parse().unwrap());
        })
        .await
        .unwrap();
    let run = &report.runs[0];
    let t = &run.trades;
    assert_eq!(t.len(), 2);
    // Trade 1: gross 0.02 x (50994.90 - 50005.00) = 19.798; fees 0.02 x 50005.00 x 0.0005
    // = 0.50005 and 0.02 x 50994.90 x 0.0005 = 0.509949; net 18.788001.
    assert_eq!(
        (
            t[0].entry_price,
            t[0].exit_price,
            t[0].gross_pnl,
            t[0].fees,
            t[0].net_pnl
        ),
        (
            d("50005"),
            d("50994.9"),
            d("19.798"),
            d("1.009999"),
            d("18.788001")
        )
    );
    assert_eq!(
        (t[0].exit, t[0].side, t[0].opened_at.as_str()),
        ("signal", "long", "2026-01-05T10:00:00.005Z")
    );
    // Trade 2: gross 0.02 x (49995.00 - 51005.10) = -20.202; fees 0.510051 + 0.49995; net -21.212001.
    assert_eq!(
        (t[1].gross_pnl, t[1].fees, t[1].net_pnl),
        (d("-20.202"), d("1.010001"), d("-21.212001"))
    );
    let f = &run.summary;
    assert_eq!(f.net_pnl, d("-2.424"), "18.788001 - 21.212001");
    assert_eq!(f.final_equity, d("99997.576"));
    assert_eq!(f.fees, d("2.02"));
    assert_eq!(f.closed_pnl, d("-2.424"));
    assert_eq!((f.trades, f.wins, f.losses, f.draws), (2, 1, 1, 0));
    assert_eq!(f.win_rate_pct, Some(d("50")));
    // 18.788001 / 21.212001
    assert_eq!(f.profit_factor, Some(d("0.8857")));
    assert_eq!(f.expectancy, Some(d("-1.212")));
    // (1 + 18.788001 / 21.212001) x 0.5 - 1
    assert_eq!(f.expectancy_ratio, Some(d("-0.0571")));
    assert_eq!(
        (f.avg_win, f.avg_loss),
        (Some(d("18.788")), Some(d("-21.212")))
    );
    assert_eq!((f.longest_win_streak, f.longest_loss_streak), (1, 1));
    assert_eq!(f.days, d("2.5"));
    // Equity peaks at 12:00 on day 1 (100000 - 0.50005 + 0.02 x (51000 - 50005) = 100019.39995)
    // and bottoms at the day-2 exit (100000 - 2.424 = 99997.576): 21.82395 USD, 0.0218%.
    let dd = &f.max_drawdown;
    assert_eq!((dd.usd, dd.percent), (d("21.82"), d("0.0218")));
    assert_eq!(dd.start.as_deref(), Some("2026-01-05T12:00:00.000Z"));
    assert_eq!(dd.end.as_deref(), Some("2026-01-06T14:00:00.005Z"));
    assert_eq!(dd.recovered, None);
    // Daily returns: 100018.788001 / 100000 - 1, 99997.576 / 100018.788001 - 1, and 0 for the
    // half day to the end; Sharpe = mean / sample stdev x sqrt(365); Sortino with the downside
    // deviation sqrt(sum(min(r, 0)^2) / 3); CAGR = (99997.576 / 100000)^(365 / 2.5) - 1;
    // Calmar = CAGR / (21.82395 / 100019.39995); SQN = sqrt(2) x mean / stdev of 18.788001 /
    // 1000.1 and -21.212001 / 1020.102 (computed with 50-digit decimals).
    assert_eq!(f.sharpe, Some(d("-0.7702")));
    assert_eq!(f.sortino, Some(d("-1.2586")));
    assert_eq!(f.cagr_pct, Some(d("-0.3533")));
    assert_eq!(f.calmar, Some(d("-16.191")));
    assert_eq!(f.sqn, Some(d("-0.0507")));
    assert_eq!((f.days_win, f.days_loss, f.days_draw), (1, 1, 1));
    assert_eq!(f.best_day.as_ref().map(|d| d.pnl), Some(d("18.79")));
    assert_eq!(f.worst_day.as_ref().map(|d| d.pnl), Some(d("-21.21")));
    assert_eq!(f.market_change_pct, Some(d("0")));
    // Four hours in the market each day, of 60.
    assert_eq!(f.exposure_pct, d("13.33"));
    // The confidence bands: the 80s made 18.79, the 60s lost 21.21.
    let bands = &run.breakdowns.confidence_band;
    let band = |k: &str| bands.iter().find(|r| r.key == k).unwrap();
    assert_eq!(band("80-89").trades.net_pnl, d("18.788"));
    assert_eq!(band("60-69").trades.net_pnl, d("-21.212"));
    assert_eq!(run.signals.ordered, 4);
    assert_eq!(run.orders.by_status.get("filled"), Some(&4));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_loss_fills_when_the_bar_walks_through_it() {
    a_stop_loss_fills_when_the_bar_walks_through(&format!("{STRATEGY}[exits]\nstop_loss = true\n"))
        .await;
}

/// The strategy's unfilled-order timeout is for entries: the stop-loss rests past it (it was
/// cancelled after a minute, leaving the position unprotected when the price fell through it).
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_loss_outlives_the_strategys_unfilled_order_timeout() {
    a_stop_loss_fills_when_the_bar_walks_through(&format!(
        "{STRATEGY}[orders]\nunfilled_timeout_secs = 60\n[exits]\nstop_loss = true\n"
    ))
    .await;
}

async fn a_stop_loss_fills_when_the_bar_walks_through(strategy: &str) {
    // Entry at mid 50000 (fills 50005.00) with the stop at the signal's support, 49000. The 11:00
    // bar falls (open 50000, high 50000, low 48900, close 48950): walked open, high, low, close a
    // quarter hour apart, the low at 11:30 triggers the stop, a market sell at 48900 - 0.01% =
    // 48895.11. Gross 0.02 x (48895.11 - 50005.00) = -22.1978; fees 0.50005 + 0.4889511.
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    for h in 0..11 {
        csv.push_str(&format!("{},50000,50000,50000,50000,1\n", at(h, 0)));
    }
    csv.push_str(&format!("{},50000,50000,48900,48950,1\n", at(11, 0)));
    csv.push_str(&format!("{},48950,48950,48950,48950,1\n", at(12, 0)));
    let s = Scenario::new()
        .strategy("t", strategy)
        .candles("BTC/USD", &csv)
        .event(signal(&at(10, 0), "BTC/USD", "buy", 80))
        .event(signal(&at(12, 30), "BTC/USD", "buy", 20));
    let report = s.run().await.unwrap();
    let run = &report.runs[0];
    assert_eq!(run.trades.len(), 1);
    let t = &run.trades[0];
    assert_eq!(t.exit, "stop_loss");
    assert_eq!(t.closed_at, "2026-01-05T11:30:00.000Z");
    assert_eq!((t.exit_price, t.gross_pnl), (d("48895.11"), d("-22.1978")));
    assert_eq!((t.fees, t.net_pnl), (d("0.9890011"), d("-23.1868011")));
    let stops: Vec<_> = run
        .order_list
        .as_ref()
        .unwrap()
        .iter()
        .filter(|o| o.role == "stop_loss")
        .collect();
    assert_eq!(stops.len(), 1);
    assert_eq!(
        (stops[0].price, stops[0].status),
        (Some(d("49000")), "filled")
    );
    assert_eq!(run.breakdowns.exit_reason[0].key, "stop_loss");
}

/// One refusal per limit: each row runs the events and checks what became of the last signal.
#[tokio::test(flavor = "multi_thread")]
async fn each_limit_refuses_the_signal_that_would_break_it_with_its_numbers() {
    let btc_eth = r#"
name = "t"
symbols = ["BTC/USD", "ETH/USD"]
recommendations = ["buy", "sell"]
min_confidence = 50
"#;
    let notional = "[sizing]\nmethod = \"fixed_notional\"\nnotional = 1000\n";
    let quantity = "[sizing]\nmethod = \"fixed_quantity\"\nquantity = 0.02\n";
    let buy = |h: u32, s: u32| signal(&at(h, s), "BTC/USD", "buy", 80);
    let sell = |h: u32, s: u32| signal(&at(h, s), "BTC/USD", "sell", 80);
    type Row = (
        &'static str,
        String,
        Option<String>,
        Vec<serde_json::Value>,
        &'static str,
        &'static str,
    );
    let rows: Vec<Row> = vec![
        (
            "max order notional",
            STRATEGY.into(),
            Some("[limits]\nmax_order_notional = 500\n".into()),
            vec![buy(1, 0)],
            "max_order_notional",
            "max order notional 500 would be exceeded: 0.02 BTC/USD at 50000 = 1000",
        ),
        (
            "strategy max position notional",
            format!("{STRATEGY}[limits]\nmax_position_notional = 1500\n"),
            None,
            vec![buy(1, 0), buy(2, 0)],
            "max_position_notional",
            "max position notional 1500 would be exceeded: 1000.00 + 1000.00 = 2000.00 USD",
        ),
        (
            "account max position notional",
            STRATEGY.into(),
            Some("[limits]\nmax_position_notional = 1500\n".into()),
            vec![buy(1, 0), buy(2, 0)],
            "account_max_position_notional",
            "account max position notional 1500 would be exceeded",
        ),
        (
            "max gross exposure",
            format!("{btc_eth}{notional}"),
            Some("[limits]\nmax_gross_exposure = 1500\n".into()),
            vec![buy(1, 0), signal(&at(2, 0), "ETH/USD", "buy", 80)],
            "max_gross_exposure",
            "max gross exposure 1500 would be exceeded: other symbols 1000.10 + ETH/USD 1000",
        ),
        (
            "max open orders",
            format!("{STRATEGY}[orders]\ntype = \"limit\"\nlimit_offset_bps = 500\n"),
            Some("[limits]\nmax_open_orders = 1\n".into()),
            vec![buy(1, 0), buy(2, 0)],
            "max_open_orders",
            "max open orders 1 reached: 1 orders are open",
        ),
        (
            "max orders per minute",
            STRATEGY.into(),
            Some("[limits]\nmax_orders_per_minute = 1\n".into()),
            vec![buy(1, 0), buy(1, 30)],
            "max_orders_per_minute",
            "max orders per minute 1 reached: 1 orders in the last 60 s",
        ),
        (
            "daily loss breaker",
            STRATEGY.into(),
            Some("[limits]\ndaily_loss_limit = 20\n".into()),
            vec![buy(1, 0), sell(3, 0), buy(4, 0)],
            "trading_state",
            "by daily_loss: daily realized loss limit 20 USD reached: lost 21.19 USD",
        ),
        (
            "drawdown breaker",
            STRATEGY.into(),
            Some("[limits]\nmax_drawdown_percent = 0.01\n".into()),
            vec![buy(1, 0), sell(3, 0), buy(4, 0)],
            "trading_state",
            "by drawdown: max drawdown 0.01% reached",
        ),
        (
            "cooldown",
            format!("{STRATEGY}[limits]\ncooldown_secs = 600\n"),
            None,
            vec![buy(1, 0), buy(1, 60)],
            "cooldown",
            "cooldown 600s on BTC/USD: the last order was 60s ago",
        ),
        (
            "max concurrent positions",
            format!("{btc_eth}{quantity}[limits]\nmax_concurrent_positions = 1\n"),
            None,
            vec![buy(1, 0), signal(&at(2, 0), "ETH/USD", "buy", 80)],
            "max_concurrent_positions",
            "max concurrent positions 1 reached: 1 symbols already open",
        ),
        (
            "maintenance window",
            STRATEGY.into(),
            None,
            vec![
                json!({"event": "system.maintenance", "timestamp": at(0, 10), "data": {
                    "startTime": at(2, 0), "endTime": at(3, 0),
                    "affectedServices": ["trading"]}}),
                buy(2, 30),
            ],
            "maintenance",
            "maintenance window 2026-01-05 02:00:00 UTC to 2026-01-05 03:00:00 UTC",
        ),
        (
            "critical alert halts the symbol",
            STRATEGY.into(),
            None,
            vec![
                json!({"event": "system.alert", "timestamp": at(1, 0), "data": {
                    "level": "critical", "title": "Price Feed Degraded",
                    "affectedSymbols": ["BTC/USD"]}}),
                buy(2, 0),
            ],
            "trading_state",
            "trading is halted (BTC/USD) since 2026-01-05 01:00:00 UTC by alert: system.alert critical: Price Feed Degraded",
        ),
        (
            "margin ratio puts the account in reducing",
            STRATEGY.into(),
            Some("[limits]\nmax_margin_ratio = 0.005\n".into()),
            vec![buy(1, 0), buy(2, 0), buy(3, 0)],
            "trading_state",
            "by margin_ratio: margin ratio 0.02 is above the limit 0.005",
        ),
        (
            "long-only sell",
            STRATEGY.into(),
            None,
            vec![sell(1, 0)],
            "long_only",
            "long-only: no long BTC/USD position left to sell",
        ),
        (
            "below the minimum quantity",
            STRATEGY.replace("quantity = 0.02", "quantity = 0.000001"),
            None,
            vec![buy(1, 0)],
            "min_quantity",
            "quantity 0.000001 rounds down to 0 at lot step 0.00001",
        ),
        (
            "risk per trade without a stop level",
            STRATEGY.replace(
                "method = \"fixed_quantity\"\nquantity = 0.02",
                "method = \"risk_per_trade\"\npercent = 1",
            ),
            None,
            vec![json!({"event": "signal.generated", "timestamp": at(1, 0), "data": {
                "symbol": "BTC/USD", "recommendation": "buy", "confidence": 80}})],
            "sizing",
            "risk-per-trade sizing: the signal carries no support to put the stop at",
        ),
    ];
    for (name, strategy, config, events, rule, reason) in rows {
        let mut s = Scenario::new()
            .strategy("t", &strategy)
            .hourly("BTC/USD", 6, &[(0, "50000"), (3, "49000")])
            .hourly("ETH/USD", 6, &[(0, "2500")]);
        if let Some(c) = &config {
            s = s.config(c);
        }
        for e in events {
            s = s.event(e);
        }
        let report = s.run().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let run = &report.runs[0];
        let last = run.decisions.as_ref().unwrap().last().unwrap();
        assert_eq!(
            (last.outcome, last.rule),
            ("refused", Some(rule)),
            "{name}: {last:?}"
        );
        assert!(last.reason.contains(reason), "{name}: {}", last.reason);
        assert_eq!(run.signals.refused_by.get(rule), Some(&1), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warning_alert_halves_the_next_order_and_filters_are_counted_by_name() {
    let s = Scenario::new()
        .strategy("t", &STRATEGY.replace("min_confidence = 50", "min_confidence = 70"))
        .hourly("BTC/USD", 4, &[(0, "50000")])
        .event(json!({"event": "system.alert", "timestamp": at(0, 30), "data": {
            "level": "warning", "title": "High Market Volatility", "affectedSymbols": ["BTC/USD"]}}))
        .event(signal(&at(1, 0), "BTC/USD", "buy", 80))
        .event(signal(&at(1, 10), "BTC/USD", "buy", 60))
        .event(signal(&at(1, 20), "BTC/USD", "hold", 90))
        .event(signal(&at(1, 30), "SOL/USD", "buy", 90))
        .event(json!({"event": "signal.generated", "timestamp": at(1, 40), "data": {
            "symbol": "BTC/USD", "recommendation": "buy", "confidence": 140}}));
    let report = s.run().await.unwrap();
    let run = &report.runs[0];
    let orders = run.order_list.as_ref().unwrap();
    assert_eq!(
        orders[0].quantity,
        d("0.01"),
        "0.02 halved by the alert's factor 0.5"
    );
    let ignored = &run.signals.ignored_by;
    assert_eq!(ignored.get("min_confidence"), Some(&1));
    assert_eq!(ignored.get("recommendation"), Some(&1));
    assert_eq!(ignored.get("not_traded"), Some(&1));
    assert_eq!(run.recorded.replayed.get("dead_letter"), Some(&1));
    assert!(
        run.recorded.dead_letters[0]
            .contains("signals.jsonl:6: signal.generated: confidence: 140 is not within 0..=100"),
        "{:?}",
        run.recorded.dead_letters
    );
}

fn sigex(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sigex"))
        .args(args)
        .current_dir(dir)
        .env_remove("SIGEX_VENUE__API_KEY")
        .env_remove("SIGEX_VENUE__API_SECRET")
        .output()
        .unwrap()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The example of README's "Backtest a strategy" section, as written there.
fn readme_example() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Backtest a strategy")
        .nth(1)
        .expect("README has a \"Backtest a strategy\" section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section starts with a sh code block");
    let command = block.replace("\\\n", " ");
    let line = command
        .lines()
        .find(|l| l.contains(" backtest "))
        .expect("the block runs sigex backtest");
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let at = words.iter().position(|w| w == "backtest").unwrap();
    words[at..].to_vec()
}

#[test]
fn the_readme_example_runs_on_the_files_shipped_in_the_repository() {
    let out_dir = tempfile::tempdir().unwrap();
    let mut args = readme_example();
    // The README writes into target/; the test writes into its own directory.
    if let Some(i) = args.iter().position(|a| a == "--out") {
        args[i + 1] = out_dir.path().display().to_string();
    } else {
        args.extend(["--out".into(), out_dir.path().display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sigex(&args, root());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Net PnL (after fees)"), "{stdout}");
    assert!(stdout.contains("Trades "), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("report.json")).unwrap())
            .unwrap();
    let run = &json["runs"][0];
    assert!(
        run["summary"]["trades"].as_u64().unwrap() > 0,
        "the example trades"
    );
    assert!(
        run["signals"]["refused"].as_u64().unwrap() > 0,
        "the example shows refusals"
    );
}

#[test]
fn the_same_inputs_give_byte_identical_reports() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for prices in ["BTC/USD=examples/backtest/btc-usd.csv", "random-walk:7"] {
        let mut outputs = Vec::new();
        for dir in &dirs {
            let out_dir = dir.path().display().to_string();
            let out = sigex(
                &[
                    "backtest",
                    "--strategies",
                    "examples/backtest/strategies",
                    "--signals",
                    "examples/backtest/signals.jsonl",
                    "--prices",
                    prices,
                    "--out",
                    &out_dir,
                ],
                root(),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
            outputs.push((
                out.stdout.clone(),
                report("report.json"),
                report("report.html"),
            ));
        }
        let (a, b) = (&outputs[0], &outputs[1]);
        assert_eq!(a.1, b.1, "{prices}: report.json differs between two runs");
        assert_eq!(a.2, b.2, "{prices}: report.html differs between two runs");
        // The summary names the output directory, which differs; everything above it is equal.
        let summary = |s: &[u8]| {
            let text = String::from_utf8_lossy(s).into_owned();
            text.split("\nreport:").next().unwrap().to_owned()
        };
        assert_eq!(
            summary(&a.0),
            summary(&b.0),
            "{prices}: the summary differs"
        );
    }
}

/// Headless Chromium, when installed. `.ci/run` installs it and sets SIGEX_REQUIRE_BROWSER, so
/// CI never skips this; on a machine without it the test says so and passes.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::process::Command::new("which")
                .arg(name)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        });
    if found.is_none() {
        assert!(
            std::env::var_os("SIGEX_REQUIRE_BROWSER").is_none(),
            "SIGEX_REQUIRE_BROWSER is set but no chromium is installed (apt-get install -y chromium)"
        );
        eprintln!("SKIPPED: no chromium on this machine (apt-get install -y chromium to run it)");
    }
    found
}

#[test]
fn the_html_report_shows_its_charts_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("report");
    let out = sigex(
        &[
            "backtest",
            "--strategies",
            "examples/backtest/strategies",
            "--signals",
            "examples/backtest/signals.jsonl",
            "--prices",
            "BTC/USD=examples/backtest/btc-usd.csv",
            "--out",
            &out_dir.display().to_string(),
        ],
        root(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("file://{}", out_dir.join("report.html").display());
    let dom = std::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-dev-shm-usage",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(["--virtual-time-budget=3000", "--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for (what, needle) in [
        ("the equity chart", "<svg id=\"equity-chart\""),
        ("the drawdown chart", "<svg id=\"drawdown-chart\""),
        ("a drawn equity line", "stroke=\"#1f5fbf\""),
        ("the summary", "Net PnL (after fees)"),
        ("a trade row", "<td>stop_loss</td>"),
    ] {
        assert!(
            dom.contains(needle),
            "{what} missing from the rendered page:\n{dom:.3000}"
        );
    }
    let path_data = dom
        .split("<svg id=\"equity-chart\"")
        .nth(1)
        .and_then(|svg| svg.split("<path d=\"").nth(1))
        .expect("the equity chart has a path");
    assert!(
        path_data.starts_with('M') && path_data.matches(" L").count() >= 10,
        "the equity line has its points: {:.200}",
        path_data
    );
    // Self-contained: nothing to fetch.
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    for remote in ["<script", "http://", "https://", "<link", "@import"] {
        let allowed = remote == "http://"
            && html.matches(remote).count() == html.matches("http://www.w3.org/2000/svg").count();
        assert!(
            !html.contains(remote) || allowed,
            "the page refers to {remote}"
        );
    }
}

#[test]
fn unusable_inputs_stop_the_run_naming_the_file_and_line_and_write_nothing() {
    let s = Scenario::new()
        .strategy("t", STRATEGY)
        .hourly("BTC/USD", 4, &[(0, "50000")])
        .event(signal(&at(1, 0), "BTC/USD", "buy", 80))
        .event(signal(&at(2, 0), "BTC/USD", "sell", 80));
    let opts = s.write();
    let dir = s.dir.path();
    let signals = opts.signals.clone();
    let prices = opts.prices[0].clone();
    // A report from an earlier run must survive a failed one untouched.
    let out = dir.join("report");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("report.json"), "earlier").unwrap();
    let run = |signals: &str, prices: &str| {
        sigex(
            &[
                "backtest",
                "--strategies",
                "strategies",
                "--signals",
                signals,
                "--prices",
                prices,
                "--out",
                "report",
            ],
            dir,
        )
    };
    let lines = std::fs::read_to_string(&signals).unwrap();
    std::fs::write(dir.join("broken.jsonl"), format!("{lines}{{\"event\": \n")).unwrap();
    let late = signal(&at(9, 0), "BTC/USD", "buy", 80).to_string();
    std::fs::write(dir.join("late.jsonl"), format!("{lines}{late}\n")).unwrap();
    let early = signal("2026-01-04T23:00:00.000Z", "BTC/USD", "buy", 80).to_string();
    std::fs::write(dir.join("early.jsonl"), format!("{early}\n{lines}")).unwrap();
    let csv = std::fs::read_to_string(dir.join("btc-usd.csv")).unwrap();
    std::fs::write(dir.join("bad.csv"), csv.replacen(",50000,", ",5O000,", 1)).unwrap();
    let mut lines_out_of_order: Vec<&str> = csv.lines().collect();
    lines_out_of_order.swap(2, 3);
    std::fs::write(dir.join("unordered.csv"), lines_out_of_order.join("\n")).unwrap();
    let cases: Vec<(&str, String, String, &str)> = vec![
        ("a missing signals file", "missing.jsonl".into(), prices.clone(), "missing.jsonl: No such file"),
        (
            "a malformed line",
            "broken.jsonl".into(),
            prices.clone(),
            "broken.jsonl:3: not a JSON object",
        ),
        (
            "a signal after the prices end",
            "late.jsonl".into(),
            prices.clone(),
            "late.jsonl:3: signal.generated for BTC/USD at 2026-01-05T09:00:00.000Z is outside the prices: ",
        ),
        (
            "a signal before the prices start",
            "early.jsonl".into(),
            prices.clone(),
            "early.jsonl:1: signal.generated for BTC/USD at 2026-01-04T23:00:00.000Z is outside the prices",
        ),
        (
            "a malformed candle",
            signals.clone(),
            format!("BTC/USD={}", dir.join("bad.csv").display()),
            "bad.csv:2: open is not a number",
        ),
        (
            "candles out of order",
            signals.clone(),
            format!("BTC/USD={}", dir.join("unordered.csv").display()),
            "unordered.csv:4: bar at 2026-01-05T01:00:00.000Z does not come after the bar at 2026-01-05T02:00:00.000Z (line 3)",
        ),
        (
            "a symbol without prices",
            signals.clone(),
            format!("ETH/USD={}", dir.join("btc-usd.csv").display()),
            "signals.jsonl:1: signal.generated for BTC/USD at 2026-01-05T01:00:00.000Z: no prices for BTC/USD",
        ),
        ("a malformed --prices", signals.clone(), "btc.csv".into(), "is not SYMBOL=FILE.csv"),
    ];
    for (name, signals, prices, needle) in cases {
        let output = run(&signals, &prices);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: the run succeeded");
        assert!(stderr.contains(needle), "{name}: {stderr}");
        let files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            files.len(),
            1,
            "{name}: the report directory holds {files:?}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("report.json")).unwrap(),
            "earlier",
            "{name}"
        );
    }
    // The outside-the-range message names the candles file and the range it covers.
    let output = run("late.jsonl", &prices);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("btc-usd.csv from 2026-01-05T00:00:00.000Z to 2026-01-05T04:00:00.000Z"),
        "{stderr}"
    );
}

/// Flat one-second bars of each symbol from `from` to `to`, at the price in effect at each bar's
/// start (`changes`: when each price was set, in order).
fn seconds_csv(
    changes: &[(chrono::DateTime<chrono::Utc>, Decimal)],
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> String {
    use chrono::DurationRound;
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    let mut t = from.duration_trunc(chrono::Duration::seconds(1)).unwrap();
    while t <= to {
        let price = changes
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map_or(changes[0].1, |c| c.1);
        csv.push_str(&format!(
            "{},{price},{price},{price},{price},1\n",
            t.to_rfc3339()
        ));
        t += chrono::Duration::seconds(1);
    }
    csv
}

/// A paper-mode bot trades a sequence of signals (a win, a loss through a stop, a refusal, a
/// filter, an alert's size scale); then its recorded inbox is backtested with the prices it ran
/// on. "The same" means, exactly: every signal's outcome and its reason, word for word (the
/// size and reference price of an order, the alert's scale, the rule and numbers of a refusal,
/// the filter; only the instant an alert's scale ends may differ by the milliseconds between
/// the alert's arrival and its processing), every order's client order id, side, type, role, quantity, status,
/// filled quantity and average fill price, every order's fees, and the realized PnL after fees.
/// Exact, because the test holds each price still from its change until the orders it concerns
/// have filled, and waits out the dispatcher's 2 s reference-price cache after a change. In
/// general a paper run and its replay can differ by what those waits exclude: a price that
/// moves between a decision and the paper venue's fill (the executor sends an order a few
/// milliseconds after the decision; the backtest fills `[paper] latency_ms` after it), a
/// reference price up to 2 s old in the live dispatcher, and resting limit orders, which fill
/// from maker volume drawn per price tick (every 200 ms in paper mode, four per candle here).
#[tokio::test(flavor = "multi_thread")]
async fn replaying_a_paper_runs_inbox_gives_its_decisions_orders_and_pnl() {
    use crate::helpers::{dec, TestApp};
    use chrono::Utc;
    let strategy = r#"
name = "parity"
symbols = ["BTC/USD", "ETH/USD"]
recommendations = ["buy", "sell"]
min_confidence = 70
[sizing]
method = "fixed_notional"
notional = 1000
[limits]
max_position_notional = 2500
[exits]
stop_loss = true
"#;
    let started = Utc::now() - chrono::Duration::seconds(1);
    let app = TestApp::builder()
        .paper()
        .strategy(strategy)
        .tweak(|c| {
            c.paper.engine.walk = sigex::sim::Walk {
                volatility_bps: Decimal::ZERO,
                trend_bps: Decimal::ZERO,
            }
        })
        .spawn()
        .await;
    let mut btc = vec![(started, d("50000"))];
    let eth = vec![(started, d("3000"))];
    let venue_orders = |kind: &str, status: &str| {
        app.sim
            .orders()
            .iter()
            .filter(|o| o.order_type == kind && o.status == status)
            .count()
    };
    let decided = |n: usize| {
        let app = &app;
        async move {
            app.wait_for("the signal's decision", || async {
                (app.signals().await.len() == n).then_some(())
            })
            .await
        }
    };
    // A win: buy at 50000 (its stop rests at the signal's support, 48500), sell at 51000.
    app.send_signal("BTC/USD", "buy", 80, 1).await;
    decided(1).await;
    app.wait_for("the stop to rest at the venue", || async {
        (venue_orders("stop", "open") == 1).then_some(())
    })
    .await;
    app.sim.set_mid_price("BTC/USD", d("51000"));
    btc.push((Utc::now(), d("51000")));
    // The dispatcher reuses a fetched reference price for 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    app.send_signal("BTC/USD", "sell", 80, 2).await;
    decided(2).await;
    app.wait_for("the long closed and its stop cancelled", || async {
        (venue_orders("market", "filled") == 2 && venue_orders("stop", "cancelled") == 1)
            .then_some(())
    })
    .await;
    // An alert halves ETH sizes; ETH's support is above its price, so no stop.
    let alert = json!({"event": "system.alert", "timestamp": Utc::now().to_rfc3339(), "data": {
        "level": "warning", "title": "High Market Volatility", "affectedSymbols": ["ETH/USD"]}});
    assert_eq!(app.post_signed(&alert.to_string()).await.status(), 200);
    app.send_signal("ETH/USD", "buy", 90, 3).await;
    decided(3).await;
    // Ignored (confidence), then two buys with their stops, then a refusal (position limit).
    app.send_signal("BTC/USD", "buy", 60, 4).await;
    app.send_signal("BTC/USD", "buy", 75, 5).await;
    decided(5).await;
    app.send_signal("BTC/USD", "buy", 85, 6).await;
    decided(6).await;
    app.send_signal("BTC/USD", "buy", 85, 7).await;
    decided(7).await;
    app.wait_for("both stops to rest", || async {
        (venue_orders("stop", "open") == 2 && venue_orders("market", "filled") == 5).then_some(())
    })
    .await;
    // A loss: the price falls through both stops.
    app.sim.set_mid_price("BTC/USD", d("48000"));
    btc.push((Utc::now(), d("48000")));
    app.wait_for("both stops to fill", || async {
        (venue_orders("stop", "filled") == 2).then_some(())
    })
    .await;
    app.send_signal("ETH/USD", "sell", 80, 8).await;
    decided(8).await;
    // Every fill's fee settled at the venue's (each ended order's fill list is read). The
    // venue's total is read inside the wait: the last sell may not have filled there yet.
    let venue_fees = || -> Decimal {
        app.sim
            .orders()
            .iter()
            .flat_map(|o| o.fills.iter().map(|f| f.fee))
            .sum()
    };
    let (positions, venue_fees) = app
        .wait_for("the positions flat with the venue's fees", || async {
            let p = app.positions().await;
            let fees: Decimal = p.iter().map(|p| dec(&p["fees"])).sum();
            let flat = p.iter().all(|p| dec(&p["quantity"]).is_zero());
            let venue_fees = venue_fees();
            (flat && fees == venue_fees && venue_orders("market", "filled") == 6)
                .then_some((p, venue_fees))
        })
        .await;
    let decisions = app.get("/api/signals?limit=100").await;
    let orders = app.get("/api/orders?limit=100").await;
    let ended = Utc::now() + chrono::Duration::seconds(1);
    let data = app.stop_keeping_data().await;
    let dir = data.path();

    std::fs::write(dir.join("btc.csv"), seconds_csv(&btc, started, ended)).unwrap();
    std::fs::write(dir.join("eth.csv"), seconds_csv(&eth, started, ended)).unwrap();
    std::fs::create_dir(dir.join("strategies")).unwrap();
    std::fs::write(dir.join("strategies/parity.toml"), strategy).unwrap();
    let opts = Options {
        strategies: dir.join("strategies"),
        signals: data.database().url().to_owned(),
        prices: vec![
            format!("BTC/USD={}", dir.join("btc.csv").display()),
            format!("ETH/USD={}", dir.join("eth.csv").display()),
        ],
        to: Some(ended),
        ..Options::default()
    };
    let report = sigex::backtest::run(&opts, Vec::<(String, String)>::new())
        .await
        .unwrap();
    let run = &report.runs[0];

    // Every signal's outcome and reason, in order, word for word.
    let mut paper: Vec<serde_json::Value> = decisions.as_array().unwrap().clone();
    paper.reverse();
    let replayed = run.decisions.as_ref().unwrap();
    assert_eq!(paper.len(), 8);
    assert_eq!(replayed.len(), paper.len());
    for (p, r) in paper.iter().zip(replayed) {
        assert_eq!(p["decision"].as_str(), Some(r.outcome), "{p} vs {r:?}");
        assert_eq!(
            p["clientOrderId"].as_str(),
            r.client_order_id.as_deref(),
            "{p}"
        );
        // An alert's scale lasts an hour from when the alert was applied: a few milliseconds
        // after its arrival in the paper run, at its arrival in the replay.
        let until = |s: &str| match s.split_once(" (until ") {
            Some((head, tail)) => format!("{head} (until …{}", tail.split_once(')').unwrap().1),
            None => s.to_owned(),
        };
        assert_eq!(
            until(p["reason"].as_str().unwrap()),
            until(&r.reason),
            "{p}"
        );
    }
    assert_eq!(replayed[6].rule, Some("max_position_notional"));
    assert_eq!(replayed[3].rule, Some("min_confidence"));
    // Every order, field for field.
    let mut paper_orders: Vec<serde_json::Value> = orders.as_array().unwrap().clone();
    paper_orders.sort_by_key(|o| o["clientOrderId"].as_str().unwrap().to_owned());
    let mut replayed_orders = run.order_list.clone().unwrap();
    replayed_orders.sort_by(|a, b| a.client_order_id.cmp(&b.client_order_id));
    assert_eq!(paper_orders.len(), 9, "6 market orders and 3 stops");
    assert_eq!(replayed_orders.len(), paper_orders.len());
    for (p, r) in paper_orders.iter().zip(&replayed_orders) {
        let ctx = format!("paper {p}\nreplay {r:?}");
        assert_eq!(
            p["clientOrderId"].as_str(),
            Some(r.client_order_id.as_str()),
            "{ctx}"
        );
        assert_eq!(
            (
                p["side"].as_str(),
                p["type"].as_str(),
                p["role"].as_str(),
                p["status"].as_str()
            ),
            (
                Some(r.side),
                Some(r.order_type),
                Some(r.role),
                Some(r.status)
            ),
            "{ctx}"
        );
        assert_eq!(dec(&p["quantity"]), r.quantity, "{ctx}");
        assert_eq!(dec(&p["filledQuantity"]), r.filled_quantity, "{ctx}");
        // A stop that never triggered has no average price on either side.
        let average = (!p["averagePrice"].is_null()).then(|| dec(&p["averagePrice"]));
        assert_eq!(
            average.unwrap_or_default(),
            r.average_price.unwrap_or_default(),
            "{ctx}"
        );
        assert_eq!(dec(&p["fees"]), r.fees, "{ctx}");
    }
    // Realized PnL after fees: the paper run's books against the replay's.
    let paper_net: Decimal = positions.iter().map(|p| dec(&p["netRealizedPnl"])).sum();
    assert_eq!(run.summary.net_pnl, paper_net.round_dp(4).normalize());
    assert_eq!(run.summary.fees, venue_fees.round_dp(4).normalize());
    assert_eq!(
        run.summary.trades, 3,
        "the BTC win, the BTC loss through its stops, ETH"
    );
    assert_eq!(run.summary.open_positions, 0);

    // `sigex events export` of the same inbox replays to the same run.
    let export = dir.join("export.jsonl");
    let mut file = std::fs::File::create(&export).unwrap();
    sigex::backtest::source::export(data.database().url(), &Default::default(), &mut file)
        .await
        .unwrap();
    let from_export = sigex::backtest::run(
        &Options {
            signals: export.display().to_string(),
            ..opts.clone()
        },
        Vec::<(String, String)>::new(),
    )
    .await
    .unwrap();
    let without_sources = |r: &Report| {
        let mut v = serde_json::to_value(&r.runs[0]).unwrap();
        for d in v["decisions"].as_array_mut().unwrap() {
            d["source"] = json!("");
        }
        v
    };
    assert_eq!(without_sources(&from_export), without_sources(&report));
}

/// `--prices venue` against the simulator's candles endpoint: the first run fetches and caches,
/// the second reads the cache and asks the venue nothing.
#[tokio::test(flavor = "multi_thread")]
async fn venue_prices_are_fetched_once_and_then_read_from_the_cache() {
    let (key, secret) = ("bt-key", "bt-secret-0123456789");
    let sim = sigex::sim::Simulator::new(sigex::sim::SimConfig::new(
        key,
        secret,
        "whsec_test_0123456789abcdef",
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
    let (stop, mut stopped) = sigex::shutdown::shutdown_pair();
    tokio::spawn(
        sim.clone()
            .serve(listener, async move { stopped.wait().await }),
    );
    let client = sigex::venue::VenueClient::new(
        &base,
        sigex::config::Credentials {
            api_key: sigex::config::Secret::new(key),
            api_secret: sigex::config::Secret::new(secret),
        },
        std::time::Duration::from_secs(5),
        std::sync::Arc::new(sigex::clock::SystemClock),
    )
    .unwrap();
    // Wait for the venue to have sampled prices (it ticks every 200 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let now_ms = || chrono::Utc::now().timestamp_millis();
    loop {
        let bars = client
            .candles("BTC/USD", "1m", now_ms() - 120_000, now_ms(), 10)
            .await
            .unwrap();
        if !bars.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the simulator sampled no price"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let path = "/api/v1/market/candles/BTC%2FUSD";
    let asked_before = sim.requests("GET", path);
    let now = chrono::Utc::now();
    let s = Scenario::new()
        .strategy("t", STRATEGY)
        // After the first sampled price (the bars exist by now), so inside the venue's prices.
        .event(signal(&now.to_rfc3339(), "BTC/USD", "buy", 80))
        .event(signal(
            &(now + chrono::Duration::milliseconds(50)).to_rfc3339(),
            "BTC/USD",
            "sell",
            80,
        ));
    let cache = s.path("cache");
    let env = vec![
        ("SIGEX_VENUE__BASE_URL".to_owned(), base.clone()),
        ("SIGEX_VENUE__API_KEY".to_owned(), key.to_owned()),
        ("SIGEX_VENUE__API_SECRET".to_owned(), secret.to_owned()),
    ];
    let mut reports = Vec::new();
    for _ in 0..2 {
        let mut opts = s.write();
        opts.prices = vec!["venue".into()];
        opts.cache_dir = Some(cache.clone());
        let report = sigex::backtest::run(&opts, env.clone()).await.unwrap();
        assert_eq!(
            sim.requests("GET", path),
            asked_before + 1,
            "one request, then the cache"
        );
        reports.push(report.json().unwrap());
    }
    assert_eq!(reports[0], reports[1]);
    let json: serde_json::Value = serde_json::from_slice(&reports[0]).unwrap();
    let run = &json["runs"][0];
    assert_eq!(run["signals"]["ordered"], 2, "{run}");
    assert!(run["prices"][0]["source"]
        .as_str()
        .unwrap()
        .starts_with("venue candles cached in"));
    let host = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .replace(':', "_");
    let day = now.format("%Y-%m-%d");
    let file = cache
        .join(host)
        .join("BTC-USD/1m")
        .join(format!("{day}.csv"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(
        text.starts_with("# sigex candles BTC/USD 1m from "),
        "{text}"
    );
    stop.trigger();
}

/// A run over the example files the README uses.
fn example_options() -> Options {
    let example = root().join("examples/backtest");
    Options {
        strategies: example.join("strategies"),
        signals: example.join("signals.jsonl").display().to_string(),
        prices: vec![format!("BTC/USD={}", example.join("btc-usd.csv").display())],
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_of_min_confidence_gives_one_line_per_value() {
    let opts = example_options();
    let plain = sigex::backtest::run(&opts, Vec::<(String, String)>::new())
        .await
        .unwrap();
    let swept = sigex::backtest::run(
        &Options {
            sweep: Some("min_confidence=60..95:5".into()),
            ..opts.clone()
        },
        Vec::<(String, String)>::new(),
    )
    .await
    .unwrap();
    let sweep = swept.sweep.as_ref().unwrap();
    let values: Vec<&str> = sweep.rows.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, ["60", "65", "70", "75", "80", "85", "90", "95"]);
    // A higher threshold never lets more signals through.
    for pair in sweep.rows.windows(2) {
        assert!(
            pair[0].signals_ordered >= pair[1].signals_ordered,
            "{sweep:?}"
        );
    }
    // The example strategy's own threshold (70) gives the plain run's figures.
    let at_70 = &sweep.rows[2];
    assert_eq!(at_70.net_pnl, plain.runs[0].summary.net_pnl);
    assert_eq!(at_70.trades, plain.runs[0].summary.trades);
    let text = swept.text();
    assert!(
        text.contains("sweep of min_confidence: one line per value"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count(),
        8,
        "{text}"
    );
    // A key no strategy uses is refused by name.
    let err = sigex::backtest::run(
        &Options {
            sweep: Some("percent=1..2:1".into()),
            ..opts.clone()
        },
        Vec::<(String, String)>::new(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("no strategy sizes by percent"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compare_runs_two_strategy_directories_over_the_same_signals_side_by_side() {
    let other = tempfile::tempdir().unwrap();
    let momentum =
        std::fs::read_to_string(root().join("examples/backtest/strategies/momentum.toml"))
            .unwrap()
            .replace("min_confidence = 70", "min_confidence = 85")
            .replace("name = \"momentum\"", "name = \"picky\"");
    std::fs::write(other.path().join("picky.toml"), momentum).unwrap();
    let opts = Options {
        compare: Some(other.path().to_owned()),
        ..example_options()
    };
    let report = sigex::backtest::run(&opts, Vec::<(String, String)>::new())
        .await
        .unwrap();
    assert_eq!(report.kind, "compare");
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.runs[1].strategies, ["picky"]);
    assert!(report.runs[1].signals.ordered < report.runs[0].signals.ordered);
    assert_eq!(report.runs[0].signals.total, report.runs[1].signals.total);
    let text = report.text();
    let header = text
        .lines()
        .find(|l| l.contains("examples/backtest/strategies"))
        .unwrap();
    assert!(
        header.contains(&other.path().display().to_string()),
        "{text}"
    );
    let html = report.html();
    assert_eq!(html.matches("<svg id=\"equity-chart\"").count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_export_writes_the_inbox_as_json_lines_filtered_by_type_and_time() {
    use sigex::store::{NewEvent, Store};
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::fresh(dir.path());
    let store = Store::open(database.url()).await.unwrap();
    let events: Vec<NewEvent> = [
        (
            "signal.generated",
            signal(&at(1, 0), "BTC/USD", "buy", 80),
            at(1, 0),
        ),
        (
            "order.updated",
            json!({"event": "order.updated", "data": {"orderId": "o1", "status": "filled"}}),
            at(2, 0),
        ),
        (
            "signal.generated",
            signal(&at(3, 0), "BTC/USD", "sell", 80),
            at(3, 0),
        ),
    ]
    .into_iter()
    .map(|(t, body, when)| NewEvent {
        dedupe_key: format!("k-{when}"),
        event_type: t.into(),
        received_at: when.parse().unwrap(),
        body: axum::body::Bytes::from(body.to_string()),
        webhook_id: None,
    })
    .collect();
    store.insert_events(&events).await.unwrap();
    store.close().await;
    std::fs::write(
        dir.path().join("sigex.toml"),
        format!(
            "mode = \"paper\"\n[storage]\ndatabase_url = \"{}\"\n",
            database.url()
        ),
    )
    .unwrap();
    let out = sigex(
        &[
            "events",
            "--config",
            "sigex.toml",
            "export",
            "--type",
            "signal.generated",
            "--to",
            &at(2, 30),
            "--out",
            "signals.jsonl",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("signals.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["eventType"], "signal.generated");
    assert_eq!(lines[0]["dedupeKey"], format!("k-{}", at(1, 0)));
    assert_eq!(lines[0]["receivedAt"], at(1, 0));
    assert_eq!(
        lines[0]["body"].as_str().unwrap(),
        signal(&at(1, 0), "BTC/USD", "buy", 80).to_string(),
        "the signed body, byte for byte"
    );
}

/// An order whose numbers a `Decimal` cannot hold is refused with the reason, as the live
/// dispatcher refuses it (`risk::decide_guarded`), instead of ending the whole backtest.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_too_large_for_a_decimal_is_refused_as_live_not_a_crash() {
    let strategy = STRATEGY.replace("quantity = 0.02", "quantity = 100000000000");
    let s = Scenario::new()
        .strategy("t", &strategy)
        .hourly("BTC/USD", 3, &[(0, "10000000000000000000")])
        .event(signal(&at(1, 0), "BTC/USD", "buy", 80));
    let report = s.run().await.expect("the backtest finishes");
    let run = &report.runs[0];
    assert_eq!((run.signals.ordered, run.signals.refused), (0, 1));
    assert_eq!(
        run.signals.refused_by.get("overflow"),
        Some(&1),
        "{:?}",
        run.signals.refused_by
    );
}

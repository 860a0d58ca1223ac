//! `sigex sim`: the Vibe API simulator as a process of its own, with its engine, schedule and
//! faults set from the command line. Credentials come from the environment, never from flags
//! (a flag shows in `ps`).

use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;

/// The simulated venue's engine, schedule and faults. Probabilities are decimals from 0 to 1.
#[derive(clap::Args)]
pub(super) struct SimVenueArgs {
    /// USD the simulated account starts with.
    #[arg(long, default_value = "100000")]
    starting_balance: rust_decimal::Decimal,
    /// Fee of a fill that rested on the book, in basis points of its notional.
    #[arg(long, default_value = "2")]
    maker_fee_bps: rust_decimal::Decimal,
    /// Fee of a fill that took liquidity, in basis points of its notional.
    #[arg(long, default_value = "5")]
    taker_fee_bps: rust_decimal::Decimal,
    /// Per-tick price move, in bps of mid (uniform in plus or minus this).
    #[arg(long, default_value = "5")]
    volatility_bps: rust_decimal::Decimal,
    /// Per-tick drift, in bps of mid.
    #[arg(long, default_value = "0")]
    trend_bps: rust_decimal::Decimal,
    /// Largest |position| x price per symbol; none by default.
    #[arg(long)]
    position_limit_notional: Option<rust_decimal::Decimal>,
    /// Delay between accepting an order and matching it.
    #[arg(long, default_value_t = 5)]
    latency_ms: u64,
    /// Webhooks delivered at once (1: one at a time, in order; more: in parallel, out of order)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    webhook_concurrency: u64,
    /// Another signal.generated source: INTERVAL_MS[:SYMBOLS[:MIN-MAX[:BUY/SELL/HOLD]]], e.g.
    /// 1000:BTC/USD,ETH/USD:70-99:60/30/10 (repeatable).
    #[arg(long, value_parser = crate::sim::SignalGenerator::parse)]
    signal_generator: Vec<crate::sim::SignalGenerator>,
    /// Emit a system.alert this often (milliseconds); 0 = never.
    #[arg(long, default_value_t = 0)]
    alert_interval_ms: u64,
    /// A maintenance window starting this many seconds after start (announced 10 s before).
    #[arg(long)]
    maintenance_at_secs: Option<u64>,
    /// How long that maintenance window lasts, in seconds.
    #[arg(long, default_value_t = 60)]
    maintenance_secs: u64,
    /// A webhook delivery is dropped (never sent, never retried).
    #[arg(long, default_value = "0")]
    fault_webhook_drop: crate::sim::Probability,
    /// A webhook is delivered twice.
    #[arg(long, default_value = "0")]
    fault_webhook_duplicate: crate::sim::Probability,
    /// A webhook is delivered late (up to 500 ms).
    #[arg(long, default_value = "0")]
    fault_webhook_delay: crate::sim::Probability,
    /// A webhook is held back and delivered after the next one.
    #[arg(long, default_value = "0")]
    fault_webhook_reorder: crate::sim::Probability,
    /// A REST request is answered 500 without being processed.
    #[arg(long, default_value = "0")]
    fault_5xx: crate::sim::Probability,
    /// A REST request is answered 429 with Retry-After: 1.
    #[arg(long, default_value = "0")]
    fault_429: crate::sim::Probability,
    /// A REST request gets no answer for 30 s, then 504.
    #[arg(long, default_value = "0")]
    fault_timeout: crate::sim::Probability,
    /// An order request (POST /orders, DELETE /orders/{id}) is processed, the answer lost.
    #[arg(long, default_value = "0")]
    fault_lost_response: crate::sim::Probability,
    /// An order request is processed (order booked, or cancelled), then answered 500.
    #[arg(long, default_value = "0")]
    fault_processed_5xx: crate::sim::Probability,
    /// An order request is processed, then answered only after the --fault-timeout delay (30 s).
    #[arg(long, default_value = "0")]
    fault_slow_response: crate::sim::Probability,
    /// Which requests REST faults strike: orders (POST /orders), cancels (DELETE /orders/{id}),
    /// order-requests (both) or all.
    #[arg(long, default_value = "orders", conflicts_with = "fault_all_routes")]
    fault_routes: crate::sim::RestRoutes,
    /// REST faults strike every route (the same as --fault-routes all).
    #[arg(long)]
    fault_all_routes: bool,
    /// Inject at most this many REST faults in all.
    #[arg(long)]
    fault_limit: Option<u64>,
    /// Faults strike only during this window, `FROM-UNTIL` in seconds after start (repeatable).
    #[arg(long, value_parser = parse_window)]
    fault_window: Vec<(Duration, Duration)>,
}

fn parse_window(s: &str) -> Result<(Duration, Duration), String> {
    let (from, until) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a window like 30-90 (seconds)"))?;
    let secs = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{v:?} is not a whole number of seconds"))
    };
    let (from, until) = (secs(from)?, secs(until)?);
    if from >= until {
        return Err(format!("window {s:?} ends before it starts"));
    }
    Ok((from, until))
}

impl SimVenueArgs {
    fn apply(&self, cfg: &mut crate::sim::SimConfig) -> anyhow::Result<()> {
        cfg.starting_balance = self.starting_balance;
        cfg.fill_latency = Duration::from_millis(self.latency_ms);
        cfg.webhook_concurrency = self.webhook_concurrency as usize;
        cfg.engine.maker_fee_bps = self.maker_fee_bps;
        cfg.engine.taker_fee_bps = self.taker_fee_bps;
        cfg.engine.walk.volatility_bps = self.volatility_bps;
        cfg.engine.walk.trend_bps = self.trend_bps;
        cfg.engine.position_limit_notional = self.position_limit_notional;
        cfg.engine.check().map_err(anyhow::Error::msg)?;
        cfg.signal_generators = self.signal_generator.clone();
        cfg.alert_interval =
            (self.alert_interval_ms > 0).then(|| Duration::from_millis(self.alert_interval_ms));
        if let Some(at) = self.maintenance_at_secs {
            cfg.maintenance.push(crate::sim::MaintenanceWindow {
                starts_after: Duration::from_secs(at),
                lasts: Duration::from_secs(self.maintenance_secs),
                notice: Duration::from_secs(10),
            });
        }
        cfg.faults = crate::sim::Faults {
            webhook_drop: self.fault_webhook_drop,
            webhook_duplicate: self.fault_webhook_duplicate,
            webhook_delay: self.fault_webhook_delay,
            webhook_reorder: self.fault_webhook_reorder,
            rest_5xx: self.fault_5xx,
            rest_429: self.fault_429,
            rest_timeout: self.fault_timeout,
            order_lost_response: self.fault_lost_response,
            processed_5xx: self.fault_processed_5xx,
            order_slow_response: self.fault_slow_response,
            rest_routes: if self.fault_all_routes {
                crate::sim::RestRoutes::All
            } else {
                self.fault_routes
            },
            rest_fault_limit: self.fault_limit,
            windows: self.fault_window.clone(),
            ..crate::sim::Faults::default()
        };
        Ok(())
    }
}

pub(super) async fn run(
    listen: SocketAddr,
    webhook_url: Option<String>,
    signal_interval_ms: u64,
    seed: u64,
    venue: Box<SimVenueArgs>,
) -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let mut cfg = crate::sim::SimConfig::new(
        var("SIGEX_SIM_API_KEY")?,
        var("SIGEX_SIM_API_SECRET")?,
        var("SIGEX_SIM_WEBHOOK_SECRET")?,
    );
    cfg.webhook_url = webhook_url;
    cfg.seed = seed;
    cfg.signal_interval =
        (signal_interval_ms > 0).then(|| Duration::from_millis(signal_interval_ms));
    venue.apply(&mut cfg)?;
    tracing::info!(faults = %cfg.faults.describe(), "simulator faults");
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "simulator listening");
    crate::sim::Simulator::new(cfg)
        .serve(listener, super::run::wait_for_signal())
        .await?;
    Ok(())
}

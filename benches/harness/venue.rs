//! Scenarios that need a venue: the simulator runs in this process on its own runtime, so the
//! harness can read when each order's POST reached it (`Simulator::order_arrivals`).

use sigex::sim::{SimConfig, Simulator};

pub struct SimHost {
    pub sim: Simulator,
    pub url: String,
    _rt: tokio::runtime::Runtime,
}

impl SimHost {
    pub fn start(secret: &str) -> Self {
        Self::start_with(secret, 1)
    }

    /// A simulator delivering up to `webhook_concurrency` webhooks at once.
    pub fn start_with(secret: &str, webhook_concurrency: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("venue")
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = SimConfig::new("bench", "bench", secret);
        cfg.webhook_concurrency = webhook_concurrency;
        let sim = Simulator::new(cfg);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}/api/v1", listener.local_addr().unwrap());
        rt.spawn(sim.clone().serve(listener, std::future::pending()));
        Self { sim, url, _rt: rt }
    }
}

/// The strategy the latency scenario trades: every signal on three symbols becomes an order.
pub const EVERY_SIGNAL_STRATEGY: &str = "symbols = [\"BTC/USD\", \"ETH/USD\", \"SOL/USD\"]\nrecommendations = [\"buy\", \"sell\"]\nmin_confidence = 0\nallow_short = true\n[sizing]\nmethod = \"fixed_notional\"\nnotional = 20\n[limits]\nmax_position_notional = 100000000\n";

/// `n` signed, unique `signal.generated` requests, and the `clientOrderId` each should produce
/// (computed with the bot's own functions, so a signal is matched to its POST exactly).
pub fn signal_requests(
    n: usize,
    label: &str,
    secret: &str,
    path: &str,
) -> (Vec<Vec<u8>>, Vec<String>) {
    let symbols = ["BTC/USD", "ETH/USD", "SOL/USD"];
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (0..n)
        .map(|i| {
            let rec = if (i / 3) % 2 == 0 { "buy" } else { "sell" };
            let body = format!(
                r#"{{"event":"signal.generated","timestamp":"{now}","data":{{"symbol":"{}","recommendation":"{rec}","confidence":90,"timeHorizon":"short_term","riskLevel":"medium","reasoning":["{label} {i}"],"technicalAnalysis":{{"rsi":50.0,"macd":"bullish","support":1.0,"resistance":1000000.0}}}}}}"#,
                symbols[i % 3]
            );
            let cid = sigex::order::client_order_id(
                "bench",
                &sigex::inbox::dedupe_key(body.as_bytes()),
                "entry",
            );
            let request = super::gen::signed_request(secret, path, &body);
            (request, cid)
        })
        .unzip()
}

/// Places `n` resting limit orders at the simulator (signed REST, the bot's own client) and
/// returns `(clientOrderId, venue orderId)` for each.
pub fn seed_open_orders(host: &SimHost, n: usize) -> Vec<(String, String)> {
    use sigex::config::{Credentials, Secret};
    use sigex::venue::wire::PlaceOrderRequest;
    use sigex::venue::{SubmitOutcome, VenueClient};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let clock: sigex::clock::SharedClock = std::sync::Arc::new(sigex::clock::SystemClock);
    let client = VenueClient::new(
        &host.url,
        Credentials {
            api_key: Secret::new("bench"),
            api_secret: Secret::new("bench"),
        },
        std::time::Duration::from_secs(10),
        clock,
    )
    .unwrap();
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        let mut pending = tokio::task::JoinSet::new();
        for i in 0..n {
            if pending.len() >= 64 {
                out.push(pending.join_next().await.unwrap().unwrap());
            }
            let client = client.clone();
            pending.spawn(async move {
                let cid = format!("bench-open-{i}");
                let req = PlaceOrderRequest {
                    symbol: "BTC/USD".into(),
                    side: "buy".into(),
                    order_type: "limit".into(),
                    quantity: rust_decimal::Decimal::new(1, 3),
                    price: Some(rust_decimal::Decimal::ONE),
                    stop_price: None,
                    time_in_force: "GTC".into(),
                    client_order_id: cid.clone(),
                };
                match client.place_order(&req).await {
                    SubmitOutcome::Accepted(o) => (cid, o.order_id.clone()),
                    other => panic!("seeding an open order failed: {other:?}"),
                }
            });
        }
        while let Some(r) = pending.join_next().await {
            out.push(r.unwrap());
        }
        out
    })
}

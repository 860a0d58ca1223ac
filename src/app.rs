//! Wiring: builds the parts from a `Config`, binds the listeners and runs the tasks until shutdown.
//! Used by `sigex run`, by `sigex demo` and by the integration tests, so all three run the same bot.
//!
//! Graceful shutdown (`RunningBot::stop`), in order, all within `[shutdown] deadline_ms`: webhooks
//! get 503 and the webhook listener closes once the requests in hand are answered (a 200 already
//! means committed); the dispatcher drains the inbox; the executor sends what is due, lets its
//! in-flight request resolve and runs a final reconciliation of open orders; then the notifiers,
//! the admin listener and the database close. Past the deadline the remaining tasks are aborted:
//! that is safe, since everything they had not finished is durable and resumes at the next start.

use crate::clock::SharedClock;
use crate::config::{Config, Credentials, Mode, Secret};
use crate::dispatch::Dispatcher;
use crate::executor::Executor;
use crate::inbox::Inbox;
use crate::notify::Notifier;
use crate::shutdown::{shutdown_pair, Shutdown, ShutdownTrigger};
use crate::sim::{SimConfig, Simulator};
use crate::store::Store;
use crate::strategy::Strategy;
use crate::supervise::{self, Lifetime};
use crate::telemetry::health::{Health, TaskDeath};
use crate::telemetry::metrics::Metrics;
use crate::venue::VenueClient;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Venue(String),
    #[error("webhook TLS: {0}")]
    Tls(String),
    #[error(
        "the saved paper state is unreadable ({0}); `sigex paper reset --config FILE` starts over"
    )]
    PaperState(String),
}

/// A started bot: its addresses, and the handles to stop it.
pub struct RunningBot {
    pub webhook_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub store: Store,
    /// In paper mode, the in-process paper venue.
    pub paper_venue: Option<Simulator>,
    pub health: Health,
    pub metrics: Metrics,
    /// For parts that must tell the operator something (halts, resumes, maintenance, drift).
    pub notifier: Notifier,
    deadline: Duration,
    /// One stage per shutdown phase, stopped in this order.
    stages: Vec<Stage>,
}

/// Tasks that stop together, on their own trigger. Each runs supervised (`supervise`): one that
/// ends before its stage is stopped is reported, by name, to `Health`.
struct Stage {
    name: &'static str,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
    health: Health,
}

impl Stage {
    fn new(name: &'static str, health: &Health) -> Self {
        let (trigger, _) = shutdown_pair();
        Self {
            name,
            trigger,
            tasks: Vec::new(),
            health: health.clone(),
        }
    }

    fn shutdown(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// Runs `task` as `name` until this stage stops.
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.adopt(name, Lifetime::UntilShutdown, tokio::spawn(task));
    }

    /// Supervises a task spawned elsewhere.
    fn adopt(&mut self, name: &'static str, lifetime: Lifetime, task: JoinHandle<()>) {
        let stopping = self.shutdown();
        self.tasks.push(supervise::watch(
            name,
            lifetime,
            stopping,
            self.health.clone(),
            task,
        ));
    }
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Every task finished its work within the deadline.
    Cleanly,
    /// Tasks of these stages were still busy at the deadline and were aborted.
    PastDeadline(Vec<&'static str>),
    /// A task had died before (or while) stopping: the bot must be restarted.
    AfterTaskDeath(Vec<TaskDeath>),
}

impl RunningBot {
    /// Fires when the bot's last stage (admin, database) begins to stop.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.stages
            .last()
            .map(Stage::shutdown)
            .unwrap_or_else(|| shutdown_pair().1)
    }

    /// Resolves with the first supervised task that died: `sigex run` then stops the bot and
    /// exits non-zero.
    pub async fn died(&self) -> TaskDeath {
        self.health.wait_for_death().await
    }

    /// Runs `task` as `name` under the bot's supervision, stopped with its last stage (admin,
    /// notifiers); `shutdown_handle` is the shutdown it should obey.
    pub fn supervise(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        if let Some(stage) = self.stages.last_mut() {
            stage.spawn(name, task);
        }
    }

    /// Graceful shutdown, as the module doc describes; bounded by `[shutdown] deadline_ms`.
    pub async fn stop(self) -> Stopped {
        let started = tokio::time::Instant::now();
        let deadline = started + self.deadline;
        self.health.start_draining();
        let mut abandoned = Vec::new();
        for stage in self.stages {
            stage.trigger.trigger();
            for mut task in stage.tasks {
                match tokio::time::timeout_at(deadline, &mut task).await {
                    Ok(_) => {}
                    Err(_) => {
                        task.abort();
                        abandoned.push(stage.name);
                    }
                }
            }
        }
        self.store.close().await;
        let dead = self.health.dead_tasks();
        if !dead.is_empty() {
            let tasks: Vec<String> = dead
                .iter()
                .map(|d| format!("{} ({})", d.task, d.why))
                .collect();
            tracing::error!(took_ms = started.elapsed().as_millis() as u64, tasks = ?tasks, "stopped after a task died; restart sigex");
            Stopped::AfterTaskDeath(dead)
        } else if abandoned.is_empty() {
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                "stopped cleanly"
            );
            Stopped::Cleanly
        } else {
            abandoned.dedup();
            tracing::warn!(deadline_ms = self.deadline.as_millis() as u64, stages = ?abandoned, "shutdown deadline passed; abandoned work resumes at the next start");
            Stopped::PastDeadline(abandoned)
        }
    }
}

pub async fn start(
    config: Config,
    strategies: Vec<Strategy>,
    clock: SharedClock,
) -> Result<RunningBot, StartError> {
    let tls = match &config.webhook.tls {
        Some((cert, key)) => {
            Some(crate::ingress::server::load_tls(cert, key).map_err(StartError::Tls)?)
        }
        None => None,
    };
    let store = Store::open(&config.storage.database_url).await?;
    store.set_fee_rates(&config.trading.fee_rates()).await?;
    // Before any webhook is accepted: events stored under the previous dedupe rule that the
    // venue may still retry get the new key, so a retry is a duplicate.
    let freshness = crate::model::events::Freshness::new(config.webhook.max_event_age);
    let rekeyed = store
        .rekey_legacy_events(
            clock.now() - freshness.max_age * 2,
            crate::inbox::dedupe_key,
        )
        .await?;
    if rekeyed > 0 {
        tracing::info!(
            rekeyed,
            "recent events rekeyed under the signed-bytes dedupe rule"
        );
    }
    let started_at = clock.now();
    let health = Health::new();
    let metrics = Metrics::new();
    let mut webhooks = Stage::new("webhooks", &health);
    let mut dispatch = Stage::new("dispatcher", &health);
    let mut execute = Stage::new("executor", &health);
    let mut rest = Stage::new("admin, notifiers, paper venue", &health);
    let (notifier, notify_tasks) = Notifier::start(
        config.notify.clone(),
        metrics.clone(),
        clock.clone(),
        rest.shutdown(),
    );
    for task in notify_tasks {
        rest.adopt("notifier", Lifetime::UntilShutdown, task);
    }

    let webhook_listener = bind(config.webhook.listen).await?;
    let webhook_addr = local_addr(&webhook_listener, config.webhook.listen)?;
    let admin_listener = bind(config.admin.listen).await?;
    let admin_addr = local_addr(&admin_listener, config.admin.listen)?;

    let mut paper_deliveries = None;
    let (venue_url, credentials, paper_venue) = match config.mode {
        Mode::Live => {
            let credentials = config
                .venue
                .credentials
                .clone()
                .ok_or_else(|| StartError::Venue("live mode needs venue credentials".into()))?;
            (config.venue.base_url.clone(), credentials, None)
        }
        Mode::Paper => {
            // The paper venue delivers its events to a listener of its own, on loopback and
            // plain HTTP, so `allow_sources`, TLS or a non-loopback `listen` on the public one
            // cannot shut it out. Its deliveries are still signed and verified like any other.
            let deliveries = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
            let deliveries_addr = local_addr(&deliveries, config.webhook.listen)?;
            paper_deliveries = Some(deliveries);
            let (url, credentials, sim) =
                start_paper_venue(&config, &store, deliveries_addr, &mut rest).await?;
            (url, credentials, Some(sim))
        }
    };
    let venue = VenueClient::new(
        &venue_url,
        credentials,
        config.venue.request_timeout,
        clock.clone(),
    )
    .map_err(StartError::Venue)?
    .watched(crate::venue::Watch {
        health: health.clone(),
        metrics: metrics.clone(),
        notifier: notifier.clone(),
    });

    let stored = Arc::new(Notify::new());
    let orders_ready = Arc::new(Notify::new());
    let (inbox, inbox_writer) = Inbox::new(store.clone(), stored.clone());
    // The writer ends once the webhook listener has stopped and dropped the last handle.
    webhooks.spawn("inbox writer", inbox_writer);
    let prune = crate::inbox::prune_task(
        store.clone(),
        config.inbox.retention,
        clock.clone(),
        rest.shutdown(),
    );
    rest.spawn("inbox pruning", prune);

    let observers = || crate::ingress::Observers {
        health: health.clone(),
        metrics: metrics.clone(),
    };
    let ingress =
        crate::ingress::router(&config.webhook, inbox.clone(), clock.clone(), observers());
    let fd_limit = crate::ingress::server::raise_fd_limit();
    let max_connections =
        crate::ingress::server::fitting_cap(config.webhook.max_connections, fd_limit);
    if max_connections < config.webhook.max_connections {
        tracing::warn!(
            fd_limit,
            configured = config.webhook.max_connections,
            effective = max_connections,
            "too few file descriptors for [webhook] max_connections; raise LimitNOFILE (ulimit -n)"
        );
    }
    let edge = || crate::ingress::server::Edge {
        limits: crate::ingress::server::ConnectionLimits {
            total: max_connections,
            per_source: config.webhook.max_connections_per_source,
            exempt: config.webhook.trusted_proxies.clone(),
        },
        metrics: metrics.clone(),
    };
    let listener = crate::ingress::server::serve(
        webhook_listener,
        ingress,
        tls,
        config.webhook.header_timeout,
        edge(),
        webhooks.shutdown(),
    );
    webhooks.spawn("webhook listener", listener);
    if let Some(deliveries) = paper_deliveries {
        // The paper venue's own listener: the same ingress, without the allowlist and TLS of the
        // public one (its deliveries are HMAC-checked like any webhook).
        let internal = crate::config::WebhookConfig {
            allow_sources: Vec::new(),
            trusted_proxies: Vec::new(),
            tls: None,
            ..config.webhook.clone()
        };
        let router = crate::ingress::router(&internal, inbox, clock.clone(), observers());
        let listener = crate::ingress::server::serve(
            deliveries,
            router,
            None,
            config.webhook.header_timeout,
            edge(),
            webhooks.shutdown(),
        );
        webhooks.spawn("paper venue webhook listener", listener);
    }
    let canceller = crate::executor::cancel::Canceller::new(
        store.clone(),
        venue.clone(),
        clock.clone(),
        metrics.clone(),
        notifier.clone(),
    );
    let admin_state = crate::admin::AdminState {
        canceller: canceller.clone(),
        store: store.clone(),
        health: health.clone(),
        metrics: metrics.clone(),
        venue: venue.clone(),
        clock: clock.clone(),
        inbox_ready: stored.clone(),
        notifier: notifier.clone(),
        mode: match config.mode {
            Mode::Live => "live",
            Mode::Paper => "paper",
        },
        started_at,
    };
    let admin = serve(
        admin_listener,
        crate::admin::router(admin_state, config.admin.token.clone()).merge(
            crate::admin::control::router(store.clone(), config.admin.token.clone(), clock.clone()),
        ),
        rest.shutdown(),
    );
    rest.adopt("admin listener", Lifetime::UntilShutdown, admin);
    let state_watch = crate::notify::watch::run(
        store.clone(),
        notifier.clone(),
        metrics.clone(),
        config.trading.maintenance,
        clock.clone(),
        rest.shutdown(),
    );
    rest.spawn("trading-state watch", state_watch);
    rest.spawn(
        "venue heartbeat",
        venue_heartbeat(venue.clone(), rest.shutdown()),
    );
    let store_check = crate::admin::store_check::run(
        store.clone(),
        notifier.clone(),
        clock.clone(),
        rest.shutdown(),
    );
    rest.spawn("store check", store_check);
    rest.spawn(
        "pnl sampler",
        crate::admin::pnl::PnlSampler {
            store: store.clone(),
            venue: venue.clone(),
            clock: clock.clone(),
            interval: config.admin.pnl_sample_interval,
            retention: config.inbox.retention,
        }
        .run(rest.shutdown()),
    );

    let timeouts = strategies
        .iter()
        .filter_map(|s| s.orders.unfilled_timeout.map(|t| (s.name.clone(), t)))
        .collect();
    let mut dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(strategies),
        venue.clone(),
        clock.clone(),
        stored.clone(),
        orders_ready.clone(),
        Arc::new(config.trading.clone()),
    );
    dispatcher.notifier = notifier.clone();
    dispatcher.reconciled = Some(health.clone());
    dispatcher.pnl_tolerance = config.reconcile.pnl_tolerance;
    dispatcher.freshness = freshness;
    let stopping = dispatch.shutdown();
    dispatch.spawn("dispatcher", dispatcher.run(stopping));
    // Maintenance reconciliation, timeouts and protective orders talk to the venue: they stop
    // with the executor.
    let supervisor = crate::reconcile::full::Supervisor {
        store: store.clone(),
        venue: venue.clone(),
        clock: clock.clone(),
        settings: config.trading.maintenance,
        timeouts,
        trading: Arc::new(config.trading.clone()),
        stale_after: config.reconcile.stale_after,
        notifier: notifier.clone(),
        health: health.clone(),
        canceller,
    };
    // Before any new order: the book must agree with the venue's (readiness waits for it).
    let startup = crate::reconcile::snapshot::StartupReconciler {
        store: store.clone(),
        venue: venue.clone(),
        clock: clock.clone(),
        health: health.clone(),
        notifier: notifier.clone(),
        tolerance: config.reconcile.drift_tolerance,
    }
    .run(execute.shutdown());
    execute.adopt(
        "start-up reconciliation",
        Lifetime::OneShot,
        tokio::spawn(startup),
    );
    if !config.reconcile.snapshot_interval.is_zero() {
        let snapshots = crate::reconcile::snapshot::PeriodicSnapshots {
            store: store.clone(),
            venue: venue.clone(),
            clock: clock.clone(),
            health: health.clone(),
            notifier: notifier.clone(),
            interval: config.reconcile.snapshot_interval,
            tolerance: config.reconcile.drift_tolerance,
            cash_tolerance: config.reconcile.pnl_tolerance,
        }
        .run(execute.shutdown());
        execute.spawn("position snapshots", snapshots);
    }
    let stopping = execute.shutdown();
    execute.spawn("order supervisor", supervisor.run(stopping));
    let settler = crate::reconcile::settle::FillSettler {
        store: store.clone(),
        venue: venue.clone(),
        clock: clock.clone(),
        health: health.clone(),
    }
    .run(execute.shutdown());
    execute.spawn("fill settler", settler);
    let executor = Executor {
        store: store.clone(),
        venue,
        clock,
        orders_ready,
        inbox_ready: stored,
        metrics: metrics.clone(),
        notifier: notifier.clone(),
        pacer: std::sync::Mutex::new(crate::executor::OrderPacer::new(
            config.venue.max_orders_per_second,
            std::time::Instant::now(),
        )),
        health: health.clone(),
        maintenance: config.trading.maintenance,
        max_intent_age: config.venue.max_intent_age,
    };
    let stopping = execute.shutdown();
    execute.spawn("executor", executor.run(stopping));

    tracing::info!(
        mode = ?config.mode,
        webhook = %webhook_addr,
        webhook_path = %config.webhook.path,
        admin = %admin_addr,
        venue = %venue_url,
        "sigex started"
    );
    Ok(RunningBot {
        webhook_addr,
        admin_addr,
        store,
        paper_venue,
        health,
        metrics,
        notifier,
        deadline: config.shutdown_deadline,
        stages: vec![webhooks, dispatch, execute, rest],
    })
}

/// How often the venue is pinged when nothing else talks to it, so readiness knows it answers.
const HEARTBEAT: Duration = Duration::from_secs(15);

async fn venue_heartbeat(venue: VenueClient, mut shutdown: Shutdown) {
    loop {
        // The client reports the outcome to `Health` and the metrics itself.
        if let Err(e) = venue.ping().await {
            tracing::debug!(error = %e, "venue heartbeat failed");
        }
        if shutdown.sleep(HEARTBEAT).await {
            return;
        }
    }
}

/// Paper mode: an in-process simulator on loopback plays the venue. It issues its own
/// credentials and sends its `order.*` events to `deliveries` (the bot's internal loopback
/// webhook listener: the same ingress, without the allowlist or TLS of the public one), signed
/// with our webhook secret, so the pipeline is exactly the live one. Its state (orders, positions,
/// balances, prices) is restored from the database at start and saved after every change.
async fn start_paper_venue(
    config: &Config,
    store: &Store,
    deliveries: SocketAddr,
    stage: &mut Stage,
) -> Result<(String, Credentials, Simulator), StartError> {
    let shutdown = stage.shutdown();
    let api_key = format!("paper-{}", uuid::Uuid::new_v4().simple());
    let api_secret = uuid::Uuid::new_v4().simple().to_string();
    let mut sim_config = SimConfig::new(
        api_key.clone(),
        api_secret.clone(),
        config.webhook.secret.expose().to_owned(),
    );
    sim_config.webhook_url = Some(format!("http://{deliveries}{}", config.webhook.path));
    let paper = &config.paper;
    sim_config.seed = paper.seed;
    sim_config.starting_balance = paper.starting_balance;
    sim_config.fill_latency = paper.latency;
    sim_config.symbols = paper.symbols.clone();
    sim_config.engine = paper.engine.clone();
    let saved = store.load_paper_state().await?;
    if let Some(saved) = &saved {
        // Refuse rather than silently start from an empty account the bot's own books disagree with.
        Simulator::check_state(saved).map_err(StartError::PaperState)?;
    }
    let restored = saved.is_some();
    sim_config.restore = saved;
    let sim = Simulator::new(sim_config);
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = bind(addr).await?;
    let sim_addr = local_addr(&listener, addr)?;
    let runner = sim.clone();
    let mut sim_shutdown = shutdown.clone();
    stage.spawn("paper venue", async move {
        if let Err(e) = runner
            .serve(listener, async move { sim_shutdown.wait().await })
            .await
        {
            tracing::error!(error = %e, "paper venue stopped");
        }
    });
    stage.spawn("paper state saver", {
        let sim = sim.clone();
        let store = store.clone();
        let mut shutdown = shutdown.clone();
        async move {
            let mut changes = sim.changes();
            loop {
                let stopping = tokio::select! {
                    changed = changes.changed() => changed.is_err(),
                    _ = shutdown.wait() => true,
                };
                // Each save writes the whole current state, so changes that arrive while one is
                // being written are all in the next.
                if let Err(e) = store
                    .save_paper_state(&sim.state_json(), chrono::Utc::now())
                    .await
                {
                    tracing::error!(error = %e, "cannot save the paper venue's state");
                }
                if stopping {
                    return;
                }
            }
        }
    });
    if let crate::config::PriceSource::Venue { interval } = paper.price_source {
        let prices = follow_venue_prices(config, sim.clone(), interval, shutdown.clone())?;
        stage.adopt("paper prices", Lifetime::UntilShutdown, prices);
    }
    tracing::info!(
        restored,
        seed = paper.seed,
        starting_balance = %paper.starting_balance,
        "paper venue started"
    );
    Ok((
        format!("http://{sim_addr}/api/v1"),
        Credentials {
            api_key: Secret::new(api_key),
            api_secret: Secret::new(api_secret),
        },
        sim,
    ))
}

/// `price_source = "venue"`: the paper venue's mid prices follow the real venue's market data
/// (`GET /market/price/{symbol}` at `[venue] base_url`, signed with the venue credentials when they
/// are configured). Only market data is read: no order endpoint is ever called in paper mode.
fn follow_venue_prices(
    config: &Config,
    sim: Simulator,
    interval: Duration,
    shutdown: Shutdown,
) -> Result<JoinHandle<()>, StartError> {
    let credentials = config.venue.credentials.clone().unwrap_or(Credentials {
        api_key: Secret::new(String::new()),
        api_secret: Secret::new(String::new()),
    });
    let market_data = VenueClient::new(
        &config.venue.base_url,
        credentials,
        config.venue.request_timeout,
        Arc::new(crate::clock::SystemClock),
    )
    .map_err(StartError::Venue)?;
    let symbols: Vec<String> = config
        .paper
        .symbols
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    let mut shutdown = shutdown;
    Ok(tokio::spawn(async move {
        loop {
            for symbol in &symbols {
                match market_data.price(symbol).await {
                    Ok(p) if p.price > rust_decimal::Decimal::ZERO => {
                        sim.set_mid_price(symbol, p.price);
                    }
                    Ok(p) => tracing::warn!(%symbol, price = %p.price, "venue price ignored"),
                    Err(e) => {
                        tracing::warn!(%symbol, error = %e, "venue price unavailable; the paper price walks on")
                    }
                }
            }
            if shutdown.sleep(interval).await {
                return;
            }
        }
    }))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(l: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    l.local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

fn serve(listener: TcpListener, router: axum::Router, mut shutdown: Shutdown) -> JoinHandle<()> {
    tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    })
}

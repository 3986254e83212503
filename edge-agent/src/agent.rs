//! Wires the stages together and runs them until shutdown.
//!
//! source (tokio task) → bounded channel → pipeline (own thread: decode,
//! window, journal, ack, cut) → outbox (sled) → syncer (tokio task) → sink.
//! Shutdown: stop forwarding new messages, let the pipeline drain and commit
//! what it has (acking it), then stop the syncer; whatever is not acked stays
//! at the broker, whatever is not synced stays in the outbox.
//! With `metrics_listen`, `GET /metrics` is served beside them (bound before
//! anything else starts, so a taken address fails the start).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{error, info};

use crate::classify::templates::TemplateStage;
use crate::classify::{ClassifyError, ClassifyStage};
use crate::config::Settings;
use crate::metrics::AgentMetrics;
use crate::metrics_http::{MetricsEndpoint, MetricsListenError};
use crate::pipeline::Pipeline;
use crate::source::{self, SourceError};
use crate::store::StoreError;
use crate::syncer::Syncer;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("uplink token: {0}")]
    Token(String),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    MetricsListen(#[from] MetricsListenError),
    #[error("the {0} panicked")]
    Panicked(&'static str),
}

/// Reads the gateway's bearer token from where the config says it is.
pub fn read_token(settings: &Settings) -> Result<String, AgentError> {
    let u = &settings.uplink;
    let token = if let Some(var) = &u.token_env {
        std::env::var(var)
            .map_err(|_| AgentError::Token(format!("environment variable {var} is not set")))?
    } else if let Some(file) = &u.token_file {
        std::fs::read_to_string(file)
            .map_err(|e| AgentError::Token(format!("cannot read {}: {e}", file.display())))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    } else {
        String::new()
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(AgentError::Token("token is empty".into()));
    }
    Ok(token)
}

/// What ended the agent's main wait.
enum Stopped<T> {
    Shutdown,
    Source,
    Syncer(T),
}

/// The classify stage the settings describe: `[models]` loaded, `[templates]` mining.
pub fn classify_stage(settings: &Settings) -> Result<ClassifyStage, ClassifyError> {
    // Escalated log lines are redacted by the same rules as template exemplars.
    let mut classify =
        ClassifyStage::load(&settings.models)?.with_redactor(settings.templates.redactor()?);
    if settings.templates.enabled {
        let redactor = settings.templates.redactor()?;
        let stage = TemplateStage::new(settings.templates.miner_config())?
            .with_exemplars(settings.templates.exemplars, redactor);
        classify = classify.with_templates(stage);
    }
    Ok(classify)
}

/// Runs the agent until `shutdown` completes (or a stage fails), with its
/// metrics in a registry of its own.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    run_with_metrics(settings, AgentMetrics::new(), shutdown).await
}

/// [`run`], recording into `metrics` (the registry `telemetry::init`
/// exports) and serving it on `metrics_listen` if set.
pub async fn run_with_metrics(
    settings: Settings,
    metrics: AgentMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let token = read_token(&settings)?;
    let endpoint = match settings.metrics_listen {
        Some(addr) => Some(MetricsEndpoint::bind(addr).await?),
        None => None,
    };
    let outbox_ready = Arc::new(Notify::new());
    let classify = classify_stage(&settings)?;
    if settings.templates.enabled {
        info!(
            exemplars = settings.templates.exemplars,
            redact = ?settings.templates.redact_builtin,
            "log template mining on"
        );
    }
    for m in &settings.models.sensor {
        info!(model = %m.path.display(), series = %m.series, "sensor model loaded");
    }
    let pipeline = {
        let settings = settings.clone();
        let ready = outbox_ready.clone();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || {
            Pipeline::open_with_metrics(&settings, classify, ready, metrics)
        })
        .await
        .map_err(|_| AgentError::Panicked("store start-up"))??
    };
    let store = pipeline.store().clone();
    let health = pipeline.health();
    let (tx, rx) = mpsc::channel(settings.journal.queue_capacity);
    let (source, acker) = source::connect(&settings.mqtt, settings.journal.queue_capacity)?;
    let source = source.with_health(health.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let pipeline_thread = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let result = pipeline.run(rx, acker, runtime);
            let _ = done_tx.send(());
            result
        })
        .expect("spawning the pipeline thread");
    let mut source_task = tokio::spawn(source.run(tx, stop_rx.clone(), done_rx));
    let metrics_task = endpoint.map(|endpoint| {
        info!(addr = %endpoint.local_addr(), "serving GET /metrics");
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::spawn(endpoint.serve(metrics.clone(), store.clone(), stopped))
    });
    let syncer = Syncer::new(store, &settings.uplink, token, outbox_ready)?
        .with_health(health)
        .with_metrics(metrics);
    let mut syncer_task = tokio::spawn(syncer.run(stop_rx));
    info!(gateway = %settings.gateway_id, broker = %format!("{}:{}", settings.mqtt.host, settings.mqtt.port), sink = %settings.uplink.url, "edge-agent running");

    let stopped = tokio::select! {
        _ = shutdown => {
            info!("shutting down: draining the pipeline");
            Stopped::Shutdown
        }
        _ = &mut source_task => {
            error!("the pipeline stopped");
            Stopped::Source
        }
        // A syncer that cannot delete what the sink stored (its store
        // failed) must stop the agent, or ingest would go on until the cap
        // drops data that is already safe at the sink.
        result = &mut syncer_task => {
            error!("the syncer stopped");
            Stopped::Syncer(result)
        }
    };
    let _ = stop_tx.send(true);
    if !matches!(stopped, Stopped::Source) {
        // A finished JoinHandle must not be polled again (it panics).
        let _ = source_task.await;
    }
    let pipeline_result = tokio::task::spawn_blocking(move || pipeline_thread.join())
        .await
        .map_err(|_| AgentError::Panicked("pipeline"))?
        .map_err(|_| AgentError::Panicked("pipeline"))?;
    // The pipeline's error is the cause; a syncer failing after it is a consequence.
    pipeline_result?;
    let syncer_result = match stopped {
        Stopped::Syncer(result) => result,
        _ => syncer_task.await,
    };
    syncer_result.map_err(|_| AgentError::Panicked("syncer"))??;
    if let Some(task) = metrics_task {
        if let Ok(Err(e)) = task.await {
            error!("the metrics endpoint failed: {e}");
        }
    }
    info!("stopped cleanly");
    Ok(())
}

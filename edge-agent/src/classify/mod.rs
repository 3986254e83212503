//! The classify stage: feature recipes and model judgements between windower and outbox.

pub mod log;
pub mod log_escalation;
pub mod log_recipe;
pub mod pool;
pub mod redact;
pub mod router;
pub mod sensor;
pub mod sensor_recipe;
pub mod stage;
pub mod templates;

pub use stage::{Accepted, ClassifyError, ClassifyStage, StateUpdate};

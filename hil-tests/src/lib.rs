//! Hardware-in-the-loop test support: the fleet simulator, its ledger, the checker and the
//! Mosquitto harness.
//!
//! This crate drives and checks the pipeline from outside; it does not contain pipeline code.

pub mod certs;
pub mod checker;
pub mod fault_proxy;
pub mod ledger;
pub mod log_uplink;
pub mod loghub_eval;
pub mod loglines;
pub mod malformed;
pub mod mosquitto;
pub mod paths;
pub mod plan;
pub mod publisher;
pub mod route_eval;
pub mod sensor_uplink;
pub mod sim;
pub mod sink_client;
pub mod skab;
pub mod skab_eval;
pub mod webdriver;
pub mod windows;

pub use checker::{check, check_rounded, CheckReport, StoredWindow};
pub use ledger::{read_ledger, LedgerRecord};
pub use malformed::MalformedKind;
pub use mosquitto::{require_or_skip, Mosquitto};
pub use paths::{data_dir, workspace_root};
pub use sim::{run, SimError, SimOptions, SimReport};
pub use sink_client::{fetch_windows, fetch_windows_with};

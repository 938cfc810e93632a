//! Workflows and batches (SPEC §10): a workflow is a DAG of named steps, a batch a set of
//! jobs with an optional callback after all of them; both are plans of steps, each step an
//! ordinary job under a fixed id (`<id>.<step>`) carrying `workflow`/`step` or `batch`.
//!
//! - [`plan`]: the stored definition, the DAG check, result references (pure logic)
//! - [`driver`]: every master consumes step results and releases what they free
//! - [`release`]: a released step becomes its job, or ends without running
//! - [`reconcile`]: the leader repairs what a crash left undone
//! - [`views`](self): creating, canceling and showing flows, for the API

pub mod driver;
pub mod plan;
pub mod reconcile;
pub mod release;
mod views;

pub use views::{batch_view, create, flow_status, workflow_view};

use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::CoordinatorError;

/// Why handling a flow failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// Redis failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] ClientError),
    /// A stored definition cannot be read.
    #[error("corrupt flow definition: {0}")]
    Corrupt(String),
}

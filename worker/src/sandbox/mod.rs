//! Sandboxes run one job of a function and turn whatever happens into an outcome.

pub mod inprocess;
pub mod process;
mod protocol;
pub mod shared;

//! Sandboxes run one job of a function and turn whatever happens into an outcome.

mod bubblewrap;
mod cgroup;
mod containment;
mod host;
mod identity;
pub mod inprocess;
mod instance;
mod keeper;
mod launch;
pub mod process;
mod protocol;
pub mod shared;
mod workdir;

pub use host::{SandboxError, SandboxHost};

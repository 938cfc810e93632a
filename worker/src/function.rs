//! Functions a worker can run: in-process Rust handlers registered by name.

use futures::future::BoxFuture;
use futures::FutureExt;
use jobfleet_common::message::JobError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What a handler returns: its output as JSON, or the job's error.
pub type HandlerResult = Result<Value, JobError>;

/// A type-erased in-process handler.
pub type Handler = Arc<dyn Fn(Value) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// Wraps a typed handler: args are deserialized into `A` (a mismatch fails the job with
/// `invalid_args`) and the output `R` is serialized back to JSON.
pub fn handler<A, R, F, Fut>(f: F) -> Handler
where
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, JobError>> + Send + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |args: Value| {
        let f = f.clone();
        async move {
            let args: A = serde_json::from_value(args).map_err(|e| JobError::invalid_args(e.to_string()))?;
            let output = f(args).await?;
            serde_json::to_value(output).map_err(|e| JobError::function(format!("output is not JSON: {e}")))
        }
        .boxed()
    })
}

/// A registered function: its handler and its own timeout.
#[derive(Clone)]
pub struct Function {
    /// The code.
    pub handler: Handler,
    /// Timeout set in code; the config file's timeout wins over it.
    pub timeout: Option<Duration>,
}

/// The worker's functions by name.
#[derive(Clone, Default)]
pub struct FunctionRegistry {
    functions: HashMap<String, Function>,
}

impl FunctionRegistry {
    /// Registers (or replaces) a function.
    pub fn insert(&mut self, name: impl Into<String>, function: Function) {
        self.functions.insert(name.into(), function);
    }

    /// A function by name.
    pub fn get(&self, name: &str) -> Option<&Function> {
        self.functions.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.functions.keys().cloned().collect();
        names.sort();
        names
    }
}

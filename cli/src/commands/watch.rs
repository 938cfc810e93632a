//! `jobfleet watch [PATTERN]`: results live from `NS.results`, read straight from RabbitMQ
//! through an exclusive queue of its own, until Ctrl-C (or `--count` results).

use super::Context;
use crate::args::WatchArgs;
use crate::error::CliError;
use crate::output;
use jobfleet_common::client::{ClientError, ResultSubscriber};
use jobfleet_common::config::redact_url;
use jobfleet_common::message::{is_valid_name, ResultMessage};
use jobfleet_common::tls::Endpoint;
use jobfleet_common::topology::Topology;
use std::collections::{HashSet, VecDeque};
use tokio::signal::unix::{signal, SignalKind};

/// Result ids remembered to drop duplicates (a result is sent again only after a worker
/// crash, soon after the first copy).
const REMEMBERED: usize = 10_000;

/// Prints one line per result (`--json`: one object per line) until SIGINT/SIGTERM or
/// `--count` distinct results.
pub async fn run(context: &Context, args: &WatchArgs) -> Result<(), CliError> {
    if !is_valid_name(&args.namespace) {
        return Err(CliError::Usage(format!(
            "namespace {:?}: use 1..64 chars of [A-Za-z0-9_-]",
            args.namespace
        )));
    }
    if args.pattern.is_empty() {
        return Err(CliError::Usage(
            "the pattern is empty; `#` matches every result".into(),
        ));
    }
    let topology = Topology::new(&args.namespace);
    let results_exchange = topology.results_exchange();
    let broker = |source: ClientError| CliError::Broker {
        url: redact_url(&args.amqp_url),
        source,
    };
    let endpoint = Endpoint::new(&args.amqp_url, context.broker_tls.clone());
    let mut subscriber = ResultSubscriber::connect(endpoint, topology, &[args.pattern.as_str()])
        .await
        .map_err(broker)?;
    let (mut interrupt, mut terminate) =
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(i), Ok(t)) => (i, t),
            (Err(e), _) | (_, Err(e)) => return Err(CliError::Output(e)),
        };
    // Tells people (and scripts) that results from now on will show.
    eprintln!(
        "watching {results_exchange} for {:?} (Ctrl-C to stop)",
        args.pattern
    );

    let mut seen = Seen::default();
    let mut printed = 0u64;
    while args.count.is_none_or(|count| printed < count) {
        let result = tokio::select! {
            result = subscriber.next() => result,
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        };
        match result {
            Ok(result) if seen.first_time(&result.id) => {
                if context.json {
                    output::line(&serde_json::to_string(&result).unwrap_or_default())?;
                } else {
                    output::line(&result_line(&result))?;
                }
                printed += 1;
            }
            Ok(_) => {}
            Err(e) if e.is_connection_error() => return Err(broker(e)),
            // Someone published garbage to the result exchange: not ours to stop for.
            Err(e) => eprintln!("jobfleet: skipped a result: {e}"),
        }
    }
    Ok(())
}

/// `<finished at> <id> <group>.<function> <status> <result or error>`.
pub fn result_line(result: &ResultMessage) -> String {
    // A foreign publisher's result may carry a time no text can show.
    let time =
        jobfleet_api::rfc3339(result.finished_at).map_or_else(|| "?".into(), |t| output::short_time(&t));
    let outcome = match (&result.result, &result.error) {
        (_, Some(error)) => format!("{}: {}", error.kind.as_str(), error.message),
        (Some(value), None) => output::compact(value),
        (None, None) => "null".into(),
    };
    format!(
        "{time} {} {}.{} {} {outcome}",
        result.id,
        result.group,
        result.function,
        result.status.as_str()
    )
}

/// The ids of the last [`REMEMBERED`] results.
#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// Remembers `id`; false if it was already there.
    fn first_time(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::message::{ErrorKind, JobError, JobStatus};
    use serde_json::json;

    fn result(status: JobStatus) -> ResultMessage {
        ResultMessage {
            id: "j1".into(),
            group: "default".into(),
            function: "echo".into(),
            status,
            result: Some(json!({"a": 1})),
            error: None,
            attempts: 1,
            worker: "w".into(),
            submitted_at: None,
            started_at: None,
            finished_at: 1_700_000_000_000,
            duration_ms: Some(3),
            member: Default::default(),
        }
    }

    #[test]
    fn results_print_on_one_line() {
        assert_eq!(
            result_line(&result(JobStatus::Finished)),
            "2023-11-14 22:13:20 j1 default.echo finished {\"a\":1}"
        );
        let mut failed = result(JobStatus::Failed);
        failed.result = None;
        failed.error = Some(JobError::new(ErrorKind::FunctionError, "boom"));
        assert!(result_line(&failed).ends_with("j1 default.echo failed function_error: boom"));
    }

    #[test]
    fn a_result_from_beyond_year_9999_still_prints() {
        let mut far = result(JobStatus::Finished);
        far.finished_at = i64::MAX;
        assert!(result_line(&far).starts_with("? j1 default.echo finished"));
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut seen = Seen::default();
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        assert!(seen.first_time("b"));
    }
}

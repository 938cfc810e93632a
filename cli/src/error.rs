//! Why a `jobfleet` command failed, and the exit status each failure maps to.

use crate::client::ApiError;
use jobfleet_common::client::ClientError;
use jobfleet_common::tls::TlsError;

/// The exit statuses of `jobfleet` (documented in `--help` and docs/cli.md).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A job failed or was canceled under `--wait`, or a bulk job did not finish.
    pub const JOB_FAILED: u8 = 1;
    /// Bad command line or unreadable input (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// The master refused the request (a 4xx answer).
    pub const API: u8 = 3;
    /// The master (or, for `watch`, the broker) is unreachable, or answered 5xx.
    pub const UNAVAILABLE: u8 = 4;
}

/// The text appended to `jobfleet --help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  a job failed or was canceled (submit --wait), or a bulk job did not finish
  2  usage: bad arguments, unreadable --args-file, --bulk or --ca-file file
  3  the master refused the request (4xx: unknown group or job, invalid args, conflict)
  4  the master or the broker is unreachable, or the master answered 5xx (e.g. group_broken)";

/// A failed command. `main` prints it as one line, `jobfleet: <error>`, on stderr.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command line is unusable.
    #[error("{0}")]
    Usage(String),
    /// An input file (or stdin) could not be read.
    #[error("{what}: {source}")]
    Input {
        /// What was read, e.g. `cannot read --bulk jobs.jsonl`.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An input file (or stdin) is not valid JSON.
    #[error("{what}: not valid JSON: {source}")]
    InvalidJson {
        /// Where, e.g. `--args-file args.json` or `jobs.jsonl:3`.
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The `--ca-file` is unreadable or holds no usable CA certificate.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The master failed the request or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A waited-for job ended without finishing.
    #[error("job {id} {status}: {kind}: {message}")]
    JobEnded {
        /// The job.
        id: String,
        /// `failed` or `canceled`.
        status: String,
        /// The error kind (SPEC §2).
        kind: String,
        /// The error message.
        message: String,
    },
    /// Some jobs of a bulk submit did not finish.
    #[error("{unfinished} of {total} jobs did not finish ({breakdown})")]
    Bulk {
        /// Jobs not finished.
        unfinished: usize,
        /// All jobs.
        total: usize,
        /// Counts by outcome, e.g. `2 failed, 1 canceled`.
        breakdown: String,
    },
    /// The broker could not be reached (`watch`).
    #[error("cannot reach the broker at {url}: {source}")]
    Broker {
        /// The broker URL, password hidden.
        url: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// Standard output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Input { .. } | CliError::InvalidJson { .. } | CliError::Tls(_) => {
                exit::USAGE
            }
            CliError::Api(e) => e.exit_code(),
            CliError::JobEnded { .. } | CliError::Bulk { .. } => exit::JOB_FAILED,
            CliError::Broker { .. } => exit::UNAVAILABLE,
            // A closed pipe (`jobfleet watch | head`) is the reader's choice, not a failure.
            CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
            CliError::Output(_) => exit::JOB_FAILED,
        }
    }

    /// Whether the error goes unreported (a closed output pipe).
    pub fn is_silent(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_documented_exit_statuses() {
        let api = |status| {
            CliError::Api(ApiError::Api {
                status,
                kind: "k".into(),
                message: "m".into(),
            })
        };
        assert_eq!(api(404).exit_code(), exit::API);
        assert_eq!(api(422).exit_code(), exit::API);
        assert_eq!(api(503).exit_code(), exit::UNAVAILABLE);
        assert_eq!(CliError::Usage("x".into()).exit_code(), exit::USAGE);
        let ended = CliError::JobEnded {
            id: "j".into(),
            status: "failed".into(),
            kind: "function_error".into(),
            message: "boom".into(),
        };
        assert_eq!(ended.exit_code(), exit::JOB_FAILED);
        assert_eq!(ended.to_string(), "job j failed: function_error: boom");
        let pipe = CliError::Output(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(pipe.is_silent());
        assert_eq!(pipe.exit_code(), exit::OK);
    }
}

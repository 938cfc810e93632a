//! Who a function's processes run as (`user`, SPEC §8). A worker running as root runs them
//! as the configured user, `nobody` by default: root reads every process's environment and
//! memory, and RLIMIT_NPROC does not bind it. A worker running as another user can only
//! run them as itself.

use super::SandboxError;
use nix::unistd::{Gid, Uid, User};
use tracing::warn;

/// The user a worker running as root runs process functions as by default.
pub const DEFAULT_USER: &str = "nobody";

/// The uid and primary gid a process switches to before it runs the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: Uid,
    /// Primary group id (the only group the process keeps).
    pub gid: Gid,
}

/// Who a function's processes run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RunAs {
    /// The credentials to switch to; none: stay the worker's user.
    pub(super) switch: Option<Credentials>,
    /// Whether the processes run as root (no RLIMIT_NPROC, nothing hidden from them).
    pub(super) root: bool,
}

impl RunAs {
    /// Resolves the `user` setting of `function` for a worker running as `worker`.
    pub(super) fn resolve(function: &str, user: Option<&str>, worker: Uid) -> Result<RunAs, SandboxError> {
        let name = match (user, worker.is_root()) {
            (Some(name), _) => name,
            (None, true) => DEFAULT_USER,
            (None, false) => {
                return Ok(RunAs {
                    switch: None,
                    root: false,
                })
            }
        };
        let account = User::from_name(name)
            .map_err(|source| SandboxError::UserLookup {
                function: function.to_string(),
                user: name.to_string(),
                source,
            })?
            .ok_or_else(|| SandboxError::UnknownUser {
                function: function.to_string(),
                user: name.to_string(),
            })?;
        if account.uid == worker {
            if worker.is_root() {
                warn!(
                    function,
                    "runs as root: its code can read the worker's environment and memory"
                );
            }
            return Ok(RunAs {
                switch: None,
                root: worker.is_root(),
            });
        }
        if !worker.is_root() {
            return Err(SandboxError::UserNeedsRoot {
                function: function.to_string(),
                user: name.to_string(),
            });
        }
        Ok(RunAs {
            switch: Some(Credentials {
                uid: account.uid,
                gid: account.gid,
            }),
            root: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_worker_runs_functions_as_nobody_unless_told_otherwise() {
        let nobody = User::from_name(DEFAULT_USER).unwrap().unwrap();
        let default = RunAs::resolve("g.f", None, Uid::from_raw(0)).unwrap();
        assert_eq!(default.switch.map(|c| c.uid), Some(nobody.uid));
        assert!(!default.root);
        let root = RunAs::resolve("g.f", Some("root"), Uid::from_raw(0)).unwrap();
        assert_eq!((root.switch, root.root), (None, true));
    }

    #[test]
    fn another_worker_runs_them_as_itself_and_refuses_other_users() {
        let nobody = User::from_name(DEFAULT_USER).unwrap().unwrap();
        let itself = RunAs::resolve("g.f", None, nobody.uid).unwrap();
        assert_eq!((itself.switch, itself.root), (None, false));
        let named = RunAs::resolve("g.f", Some(DEFAULT_USER), nobody.uid).unwrap();
        assert_eq!(named.switch, None);
        let err = RunAs::resolve("g.f", Some("root"), nobody.uid).unwrap_err();
        assert!(err.to_string().contains("runs as root"), "{err}");
    }

    #[test]
    fn an_unknown_user_is_named_in_the_error() {
        let err = RunAs::resolve("g.f", Some("no-such-user-here"), Uid::from_raw(0)).unwrap_err();
        assert!(err.to_string().contains("no-such-user-here"), "{err}");
    }
}

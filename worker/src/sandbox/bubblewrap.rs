//! `isolation = "namespace"` (SPEC §8): the command runs under bubblewrap (`bwrap`, Debian
//! package `bubblewrap`), the small setuid-free sandbox Flatpak uses, rather than namespace
//! code of our own: own PID, IPC, UTS and (unless `network = true`) network namespaces; `/`
//! read-only; a private, read-only `/tmp` and `/dev` (with a private `/dev/shm`); a fresh
//! `/proc` that shows only the sandbox; the job's working directory as the one writable
//! place. A worker running as root switches to the job user before starting bwrap, which
//! then builds the namespaces inside an unprivileged user namespace.

use super::SandboxError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The bubblewrap binary.
const PROGRAM: &str = "bwrap";
/// The sandbox's host name.
const HOSTNAME: &str = "jobfleet-sandbox";

/// How to wrap a function's command in bubblewrap.
#[derive(Debug, Clone)]
pub(super) struct Bubblewrap {
    program: PathBuf,
    network: bool,
    /// bwrap runs as root: drop every capability of the command.
    as_root: bool,
}

impl Bubblewrap {
    /// Finds `bwrap` on the worker's PATH.
    pub(super) fn find(function: &str, network: bool, as_root: bool) -> Result<Bubblewrap, SandboxError> {
        let program = find_on_path(PROGRAM).ok_or_else(|| SandboxError::NoBubblewrap {
            function: function.to_string(),
        })?;
        Ok(Bubblewrap {
            program,
            network,
            as_root,
        })
    }

    /// The program to run.
    pub(super) fn program(&self) -> &Path {
        &self.program
    }

    /// bwrap's arguments that run `argv` with `workdir` as its working directory.
    pub(super) fn args(&self, workdir: &Path, argv: &[String]) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["--unshare-pid", "--unshare-ipc", "--unshare-uts"]
            .into_iter()
            .map(OsString::from)
            .collect();
        if !self.network {
            args.push("--unshare-net".into());
        }
        if self.as_root {
            args.extend(["--cap-drop", "ALL"].map(OsString::from));
        }
        args.extend(
            [
                "--hostname",
                HOSTNAME,
                "--die-with-parent",
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--tmpfs",
                "/dev/shm",
                "--remount-ro",
                "/dev",
                "--proc",
                "/proc",
                "--tmpfs",
                "/tmp",
            ]
            .map(OsString::from),
        );
        for dir in hidden_command_dirs(argv) {
            args.extend([
                "--ro-bind".into(),
                dir.clone().into_os_string(),
                dir.into_os_string(),
            ]);
        }
        args.extend(["--bind".into(), workdir.into(), workdir.into()]);
        args.extend(["--remount-ro", "/tmp", "--chdir"].map(OsString::from));
        args.push(workdir.into());
        args.push("--".into());
        args.extend(argv.iter().map(OsString::from));
        args
    }
}

/// The directories of the command's files that the private `/tmp` would hide (a script
/// checked out under `/tmp`, say): bound back read-only, with their neighbours (modules a
/// script imports).
fn hidden_command_dirs(argv: &[String]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for arg in argv {
        let path = Path::new(arg);
        if !path.is_absolute() || !path.starts_with("/tmp") || !path.exists() {
            continue;
        }
        let dir = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(path)
        };
        if dir != Path::new("/tmp") && !dirs.iter().any(|d| d == dir) {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs
}

/// The first executable `name` on the worker's PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_runs_in_its_workdir_after_the_options() {
        let bwrap = Bubblewrap {
            program: PROGRAM.into(),
            network: false,
            as_root: false,
        };
        let args = bwrap.args(Path::new("/tmp/w/job-1"), &["python3".into(), "f.py".into()]);
        let text: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let text = text.join(" ");
        assert!(text.contains("--unshare-net"), "{text}");
        assert!(text.contains("--bind /tmp/w/job-1 /tmp/w/job-1 --remount-ro /tmp --chdir /tmp/w/job-1"));
        assert!(text.ends_with("-- python3 f.py"), "{text}");
        let networked = Bubblewrap {
            network: true,
            as_root: true,
            ..bwrap
        };
        let text: Vec<String> = networked
            .args(Path::new("/w"), &["x".into()])
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!text.contains(&"--unshare-net".to_string()));
        assert!(text.join(" ").contains("--cap-drop ALL"));
    }

    #[test]
    fn a_command_under_tmp_stays_visible_in_the_private_tmp() {
        let dir = std::env::temp_dir().join(format!("bwrap-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("probe.py");
        std::fs::write(&script, "").unwrap();
        let argv = [
            "python3".to_string(),
            script.to_string_lossy().into_owned(),
            "/tmp".into(),
        ];
        assert_eq!(hidden_command_dirs(&argv), vec![dir.clone()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

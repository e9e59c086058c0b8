//! Exit codes of `flowstop stop` and `kubectl flowstop`, stable and documented in the
//! README: a pipeline may rely on them.

/// The execution was stopped by this request (or, with `--already-finished-ok`, is not running).
pub const STOPPED: i32 = 0;
/// No answer could be had: no cluster, no CRD, RBAC, an object that already exists; for
/// `flowstop stop`, nothing could be asked of the service (no credentials, a bad endpoint).
pub const ERROR: i32 = 1;
/// The command line was wrong (clap's own code).
pub const USAGE: i32 = 2;
/// The execution had already finished (or, with `--wait`, ended otherwise before the stop
/// took effect): nothing was stopped.
pub const ALREADY_FINISHED: i32 = 3;
/// The stop failed; the error code is printed.
pub const FAILED: i32 = 4;
/// No ExecutionStopPolicy allows it.
pub const FORBIDDEN: i32 = 5;
/// `--timeout` passed before the outcome was known.
pub const TIMEOUT: i32 = 6;
/// The person at the terminal declined; nothing was stopped.
pub const ABORTED: i32 = 7;
/// `flowstop stop` only: an error that may go away by itself (throttling, 5xx, timeouts).
pub const RETRYABLE: i32 = 75;

//! Errors a person can act on: what went wrong, in words that say what to do next.

use crate::text::safe;
use flowstop_api::exit;

/// Prints the problem on stderr. Its message may quote the cluster's answers, names and
/// status (which the cloud wrote), so it goes through [`safe`] like everything else shown.
pub fn report(p: &Problem) {
    eprintln!("error: {}", safe(&p.message));
}

#[derive(Debug)]
pub struct Problem {
    pub code: i32,
    pub message: String,
}

impl Problem {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            code: exit::ERROR,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            message: message.into(),
        }
    }
}

//! The response and error parsers: any status and body gives a value or a typed error.
#![no_main]

use fnf::{Execution, ExecutionList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.split_first() {
        Some((s, rest)) => (100 + u16::from(*s) * 2, rest),
        None => return,
    };
    match fnf::decode::<Execution>(status, body) {
        Ok(e) => assert!((200..300).contains(&status), "{e:?}"),
        Err(e) => {
            let _ = (e.kind().as_str(), e.retryable(), e.to_string());
        }
    }
    let _ = fnf::decode::<ExecutionList>(status, body);
});

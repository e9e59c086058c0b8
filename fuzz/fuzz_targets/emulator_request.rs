//! The emulator's request handling (parsing, dispatch, every action) on arbitrary input.
#![no_main]

use fnf_emulator::rpc::process_unauthenticated;
use fnf_emulator::state::State;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // method | query | content type | body, separated by 0xFF.
    let mut parts = data.splitn(4, |b| *b == 0xff);
    let method = if parts.next().is_some_and(|m| m.first().is_some_and(|b| b % 2 == 0)) { "GET" } else { "POST" };
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let ctype = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let mut state = State::default();
    let now = jiff::Timestamp::UNIX_EPOCH;
    // The same request twice: creating then reusing state reaches more of each action.
    for _ in 0..2 {
        let _ = process_unauthenticated(method, &query, &ctype, body, &mut state, now);
    }
});

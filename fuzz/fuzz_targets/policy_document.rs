//! Policy documents: parsing and compiling never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sheepdog_lists::Snapshot;
use sheepdog_policy::{CompiledPolicy, PolicyDocument};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(doc) = PolicyDocument::from_toml(text) {
            let _ = CompiledPolicy::compile(&doc, Arc::new(Snapshot::empty()));
        }
    }
});

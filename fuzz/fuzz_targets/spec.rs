//! Fuzzes the pipeline language: any UTF-8 text must load, compile and render
//! its error without panicking.
//!
//! Run from the repository root with the corpus as seeds:
//! `cargo +nightly fuzz run spec fuzz/corpus/spec tests/malformed pipelines -- -dict=fuzz/spec.dict`

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let error = match repro::spec::load_str(Path::new("fuzz.yaml"), text.to_string(), &[]) {
        Ok(pipeline) => repro::graph::compile(Path::new("/tmp"), pipeline).err(),
        Err(e) => Some(e),
    };
    if let Some(e) = error {
        // `repro` prints this report on exit code 2; rendering must not panic either.
        let _ = format!("{:?}", miette::Report::new(e));
    }
});

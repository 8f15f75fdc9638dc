//! A `routing/` policy file: any text compiles to a policy or to a list of errors (file, line,
//! key), never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vigil::config::compile::{SourceFile, compile};

fuzz_target!(|data: &[u8]| {
    let file = SourceFile {
        path: "routing/fuzz.yaml".into(),
        text: String::from_utf8_lossy(data).into_owned(),
    };
    if let Err(errors) = compile(&[file]) {
        assert!(!errors.is_empty(), "a refused policy says why");
    }
});

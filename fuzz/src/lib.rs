//! The fuzz targets' bodies. Each check feeds one input through the same pub functions
//! the servers call and asserts properties that must hold for every input; a panic is a
//! finding. The regression tests (`shared/tests/fuzz_regressions.rs`,
//! `aws/tests/fuzz_regressions.rs`) include these very files with `#[path]` and run the
//! committed corpus through them on stable.

pub mod aws_checks;
pub mod shared_checks;

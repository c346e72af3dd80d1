#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chat_fuzz::aws_checks::stream_record(data));

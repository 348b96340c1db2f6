//! The em driver against a hostile device (issue 12, "the em device as
//! untrusted input"): the fuzzer's bytes, eight at a time, are the choices
//! of `mpsafe_em_sim::hostile::run`: random descriptor write-backs (length,
//! status, errors, buffer address) on the next or any slot, DD on transmit
//! slots never given to the device, head registers anywhere, random
//! interrupt causes, mixed with transmit, down/up, ring resizes and runtime
//! mode switches. Any panic (the driver's, or `run`'s checks: a malformed
//! frame reached the stack, a buffer lost or leaked, a counter that does
//! not add up) is a finding. The seeded form is
//! `em-sim/tests/fuzz_device.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut words = data.chunks(8).map(|c| {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(b)
    });
    mpsafe_em_sim::hostile::run(&mut || words.next(), 2048);
});

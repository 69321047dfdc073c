//! Writes the fuzzer's seed corpus: one frame of every message kind, plus all of them back to
//! back, so fuzzing starts from inputs that pass the CRC and reach message decoding.
//!
//!     cargo run -p lookout-wire --example fuzz_seeds -- wire/fuzz/corpus/decoder

use lookout_wire::{encode_frame, samples::sample_messages, MAX_FRAME_LEN};

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/decoder".into());
    std::fs::create_dir_all(&dir)?;
    let mut all = vec![8u8]; // the fuzz target reads its chunk size from the first byte
    for (i, message) in sample_messages().iter().enumerate() {
        let mut out = [0u8; MAX_FRAME_LEN];
        let frame =
            encode_frame(message, &mut out).map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::write(format!("{dir}/seed-{i}"), [&[8u8][..], frame].concat())?;
        all.extend_from_slice(frame);
    }
    std::fs::write(format!("{dir}/seed-all"), all)?;
    println!("wrote {} seeds to {dir}", sample_messages().len() + 1);
    Ok(())
}

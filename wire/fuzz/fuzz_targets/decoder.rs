//! Arbitrary bytes, in arbitrary chunks, into the streaming decoder: it must never panic, and
//! every message it yields must re-encode to a frame that decodes to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout_wire::{encode_frame, FrameDecoder, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size, so split reads are explored too.
    let Some((&chunk, bytes)) = data.split_first() else { return };
    let mut decoder = FrameDecoder::<512>::new();
    let mut messages = Vec::new();
    for piece in bytes.chunks(usize::from(chunk).max(1)) {
        decoder.feed(piece, |r| {
            if let Ok(m) = r {
                messages.push(m);
            }
        });
    }
    for m in messages {
        let mut out = [0u8; MAX_FRAME_LEN];
        let frame = encode_frame(&m, &mut out).expect("a decoded message re-encodes");
        let mut again = FrameDecoder::<MAX_FRAME_LEN>::new();
        let mut back = None;
        again.feed(frame, |r| back = Some(r));
        assert_eq!(back, Some(Ok(m)));
    }
});

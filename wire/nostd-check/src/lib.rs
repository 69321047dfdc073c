//! A microcontroller-shaped user of lookout-wire: no std, no allocator, fixed buffers.

#![no_std]

use lookout_wire::{Body, FrameDecoder, Message};

/// Feeds UART bytes; returns how many detections the last complete Detections frame held
/// (-1 when none completed). What MCU firmware would call from its receive interrupt.
#[no_mangle]
pub extern "C" fn lookout_feed(bytes: *const u8, len: usize) -> i32 {
    static mut DECODER: Option<FrameDecoder<512>> = None;
    // SAFETY: firmware calls this from one context; the caller passes a valid buffer.
    let (decoder, input) = unsafe {
        let d = &mut *core::ptr::addr_of_mut!(DECODER);
        (d.get_or_insert_with(FrameDecoder::new), core::slice::from_raw_parts(bytes, len))
    };
    let mut found = -1;
    decoder.feed(input, |r: Result<Message, _>| {
        if let Ok(Message { body: Body::Detections(d), .. }) = r {
            found = d.detections.len() as i32;
        }
    });
    found
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

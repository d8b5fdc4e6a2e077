//! Feeds arbitrary bytes to the KWIK decoder exactly as a path reader sees a path stream:
//! length prefixes checked against max_packet_size, then every frame of every packet. Each
//! decoded frame is re-encoded and decoded again and must round-trip.
#![no_main]

use bytes::{Buf, Bytes, BytesMut};
use kwik_transport::wire::{self, Frame, FrameDecoder};
use libfuzzer_sys::fuzz_target;

const MAX_PACKET_SIZE: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut stream = Bytes::copy_from_slice(data);
    while let Ok(Some(len)) = wire::packet_len(&stream, MAX_PACKET_SIZE) {
        if stream.len() < wire::PACKET_HEADER_LEN + len {
            break;
        }
        stream.advance(wire::PACKET_HEADER_LEN);
        let body = stream.split_to(len);
        for frame in FrameDecoder::new(body).flatten() {
            round_trip(&frame);
        }
    }
});

fn round_trip(frame: &Frame) {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    assert_eq!(out.len(), frame.encoded_len());
    let again: Vec<Frame> = FrameDecoder::new(out.freeze())
        .collect::<Result<_, _>>()
        .expect("an encoded frame decodes");
    assert_eq!(again.as_slice(), std::slice::from_ref(frame));
}

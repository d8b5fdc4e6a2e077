//! Hostile input from a raw quinn client: each malformed case closes that connection with the
//! documented code (and a CLOSE frame), is counted, and leaves a concurrent session unaffected.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kwik_transport::wire::{self, Frame, FrameDecoder, Hello, StreamFrame};
use kwik_transport::{CloseReason, ErrorCode, Observer, quic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Exec, Pair};

const BOUND: Duration = Duration::from_secs(30);
const WINDOW: u64 = 4096;
const MAX_STREAMS: u64 = 8;
/// The server's `max_packet_size`; the "length over" case announces one byte more.
const MAX_PACKET: usize = 16 * 1024;

#[derive(Default)]
struct CountErrors(AtomicU64);

impl Observer for CountErrors {
    fn protocol_error(&self, _code: ErrorCode) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn packet(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    wire::encode_packet(frames, &mut out);
    out.freeze()
}

fn stream(stream_id: u64, offset: u64, data: &'static [u8]) -> Frame {
    Frame::Stream(StreamFrame {
        stream_id,
        offset,
        fin: false,
        data: Bytes::from_static(data),
    })
}

fn hello() -> Bytes {
    packet(&[Frame::Hello(Hello {
        version: wire::VERSION,
        path_id: 0,
        max_streams: 100,
        stream_window: 1 << 20,
    })])
}

/// A plain quinn client (its own endpoint) connected to the pair's listener, with the pair's
/// TLS settings but no KWIK handshake: what a hostile or broken peer starts from.
async fn raw_quic(pair: &Pair) -> (quinn::Endpoint, quinn::Connection) {
    let endpoint =
        quic::endpoint(quic::unspecified_for(pair.listener.local_addr()), 0, None).unwrap();
    let conn = endpoint
        .connect_with(
            pair.client_config.quinn_client_config(),
            pair.listener.local_addr(),
            "localhost",
        )
        .unwrap()
        .await
        .unwrap();
    (endpoint, conn)
}

/// Connects with plain quinn, sends HELLO then `bad` (raw bytes), and returns the CLOSE code
/// seen on the path stream and the QUIC application close code.
async fn attack(pair: &Pair, bad: Bytes) -> (Option<u64>, u64) {
    let (endpoint, conn) = raw_quic(pair).await;
    // The server opens the path stream and speaks first: its HELLO, then, after the bad input,
    // its CLOSE.
    let (mut send, mut recv) = conn.accept_bi().await.unwrap();
    send.write_all(&hello()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let _ = AsyncReadExt::read_to_end(&mut recv, &mut seen).await;
        seen
    });
    send.write_all(&bad).await.unwrap();
    let closed = tokio::time::timeout(BOUND, conn.closed())
        .await
        .expect("server closes");
    let quic_code = match closed {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        other => panic!("unexpected close {other:?}"),
    };
    let seen = Bytes::from(reader.await.unwrap());
    let close_code = decode_close(seen);
    endpoint.wait_idle().await;
    (close_code, quic_code)
}

fn decode_close(mut bytes: Bytes) -> Option<u64> {
    while let Ok(Some(len)) = wire::packet_len(&bytes, 1 << 20) {
        if bytes.len() < 4 + len {
            break;
        }
        let body = bytes.split_to(4 + len).split_off(4);
        for frame in FrameDecoder::new(body).flatten() {
            if let Frame::Close { code, .. } = frame {
                return Some(code);
            }
        }
    }
    None
}

async fn good_session_still_echoes(pair: &Pair) {
    let mut s = pair.client.open_stream().await.unwrap();
    s.write_all(b"still alive").await.unwrap();
    s.finish().unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"still alive");
}

async fn hostile_cases(exec: Exec) {
    let errors = Arc::new(CountErrors::default());
    let observer = errors.clone();
    let pair = Pair::with(
        exec,
        move |s| {
            s.stream_window(WINDOW)
                .max_streams(MAX_STREAMS)
                .max_packet_size(MAX_PACKET)
                .observer(observer)
        },
        |c| c,
    )
    .await;
    // The well-behaved session echoes throughout.
    let server = pair.server.clone();
    let echo = tokio::spawn(async move {
        while let Ok(mut st) = server.accept_stream().await {
            let mut buf = Vec::new();
            st.read_to_end(&mut buf).await.unwrap();
            st.write_all(&buf).await.unwrap();
            st.finish().unwrap();
        }
    });
    // Hostile sessions are accepted too; their close reasons are checked below.
    let mut hostile_sessions = Vec::new();

    let too_long = {
        let mut b = BytesMut::new();
        b.put_u32(MAX_PACKET as u32 + 1);
        b.freeze()
    };
    let truncated = {
        let mut b = BytesMut::new();
        Frame::Stream(StreamFrame {
            stream_id: 0,
            offset: 0,
            fin: false,
            data: Bytes::from_static(b"0123456789"),
        })
        .encode(&mut b);
        b.truncate(b.len() - 4);
        let mut p = BytesMut::new();
        p.put_u32(b.len() as u32);
        p.extend_from_slice(&b);
        p.freeze()
    };
    let beyond_credit = packet(&[Frame::Stream(StreamFrame {
        stream_id: 0,
        offset: WINDOW - 2,
        fin: false,
        data: Bytes::from_static(b"four"),
    })]);
    let overlap = packet(&[stream(0, 10, b"aaaaaaaaaa"), stream(0, 15, b"bbbbbbbbbb")]);
    let cases: Vec<(&str, Bytes, ErrorCode)> = vec![
        (
            "unknown frame type",
            Bytes::from_static(&[0, 0, 0, 1, 0x3f]),
            ErrorCode::FRAME_ENCODING,
        ),
        ("truncated frame", truncated, ErrorCode::FRAME_ENCODING),
        (
            "length over max_packet_size",
            too_long,
            ErrorCode::PACKET_TOO_LARGE,
        ),
        ("data beyond credit", beyond_credit, ErrorCode::FLOW_CONTROL),
        ("conflicting overlap", overlap, ErrorCode::OVERLAP_CONFLICT),
        (
            "stream the client may not open",
            packet(&[stream(1, 0, b"x")]),
            ErrorCode::STREAM_STATE,
        ),
        (
            "stream over the limit",
            packet(&[stream(MAX_STREAMS * 2, 0, b"x")]),
            ErrorCode::STREAM_LIMIT,
        ),
        ("second HELLO", hello(), ErrorCode::PROTOCOL_VIOLATION),
        (
            "ADD_PATH sent to a server",
            packet(&[Frame::AddPath {
                request_id: 1,
                address: "127.0.0.1:1".into(),
            }]),
            ErrorCode::PROTOCOL_VIOLATION,
        ),
    ];
    let total = cases.len() as u64;
    for (name, bad, expected) in cases {
        let (close_frame, quic_code) = attack(&pair, bad).await;
        assert_eq!(quic_code, expected.0, "{name}: QUIC close code");
        assert_eq!(close_frame, Some(expected.0), "{name}: CLOSE frame");
        let session = tokio::time::timeout(BOUND, pair.listener.accept())
            .await
            .unwrap()
            .unwrap();
        hostile_sessions.push((name, expected, session));
        good_session_still_echoes(&pair).await;
    }
    for (name, expected, session) in hostile_sessions {
        match tokio::time::timeout(BOUND, session.closed()).await.unwrap() {
            CloseReason::Protocol(e) => assert_eq!(e.code, expected, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(errors.0.load(Ordering::Relaxed), total);
    pair.shutdown().await;
    echo.await.unwrap();
}

both_executors!(malformed_input_closes_only_that_connection, hostile_cases);

both_executors!(missing_hello_fails_the_handshake, |exec| async move {
    let pair = Pair::new(exec).await;
    let (endpoint, conn) = raw_quic(&pair).await;
    let (mut send, _recv) = conn.accept_bi().await.unwrap();
    send.write_all(&packet(&[Frame::Ping { nonce: 1 }]))
        .await
        .unwrap();
    match tokio::time::timeout(BOUND, conn.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), ErrorCode::PROTOCOL_VIOLATION.0);
        }
        other => panic!("unexpected {other:?}"),
    }
    endpoint.wait_idle().await;
    pair.shutdown().await;
});

both_executors!(
    a_stalled_handshake_does_not_block_accept,
    |exec| async move {
        let pair = Pair::new(exec).await;
        // A client that completes QUIC but never sends HELLO.
        let (endpoint, stalled) = raw_quic(&pair).await;
        // A well-behaved client is accepted meanwhile.
        let (client, server) = tokio::join!(
            kwik_transport::dial(pair.listener.local_addr(), &pair.client_config),
            pair.listener.accept()
        );
        let (client, server) = (client.unwrap(), server.unwrap());
        let mut s = client.open_stream().await.unwrap();
        s.write_all(b"ok").await.unwrap();
        s.finish().unwrap();
        let mut incoming = tokio::time::timeout(BOUND, server.accept_stream())
            .await
            .unwrap()
            .unwrap();
        let mut got = Vec::new();
        incoming.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ok");
        drop((s, incoming));
        client.close(ErrorCode::NO_ERROR, "done");
        client.closed().await;
        server.closed().await;
        stalled.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        pair.shutdown().await;
    }
);

both_executors!(
    a_late_reader_behind_a_small_quic_window_gets_every_byte_in_order,
    |exec| async move {
        // No periodic PING: nothing but the hand-over itself may wake the writer task.
        let pair = Pair::with(exec, |s| s.ping_interval(None), |c| c).await;
        // A plain quinn peer whose path stream window is 64 KiB, announcing a 64 MiB stream
        // window in its HELLO: kwik's own credit never stops the server's writes, quinn's
        // does, after 64 KiB. What quinn cannot take is first left by the writing caller,
        // then written by the path's writer task; all of it must arrive, in order.
        const QUIC_WINDOW: u32 = 64 * 1024;
        const SENT: usize = 1 << 20;
        let mut client_config = pair.client_config.quinn_client_config();
        let mut transport = quic::transport_config(None, BOUND);
        transport.stream_receive_window(quinn::VarInt::from_u32(QUIC_WINDOW));
        client_config.transport_config(Arc::new(transport));
        let endpoint =
            quic::endpoint(quic::unspecified_for(pair.listener.local_addr()), 0, None).unwrap();
        let conn = endpoint
            .connect_with(client_config, pair.listener.local_addr(), "localhost")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let hello = packet(&[Frame::Hello(Hello {
            version: wire::VERSION,
            path_id: 0,
            max_streams: 100,
            stream_window: 64 << 20,
        })]);
        send.write_all(&hello).await.unwrap();
        let server = tokio::time::timeout(BOUND, pair.listener.accept())
            .await
            .unwrap()
            .unwrap();

        let data: Vec<u8> = (0..SENT).map(|i| (i % 251) as u8).collect();
        let mut stream = server.open_stream().await.unwrap();
        let stream_id = stream.id();
        // Returns once every frame is sent or queued: 16 times what quinn can hold.
        tokio::time::timeout(BOUND, stream.write_all(&data))
            .await
            .unwrap()
            .unwrap();

        // Only now does the peer read its path stream.
        let mut received = Vec::with_capacity(SENT);
        let mut wire_bytes = BytesMut::new();
        while received.len() < SENT {
            let chunk = tokio::time::timeout(BOUND, recv.read_chunk(usize::MAX, true))
                .await
                .unwrap()
                .unwrap()
                .expect("the path stream stays open");
            wire_bytes.extend_from_slice(&chunk.bytes);
            while let Ok(Some(len)) = wire::packet_len(&wire_bytes, 1 << 20) {
                if wire_bytes.len() < 4 + len {
                    break;
                }
                let body = wire_bytes.split_to(4 + len).split_off(4).freeze();
                for frame in FrameDecoder::new(body) {
                    if let Frame::Stream(s) = frame.unwrap()
                        && s.stream_id == stream_id
                    {
                        assert_eq!(s.offset, received.len() as u64, "frames out of order");
                        received.extend_from_slice(&s.data);
                    }
                }
            }
        }
        assert_eq!(received, data);

        drop(stream);
        conn.close(0u32.into(), b"done");
        tokio::time::timeout(BOUND, server.closed()).await.unwrap();
        endpoint.wait_idle().await;
        pair.shutdown().await;
    }
);

//! The WebSocket connection's two halves over any byte stream, framed by
//! [`tidings_proto::ws`].
//!
//! The reader holds no buffer while the connection is idle: each read goes through a 4 KiB
//! buffer on the stack of the poll (not in the task), and only the bytes of an unfinished
//! frame are kept between reads. A generic WebSocket crate keeps an 8 KiB read buffer per
//! connection for its whole life — with it, that buffer was most of an idle connection's
//! memory (see BENCHMARKS.md).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use tidings_proto::engine::Frame;
use tidings_proto::ws::{self, CloseCode, Decoder, Message, Opcode, WsError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Ws(#[from] WsError),
    /// The connection ended in the middle of a frame or of a fragmented message.
    #[error("connection closed inside a websocket frame")]
    Truncated,
}

/// The size of one read when no frame is being put together.
const READ_CHUNK: usize = 4096;

/// Reads whole messages from the client.
pub(crate) struct WsReader<R> {
    io: R,
    /// Bytes received and not yet decoded: empty (no allocation) between messages.
    buf: BytesMut,
    decoder: Decoder,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    pub(crate) fn new(io: R, max_message: usize) -> WsReader<R> {
        WsReader {
            io,
            buf: BytesMut::new(),
            decoder: Decoder::new(max_message),
        }
    }

    /// The next message; `Ok(None)` when the client closed the connection between messages.
    pub(crate) async fn next(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if !self.buf.is_empty() {
                if let Some(message) = self.decoder.decode(&mut self.buf)? {
                    if self.buf.is_empty() {
                        // Let go of the allocation (the message's bytes keep their part).
                        self.buf = BytesMut::new();
                    }
                    return Ok(Some(message));
                }
            }
            if self.read().await? == 0 {
                return if self.buf.is_empty() && !self.decoder.has_partial() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
        }
    }

    /// One read from the stream into `buf`; 0 at the end of the stream.
    async fn read(&mut self) -> io::Result<usize> {
        let WsReader { io, buf, .. } = self;
        poll_fn(|cx| {
            if buf.capacity() - buf.len() >= READ_CHUNK {
                // The decoder reserved room for a large frame: read straight into it.
                return tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(read.filled());
                    Poll::Ready(Ok(read.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// Writes frames to the client: every batch is encoded into one buffer and written with one
/// write (unless the socket takes less), the buffer freed afterwards.
pub(crate) struct WsWriter<W> {
    io: W,
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    pub(crate) fn new(io: W) -> WsWriter<W> {
        WsWriter { io }
    }

    /// Writes `frames` (draining the vector), preceded by a pong answering `ping` if there is
    /// one, and flushes.
    pub(crate) async fn write_batch(
        &mut self,
        pong: Option<bytes::Bytes>,
        frames: &mut Vec<Frame>,
    ) -> io::Result<()> {
        let payloads: usize = frames
            .iter()
            .map(|f| ws::header_len(f.len()) + f.len())
            .sum();
        let mut out = BytesMut::with_capacity(payloads + pong.as_ref().map_or(0, |p| 2 + p.len()));
        if let Some(pong) = pong {
            ws::encode_frame(Opcode::Pong, &pong, &mut out);
        }
        for frame in frames.drain(..) {
            match frame {
                Frame::Text(bytes) => ws::encode_frame(Opcode::Text, &bytes, &mut out),
                Frame::Binary(bytes) => ws::encode_frame(Opcode::Binary, &bytes, &mut out),
            }
        }
        self.io.write_all(&out).await?;
        self.io.flush().await
    }

    /// Writes a close frame and shuts the write side down.
    pub(crate) async fn close(&mut self, code: CloseCode, reason: &str) -> io::Result<()> {
        let mut out = BytesMut::new();
        ws::encode_close(code, reason, &mut out);
        self.io.write_all(&out).await?;
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() <= 125);
        let mask = [9, 8, 7, 6];
        let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn reads_messages_across_reads_and_holds_no_buffer_between_them() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = WsReader::new(server, 1 << 20);
        let frames = [masked(0x1, b"first"), masked(0x2, &[1, 2, 3])].concat();
        let writer = tokio::spawn(async move {
            // Byte by byte, so frames straddle reads.
            for byte in frames {
                client.write_all(&[byte]).await.unwrap();
            }
            client
        });
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Message::Text("first".into()))
        );
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Message::Binary(vec![1, 2, 3].into()))
        );
        assert_eq!(reader.buf.capacity(), 0, "no buffer kept between messages");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_connection_cut_inside_a_frame_is_an_error_and_between_frames_an_end() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = WsReader::new(server, 1 << 20);
        client.write_all(&masked(0x1, b"whole")).await.unwrap();
        client.write_all(&masked(0x1, b"cut")[..4]).await.unwrap();
        drop(client);
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Message::Text("whole".into()))
        );
        assert!(matches!(reader.next().await, Err(ReadError::Truncated)));

        let (client, server) = tokio::io::duplex(1024);
        drop(client);
        assert!(matches!(WsReader::new(server, 10).next().await, Ok(None)));
    }

    #[tokio::test]
    async fn writes_a_batch_with_its_pong_then_a_close() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut writer = WsWriter::new(server);
        let mut frames = vec![Frame::message("hi"), Frame::binary(vec![7u8].into())];
        writer
            .write_batch(Some("p".into()), &mut frames)
            .await
            .unwrap();
        assert!(frames.is_empty());
        writer.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        let expected = [
            &[0x8A, 1, b'p'][..],
            &[0x81, 3, b'4', b'h', b'i'],
            &[0x82, 1, 7],
            &[0x88, 5, 0x03, 0xE9, b'b', b'y', b'e'],
        ]
        .concat();
        assert_eq!(got, expected);
    }
}

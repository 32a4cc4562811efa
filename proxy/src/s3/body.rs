//! Bodies streamed through one fixed buffer per direction: whatever the object size, a
//! connection holds at most its buffer. Chunked bodies are forwarded byte for byte (chunk
//! sizes, extensions and trailers included, as aws-chunked signatures need) while their
//! framing is followed to know where they end.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::head::Framing;

/// A reader with one fixed buffer: heads are parsed in place and bodies pass through it.
#[derive(Debug)]
pub struct Inbound<R> {
    pub io: R,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<R: AsyncRead + Unpin> Inbound<R> {
    pub fn new(io: R, capacity: usize) -> Inbound<R> {
        Self::with_buffer(io, vec![0u8; capacity].into_boxed_slice())
    }

    /// Reads through `buffer` (reused from an earlier reader).
    pub fn with_buffer(io: R, buffer: Box<[u8]>) -> Inbound<R> {
        Inbound {
            io,
            buffer,
            start: 0,
            end: 0,
        }
    }

    /// The reader and the buffer, for reuse (unread bytes are dropped).
    pub fn into_parts(self) -> (R, Box<[u8]>) {
        (self.io, self.buffer)
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes after the buffered ones; 0 is end of stream. Fails when the
    /// buffer is full (a head or chunk line longer than the buffer).
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buffer.len() {
            if self.start == 0 {
                return Err(io::Error::other("buffer full"));
            }
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.io.read(&mut self.buffer[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

/// Which side a body transfer failed on.
#[derive(Debug)]
pub enum BodyError {
    /// The sender closed early, sent bad chunk framing, failed, or stalled.
    Source(io::Error),
    /// The receiver failed or stopped reading.
    Sink(io::Error),
}

/// Forwards one body framed by `framing` from `from` to `to`; the bytes moved.
pub async fn forward<R, W>(
    from: &mut Inbound<R>,
    to: &mut W,
    framing: Framing,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::None => Ok(0),
        Framing::Length(n) => {
            forward_exact(from, to, n, idle).await?;
            Ok(n)
        }
        Framing::UntilClose => {
            let mut moved = 0u64;
            loop {
                if from.buffered().is_empty() && fill(from, idle).await? == 0 {
                    return Ok(moved);
                }
                let n = from.buffered().len();
                write(to, from.buffered(), idle).await?;
                from.consume(n);
                moved += n as u64;
            }
        }
        Framing::Chunked => forward_chunked(from, to, idle).await,
    }
}

async fn fill<R: AsyncRead + Unpin>(
    from: &mut Inbound<R>,
    idle: Duration,
) -> Result<usize, BodyError> {
    match tokio::time::timeout(idle, from.fill()).await {
        Err(_) => Err(BodyError::Source(io::Error::new(
            io::ErrorKind::TimedOut,
            "body idle timeout",
        ))),
        Ok(result) => result.map_err(BodyError::Source),
    }
}

async fn write<W: AsyncWrite + Unpin>(
    to: &mut W,
    bytes: &[u8],
    idle: Duration,
) -> Result<(), BodyError> {
    let written = async {
        to.write_all(bytes).await?;
        to.flush().await
    };
    match tokio::time::timeout(idle, written).await {
        Err(_) => Err(BodyError::Sink(io::Error::new(
            io::ErrorKind::TimedOut,
            "receiver stalled",
        ))),
        Ok(result) => result.map_err(BodyError::Sink),
    }
}

fn early_end() -> BodyError {
    BodyError::Source(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "body ended early",
    ))
}

async fn forward_exact<R, W>(
    from: &mut Inbound<R>,
    to: &mut W,
    mut remaining: u64,
    idle: Duration,
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while remaining > 0 {
        if from.buffered().is_empty() && fill(from, idle).await? == 0 {
            return Err(early_end());
        }
        let take = (from.buffered().len() as u64).min(remaining) as usize;
        write(to, &from.buffered()[..take], idle).await?;
        from.consume(take);
        remaining -= take as u64;
    }
    Ok(())
}

/// The length of the next line (CRLF included), reading until it is buffered.
async fn line<R: AsyncRead + Unpin>(
    from: &mut Inbound<R>,
    idle: Duration,
) -> Result<usize, BodyError> {
    /// Chunk-size lines and trailer lines longer than this are refused.
    const MAX_LINE: usize = 4096;
    loop {
        if let Some(end) = from.buffered().windows(2).position(|w| w == b"\r\n") {
            return Ok(end + 2);
        }
        if from.buffered().len() > MAX_LINE {
            return Err(BodyError::Source(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk line too long",
            )));
        }
        if fill(from, idle).await? == 0 {
            return Err(early_end());
        }
    }
}

/// The size in a chunk-size line (`1a;ext=v\r\n`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = &line[..line.len() - 2];
    let digits = line.split(|&b| b == b';').next()?;
    let digits = digits.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

async fn forward_chunked<R, W>(
    from: &mut Inbound<R>,
    to: &mut W,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut moved = 0u64;
    loop {
        let len = line(from, idle).await?;
        let size = chunk_size(&from.buffered()[..len]).ok_or_else(|| {
            BodyError::Source(io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))
        })?;
        write(to, &from.buffered()[..len], idle).await?;
        from.consume(len);
        moved += len as u64;
        if size == 0 {
            // Trailers, then the blank line that ends the body.
            loop {
                let len = line(from, idle).await?;
                write(to, &from.buffered()[..len], idle).await?;
                from.consume(len);
                moved += len as u64;
                if len == 2 {
                    return Ok(moved);
                }
            }
        }
        forward_exact(from, to, size, idle).await?;
        moved += size;
        while from.buffered().len() < 2 {
            if fill(from, idle).await? == 0 {
                return Err(early_end());
            }
        }
        if &from.buffered()[..2] != b"\r\n" {
            return Err(BodyError::Source(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk not followed by CRLF",
            )));
        }
        write(to, b"\r\n", idle).await?;
        from.consume(2);
        moved += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        input: &[u8],
        framing: Framing,
        capacity: usize,
    ) -> (Result<u64, String>, Vec<u8>, Vec<u8>) {
        let mut from = Inbound::new(input, capacity);
        let mut out = Vec::new();
        let result = forward(&mut from, &mut out, framing, Duration::from_secs(1))
            .await
            .map_err(|e| match e {
                BodyError::Source(e) | BodyError::Sink(e) => e.to_string(),
            });
        let rest = from.buffered().to_vec();
        let mut tail = Vec::new();
        from.io.read_to_end(&mut tail).await.unwrap();
        (result, out, [rest, tail].concat())
    }

    #[tokio::test]
    async fn chunked_bodies_pass_verbatim_and_stop_at_their_end() {
        let body = b"4;chunk-signature=abc\r\nwiki\r\n5\r\npedia\r\n0\r\nx-amz-checksum: 1\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        for capacity in [24, 64, 4096] {
            let (result, out, rest) = run(&input, Framing::Chunked, capacity).await;
            assert_eq!(result, Ok(body.len() as u64), "capacity {capacity}");
            assert_eq!(out, body);
            assert_eq!(
                rest, b"GET /next HTTP/1.1\r\n",
                "a pipelined request stays unread"
            );
        }
    }

    #[tokio::test]
    async fn bad_or_short_bodies_fail_on_the_source_side() {
        for (input, framing) in [
            (&b"zz\r\nabc"[..], Framing::Chunked),
            (&b"3\r\nabcX\r\n0\r\n\r\n"[..], Framing::Chunked),
            (&b"3\r\nab"[..], Framing::Chunked),
            (&b"abc"[..], Framing::Length(10)),
        ] {
            let (result, _, _) = run(input, framing, 64).await;
            assert!(result.is_err(), "{input:?}");
        }
        let (result, out, rest) = run(b"0123456789extra", Framing::Length(10), 4).await;
        assert_eq!(
            (result, out, rest),
            (Ok(10), b"0123456789".to_vec(), b"extra".to_vec())
        );
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1A\r\n"), Some(26));
        assert_eq!(chunk_size(b"10;x=y\r\n"), Some(16));
        assert_eq!(chunk_size(b"-1\r\n"), None);
        assert_eq!(chunk_size(b"\r\n"), None);
        assert_eq!(chunk_size(b"ffffffffffffffffff\r\n"), None);
    }
}

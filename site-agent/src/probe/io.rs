//! Connecting and reading for the probes, naming failures the way operators read them.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Connects over TCP, naming the failure the way operators read it.
pub(crate) async fn connect(target: SocketAddr) -> Result<tokio::net::TcpStream, String> {
    match tokio::net::TcpStream::connect(target).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err("refused".into()),
        Err(e) => Err(format!("connect: {e}")),
    }
}

/// Reads exactly `buf.len()` octets, naming an early close.
pub(crate) async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), String> {
    reader
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "connection closed early".to_owned(),
            _ => format!("read: {e}"),
        })
}

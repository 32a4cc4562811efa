//! `http`: an HTTP/1.1 request whose status (and optionally body) proves readiness; also the
//! small HTTP exchange the `s3` probe signs and the reporter uses. Plain HTTP or HTTPS
//! (rustls); one request per connection.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::io::{connect, io_failure};
use super::verdict::Verdict;

/// The most of a response the probe reads.
const MAX_RESPONSE: usize = 64 * 1024;

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How to reach an HTTP endpoint: plain TCP, or TLS (rustls) verifying `server_name`.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls {
        connector: tokio_rustls::TlsConnector,
        server_name: rustls_pki_types::ServerName<'static>,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Plain => f.write_str("Plain"),
            Transport::Tls { server_name, .. } => write!(f, "Tls({server_name:?})"),
        }
    }
}

/// Sends `method path` with `headers` (Host first) over plain TCP and reads the response
/// (a HEAD response has no body).
pub async fn exchange(
    target: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<Response, String> {
    exchange_with_body(target, &Transport::Plain, method, path, headers, &[]).await
}

/// [`exchange`] over `transport`, with a request body (sent with its Content-Length).
pub async fn exchange_with_body(
    target: SocketAddr,
    transport: &Transport,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response, String> {
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\nUser-Agent: portico-site-agent\r\n\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    let stream = connect(target).await?;
    let head_only = method == "HEAD";
    match transport {
        Transport::Plain => roundtrip(stream, &bytes, head_only).await,
        Transport::Tls {
            connector,
            server_name,
        } => {
            let stream = connector
                .connect(server_name.clone(), stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            roundtrip(stream, &bytes, head_only).await
        }
    }
}

/// Writes the request and reads the response until the server closes (or, for HEAD, until
/// the end of the headers).
async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    head_only: bool,
) -> Result<Response, String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| io_failure("write", &e))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify: what was read is the response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => return Err(io_failure("read", &e)),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() >= MAX_RESPONSE {
            break;
        }
        if head_only && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    parse_response(&raw)
}

/// Parses the status line, headers and body of a response.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            if raw.is_empty() {
                "empty response".to_owned()
            } else {
                "incomplete HTTP response".to_owned()
            }
        })?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "HTTP head is not text".to_owned())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(format!("not an HTTP response: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// What the `http` probe asks of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub path: String,
    /// The Host header; the target address when unset.
    pub host: Option<String>,
    /// A string the body must contain.
    pub body_contains: Option<String>,
}

/// GETs the path: 2xx or 3xx (and the body match, when asked) is ready.
pub async fn probe(target: SocketAddr, transport: &Transport, check: &HttpCheck) -> Verdict {
    let started = Instant::now();
    let host = check.host.clone().unwrap_or_else(|| target.to_string());
    let headers = [("Host".to_owned(), host)];
    match exchange_with_body(target, transport, "GET", &check.path, &headers, &[]).await {
        Err(reason) => Verdict::fail(started, reason),
        Ok(response) if !(200..400).contains(&response.status) => {
            Verdict::refused_by_answer(started, format!("HTTP {}", response.status))
        }
        Ok(response) => match &check.body_contains {
            Some(needle) if !String::from_utf8_lossy(&response.body).contains(needle.as_str()) => {
                Verdict::refused_by_answer(started, format!("body lacks {needle:?}"))
            }
            _ => Verdict::ok(started),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabc")
            .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.headers[1], ("x-a".into(), "b".into()));
        assert_eq!(r.body, b"abc");
        assert!(parse_response(b"").unwrap_err().contains("empty"));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\n")
                .unwrap_err()
                .contains("incomplete")
        );
        assert!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")
                .unwrap_err()
                .contains("not an HTTP")
        );
    }
}

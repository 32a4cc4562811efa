//! HTTP/1.1 message heads: the request head a client sends (with the limits and the
//! framing rules that stop request smuggling) and the response head a member sends back.
//! Heads are forwarded byte for byte; this only reads what routing and framing need.

use std::ops::Range;

use topology::config::HttpLimits;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// The body runs until the sender closes (responses only).
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The head as received, blank line included: what is forwarded to the member.
    pub raw: Vec<u8>,
    /// Bytes of the head (`raw.len()`).
    pub len: usize,
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Lower case, port removed.
    pub host: Option<String>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Where each header's name and value lie in `raw`, for routing rules.
    fields: Vec<(Range<usize>, Range<usize>)>,
}

impl RequestHead {
    /// The body length the client declared: `x-amz-decoded-content-length` for
    /// aws-chunked uploads (the object's real size), else Content-Length.
    pub fn declared_length(&self) -> Option<u64> {
        self.header("x-amz-decoded-content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok())
            .or(match self.framing {
                Framing::Length(n) => Some(n),
                _ => None,
            })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| self.raw[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.raw[v.clone()])
    }

    /// Safe to send again to another member: no body and a method without side effects
    /// beyond its own repetition.
    pub fn idempotent_without_body(&self) -> bool {
        self.framing == Framing::None
            && matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "DELETE")
    }
}

/// Why a request head is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Incomplete,
    RequestLineTooLong,
    TooLarge,
    TooManyHeaders,
    Malformed(&'static str),
    /// Ambiguous framing a smuggling attack relies on.
    Smuggling(&'static str),
}

/// Parses the request head at the start of `buffer`.
pub fn parse_request(buffer: &[u8], limits: &HttpLimits) -> Result<RequestHead, HeadError> {
    let line_end = buffer.windows(2).position(|w| w == b"\r\n");
    match line_end {
        Some(end) if end > limits.max_request_line => return Err(HeadError::RequestLineTooLong),
        None if buffer.len() > limits.max_request_line => {
            return Err(HeadError::RequestLineTooLong);
        }
        _ => {}
    }
    // Header slots on the stack for the usual limits; a larger `max_headers` allocates.
    let mut on_stack = [httparse::EMPTY_HEADER; 128];
    let mut on_heap = Vec::new();
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= on_stack.len() {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut on_heap
    };
    let mut request = httparse::Request::new(slots);
    let len = match request.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buffer.len() >= limits.max_header_bytes => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Err(HeadError::Incomplete),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) => {
            return Err(HeadError::Malformed("unsupported HTTP version"));
        }
        Err(_) => return Err(HeadError::Malformed("malformed request head")),
    };
    if len > limits.max_header_bytes {
        return Err(HeadError::TooLarge);
    }
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default().to_string();
    let minor_version = request.version.unwrap_or(1);
    let mut content_length = None;
    let mut transfer_encoding = None;
    let mut host = None;
    let mut connection_close = minor_version == 0;
    let mut expect_continue = false;
    let mut fields = Vec::with_capacity(request.headers.len());
    // httparse's slices point into `buffer`: their offsets locate them in the copy.
    let at = |part: &[u8]| {
        let start = part.as_ptr() as usize - buffer.as_ptr() as usize;
        start..start + part.len()
    };
    for header in request.headers.iter() {
        let value = header.value;
        fields.push((at(header.name.as_bytes()), at(value)));
        let is = |known: &str| header.name.eq_ignore_ascii_case(known);
        if is("content-length") {
            if content_length.is_some() {
                return Err(HeadError::Smuggling("more than one Content-Length"));
            }
            content_length =
                Some(parse_length(value).ok_or(HeadError::Smuggling("invalid Content-Length"))?);
        } else if is("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(HeadError::Smuggling("more than one Transfer-Encoding"));
            }
            // Only `chunked` alone: anything else (`gzip, chunked`, `xchunked`,
            // `chunked, identity`, odd whitespace) is what smuggling attempts use.
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::Smuggling("unsupported Transfer-Encoding"));
            }
            transfer_encoding = Some(());
        } else if is("host") {
            if host.is_some() {
                return Err(HeadError::Smuggling("more than one Host"));
            }
            let text =
                std::str::from_utf8(value).map_err(|_| HeadError::Malformed("invalid Host"))?;
            host = Some(strip_port(text).to_ascii_lowercase());
        } else if is("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    connection_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor_version == 0 {
                    connection_close = false;
                }
            }
        } else if is("expect") && value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
            expect_continue = true;
        }
    }
    let framing = match (content_length, transfer_encoding) {
        (Some(_), Some(())) => {
            return Err(HeadError::Smuggling(
                "Content-Length with Transfer-Encoding",
            ));
        }
        (None, Some(())) if minor_version == 0 => {
            return Err(HeadError::Smuggling("Transfer-Encoding in HTTP/1.0"));
        }
        (None, Some(())) => Framing::Chunked,
        (Some(0), None) | (None, None) => Framing::None,
        (Some(n), None) => Framing::Length(n),
    };
    if minor_version == 1 && host.is_none() {
        return Err(HeadError::Malformed("missing Host"));
    }
    Ok(RequestHead {
        raw: buffer[..len].to_vec(),
        len,
        method,
        target,
        minor_version,
        host,
        framing,
        keep_alive: !connection_close,
        expect_continue,
        fields,
    })
}

/// A Content-Length value: ASCII digits only (no sign, no spaces inside, no list).
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The member will close after this response.
    pub close: bool,
}

impl ResponseHead {
    pub fn interim(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// Parses a member's response head; `None` when more bytes are needed. `head_request`:
/// the request was HEAD (the response has no body whatever it says).
pub fn parse_response(
    buffer: &[u8],
    head_request: bool,
) -> Result<Option<ResponseHead>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head"),
    };
    let status = response.code.unwrap_or(0);
    let mut close = response.version == Some(0);
    let mut content_length = None;
    let mut chunked = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = parse_length(header.value).ok_or("invalid Content-Length from member")?;
            if content_length.is_some_and(|previous| previous != length) {
                return Err("conflicting Content-Length from member");
            }
            content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && response.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 || head_request
    {
        Framing::None
    } else {
        match (chunked, content_length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::None,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose {
        close = true;
    }
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        close,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RequestHead, HeadError> {
        parse_request(text.as_bytes(), &HttpLimits::default())
    }

    #[test]
    fn a_plain_put_is_framed_by_its_length() {
        let text = "PUT /bucket/key HTTP/1.1\r\nHost: s3.example:9000\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello";
        let head = parse(text).unwrap();
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!(head.host.as_deref(), Some("s3.example"));
        assert!(head.expect_continue && head.keep_alive);
        assert_eq!(head.len, text.len() - 5, "the body is not part of the head");
        assert_eq!(head.declared_length(), Some(5));
        let aws_chunked = parse("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Encoding: aws-chunked\r\nx-amz-decoded-content-length: 1048576\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(aws_chunked.framing, Framing::Chunked);
        assert_eq!(aws_chunked.declared_length(), Some(1048576));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for (text, why) in [
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Content-Length with Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                "Content-Length with Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                "more than one Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "more than one Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
                "unsupported Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "unsupported Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "more than one Transfer-Encoding",
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding in HTTP/1.0",
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "more than one Host",
            ),
        ] {
            assert_eq!(parse(text), Err(HeadError::Smuggling(why)), "{text:?}");
        }
        assert!(
            matches!(
                parse("GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
                Err(HeadError::Malformed(_))
            ),
            "space before the colon"
        );
        assert!(
            matches!(
                parse("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n"),
                Err(HeadError::Malformed(_))
            ),
            "obs-fold"
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed("missing Host"))
        );
    }

    #[test]
    fn limits_hold() {
        let limits = HttpLimits {
            max_header_bytes: 1024,
            max_headers: 8,
            max_request_line: 256,
            ..HttpLimits::default()
        };
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(300));
        assert_eq!(
            parse_request(long_line.as_bytes(), &limits),
            Err(HeadError::RequestLineTooLong)
        );
        assert_eq!(
            parse_request(&long_line.as_bytes()[..260], &limits),
            Err(HeadError::RequestLineTooLong),
            "before the line ends"
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
            "X-A: 1\r\n".repeat(8)
        );
        assert_eq!(
            parse_request(many.as_bytes(), &limits),
            Err(HeadError::TooManyHeaders)
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n",
            "b".repeat(1100)
        );
        assert_eq!(
            parse_request(big.as_bytes(), &limits),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n", &limits),
            Err(HeadError::Incomplete)
        );
    }

    #[test]
    fn response_framing() {
        let parse = |text: &str, head| parse_response(text.as_bytes(), head).unwrap().unwrap();
        assert_eq!(
            parse("HTTP/1.1 100 Continue\r\n\r\n", false).framing,
            Framing::None
        );
        assert!(parse("HTTP/1.1 100 Continue\r\n\r\n", false).interim());
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false).framing,
            Framing::Length(10)
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true).framing,
            Framing::None
        );
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .framing,
            Framing::Chunked
        );
        let until_close = parse("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(
            (until_close.framing, until_close.close),
            (Framing::UntilClose, true)
        );
        assert!(
            parse(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false
            )
            .close
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-", false),
            Ok(None)
        );
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false
            )
            .is_err()
        );
    }
}

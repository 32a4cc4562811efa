//! Every response the proxy makes up itself, as S3 clients expect it: an XML `<Error>`
//! body with an S3 error code, `x-amz-request-id`, and the connection closed when the
//! request could not be read to its end.

use std::sync::atomic::{AtomicU64, Ordering};

/// What went wrong, in S3's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl S3Error {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> S3Error {
        S3Error {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> S3Error {
        S3Error::new(400, "InvalidRequest", message)
    }

    pub fn unavailable(message: impl Into<String>) -> S3Error {
        S3Error::new(503, "ServiceUnavailable", message)
    }

    /// The complete HTTP response; `close` adds `Connection: close`.
    pub fn response(&self, resource: &str, close: bool, head_request: bool) -> Vec<u8> {
        static REQUEST_IDS: AtomicU64 = AtomicU64::new(0);
        let request_id = format!(
            "PX{:016X}",
            REQUEST_IDS.fetch_add(1, Ordering::Relaxed) ^ u64::from(std::process::id()) << 40
        );
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{request_id}</RequestId></Error>\n",
            self.code,
            escape(&self.message),
            escape(resource)
        );
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: {request_id}\r\nServer: portico-proxy\r\n",
            self.status,
            reason(self.status),
            body.len()
        );
        if self.status == 503 {
            head.push_str("Retry-After: 1\r\n");
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_request {
            out.extend_from_slice(body.as_bytes());
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_s3_xml_with_a_request_id() {
        let response =
            S3Error::unavailable("no member of <s3> is up").response("/b/k", true, false);
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("Connection: close") && head.contains("Retry-After: 1"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("<Code>ServiceUnavailable</Code>"));
        assert!(body.contains("no member of &lt;s3&gt; is up"));
        assert!(body.contains("<Resource>/b/k</Resource>"));
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("x-amz-request-id: "))
            .unwrap();
        assert!(body.contains(&format!("<RequestId>{id}</RequestId>")));
        let head_only = S3Error::bad_request("x").response("/", false, true);
        assert!(
            String::from_utf8(head_only).unwrap().ends_with("\r\n\r\n"),
            "no body for HEAD"
        );
    }
}

//! `s3`: a SigV4-signed `HEAD /<bucket>`, which proves the S3 API serves that bucket with
//! these credentials. 2xx is ready; 404 (bucket gone), 403 (credentials or policy), 503
//! (SlowDown) and other 5xx are failures with distinct reasons.

use std::net::SocketAddr;
use std::time::Instant;

use super::http::{Transport, exchange_with_body};
use super::verdict::Verdict;
use crate::sigv4::{self, Credentials, EMPTY_PAYLOAD_SHA256};

/// What the `s3` probe asks of a member.
#[derive(Debug, Clone)]
pub struct S3Check {
    pub bucket: String,
    pub region: String,
    pub credentials: Credentials,
    /// Virtual-hosted style (`<bucket>.<host>`) instead of path style (`/<bucket>`).
    pub virtual_host: Option<String>,
}

/// Maps the status of `HEAD bucket` to a verdict reason.
pub fn reason_for(status: u16) -> Result<(), String> {
    match status {
        200..=299 => Ok(()),
        404 => Err("404 bucket gone".into()),
        403 => Err("403 access denied (credentials or policy)".into()),
        503 => Err("503 slow down".into()),
        500..=599 => Err(format!("{status} server error")),
        other => Err(format!("HTTP {other}")),
    }
}

/// Signs and sends `HEAD` for the bucket at `target` over `transport`; `unix_seconds` is
/// the signing time.
pub async fn probe(
    target: SocketAddr,
    transport: &Transport,
    check: &S3Check,
    unix_seconds: u64,
) -> Verdict {
    let started = Instant::now();
    let (host, path) = match &check.virtual_host {
        Some(domain) => (format!("{}.{domain}", check.bucket), "/".to_owned()),
        None => (target.to_string(), format!("/{}", check.bucket)),
    };
    let request = sigv4::Request {
        method: "HEAD",
        host: &host,
        path: &path,
        query: &[],
        payload_sha256_hex: EMPTY_PAYLOAD_SHA256,
    };
    let mut headers = vec![("Host".to_owned(), host.clone())];
    headers.extend(sigv4::sign(
        &request,
        &check.credentials,
        &check.region,
        "s3",
        unix_seconds,
    ));
    match exchange_with_body(target, transport, "HEAD", &path, &headers, &[]).await {
        Err(reason) => Verdict::fail(started, reason),
        Ok(response) => match reason_for(response.status) {
            Ok(()) => Verdict::ok(started),
            Err(reason) => Verdict::refused_by_answer(started, reason),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_distinct_reasons() {
        assert_eq!(reason_for(200), Ok(()));
        assert_eq!(reason_for(404), Err("404 bucket gone".into()));
        assert!(reason_for(403).unwrap_err().starts_with("403"));
        assert_eq!(reason_for(503), Err("503 slow down".into()));
        assert_eq!(reason_for(500), Err("500 server error".into()));
        assert_eq!(reason_for(301), Err("HTTP 301".into()));
    }
}

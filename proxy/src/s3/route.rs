//! Routing rules: the first `[[proxy.listener.route]]` whose conditions all hold picks the
//! service (pool) a request goes to; none: the listener's own service.

use topology::config::Route;

use super::head::RequestHead;

/// The bucket a request is about: `bucket.<domain>` for virtual-hosted style when the host
/// is under one of `domains`, else the first path segment (path style).
pub fn bucket<'a>(head: &'a RequestHead, domains: &[String]) -> Option<&'a str> {
    if let Some(host) = head.host.as_deref() {
        for domain in domains {
            if let Some(prefix) = host.strip_suffix(domain.as_str())
                && let Some(bucket) = prefix.strip_suffix('.')
                && !bucket.is_empty()
            {
                return Some(bucket);
            }
        }
    }
    let path = head.target.split('?').next().unwrap_or("");
    // Absolute-form targets (`http://host/bucket/key`) are path style after the authority.
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => path,
    };
    path.trim_start_matches('/')
        .split('/')
        .next()
        .filter(|b| !b.is_empty())
}

fn query_has(target: &str, keys: &[String]) -> bool {
    let Some((_, query)) = target.split_once('?') else {
        return false;
    };
    query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or(""))
        .any(|key| keys.iter().any(|k| k == key))
}

fn host_matches(pattern: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }
        None => host == pattern,
    }
}

pub fn matches(route: &Route, head: &RequestHead, domains: &[String]) -> bool {
    let length = head.declared_length();
    if let Some(min) = route.min_content_length
        && length.is_none_or(|n| n < min)
    {
        return false;
    }
    if let Some(max) = route.max_content_length
        && length.is_none_or(|n| n > max)
    {
        return false;
    }
    if !route.methods.is_empty() && !route.methods.contains(&head.method) {
        return false;
    }
    if let Some(host) = &route.host
        && !host_matches(host, head.host.as_deref())
    {
        return false;
    }
    if let Some(wanted) = &route.bucket
        && bucket(head, domains) != Some(wanted.as_str())
    {
        return false;
    }
    if let Some((name, value)) = &route.header {
        match (head.header(name), value) {
            (None, _) => return false,
            (Some(actual), Some(expected)) if actual.trim_ascii() != expected.as_bytes() => {
                return false;
            }
            _ => {}
        }
    }
    if !route.query.is_empty() && !query_has(&head.target, &route.query) {
        return false;
    }
    true
}

/// The service for `head`: the first matching route's, else `default`.
pub fn choose<'a>(
    routes: &'a [Route],
    default: &'a str,
    head: &RequestHead,
    domains: &[String],
) -> &'a str {
    routes
        .iter()
        .find(|route| matches(route, head, domains))
        .map_or(default, |route| route.service.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::head::parse_request;
    use topology::config::HttpLimits;

    fn head(text: &str) -> RequestHead {
        parse_request(text.as_bytes(), &HttpLimits::default()).unwrap()
    }

    fn route(service: &str) -> Route {
        Route {
            service: service.into(),
            ..Route::default()
        }
    }

    #[test]
    fn size_multipart_method_host_bucket_and_header_rules_in_order() {
        let domains = vec!["s3.storage.example".to_string()];
        let routes = vec![
            Route {
                query: vec!["uploadId".into(), "uploads".into()],
                ..route("capacity")
            },
            Route {
                min_content_length: Some(1 << 20),
                ..route("capacity")
            },
            Route {
                bucket: Some("logs".into()),
                ..route("archive")
            },
            Route {
                host: Some("*.fast.example".into()),
                ..route("flash")
            },
            Route {
                header: Some(("x-portico-pool".into(), Some("cold".into()))),
                ..route("archive")
            },
            Route {
                methods: vec!["DELETE".into()],
                ..route("archive")
            },
        ];
        let pick = |text: &str| choose(&routes, "flash", &head(text), &domains).to_string();
        assert_eq!(
            pick("PUT /b/small HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n"),
            "flash"
        );
        assert_eq!(
            pick("PUT /b/big HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n"),
            "capacity"
        );
        assert_eq!(
            pick(
                "PUT /b/big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nx-amz-decoded-content-length: 5000000\r\n\r\n"
            ),
            "capacity"
        );
        assert_eq!(
            pick("POST /b/k?uploads HTTP/1.1\r\nHost: h\r\n\r\n"),
            "capacity",
            "multipart stays on one pool"
        );
        assert_eq!(
            pick(
                "PUT /b/k?partNumber=1&uploadId=x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
            ),
            "capacity"
        );
        assert_eq!(
            pick("GET /logs/2026/x HTTP/1.1\r\nHost: h\r\n\r\n"),
            "archive",
            "path style"
        );
        assert_eq!(
            pick("GET /x HTTP/1.1\r\nHost: logs.s3.storage.example:9000\r\n\r\n"),
            "archive",
            "virtual-hosted style"
        );
        assert_eq!(
            pick("GET /logs HTTP/1.1\r\nHost: data.s3.storage.example\r\n\r\n"),
            "flash",
            "the bucket is data here"
        );
        assert_eq!(
            pick("GET /x HTTP/1.1\r\nHost: b.fast.example\r\n\r\n"),
            "flash"
        );
        assert_eq!(
            pick("GET /x HTTP/1.1\r\nHost: h\r\nX-Portico-Pool: cold\r\n\r\n"),
            "archive"
        );
        assert_eq!(
            pick("GET /x HTTP/1.1\r\nHost: h\r\nX-Portico-Pool: hot\r\n\r\n"),
            "flash"
        );
        assert_eq!(pick("DELETE /x/y HTTP/1.1\r\nHost: h\r\n\r\n"), "archive");
    }

    #[test]
    fn hosts() {
        assert!(host_matches("*.a.example", Some("b.a.example")));
        assert!(!host_matches("*.a.example", Some("ba.example")));
        assert!(!host_matches("*.a.example", Some("a.example")));
        assert!(host_matches("a.example", Some("a.example")));
        assert!(!host_matches("a.example", None));
    }
}

//! AWS Signature Version 4 for single requests, as the S3 readiness probe sends them
//! (a signed `HEAD /<bucket>`, path-style or virtual-hosted-style).
//!
//! What it is: a pure signer. Given the request's method, `Host`, unencoded path and query,
//! the hex SHA-256 of its body, the credentials and the time (seconds since the Unix epoch,
//! passed in), [`sign`] returns the headers to add: `x-amz-date`, `x-amz-content-sha256`,
//! `x-amz-security-token` when there is a session token, and `authorization`. It signs
//! `host`, `x-amz-content-sha256`, `x-amz-date` (and the token); [`sign_with_extra_headers`]
//! signs more. [`canonical_request`], [`string_to_sign`] and [`signing_key`] expose the
//! steps for tests and debugging.
//!
//! What it is not: no I/O, no clock, no HTTP types. It does not sign chunked or streaming
//! payloads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), does not presign URLs (signature in the
//! query string), and does not normalise paths (`.`, `..`, `//` are signed as given). Paths
//! are encoded once for service `s3` and twice for any other service, as SigV4 requires.

use ring::{digest, hmac};

/// The hex SHA-256 of an empty body.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An access key pair, with the session token of temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The parts of an HTTP request that SigV4 signs.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Upper case, as sent: `"HEAD"`, `"GET"`.
    pub method: &'a str,
    /// The value of the `Host` header, with the port when it is sent with one:
    /// `"127.0.10.1:9000"`, `"bucket.s3.example"`.
    pub host: &'a str,
    /// The absolute path, not percent-encoded: `"/bucket"`. Empty means `"/"`.
    pub path: &'a str,
    /// The query pairs, not percent-encoded, in any order; `("lifecycle", "")` for `?lifecycle`.
    pub query: &'a [(&'a str, &'a str)],
    /// The hex SHA-256 of the body; [`EMPTY_PAYLOAD_SHA256`] when there is none.
    pub payload_sha256_hex: &'a str,
}

/// Seconds since the Unix epoch -> (`"20150830T123600Z"`, `"20150830"`), in UTC.
pub fn amz_date(unix_seconds: u64) -> (String, String) {
    let (year, month, day) = civil_from_days(unix_seconds / 86_400);
    let second_of_day = unix_seconds % 86_400;
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
    );
    let date = format!("{year:04}{month:02}{day:02}");
    (format!("{date}T{hour:02}{minute:02}{second:02}Z"), date)
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so that leap days end each 4/100/400-year cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let march_month = (5 * day_of_year + 2) / 153; // [0, 11], 0 is March
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// Signs `request`; returns the headers to add to it (lower-case names): `x-amz-date`,
/// `x-amz-content-sha256`, `x-amz-security-token` when `credentials` has a session token,
/// and `authorization`. The request must also carry `Host: {request.host}`.
pub fn sign(
    request: &Request<'_>,
    credentials: &Credentials,
    region: &str,
    service: &str,
    unix_seconds: u64,
) -> Vec<(String, String)> {
    sign_with_extra_headers(request, &[], credentials, region, service, unix_seconds)
}

/// [`sign`], also signing the headers in `extra` (for example `("range", "bytes=0-9")`),
/// which the caller sends as given and which are not returned. `extra` must not name
/// `host`, `authorization` or a header that [`sign`] returns.
pub fn sign_with_extra_headers(
    request: &Request<'_>,
    extra: &[(&str, &str)],
    credentials: &Credentials,
    region: &str,
    service: &str,
    unix_seconds: u64,
) -> Vec<(String, String)> {
    let (amz_date, date) = amz_date(unix_seconds);
    let mut added = vec![
        ("x-amz-date".to_owned(), amz_date.clone()),
        (
            "x-amz-content-sha256".to_owned(),
            request.payload_sha256_hex.to_owned(),
        ),
    ];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    let mut signed = added.clone();
    signed.extend(
        extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );

    let double_encode = service != "s3";
    let (canonical, signed_names) = canonicalize(request, &signed, double_encode);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = string_to_sign(&amz_date, &scope, &canonical);
    let key = signing_key(&credentials.secret_key, &date, region, service);
    let signature = hex(hmac_sha256(&key, to_sign.as_bytes()).as_ref());
    added.push((
        "authorization".to_owned(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            credentials.access_key
        ),
    ));
    added
}

/// The canonical request, with S3's path encoding (each segment encoded once).
/// `signed_headers` are the signed headers other than `host`, which comes from
/// `request.host`: for example the `x-amz-*` headers that [`sign`] returns.
pub fn canonical_request(request: &Request<'_>, signed_headers: &[(String, String)]) -> String {
    canonicalize(request, signed_headers, false).0
}

/// The string to sign: `amz_date` as [`amz_date`] gives it, and the credential scope
/// `"{date}/{region}/{service}/aws4_request"`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let hashed = sha256_hex(canonical_request.as_bytes());
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{hashed}")
}

/// The signing key: HMAC-SHA256 chained over `date` (`"20150830"`), region, service and
/// `"aws4_request"`, starting from `"AWS4" + secret_key`.
pub fn signing_key(secret_key: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), service.as_bytes());
    let k_signing = hmac_sha256(k_service.as_ref(), b"aws4_request");
    let mut key = [0; 32];
    key.copy_from_slice(k_signing.as_ref());
    key
}

/// The lower-case hex SHA-256 of `bytes`, as `x-amz-content-sha256` wants it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// (canonical request, signed header names joined by `;`).
fn canonicalize(
    request: &Request<'_>,
    headers: &[(String, String)],
    double_encode: bool,
) -> (String, String) {
    let mut entries: Vec<(String, String)> = std::iter::once(("host".to_owned(), request.host))
        .chain(
            headers
                .iter()
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.as_str())),
        )
        .map(|(name, value)| (name, value.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    // Stable: values of a repeated header keep their order and are joined with commas.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(String, String)> = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        match merged.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let canonical_headers: String = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_names = merged
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_names}\n{}",
        request.method,
        canonical_uri(request.path, double_encode),
        canonical_query(request.query),
        request.payload_sha256_hex,
    );
    (canonical, signed_names)
}

fn canonical_uri(path: &str, double_encode: bool) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let once = uri_encode(path, true);
    if double_encode {
        uri_encode(&once, true)
    } else {
        once
    }
}

fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 percent-encoding of every byte but the unreserved `A-Z a-z 0-9 - _ . ~`
/// (and `/` when `keep_slash`), with upper-case hex digits.
fn uri_encode(input: &str, keep_slash: bool) -> String {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(UPPER[usize::from(b >> 4)]));
            out.push(char::from(UPPER[usize::from(b & 0xf)]));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [LOWER[usize::from(b >> 4)], LOWER[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials, host and time of the examples in the S3 SigV4 documentation
    /// ("Examples: Signature calculations in AWS Signature Version 4", header-based auth).
    const AWS_HOST: &str = "examplebucket.s3.amazonaws.com";
    const AWS_TIME: u64 = 1_369_353_600; // 2013-05-24T00:00:00Z

    fn aws_credentials() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: None,
        }
    }

    fn aws_get<'a>(path: &'a str, query: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            host: AWS_HOST,
            path,
            query,
            payload_sha256_hex: EMPTY_PAYLOAD_SHA256,
        }
    }

    fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn signature(headers: &[(String, String)]) -> &str {
        let authorization = header(headers, "authorization").expect("an authorization header");
        authorization
            .rsplit_once("Signature=")
            .expect("a signature")
            .1
    }

    #[test]
    fn amz_date_of_known_instants() {
        let cases: &[(u64, &str)] = &[
            (0, "19700101T000000Z"),
            (86_399, "19700101T235959Z"),
            (946_684_799, "19991231T235959Z"),
            (951_782_400, "20000229T000000Z"), // leap day of a year divisible by 400
            (1_369_353_600, "20130524T000000Z"),
            (1_440_938_160, "20150830T123600Z"),
            (1_709_251_199, "20240229T235959Z"), // leap day
            (1_709_251_200, "20240301T000000Z"),
            (2_147_483_648, "20380119T031408Z"), // one past i32::MAX
            (4_107_499_200, "21000228T120000Z"), // 2100 is not a leap year
            (4_107_542_400, "21000301T000000Z"),
            (13_574_649_599, "24000229T235959Z"), // the last day of a 400-year cycle
            (13_574_649_600, "24000301T000000Z"),
        ];
        for &(seconds, expected) in cases {
            let (amz, date) = amz_date(seconds);
            assert_eq!(amz, expected, "amz_date({seconds})");
            assert_eq!(date, expected[..8], "date of {seconds}");
        }
    }

    /// "Deriving the signing key" in the AWS General Reference (SigV4 examples).
    #[test]
    fn signing_key_of_the_aws_derivation_example() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    /// S3 "Example: GET Object", which also signs a `Range` header.
    #[test]
    fn the_s3_get_object_example() {
        let request = aws_get("/test.txt", &[]);
        let signed = [
            ("Range".to_owned(), "bytes=0-9 ".to_owned()),
            (
                "x-amz-content-sha256".to_owned(),
                EMPTY_PAYLOAD_SHA256.to_owned(),
            ),
            ("x-amz-date".to_owned(), "20130524T000000Z".to_owned()),
        ];
        let canonical = canonical_request(&request, &signed);
        assert_eq!(
            canonical,
            "GET\n/test.txt\n\n\
             host:examplebucket.s3.amazonaws.com\n\
             range:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\n\
             host;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign(
                "20130524T000000Z",
                "20130524/us-east-1/s3/aws4_request",
                &canonical
            ),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );

        let headers = sign_with_extra_headers(
            &request,
            &[("Range", "bytes=0-9")],
            &aws_credentials(),
            "us-east-1",
            "s3",
            AWS_TIME,
        );
        assert_eq!(
            headers,
            [
                ("x-amz-date".to_owned(), "20130524T000000Z".to_owned()),
                (
                    "x-amz-content-sha256".to_owned(),
                    EMPTY_PAYLOAD_SHA256.to_owned()
                ),
                (
                    "authorization".to_owned(),
                    "AWS4-HMAC-SHA256 \
                     Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                     SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
                     Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                        .to_owned()
                ),
            ]
        );
    }

    /// S3 "Example: GET Bucket Lifecycle" and "Example: Get Bucket (List Objects)", which
    /// sign exactly the headers [`sign`] signs.
    #[test]
    fn the_s3_bucket_examples() {
        let check = |query: &[(&str, &str)], canonical_query: &str, expected: &str| {
            let request = aws_get("/", query);
            let headers = sign(&request, &aws_credentials(), "us-east-1", "s3", AWS_TIME);
            assert_eq!(signature(&headers), expected, "{query:?}");
            let signed: Vec<_> = headers
                .iter()
                .filter(|(n, _)| n != "authorization")
                .cloned()
                .collect();
            assert!(
                canonical_request(&request, &signed)
                    .starts_with(&format!("GET\n/\n{canonical_query}\nhost:{AWS_HOST}\n")),
                "{query:?}"
            );
        };
        let lifecycle = "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543";
        check(&[("lifecycle", "")], "lifecycle=", lifecycle);
        let list = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
        check(
            &[("max-keys", "2"), ("prefix", "J")],
            "max-keys=2&prefix=J",
            list,
        );
        check(
            &[("prefix", "J"), ("max-keys", "2")],
            "max-keys=2&prefix=J",
            list,
        );
    }

    #[test]
    fn paths_are_encoded_per_segment() {
        let check = |path: &str, double_encode: bool, expected: &str| {
            assert_eq!(canonical_uri(path, double_encode), expected, "{path:?}");
        };
        check("", false, "/");
        check("/", false, "/");
        check("/bucket", false, "/bucket");
        check("/A-Z_a.z~09/", false, "/A-Z_a.z~09/");
        check(
            "/my bucket/ünï €/a+b=c&d;e:f@g$h,i/!*'()",
            false,
            "/my%20bucket/%C3%BCn%C3%AF%20%E2%82%AC/a%2Bb%3Dc%26d%3Be%3Af%40g%24h%2Ci/%21%2A%27%28%29",
        );
        // The path is unencoded: a '%' in it is a literal percent sign.
        check("/a%2Fb", false, "/a%252Fb");
        // Services other than S3 encode each segment twice.
        check("/a b/c%d", true, "/a%2520b/c%2525d");
        check("/plain/path", true, "/plain/path");
    }

    #[test]
    fn sign_encodes_paths_once_for_s3_and_twice_for_other_services() {
        let request = aws_get("/my bucket/a+b", &[]);
        let credentials = aws_credentials();
        let cases = [
            ("s3", false, "/my%20bucket/a%2Bb"),
            ("execute-api", true, "/my%2520bucket/a%252Bb"),
        ];
        for (service, double_encode, uri) in cases {
            let headers = sign(&request, &credentials, "us-east-1", service, AWS_TIME);
            let signed: Vec<_> = headers
                .iter()
                .filter(|(n, _)| n != "authorization")
                .cloned()
                .collect();
            let (canonical, _) = canonicalize(&request, &signed, double_encode);
            assert!(
                canonical.starts_with(&format!("GET\n{uri}\n")),
                "{canonical}"
            );
            let scope = format!("20130524/us-east-1/{service}/aws4_request");
            let to_sign = string_to_sign("20130524T000000Z", &scope, &canonical);
            let key = signing_key(&credentials.secret_key, "20130524", "us-east-1", service);
            let expected = hex(hmac_sha256(&key, to_sign.as_bytes()).as_ref());
            assert_eq!(signature(&headers), expected, "{service}");
        }
    }

    #[test]
    fn query_pairs_are_encoded_then_sorted_by_key_then_value() {
        let check = |query: &[(&str, &str)], expected: &str| {
            assert_eq!(canonical_query(query), expected, "{query:?}");
        };
        check(&[], "");
        check(&[("lifecycle", "")], "lifecycle=");
        check(
            &[
                ("prefix", "photos/2024 jan"),
                ("list-type", "2"),
                ("a", "x=y&z"),
                ("a", "1"),
                ("B", ""),
                ("ö", "+"),
                ("delimiter", "/"),
            ],
            // Sorted by the encoded bytes: '%' < 'B' < 'a'.
            "%C3%B6=%2B&B=&a=1&a=x%3Dy%26z&delimiter=%2F&list-type=2&prefix=photos%2F2024%20jan",
        );
    }

    #[test]
    fn headers_are_lower_cased_trimmed_sorted_and_merged() {
        let request = Request {
            method: "HEAD",
            host: "127.0.10.1:9000",
            path: "/bucket",
            query: &[],
            payload_sha256_hex: EMPTY_PAYLOAD_SHA256,
        };
        let headers = [
            (
                "X-Amz-Meta-Note".to_owned(),
                "  two   words\tand  ".to_owned(),
            ),
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned()),
            ("X-Amz-Meta-Note".to_owned(), "second".to_owned()),
        ];
        assert_eq!(
            canonical_request(&request, &headers),
            "HEAD\n/bucket\n\n\
             host:127.0.10.1:9000\n\
             x-amz-date:20150830T123600Z\n\
             x-amz-meta-note:two words and,second\n\n\
             host;x-amz-date;x-amz-meta-note\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let request = aws_get("/", &[("lifecycle", "")]);
        let mut credentials = aws_credentials();
        let without = sign(&request, &credentials, "us-east-1", "s3", AWS_TIME);
        credentials.session_token = Some("token/with+chars=".to_owned());
        let with = sign(&request, &credentials, "us-east-1", "s3", AWS_TIME);

        assert_eq!(header(&without, "x-amz-security-token"), None);
        assert_eq!(
            header(&with, "x-amz-security-token"),
            Some("token/with+chars=")
        );
        let authorization = header(&with, "authorization").expect("authorization");
        assert!(
            authorization.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"
            ),
            "{authorization}"
        );
        assert_ne!(signature(&with), signature(&without));
    }

    #[test]
    fn the_scope_names_region_and_service() {
        let request = aws_get("/", &[]);
        let headers = sign(&request, &aws_credentials(), "eu-west-3", "s3", AWS_TIME);
        let authorization = header(&headers, "authorization").expect("authorization");
        assert!(
            authorization
                .contains("Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-3/s3/aws4_request, "),
            "{authorization}"
        );
        let other = sign(&request, &aws_credentials(), "us-east-1", "s3", AWS_TIME);
        assert_ne!(signature(&headers), signature(&other));
    }

    #[test]
    fn hashes_and_hex() {
        assert_eq!(sha256_hex(b""), EMPTY_PAYLOAD_SHA256);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn debug_hides_secrets() {
        let credentials = Credentials {
            session_token: Some("TOKEN".to_owned()),
            ..aws_credentials()
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"), "{shown}");
        assert!(!shown.contains("EXAMPLEKEY"), "{shown}");
        assert!(!shown.contains("TOKEN"), "{shown}");
    }
}

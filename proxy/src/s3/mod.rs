//! L7 S3 listeners: HTTP/1.1 with keep-alive (TLS optional), each request routed by the
//! listener's rules to a service's members at this site, least outstanding requests first,
//! its head forwarded byte for byte (SigV4 still verifies at the member) and both bodies
//! streamed through fixed buffers.

pub mod body;
pub mod error;
pub mod head;
pub mod route;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use topology::config::Listener;

use crate::metrics::ListenerMetrics;
use crate::shared::{Shared, accept_loop};
use crate::upstreams::Member;
use body::{BodyError, Inbound};
use error::S3Error;
use head::{Framing, HeadError, RequestHead, parse_request, parse_response};
use upstream::{BackendTls, IdlePool, Upstream};

/// One S3 listener's configuration and TLS material.
pub struct S3Listener {
    pub config: Listener,
    pub metrics: Arc<ListenerMetrics>,
    pub shared: Arc<Shared>,
    pub tls: Option<TlsAcceptor>,
    pub backend_tls: Option<Arc<BackendTls>>,
    /// Idle member connections kept for reuse.
    pub idle: IdlePool,
}

/// Buffer for a member's response head and the response body passing through.
const UPSTREAM_BUFFER: usize = 64 * 1024;

/// Accepts until the proxy drains.
pub async fn serve(listener: TcpListener, ctx: Arc<S3Listener>) {
    let tls = ctx.tls.is_some();
    let refuse_over_limit = move |stream| {
        tokio::spawn(refuse(stream, tls));
    };
    accept_loop(
        listener,
        (ctx.config.max_connections, ctx.config.max_per_client),
        ctx.shared.clone(),
        ctx.metrics.clone(),
        refuse_over_limit,
        move |stream, peer| {
            let ctx = ctx.clone();
            async move {
                // The handshake's RTT is the kernel's first sample for this client.
                ctx.shared.rtt.sample(peer.ip(), &stream);
                match &ctx.tls {
                    None => connection(stream, peer, &ctx).await,
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        match tokio::time::timeout(ctx.config.limits.header_timeout, handshake)
                            .await
                        {
                            Ok(Ok(tls)) => connection(tls, peer, &ctx).await,
                            _ => ctx.metrics.client_error("tls_handshake"),
                        }
                    }
                }
            }
        },
    )
    .await;
}

/// Over the connection limit: a quick 503 SlowDown (plain text listeners only; a TLS
/// client gets the connection closed) and close.
async fn refuse(mut stream: TcpStream, tls: bool) {
    if !tls {
        let response = S3Error::new(503, "SlowDown", "too many connections to this proxy")
            .response("/", true, false);
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&response)).await;
    }
}

/// Serves requests on one client connection until it closes, errs or idles out.
async fn connection<S>(io: S, peer: SocketAddr, ctx: &S3Listener)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (reader, mut writer) = tokio::io::split(io);
    let limits = ctx.config.limits;
    let mut inbound = Inbound::new(reader, limits.max_header_bytes.max(64 * 1024));
    // The buffer members' responses pass through, reused by every request of this
    // connection (a request that fails midway takes it along; the next makes another).
    let mut member_buffer: Box<[u8]> = Box::default();
    let mut draining = ctx.shared.draining.clone();
    let mut served = 0u64;
    'requests: loop {
        if inbound.buffered().is_empty() {
            // Before the first request the head timeout runs; between requests, the idle one.
            let wait = if served == 0 {
                limits.header_timeout
            } else {
                ctx.config.idle_timeout
            };
            let read = tokio::select! {
                read = tokio::time::timeout(wait, inbound.fill()) => Some(read),
                _ = draining.wait_for(|d| *d) => None,
            };
            match read {
                Some(Ok(Ok(n))) if n > 0 => {}
                Some(Err(_)) if served == 0 => {
                    reject(
                        &mut writer,
                        ctx,
                        "header_timeout",
                        S3Error::new(408, "RequestTimeout", "no request arrived in time"),
                    )
                    .await;
                    break 'requests;
                }
                _ => break,
            }
        }
        let deadline = tokio::time::Instant::now() + limits.header_timeout;
        let head = loop {
            match parse_request(inbound.buffered(), &limits) {
                Ok(head) => break head,
                Err(HeadError::Incomplete) => {
                    match tokio::time::timeout_at(deadline, inbound.fill()).await {
                        Ok(Ok(n)) if n > 0 => continue,
                        Err(_) => {
                            reject(
                                &mut writer,
                                ctx,
                                "header_timeout",
                                S3Error::new(
                                    408,
                                    "RequestTimeout",
                                    "the request head did not arrive in time",
                                ),
                            )
                            .await;
                            break 'requests;
                        }
                        _ => return,
                    }
                }
                Err(e) => {
                    let (kind, error) = head_error(e);
                    reject(&mut writer, ctx, kind, error).await;
                    break 'requests;
                }
            }
        };
        served += 1;
        if !exchange(
            &mut inbound,
            &mut writer,
            &mut member_buffer,
            head,
            peer,
            ctx,
        )
        .await
            || *draining.borrow()
        {
            break;
        }
    }
    let _ = writer.shutdown().await;
    linger(&mut inbound).await;
}

/// After our side has closed, reads (and drops) what the client still sends for a moment:
/// closing a socket with unread bytes makes the kernel send a reset, which can destroy the
/// response (an error of ours, say) before the client has read it.
async fn linger<R: AsyncRead + Unpin>(inbound: &mut Inbound<R>) {
    const MAX_BYTES: usize = 1024 * 1024;
    let mut dropped = 0;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while dropped < MAX_BYTES {
            let n = inbound.buffered().len();
            inbound.consume(n);
            dropped += n;
            match inbound.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn head_error(e: HeadError) -> (&'static str, S3Error) {
    match e {
        HeadError::Incomplete => ("incomplete", S3Error::bad_request("incomplete request")),
        HeadError::RequestLineTooLong => (
            "request_line_too_long",
            S3Error::new(414, "InvalidURI", "the request line is too long"),
        ),
        HeadError::TooLarge => (
            "header_too_large",
            S3Error::new(
                431,
                "RequestHeaderSectionTooLarge",
                "the request head is too large",
            ),
        ),
        HeadError::TooManyHeaders => (
            "too_many_headers",
            S3Error::new(
                431,
                "RequestHeaderSectionTooLarge",
                "the request has too many headers",
            ),
        ),
        HeadError::Malformed(why) => ("malformed", S3Error::bad_request(why)),
        HeadError::Smuggling(why) => (
            "smuggling",
            S3Error::bad_request(format!("ambiguous message framing: {why}")),
        ),
    }
}

/// Answers a request the proxy refuses, and the connection closes after it.
async fn reject<W: AsyncWrite + Unpin>(
    writer: &mut W,
    ctx: &S3Listener,
    kind: &'static str,
    error: S3Error,
) {
    ctx.metrics.client_error(kind);
    ctx.metrics.request(error.status);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        writer.write_all(&error.response("/", true, false)).await?;
        writer.flush().await
    })
    .await;
}

/// A request forwarded and its response relayed.
struct Done {
    status: u16,
    up: u64,
    down: u64,
    keep_client: bool,
    /// The member connection, when it can carry another request.
    reusable: Option<Upstream>,
}

enum Failure {
    /// Nothing the member could act on was sent (or the request is safe to repeat).
    Retryable(&'static str),
    /// The member failed; `responded`: part of its response already reached the client.
    Upstream { kind: &'static str, responded: bool },
    /// The client failed, stalled or sent a malformed body.
    Client,
}

/// Counts a request in flight on a member for least-outstanding choice.
struct InFlight(Arc<Member>);

impl InFlight {
    fn new(member: &Arc<Member>) -> InFlight {
        member.live.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(member.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.live.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request: route, pick, forward, relay, with retries only where safe. Whether the
/// client connection can carry another request.
async fn exchange<S>(
    inbound: &mut Inbound<ReadHalf<S>>,
    writer: &mut WriteHalf<S>,
    member_buffer: &mut Box<[u8]>,
    head: RequestHead,
    peer: SocketAddr,
    ctx: &S3Listener,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let started = Instant::now();
    let config = &ctx.config;
    let shared = &ctx.shared;
    let service = route::choose(&config.routes, &config.service, &head, &config.domains);
    ctx.metrics.route(service);
    inbound.consume(head.len);
    let resource = head.target.split('?').next().unwrap_or("/");
    let head_request = head.method == "HEAD";
    // Without a body still unread, the connection can go on after an error of ours.
    let can_continue = head.framing == Framing::None && head.keep_alive;
    let upstreams = shared.upstreams.load_full();
    let Some(pool) = upstreams.pool(service) else {
        return respond(
            writer,
            ctx,
            &head,
            S3Error::new(
                500,
                "InternalError",
                format!("no pool for service {service}"),
            ),
            can_continue,
        )
        .await;
    };
    let mut tried = Vec::new();
    let mut retries_left = config.retries;
    loop {
        let Some(member) = pool.least_outstanding(shared.clock.millis(), &tried) else {
            ctx.metrics.upstream_error("no_member");
            let error = S3Error::unavailable(format!(
                "no member of service {service} at site {} can take requests",
                shared.site
            ));
            return respond(writer, ctx, &head, error, can_continue).await;
        };
        tried.push(member.key);
        let in_flight = InFlight::new(&member);
        let (upstream, reused) = match ctx.idle.checkout(&member) {
            Some(upstream) => (upstream, true),
            None => match upstream::connect(
                member.address,
                config.connect_timeout,
                ctx.backend_tls.as_ref(),
            )
            .await
            {
                Ok(upstream) => (upstream, false),
                Err(kind) => {
                    shared.upstream_failure(&ctx.metrics, &member, kind);
                    if retries_left > 0 {
                        retries_left -= 1;
                        continue;
                    }
                    let error = S3Error::unavailable(format!(
                        "member {} cannot be reached ({kind})",
                        member.node
                    ));
                    return respond(writer, ctx, &head, error, can_continue).await;
                }
            },
        };
        let result = attempt(
            inbound,
            writer,
            member_buffer,
            &head,
            upstream,
            config.limits.body_idle_timeout,
        )
        .await;
        drop(in_flight);
        let (status, up, down, keep) = match result {
            Ok(done) => {
                member.succeeded();
                if let Some(upstream) = done.reusable {
                    ctx.idle.checkin(&member, upstream);
                }
                ctx.metrics.request(done.status);
                (done.status, done.up, done.down, done.keep_client)
            }
            Err(Failure::Retryable(kind)) => {
                // A reused connection the member had closed is not the member's fault.
                if !reused {
                    shared.upstream_failure(&ctx.metrics, &member, kind);
                }
                if retries_left > 0 || reused {
                    retries_left = retries_left.saturating_sub(u32::from(!reused));
                    if reused {
                        // Try the same member again on a fresh connection.
                        tried.pop();
                        ctx.idle.clear(&member);
                    }
                    continue;
                }
                let error = S3Error::unavailable(format!("member {} failed ({kind})", member.node));
                return respond(writer, ctx, &head, error, can_continue).await;
            }
            Err(Failure::Upstream { kind, responded }) => {
                shared.upstream_failure(&ctx.metrics, &member, kind);
                if !responded {
                    let error = S3Error::unavailable(format!(
                        "member {} failed during the request ({kind})",
                        member.node
                    ));
                    respond(writer, ctx, &head, error, false).await;
                }
                // Responded: the client sees an incomplete body, never a clean success.
                (if responded { 0 } else { 503 }, 0, 0, false)
            }
            Err(Failure::Client) => {
                ctx.metrics.client_error("body");
                (0, 0, 0, false)
            }
        };
        ListenerMetrics::add(&ctx.metrics.bytes_up, up);
        ListenerMetrics::add(&ctx.metrics.bytes_down, down);
        if shared.access_log {
            tracing::info!(
                target: "access",
                listener = %config.name,
                client = %peer,
                method = %head.method,
                resource = %resource,
                status,
                service,
                member = %member.node,
                bytes_up = up,
                bytes_down = down,
                ms = started.elapsed().as_millis() as u64,
                head_request,
                "s3 request"
            );
        }
        return keep;
    }
}

/// Sends an error of ours; whether the connection can go on.
async fn respond<W: AsyncWrite + Unpin>(
    writer: &mut W,
    ctx: &S3Listener,
    head: &RequestHead,
    error: S3Error,
    can_continue: bool,
) -> bool {
    ctx.metrics.request(error.status);
    let resource = head.target.split('?').next().unwrap_or("/");
    let response = error.response(resource, !can_continue, head.method == "HEAD");
    let sent = tokio::time::timeout(Duration::from_secs(5), async {
        writer.write_all(&response).await?;
        writer.flush().await
    })
    .await;
    can_continue && matches!(sent, Ok(Ok(())))
}

/// Sends the request to one member and relays its response.
async fn attempt<S>(
    inbound: &mut Inbound<ReadHalf<S>>,
    writer: &mut WriteHalf<S>,
    member_buffer: &mut Box<[u8]>,
    head: &RequestHead,
    upstream: Upstream,
    idle: Duration,
) -> Result<Done, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (upstream_reader, mut upstream_writer) = tokio::io::split(upstream);
    let sent_head = tokio::time::timeout(idle, async {
        upstream_writer.write_all(&head.raw).await?;
        upstream_writer.flush().await
    })
    .await;
    if !matches!(sent_head, Ok(Ok(()))) {
        // No body byte has left the client's socket: trying elsewhere is safe.
        return Err(Failure::Retryable("reset"));
    }
    if member_buffer.is_empty() {
        *member_buffer = vec![0u8; UPSTREAM_BUFFER].into_boxed_slice();
    }
    let mut from_member = Inbound::with_buffer(upstream_reader, std::mem::take(member_buffer));
    let (sent, received) = {
        let send = body::forward(inbound, &mut upstream_writer, head.framing, idle);
        let receive = relay_response(&mut from_member, writer, head, idle);
        tokio::pin!(send, receive);
        let mut sent = None;
        loop {
            tokio::select! {
                result = &mut send, if sent.is_none() => match result {
                    Err(BodyError::Source(_)) => return Err(Failure::Client),
                    other => sent = Some(other),
                },
                result = &mut receive => break (sent, result),
            }
        }
    };
    let response = match received {
        Ok(response) => response,
        Err(RelayError::Client) => return Err(Failure::Client),
        Err(RelayError::Member { kind, responded }) => {
            let nothing_sent = head.framing == Framing::None;
            if !responded && nothing_sent && head.idempotent_without_body() {
                return Err(Failure::Retryable(kind));
            }
            return Err(Failure::Upstream { kind, responded });
        }
    };
    if let Some(Err(BodyError::Sink(e))) = &sent {
        tracing::debug!(error = %e, status = response.status, "member stopped reading the body and answered");
    }
    let body_complete = matches!(sent, Some(Ok(_)));
    let up = match sent {
        Some(Ok(n)) => n,
        _ => 0,
    } + head.raw.len() as u64;
    let clean = from_member.buffered().is_empty();
    let (upstream_reader, buffer) = from_member.into_parts();
    *member_buffer = buffer;
    let reusable = if body_complete && !response.close && clean {
        Some(upstream_reader.unsplit(upstream_writer))
    } else {
        None
    };
    Ok(Done {
        status: response.status,
        up,
        down: response.bytes,
        // A body not read to its end leaves the connection unusable.
        keep_client: body_complete && head.keep_alive && !response.close,
        reusable,
    })
}

struct Relayed {
    status: u16,
    bytes: u64,
    close: bool,
}

enum RelayError {
    Member { kind: &'static str, responded: bool },
    Client,
}

/// Reads the member's response (passing interim `100 Continue` on) and streams it to the
/// client.
async fn relay_response<R, W>(
    from: &mut Inbound<R>,
    to: &mut W,
    request: &RequestHead,
    idle: Duration,
) -> Result<Relayed, RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let member_error = |kind| RelayError::Member {
        kind,
        responded: false,
    };
    loop {
        let response = loop {
            match parse_response(from.buffered(), request.method == "HEAD") {
                Ok(Some(response)) => break response,
                Ok(None) => match tokio::time::timeout(idle, from.fill()).await {
                    Err(_) => return Err(member_error("response_timeout")),
                    Ok(Ok(0)) => return Err(member_error("closed")),
                    Ok(Err(e)) if e.to_string() == "buffer full" => {
                        return Err(member_error("protocol"));
                    }
                    Ok(Err(_)) => return Err(member_error("reset")),
                    Ok(Ok(_)) => continue,
                },
                Err(_) => return Err(member_error("protocol")),
            }
        };
        let head = &from.buffered()[..response.len];
        if response.interim() {
            if response.status == 101 {
                return Err(member_error("protocol"));
            }
            // 100 Continue goes to HTTP/1.1 clients only (HTTP/1.0 does not know 1xx).
            if request.minor_version == 1 {
                write_client(to, head, idle).await?;
            }
            from.consume(response.len);
            continue;
        }
        let head_len = response.len as u64;
        write_client(to, head, idle).await?;
        from.consume(response.len);
        let body = body::forward(from, to, response.framing, idle)
            .await
            .map_err(|e| match e {
                BodyError::Source(e) => RelayError::Member {
                    kind: if e.kind() == std::io::ErrorKind::TimedOut {
                        "response_timeout"
                    } else {
                        "reset"
                    },
                    responded: true,
                },
                BodyError::Sink(_) => RelayError::Client,
            })?;
        return Ok(Relayed {
            status: response.status,
            bytes: head_len + body,
            close: response.close,
        });
    }
}

async fn write_client<W: AsyncWrite + Unpin>(
    to: &mut W,
    bytes: &[u8],
    idle: Duration,
) -> Result<(), RelayError> {
    match tokio::time::timeout(idle, async {
        to.write_all(bytes).await?;
        to.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err(RelayError::Client),
    }
}

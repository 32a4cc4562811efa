//! `s3-node`: a small real S3 server for tests and demos: s3s-fs (which checks SigV4
//! signatures) serving a directory. Each top-level directory of ROOT is a bucket.
//!
//! Usage: `s3-node --listen 127.0.10.1:0 --access-key AK --secret-key SK [--domain D] ROOT`
//! (`--domain` enables virtual-hosted-style requests, `<bucket>.D`; `--access-log FILE`
//! appends `METHOD TARGET LENGTH` per request, LENGTH being the declared body size); prints
//! `s3-node listening on ADDR` once it accepts connections.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

fn usage() -> ! {
    eprintln!("usage: s3-node --listen ADDR --access-key AK --secret-key SK ROOT");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut access, mut secret, mut root) = (None, None, None, None);
    let mut domains = Vec::new();
    let mut access_log = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().and_then(|a| a.parse::<SocketAddr>().ok()),
            "--access-key" => access = args.next(),
            "--secret-key" => secret = args.next(),
            "--domain" => domains.extend(args.next()),
            "--access-log" => access_log = args.next(),
            _ if root.is_none() && !arg.starts_with("--") => root = Some(arg),
            _ => usage(),
        }
    }
    let (Some(listen), Some(access), Some(secret), Some(root)) = (listen, access, secret, root)
    else {
        usage()
    };
    let filesystem = match s3s_fs::FileSystem::new(&root) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("s3-node: {root}: {e:?}");
            std::process::exit(1)
        }
    };
    let mut builder = S3ServiceBuilder::new(filesystem);
    builder.set_auth(SimpleAuth::from_single(access, secret));
    if !domains.is_empty() {
        match s3s::host::MultiDomain::new(&domains) {
            Ok(host) => builder.set_host(host),
            Err(e) => {
                eprintln!("s3-node: --domain: {e:?}");
                std::process::exit(2)
            }
        }
    }
    let service = builder.build();
    let log = access_log.map(|path| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| {
                eprintln!("s3-node: --access-log {path}: {e}");
                std::process::exit(2)
            });
        Arc::new(Mutex::new(file))
    });
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        if let Some(log) = &log {
            let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
            let length = header("x-amz-decoded-content-length")
                .or(header("content-length"))
                .unwrap_or("-");
            let line = format!("{} {} {length}\n", request.method(), request.uri());
            let _ = log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(line.as_bytes());
        }
        let service = service.clone();
        async move { hyper::service::Service::call(&service, request).await }
    });
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("s3-node: cannot listen on {listen}: {e}");
            std::process::exit(1)
        }
    };
    let bound = listener.local_addr().expect("bound address");
    println!("s3-node listening on {bound}");
    let server = Builder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let connection = server
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

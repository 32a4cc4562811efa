//! The demo's storage nodes: small S3-speaking servers on the members' addresses, objects
//! in memory and shared by the nodes of a site (as one storage cluster's nodes share a
//! namespace), no authentication: a demo, not a store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The one bucket the nodes serve.
pub const BUCKET: &str = "demo";

/// Objects of one storage node (bounded: a demo, not a store).
pub type Objects = Arc<Mutex<HashMap<String, Bytes>>>;

/// At most this many bytes held per node.
const NODE_CAPACITY: usize = 256 * 1024 * 1024;

/// A small S3-speaking node: bucket `demo` only, objects in memory (shared by the nodes of
/// a site), no authentication.
pub async fn storage_node(listener: tokio::net::TcpListener, name: String, objects: Objects) {
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let objects = objects.clone();
            let name = name.clone();
            async move { s3_request(&objects, &name, &method, &uri, &headers, body) }
        },
    );
    let _ = axum::serve(listener, app).await;
}

fn s3_error(status: StatusCode, code: &str, resource: &str, node: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Resource>{resource}</Resource><RequestId>{node}</RequestId></Error>\n"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn s3_request(
    objects: &Objects,
    node: &str,
    method: &Method,
    uri: &Uri,
    _headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let served_by = [("x-portico-demo-node", node.to_string())];
    let Some(rest) = path.strip_prefix(&format!("/{BUCKET}")) else {
        return s3_error(StatusCode::NOT_FOUND, "NoSuchBucket", path, node);
    };
    let key = rest.trim_start_matches('/');
    let mut objects = objects.lock().unwrap_or_else(|e| e.into_inner());
    match (method.as_str(), key.is_empty()) {
        ("HEAD" | "GET", true) => (StatusCode::OK, served_by).into_response(),
        ("PUT", false) => {
            let held: usize = objects.values().map(Bytes::len).sum();
            if held + body.len() > NODE_CAPACITY {
                return s3_error(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "QuotaExceeded",
                    path,
                    node,
                );
            }
            objects.insert(key.to_string(), body);
            (StatusCode::OK, served_by).into_response()
        }
        ("GET", false) => match objects.get(key) {
            Some(data) => (StatusCode::OK, served_by, data.clone()).into_response(),
            None => s3_error(StatusCode::NOT_FOUND, "NoSuchKey", path, node),
        },
        ("HEAD", false) => match objects.get(key) {
            Some(data) => (
                StatusCode::OK,
                served_by,
                [(header::CONTENT_LENGTH, data.len().to_string())],
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        ("DELETE", false) => {
            objects.remove(key);
            (StatusCode::NO_CONTENT, served_by).into_response()
        }
        _ => s3_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            path,
            node,
        ),
    }
}

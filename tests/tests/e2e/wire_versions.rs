//! Typed messages across versions, with the real proxy and the real CLI: a server whose
//! views gained fields (a newer gslb-dns) is read as before; a view without a field the
//! proxy needs is an error in its log and metrics and changes nothing (never an undrain).
//!
//! The "newer server" replays what a real gslb-dns answered, with fields added or taken
//! out: the one way to meet a future version today.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tests::{DnsNode, ProxyNode, assert_eventually, http, portico_at};

use crate::proxy::{IdentityServer, connect_from, deployment, proxy_address, tcp_proxy_config};

/// Serves recorded answers: `/api/v1/state` and `/api/v1/store` as given, and a watch
/// stream that sends every line pushed to `lines` (blank heartbeats in between).
struct NewerServer {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl NewerServer {
    fn start(state: Value, store: Value) -> NewerServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let shared = lines.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (state, store, lines) = (state.clone(), store.clone(), shared.clone());
                std::thread::spawn(move || serve(stream, &state, &store, &lines));
            }
        });
        NewerServer { addr, lines }
    }

    fn push(&self, line: &Value) {
        self.lines.lock().unwrap().push(line.to_string());
    }
}

fn serve(mut stream: TcpStream, state: &Value, store: &Value, lines: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let body = match path.split('?').next().unwrap() {
        "/api/v1/state" => state.to_string(),
        "/api/v1/store" => store.to_string(),
        "/api/v1/watch" => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let mut sent = 0;
            loop {
                let next: Vec<String> = lines.lock().unwrap()[sent..].to_vec();
                sent += next.len();
                let mut chunk: String = next.iter().map(|l| format!("{l}\n")).collect();
                if chunk.is_empty() {
                    chunk.push('\n');
                }
                let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                if stream.write_all(framed.as_bytes()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        _ => {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return;
        }
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

/// Adds a field this build does not know to every object inside `value`.
fn with_future_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                // Maps keyed by node id (the store's `nodes`) are data, not structs.
                if key != "nodes" {
                    with_future_fields(child);
                }
            }
            map.insert(
                "added_in_a_later_version".into(),
                json!({"rack": "r12", "n": 3}),
            );
        }
        Value::Array(items) => items.iter_mut().for_each(with_future_fields),
        _ => {}
    }
}

/// The member `node` of the first service in a state.
fn member<'a>(state: &'a mut Value, node: &str) -> &'a mut serde_json::Map<String, Value> {
    state["services"][0]["members"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["node"] == node)
        .unwrap()
        .as_object_mut()
        .unwrap()
}

#[test]
fn the_proxy_and_the_cli_read_a_newer_server_and_refuse_a_view_missing_a_field() {
    let servers = [
        IdentityServer::start("w1", "127.0.19.1"),
        IdentityServer::start("w2", "127.0.19.2"),
    ];
    let base = deployment(&[(
        "files",
        vec![("w1", servers[0].addr), ("w2", servers[1].addr)],
    )]);
    // What a real node answers, recorded.
    let real = DnsNode::start(&base, false);
    let mut state = real.get_json("/api/v1/state");
    let mut store = real.get_json("/api/v1/store");
    drop(real);
    // The newer node: w1 drained, and fields this build has never heard of everywhere.
    member(&mut state, "w1").insert("proxy_weight".into(), json!(0));
    with_future_fields(&mut state);
    with_future_fields(&mut store);
    let newer = NewerServer::start(state.clone(), store);
    let mut line = json!({
        "version": 99, "index": 10, "config_version": 1, "degraded": false, "state": state,
        "added_in_a_later_version": true
    });
    newer.push(&line);

    // The CLI reads it as before.
    let (code, out, err) = portico_at(&[newer.addr], &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fra") && out.contains("files"), "{out}");
    let (code, out, err) = portico_at(&[newer.addr], &["members", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{out}");

    // The proxy follows it: w1 gets no new connection.
    let listen = proxy_address("127.0.19.100");
    let metrics = proxy_address("127.0.19.100");
    let extra = format!("state_from = [\"{}\"]\nmetrics = \"{metrics}\"", newer.addr);
    let proxy = ProxyNode::start(&tcp_proxy_config(&base, listen, &extra), 1, &[]);
    let page = || http(metrics, "GET", "/metrics", None).1;
    let gauge = |name: &str| -> Option<u64> {
        page()
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let w1 = "portico_proxy_member_weight{service=\"files\",member=\"w1\"}";
    assert_eventually!(
        Duration::from_secs(5),
        gauge("portico_proxy_store_updates_total") == Some(1) && gauge(w1) == Some(0),
        "the newer server's view was not applied: {}",
        page()
    );
    let clients: Vec<IpAddr> = (1..=20)
        .map(|i| format!("127.0.19.{}", 10 + i).parse().unwrap())
        .collect();
    assert!(clients.iter().all(|c| connect_from(*c, listen).1 == "w2"));

    // A view without `proxy_weight` for w1: read as "configured weight" it would undrain
    // w1. It is refused: logged, counted, and w1 stays drained.
    member(&mut line["state"], "w1").remove("proxy_weight");
    line["index"] = json!(11);
    newer.push(&line);
    assert_eventually!(
        Duration::from_secs(5),
        gauge("portico_proxy_store_undecodable_total") == Some(1),
        "the view missing a field was not counted: {}",
        page()
    );
    assert_eq!(gauge(w1), Some(0), "never an undrain");
    assert_eq!(gauge("portico_proxy_store_updates_total"), Some(1));
    assert!(clients.iter().all(|c| connect_from(*c, listen).1 == "w2"));
    assert!(
        proxy
            .log()
            .iter()
            .any(|l| l.contains("cannot read") && l.contains("proxy_weight")),
        "the refusal is in the proxy's log: {:?}",
        proxy.log()
    );
}

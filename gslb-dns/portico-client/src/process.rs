//! What every Portico binary does the same way: log (`tracing` to standard error, the
//! filter from `PORTICO_LOG`, e.g. `info` or `debug,raft=info`; JSON lines when
//! `PORTICO_LOG_FORMAT=json`), and stop on Ctrl-C or SIGTERM.

/// The environment variable holding the log filter.
pub const LOG_FILTER_VAR: &str = "PORTICO_LOG";
/// The environment variable choosing the log format (`json`, else plain text).
pub const LOG_FORMAT_VAR: &str = "PORTICO_LOG_FORMAT";

/// Starts logging with `default` as the filter when `PORTICO_LOG` is unset or invalid.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_FILTER_VAR)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = if std::env::var(LOG_FORMAT_VAR).as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// The longest a `/metrics` request head may be, and may take to arrive.
const METRICS_HEAD_LIMIT: usize = 4096;
const METRICS_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` with the page `render` makes (anything else: 404),
/// one short-lived connection per scrape, until the task is dropped. For binaries without
/// an HTTP API of their own (the site agent, the proxy).
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    render: impl Fn() -> String + Send + Sync + 'static,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let render = std::sync::Arc::new(render);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut head = vec![0u8; METRICS_HEAD_LIMIT];
            let mut len = 0;
            let complete = tokio::time::timeout(METRICS_READ_TIMEOUT, async {
                while len < head.len() && !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut head[len..]).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => len += n,
                    }
                }
                true
            })
            .await;
            if complete != Ok(true) {
                return;
            }
            let (status, body) = if head.starts_with(b"GET /metrics ") {
                ("200 OK", render())
            } else {
                ("404 Not Found", "only /metrics here\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ =
                tokio::time::timeout(METRICS_READ_TIMEOUT, stream.write_all(response.as_bytes()))
                    .await;
        });
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read configuration {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("invalid configuration {path}: {error}")]
    Invalid {
        path: String,
        error: topology::ConfigError,
    },
}

/// Reads and validates the configuration file at `path`, or the embedded default without
/// one. Nothing is bound; an error names the file, the key and the line.
pub fn read_config(path: Option<&std::path::Path>) -> Result<topology::Config, ConfigFileError> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let Some(path) = path else {
        return Ok(topology::Config::default_config(seconds));
    };
    let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
        path: path.display().to_string(),
        error,
    })?;
    topology::Config::from_toml(&text, seconds).map_err(|error| ConfigFileError::Invalid {
        path: path.display().to_string(),
        error,
    })
}

//! A tiny HTTP/1.1 client for `report-txn` and `diagnose`: one POST or GET to the local
//! intake over a plain TCP connection. The intake is on loopback and answers small JSON bodies, so this needs no HTTP
//! library.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time allowed for the whole exchange.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response accepted.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// Why a request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the address: the agent is not running.
    #[error("cannot connect to the agent at {addr}: {cause}")]
    Connect {
        /// The intake address.
        addr: SocketAddr,
        /// The IO error (in the message, not a separate source).
        cause: std::io::Error,
    },
    /// The exchange failed or timed out.
    #[error("request to the agent failed: {0}")]
    Io(#[from] std::io::Error),
    /// The response is not HTTP.
    #[error("malformed response from the agent: {0}")]
    Malformed(String),
}

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

/// POSTs a JSON body to `path` at `addr`.
pub async fn post_json(addr: SocketAddr, path: &str, body: &[u8]) -> Result<Response, ClientError> {
    tokio::time::timeout(TIMEOUT, request(addr, "POST", path, body))
        .await
        .map_err(|_| ClientError::Io(std::io::ErrorKind::TimedOut.into()))?
}

/// GETs `path` at `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, ClientError> {
    tokio::time::timeout(TIMEOUT, request(addr, "GET", path, b""))
        .await
        .map_err(|_| ClientError::Io(std::io::ErrorKind::TimedOut.into()))?
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Response, ClientError> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|cause| ClientError::Connect { addr, cause })?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .await?;
    parse_response(&raw)
}

/// Parses a complete HTTP/1.1 response. Pure.
pub fn parse_response(raw: &[u8]) -> Result<Response, ClientError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::Malformed("no end of headers".into()))?;
    let head = std::str::from_utf8(&raw[..end])
        .map_err(|_| ClientError::Malformed("headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ClientError::Malformed(format!("bad status line {status_line:?}")))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| ClientError::Malformed("truncated chunk".into()))?;
        let size_text = std::str::from_utf8(&rest[..eol])
            .map_err(|_| ClientError::Malformed("bad chunk size".into()))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ClientError::Malformed("bad chunk size".into()))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err(ClientError::Malformed("truncated chunk".into()));
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::Agent;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r =
            parse_response(b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 5\r\n\r\nhello")
                .expect("ok");
        assert_eq!((r.status, r.body.as_slice()), (422, b"hello".as_slice()));
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").expect("ok");
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"garbage").is_err());
    }

    #[tokio::test]
    async fn posts_to_a_served_intake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = Agent::open(crate::config::tests::test_config(dir.path())).expect("open");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server =
            tokio::spawn(axum::serve(listener, crate::router(Arc::clone(&agent))).into_future());
        let ok = post_json(addr, "/v1/txn", br#"{"scheme":"cup","code":"00"}"#)
            .await
            .expect("post");
        assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
        let bad = post_json(
            addr,
            "/v1/txn",
            br#"{"scheme":"cup","code":"00","pan":"1"}"#,
        )
        .await
        .expect("post");
        assert_eq!(bad.status, 422);
        server.abort();
        let _ = server.await;
        let dead = post_json(addr, "/v1/txn", b"{}").await;
        assert!(matches!(dead, Err(ClientError::Connect { .. })), "{dead:?}");
    }
}

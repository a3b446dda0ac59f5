//! The smallest HTTP/1.1 GET a probe needs: connect, send one request,
//! read the status line and hang up. Hand-written over tokio's TcpStream
//! (edgectl links no HTTP client, and a probe needs none of one: no TLS,
//! no redirects, no body). The caller bounds it in time; this bounds it in
//! bytes, so a task answering with an endless body or no newline costs
//! at most [`STATUS_LINE_BYTES_MAX`].

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes read looking for the end of the status line.
pub const STATUS_LINE_BYTES_MAX: usize = 1024;

/// GETs `path` from `address` and returns the response's status code.
/// Err says what went wrong, for the probe's failure text.
pub async fn get_status(address: SocketAddr, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: edgectl-probe\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("send: {error}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buffer = [0u8; 256];
    while !head.windows(2).any(|pair| pair == b"\r\n") && head.len() < STATUS_LINE_BYTES_MAX {
        let room = (STATUS_LINE_BYTES_MAX - head.len()).min(buffer.len());
        let read = stream
            .read(&mut buffer[..room])
            .await
            .map_err(|error| format!("receive: {error}"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    parse_status_line(&head)
}

/// The status code of a response that starts with `head`.
pub fn parse_status_line(head: &[u8]) -> Result<u16, String> {
    let Some(end) = head.windows(2).position(|pair| pair == b"\r\n") else {
        return Err(if head.is_empty() {
            "the connection closed with no response".to_string()
        } else {
            format!(
                "no HTTP status line in the first {} bytes of the response",
                head.len()
            )
        });
    };
    let line = String::from_utf8_lossy(&head[..end]);
    let mut words = line.split(' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("not an HTTP/1.x status line: {:.80}", line));
    }
    code.parse()
        .map_err(|_| format!("not an HTTP/1.x status line: {:.80}", line))
}

/// Kubernetes' rule: 200-399 passes.
pub fn status_passes(code: u16) -> bool {
    (200..400).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 404 Not Found\r\nA: b\r\n"),
            Ok(404)
        );
        // busybox httpd and others may leave the reason out.
        assert_eq!(parse_status_line(b"HTTP/1.1 503\r\n"), Ok(503));
        assert!(parse_status_line(b"").unwrap_err().contains("closed"));
        assert!(parse_status_line(b"HTTP/1.1 200 OK")
            .unwrap_err()
            .contains("no HTTP status line"));
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n")
            .unwrap_err()
            .contains("not an HTTP"));
        assert!(parse_status_line(b"HTTP/1.1 2000 OK\r\n").is_err());
    }

    #[test]
    fn two_and_three_hundreds_pass() {
        assert!(!status_passes(199));
        assert!(status_passes(200) && status_passes(302) && status_passes(399));
        assert!(!status_passes(400) && !status_passes(503));
    }

    #[tokio::test]
    async fn a_get_reads_only_the_status_line_of_an_endless_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 512];
            let read = stream.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..read]).to_string();
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\n")
                .await
                .unwrap();
            // An endless body: the client must stop reading on its own.
            let chunk = vec![b'x'; 64 * 1024];
            while stream.write_all(&chunk).await.is_ok() {}
            request
        });
        assert_eq!(get_status(address, "/ready").await, Ok(503));
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /ready HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains(&format!("Host: {address}\r\n")),
            "{request}"
        );
    }

    #[tokio::test]
    async fn an_answer_with_no_newline_stops_at_the_byte_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 512];
            let _ = stream.read(&mut request).await;
            let chunk = vec![b'x'; 64 * 1024];
            while stream.write_all(&chunk).await.is_ok() {}
        });
        let error = get_status(address, "/").await.unwrap_err();
        assert!(error.contains("first 1024 bytes"), "{error}");
    }
}

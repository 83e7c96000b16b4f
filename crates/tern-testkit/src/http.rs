//! HTTP/1.1 by hand on a kept-alive connection, as a client of a gateway or of a service
//! sees it: byte for byte, so that tests can also send what no library would.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::tern::text;

/// Read a response head up to and including its blank line, a byte at a time (so that nothing
/// of the body is taken); panics if the connection ends first.
pub fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("receive");
        assert_eq!(n, 1, "connection ended mid-response: {}", text(&head));
        head.push(byte[0]);
    }
    text(&head)
}

/// The status code of a response head (`HTTP/1.1 200 OK` → 200).
pub fn status(head: &str) -> u16 {
    head.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// The value of header `name` (any case) in a response head.
pub fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One request for `host` on `conn`, and its response: status, body, head. The response must
/// say its length.
pub fn request(
    conn: &mut TcpStream,
    host: &str,
    method: &str,
    path: &str,
) -> (u16, String, String) {
    conn.write_all(format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .expect("send");
    let head = read_head(conn);
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("body");
    (status(&head), text(&body), head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_in_any_case() {
        let head =
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(status(head), 503);
        assert_eq!(header(head, "content-length"), Some("12"));
        assert_eq!(header(head, "RETRY-AFTER"), Some("1"));
        assert_eq!(header(head, "host"), None);
    }
}

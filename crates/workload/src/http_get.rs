//! The `wget` and `get` applets: a plain-HTTP GET client for connectivity checks from inside a pod
//! (`kubectl exec pod -- get http://10.0.0.7:8080/`). It speaks HTTP/1.1 without keep-alive, decodes chunked
//! bodies, and does not do TLS, redirects or proxies. Host names are resolved with the C library.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Default time allowed for connecting, and then for each read.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `wget [-q] [-O FILE|-] [-T SECS] URL`. Unlike real wget it writes to stdout unless `-O FILE` is given.
pub fn wget(args: &[String], out: &mut dyn Write) -> i32 {
    let mut output: Option<String> = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut url = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-q" | "--quiet" => {}
            "-O" => output = args.next().cloned(),
            "-T" => match args.next().map(|s| crate::serve::parse_seconds(s, "-T")) {
                Some(Ok(t)) => timeout = t,
                _ => return usage_error("wget: -T needs a number of seconds"),
            },
            other if other.starts_with('-') && other.len() > 1 => {
                return usage_error(&format!("wget: unknown option {other}"))
            }
            other => url = Some(other.to_string()),
        }
    }
    let Some(url) = url else {
        return usage_error("usage: wget [-q] [-O FILE|-] [-T SECS] URL");
    };
    let body = match fetch_ok(&url, timeout) {
        Ok(body) => body,
        Err(message) => {
            eprintln!("wget: {message}");
            return 1;
        }
    };
    let written = match output.as_deref() {
        None | Some("-") => out.write_all(&body).and_then(|_| out.flush()),
        Some(path) => std::fs::write(path, &body),
    };
    match written {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("wget: cannot write output: {err}");
            1
        }
    }
}

/// `get URL`: prints the body; exits 1 when the request fails or the status is not 2xx (the body of an error
/// answer is still printed, which helps when debugging).
pub fn get(args: &[String], out: &mut dyn Write) -> i32 {
    let [url] = args else {
        return usage_error("usage: get URL");
    };
    match fetch(url, DEFAULT_TIMEOUT) {
        Ok((status, body)) => {
            let _ = out.write_all(&body).and_then(|_| out.flush());
            if (200..300).contains(&status) {
                0
            } else {
                eprintln!("get: server answered {status}");
                1
            }
        }
        Err(message) => {
            eprintln!("get: {message}");
            1
        }
    }
}

fn usage_error(message: &str) -> i32 {
    eprintln!("{message}");
    2
}

/// Fetches `url` and insists on a 2xx status.
fn fetch_ok(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let (status, body) = fetch(url, timeout)?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(format!("server returned error: HTTP {status}"))
    }
}

/// Performs one GET and returns the status code and the (de-chunked) body.
pub fn fetch(url: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let target = Url::parse(url)?;
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {}: {err}", target.host))?;
    let mut last_error = format!("no address for {}", target.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(err) => last_error = format!("cannot connect to {addr}: {err}"),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let io_error = |err: io::Error| format!("request to {url} failed: {err}");
    stream.set_read_timeout(Some(timeout)).map_err(io_error)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: berth-workload\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.host_header
    );
    stream.write_all(request.as_bytes()).map_err(io_error)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(io_error)?;
    parse_response(&response)
}

/// The parts of an `http://` URL that a GET needs.
#[derive(Debug, PartialEq)]
struct Url {
    host: String,
    port: u16,
    /// `host` or `host:port`, as the Host header wants it.
    host_header: String,
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // An IPv6 literal is bracketed: [fd00::1]:8080.
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("bad IPv6 address in {url}"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(port) => port.parse().map_err(|_| format!("bad port in {url}"))?,
            None => 80,
        };
        if host.is_empty() {
            return Err(format!("no host in {url}"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            host_header: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// Splits a raw HTTP/1.x response into status and body.
fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the server closed before sending a response")?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let body = &response[head_end + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or("malformed status line")?;
    let chunked = lines.any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok((status, body))
}

/// Decodes a `Transfer-Encoding: chunked` body: hex size line, data, CRLF, until a zero size.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut decoded = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(decoded);
        }
        let chunk = body.get(..size).ok_or("truncated chunk")?;
        decoded.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    //! Checks URL parsing and response decoding; a real round trip is tested in serve.rs.
    use super::*;

    #[test]
    fn urls_parse_with_defaults_ports_and_ipv6() {
        let url = Url::parse("http://10.0.0.7:8080/healthz?x=1").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("10.0.0.7", 8080, "/healthz?x=1")
        );
        let url = Url::parse("http://web.default.svc").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("web.default.svc", 80, "/")
        );
        let url = Url::parse("http://[fd00::1]:81/").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.host_header.as_str()),
            ("fd00::1", 81, "[fd00::1]:81")
        );
        assert!(Url::parse("https://x/").is_err());
        assert!(Url::parse("http://x:y/").is_err());
    }

    #[test]
    fn responses_decode_plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nno\n";
        assert_eq!(parse_response(plain).unwrap(), (503, b"no\n".to_vec()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, b"abcde".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}

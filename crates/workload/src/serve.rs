//! The `serve` applet: a small HTTP/1.1 server whose behaviour tests can script — health that can be told to
//! fail, readiness that can be toggled, exiting with a chosen code, CPU burn — plus optional TCP/UDP echo
//! servers. It answers one request per connection (`Connection: close`) and does not implement keep-alive,
//! chunked request bodies or TLS.
//!
//! Kubernetes' probes are what it is built for: an httpGet liveness probe on `/healthz` restarts the container
//! once `/control/fail-health` (or `--fail-health-after`) makes it answer 500, and a readiness probe on `/readyz`
//! takes the pod out of its Service's endpoints while it answers 503, without restarting it. With `--grpc-port` it
//! also serves the gRPC health protocol for `grpc` probes (src/grpc.rs), switched the same way.
//!
//! Memory limits are the other thing it demonstrates: `--alloc-mb` and `/alloc?mb=N` allocate memory and touch
//! every page, so the kernel charges it to the container; past `resources.limits.memory` the OOM killer ends
//! the container and Kubernetes reports `OOMKilled` with exit code 137.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::{grpc, signals};

/// Longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Upper bound for `/burn?ms=N`, so one request cannot pin a CPU forever.
const MAX_BURN: Duration = Duration::from_secs(60);
/// `--alloc-mb` and `/alloc` allocate in blocks of this size.
const MIB: usize = 1 << 20;

/// Runs the server until the process is told to exit. Returns an exit code only on a usage or startup error.
pub fn main(args: &[String]) -> i32 {
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("serve: {message}");
            eprintln!("usage: serve [--port N] [--exit-after SECS] [--exit-code N] [--fail-health-after SECS]");
            eprintln!("             [--ready-after SECS] [--log-every MILLIS] [--tcp-echo PORT] [--udp-echo PORT]");
            eprintln!("             [--burn-cpu] [--term-delay SECS] [--alloc-mb N] [--grpc-port N]");
            eprintln!("             [--grpc-not-serving-after SECS]");
            return 2;
        }
    };
    signals::exit_gracefully_after(options.term_delay);

    let state = Arc::new(State::new(pod_name()));
    state.ready.store(options.ready_after.is_none(), Ordering::SeqCst);
    if let Some(mb) = options.alloc_mb {
        // Before listening, so that a pod that answers (and is Ready) already holds its memory.
        println!("allocating {mb} MiB");
        println!("holding {} MiB", state.hold_memory(mb));
    }

    let listener = match TcpListener::bind(("0.0.0.0", options.port)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("serve: cannot listen on :{}: {err}", options.port);
            return 1;
        }
    };
    println!("serving on :{} as {}", options.port, state.name);

    start_background_tasks(&options, &state);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    if let Err(err) = handle_connection(stream, &state) {
                        eprintln!("serve: connection error: {err}");
                    }
                });
            }
            Err(err) => eprintln!("serve: accept failed: {err}"),
        }
    }
    0
}

/// `serve`'s command-line flags, parsed.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    port: u16,
    exit_after: Option<Duration>,
    exit_code: Option<i32>,
    fail_health_after: Option<Duration>,
    ready_after: Option<Duration>,
    log_every: Option<Duration>,
    tcp_echo: Option<u16>,
    udp_echo: Option<u16>,
    burn_cpu: bool,
    term_delay: Duration,
    alloc_mb: Option<u64>,
    grpc_port: Option<u16>,
    grpc_not_serving_after: Option<Duration>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let default_port = match std::env::var("PORT") {
            Ok(port) => parse_number(&port, "$PORT")?,
            Err(_) => 8080,
        };
        let mut options = Options {
            port: default_port,
            exit_after: None,
            exit_code: None,
            fail_health_after: None,
            ready_after: None,
            log_every: None,
            tcp_echo: None,
            udp_echo: None,
            burn_cpu: false,
            term_delay: Duration::ZERO,
            alloc_mb: None,
            grpc_port: None,
            grpc_not_serving_after: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            // Accept both `--flag VALUE` and `--flag=VALUE`.
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            if flag == "--burn-cpu" {
                options.burn_cpu = true;
                continue;
            }
            let value = match inline_value.or_else(|| args.next().cloned()) {
                Some(value) => value,
                None => return Err(format!("{flag} needs a value")),
            };
            match flag {
                "--port" => options.port = parse_number(&value, flag)?,
                "--exit-after" => options.exit_after = Some(parse_seconds(&value, flag)?),
                "--exit-code" => options.exit_code = Some(parse_number(&value, flag)?),
                "--fail-health-after" => options.fail_health_after = Some(parse_seconds(&value, flag)?),
                "--ready-after" => options.ready_after = Some(parse_seconds(&value, flag)?),
                "--log-every" => options.log_every = Some(Duration::from_millis(parse_number(&value, flag)?)),
                "--tcp-echo" => options.tcp_echo = Some(parse_number(&value, flag)?),
                "--udp-echo" => options.udp_echo = Some(parse_number(&value, flag)?),
                "--term-delay" => options.term_delay = parse_seconds(&value, flag)?,
                "--alloc-mb" => options.alloc_mb = Some(parse_number(&value, flag)?),
                "--grpc-port" => options.grpc_port = Some(parse_number(&value, flag)?),
                "--grpc-not-serving-after" => options.grpc_not_serving_after = Some(parse_seconds(&value, flag)?),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        Ok(options)
    }
}

fn parse_number<T: std::str::FromStr>(value: &str, what: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{what}: not a valid number: {value:?}"))
}

/// Parses seconds, fractions allowed (`0.5`).
pub fn parse_seconds(value: &str, what: &str) -> Result<Duration, String> {
    let seconds: f64 = parse_number(value, what)?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{what}: not a valid duration: {value:?}"))
}

/// What the HTTP and gRPC handlers share: the name to greet with, the switches tests flip and the memory held.
struct State {
    name: String,
    healthy: AtomicBool,
    ready: AtomicBool,
    /// What the gRPC health service answers: `SERVING` when true, `NOT_SERVING` when false.
    grpc_serving: AtomicBool,
    /// Memory allocated by `--alloc-mb` and `/alloc`, one MiB per block, kept until the process exits.
    held: Mutex<Vec<Vec<u8>>>,
}

impl State {
    fn new(name: String) -> State {
        State {
            name,
            healthy: AtomicBool::new(true),
            ready: AtomicBool::new(true),
            grpc_serving: AtomicBool::new(true),
            held: Mutex::new(Vec::new()),
        }
    }

    /// Allocates `mb` more MiB and keeps them; returns how many MiB are held in all. Every byte is written: memory
    /// that is only reserved is not backed by pages and would not count against the container's memory limit.
    fn hold_memory(&self, mb: u64) -> u64 {
        // A poisoned lock only means another allocation panicked; the blocks it holds are still valid.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..mb {
            held.push(vec![0xa5; MIB]);
        }
        held.len() as u64
    }
}

/// The pod's name: `$POD_NAME` (set it with the downward API), else the host name, which berth and Kubernetes
/// set to the pod name.
fn pod_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(crate::applets::hostname)
}

/// Starts the threads behind the timing flags, the echo servers and the CPU burner.
fn start_background_tasks(options: &Options, state: &Arc<State>) {
    if options.exit_after.is_some() || options.exit_code.is_some() {
        let delay = options.exit_after.unwrap_or(Duration::ZERO);
        let code = options.exit_code.unwrap_or(0);
        thread::spawn(move || {
            thread::sleep(delay);
            println!("exiting with code {code}");
            let _ = io::stdout().flush();
            std::process::exit(code);
        });
    }
    if let Some(delay) = options.fail_health_after {
        let state = Arc::clone(state);
        thread::spawn(move || {
            thread::sleep(delay);
            state.healthy.store(false, Ordering::SeqCst);
            println!("health check now failing");
        });
    }
    if let Some(delay) = options.ready_after {
        let state = Arc::clone(state);
        thread::spawn(move || {
            thread::sleep(delay);
            state.ready.store(true, Ordering::SeqCst);
            println!("now ready");
        });
    }
    if let Some(period) = options.log_every {
        thread::spawn(move || {
            for tick in 1u64.. {
                println!("tick {tick}");
                thread::sleep(period);
            }
        });
    }
    if let Some(port) = options.grpc_port {
        let state = Arc::clone(state);
        spawn_named("grpc", move || grpc_listen(port, state));
    }
    if let Some(delay) = options.grpc_not_serving_after {
        let state = Arc::clone(state);
        thread::spawn(move || {
            thread::sleep(delay);
            state.grpc_serving.store(false, Ordering::SeqCst);
            println!("grpc health now NOT_SERVING");
        });
    }
    if let Some(port) = options.tcp_echo {
        spawn_named("tcp echo", move || tcp_echo(port));
    }
    if let Some(port) = options.udp_echo {
        spawn_named("udp echo", move || udp_echo(port));
    }
    if options.burn_cpu {
        thread::spawn(|| {
            println!("burning one CPU");
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
    }
}

/// Runs `task` on its own thread and reports its error, if it ends with one.
fn spawn_named(what: &'static str, task: impl FnOnce() -> io::Result<()> + Send + 'static) {
    thread::spawn(move || {
        if let Err(err) = task() {
            eprintln!("serve: {what}: {err}");
        }
    });
}

fn tcp_echo(port: u16) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("tcp echo on :{port}");
    for stream in listener.incoming() {
        let mut stream = stream?;
        thread::spawn(move || {
            if let Ok(mut reader) = stream.try_clone() {
                let _ = io::copy(&mut reader, &mut stream);
            }
        });
    }
    Ok(())
}

/// Serves the gRPC health protocol on `port`, one thread per connection (see src/grpc.rs).
fn grpc_listen(port: u16, state: Arc<State>) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("grpc health on :{port}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    if let Err(err) = grpc::handle_connection(stream, &state.grpc_serving) {
                        eprintln!("serve: grpc connection error: {err}");
                    }
                });
            }
            Err(err) => eprintln!("serve: grpc accept failed: {err}"),
        }
    }
    Ok(())
}

fn udp_echo(port: u16) -> io::Result<()> {
    let socket = UdpSocket::bind(("0.0.0.0", port))?;
    println!("udp echo on :{port}");
    let mut buf = vec![0u8; 65536];
    loop {
        let (len, peer) = socket.recv_from(&mut buf)?;
        socket.send_to(&buf[..len], peer)?;
    }
}

/// One HTTP response, plus what the server must do once it has been sent.
#[derive(Debug, PartialEq)]
struct Response {
    status: u16,
    body: String,
    /// `/control/exit`: exit the process with this code after answering.
    exit_code: Option<i32>,
}

impl Response {
    fn new(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            body: body.into(),
            exit_code: None,
        }
    }
}

/// Maps a request to its response. All state changes go through here, which keeps it testable without sockets.
fn route(state: &State, method: &str, target: &str) -> Response {
    if !matches!(method, "GET" | "HEAD" | "POST") {
        return Response::new(405, "method not allowed\n");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    };
    match path {
        "/" => Response::new(200, format!("Hello from {}\n", state.name)),
        "/healthz" if state.healthy.load(Ordering::SeqCst) => Response::new(200, "ok\n"),
        "/healthz" => Response::new(500, "unhealthy\n"),
        "/readyz" if state.ready.load(Ordering::SeqCst) => Response::new(200, "ready\n"),
        "/readyz" => Response::new(503, "not ready\n"),
        "/control/fail-health" => switch(&state.healthy, false, "health check now failing\n"),
        "/control/healthy" => switch(&state.healthy, true, "health check now passing\n"),
        "/control/unready" => switch(&state.ready, false, "now unready\n"),
        "/control/ready" => switch(&state.ready, true, "now ready\n"),
        "/control/grpc-not-serving" => switch(&state.grpc_serving, false, "grpc health now NOT_SERVING\n"),
        "/control/grpc-serving" => switch(&state.grpc_serving, true, "grpc health now SERVING\n"),
        "/control/exit" => match param("code").map(str::parse::<i32>) {
            None => Response {
                exit_code: Some(0),
                ..Response::new(200, "exiting with code 0\n")
            },
            Some(Ok(code)) => Response {
                exit_code: Some(code),
                ..Response::new(200, format!("exiting with code {code}\n"))
            },
            Some(Err(_)) => Response::new(400, "code must be an integer\n"),
        },
        "/env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}\n")).collect();
            vars.sort();
            Response::new(200, vars.concat())
        }
        "/burn" => match param("ms").map(str::parse::<u64>) {
            Some(Ok(ms)) => {
                let wanted = Duration::from_millis(ms).min(MAX_BURN);
                burn(wanted);
                Response::new(200, format!("burned {} ms of CPU\n", wanted.as_millis()))
            }
            _ => Response::new(400, "usage: /burn?ms=N\n"),
        },
        "/alloc" => match param("mb").map(str::parse::<u64>) {
            Some(Ok(mb)) => Response::new(200, format!("holding {} MiB\n", state.hold_memory(mb))),
            _ => Response::new(400, "usage: /alloc?mb=N\n"),
        },
        _ => Response::new(404, "not found\n"),
    }
}

fn switch(flag: &AtomicBool, value: bool, message: &str) -> Response {
    flag.store(value, Ordering::SeqCst);
    print!("{message}");
    Response::new(200, message)
}

/// Keeps the calling thread busy for `duration`.
fn burn(duration: Duration) {
    let start = Instant::now();
    let mut x: u64 = 1;
    while start.elapsed() < duration {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

fn handle_connection(mut stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let head = read_head(&mut stream)?;
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let response = match (parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version)) if version.starts_with("HTTP/1.") => {
            let response = route(state, method, target);
            println!("{peer} \"{method} {target}\" {}", response.status);
            write_response(&mut stream, &response, method == "HEAD")?;
            response
        }
        _ => {
            let response = Response::new(400, "bad request\n");
            write_response(&mut stream, &response, false)?;
            response
        }
    };
    // Closing a socket that still holds unread request bytes (a POST body) makes the kernel send a reset, which
    // can destroy the response before the client reads it. Half-close, then drain briefly.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = io::copy(&mut stream.take(1 << 20), &mut io::sink());
    if let Some(code) = response.exit_code {
        println!("exiting with code {code}");
        let _ = io::stdout().flush();
        std::process::exit(code);
    }
    Ok(())
}

/// Reads up to the blank line that ends the request head and returns the head as text.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn write_response(stream: &mut TcpStream, response: &Response, head_only: bool) -> io::Result<()> {
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut message = format!(
        concat!(
            "HTTP/1.1 {status} {reason}\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Length: {length}\r\n",
            "Connection: close\r\n\r\n",
        ),
        status = response.status,
        reason = reason,
        length = response.body.len()
    );
    if !head_only {
        message.push_str(&response.body);
    }
    stream.write_all(message.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    //! Checks flag parsing, the routing table and one real request over a socket.
    use super::*;

    fn state() -> State {
        State::new("test-pod".to_string())
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn root_greets_with_the_pod_name() {
        assert_eq!(route(&state(), "GET", "/"), Response::new(200, "Hello from test-pod\n"));
    }

    #[test]
    fn health_fails_after_control_call_and_recovers() {
        let state = state();
        assert_eq!(route(&state, "GET", "/healthz").status, 200);
        assert_eq!(route(&state, "POST", "/control/fail-health").status, 200);
        assert_eq!(route(&state, "GET", "/healthz").status, 500);
        route(&state, "GET", "/control/healthy");
        assert_eq!(route(&state, "GET", "/healthz"), Response::new(200, "ok\n"));
    }

    #[test]
    fn readiness_toggles_without_touching_health() {
        let state = state();
        route(&state, "GET", "/control/unready");
        assert_eq!(route(&state, "GET", "/readyz").status, 503);
        assert_eq!(route(&state, "GET", "/healthz").status, 200);
        route(&state, "GET", "/control/ready");
        assert_eq!(route(&state, "GET", "/readyz").status, 200);
    }

    #[test]
    fn grpc_health_switches_without_touching_http_health() {
        let state = state();
        assert!(state.grpc_serving.load(Ordering::SeqCst));
        assert_eq!(route(&state, "POST", "/control/grpc-not-serving").status, 200);
        assert!(!state.grpc_serving.load(Ordering::SeqCst));
        assert_eq!(route(&state, "GET", "/healthz").status, 200);
        assert_eq!(route(&state, "GET", "/readyz").status, 200);
        route(&state, "GET", "/control/grpc-serving");
        assert!(state.grpc_serving.load(Ordering::SeqCst));
    }

    #[test]
    fn alloc_holds_memory_and_adds_up() {
        let state = state();
        assert_eq!(
            route(&state, "GET", "/alloc?mb=2"),
            Response::new(200, "holding 2 MiB\n")
        );
        assert_eq!(
            route(&state, "GET", "/alloc?mb=1"),
            Response::new(200, "holding 3 MiB\n")
        );
        let held = state.held.lock().unwrap();
        assert!(held
            .iter()
            .all(|block| block.len() == MIB && block.iter().all(|&b| b == 0xa5)));
        drop(held);
        assert_eq!(route(&state, "GET", "/alloc").status, 400);
        assert_eq!(route(&state, "GET", "/alloc?mb=-1").status, 400);
    }

    #[test]
    fn control_exit_answers_then_asks_for_the_code() {
        assert_eq!(route(&state(), "GET", "/control/exit?code=3").exit_code, Some(3));
        assert_eq!(route(&state(), "GET", "/control/exit").exit_code, Some(0));
        assert_eq!(
            route(&state(), "GET", "/control/exit?code=x"),
            Response::new(400, "code must be an integer\n")
        );
    }

    #[test]
    fn burn_env_unknown_paths_and_methods() {
        assert_eq!(route(&state(), "GET", "/burn?ms=1").status, 200);
        assert_eq!(route(&state(), "GET", "/burn").status, 400);
        assert_eq!(route(&state(), "GET", "/env").status, 200);
        assert_eq!(route(&state(), "GET", "/nope").status, 404);
        assert_eq!(route(&state(), "DELETE", "/").status, 405);
    }

    #[test]
    fn flags_parse_in_both_spellings() {
        let options = Options::parse(&args(&[
            "--port=9000",
            "--exit-after",
            "1.5",
            "--exit-code",
            "3",
            "--burn-cpu",
            "--log-every",
            "100",
            "--term-delay=2",
            "--alloc-mb",
            "64",
            "--grpc-port=9090",
            "--grpc-not-serving-after",
            "0.5",
        ]))
        .unwrap();
        assert_eq!(options.port, 9000);
        assert_eq!(options.exit_after, Some(Duration::from_millis(1500)));
        assert_eq!(options.exit_code, Some(3));
        assert!(options.burn_cpu);
        assert_eq!(options.log_every, Some(Duration::from_millis(100)));
        assert_eq!(options.term_delay, Duration::from_secs(2));
        assert_eq!(options.alloc_mb, Some(64));
        assert_eq!(options.grpc_port, Some(9090));
        assert_eq!(options.grpc_not_serving_after, Some(Duration::from_millis(500)));
    }

    #[test]
    fn bad_flags_are_rejected() {
        assert!(Options::parse(&args(&["--port"])).is_err());
        assert!(Options::parse(&args(&["--port", "x"])).is_err());
        assert!(Options::parse(&args(&["--exit-after", "-1"])).is_err());
        assert!(Options::parse(&args(&["--frobnicate", "1"])).is_err());
    }

    #[test]
    fn a_real_request_gets_a_closed_http_response() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            handle_connection(stream, &state()).unwrap();
        });
        let url = format!("http://127.0.0.1:{port}/");
        let (status, body) = crate::http_get::fetch(&url, Duration::from_secs(5)).unwrap();
        assert_eq!((status, body), (200, b"Hello from test-pod\n".to_vec()));
    }
}

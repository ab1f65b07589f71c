//! berth-workload: the one program inside berth's built-in container image (`localhost/berth/workload:0.1.0`).
//! It is the demo web app that tests and the quick start run in pods, the pod infra ("pause") process that holds
//! each pod's network namespace, and — because the image contains nothing else — the tiny shell and coreutils
//! that exec probes and `kubectl exec` need. It does not try to be a full shell or a full busybox: every applet
//! implements just the common forms listed below.
//!
//! It is a multi-call binary like busybox: when started through a symlink named after an applet (`/bin/sh`,
//! `/bin/cat`, ...) it runs that applet; otherwise the first argument names it (`/workload serve --port 9000`,
//! `/workload pause`, `/workload /bin/cat FILE`), and with no arguments (or only `--flags`) it runs `serve`.
//!
//! | applet                      | what it does                                                                  |
//! |-----------------------------|-------------------------------------------------------------------------------|
//! | `serve [FLAGS]`             | HTTP demo server (see below); the image's default command                      |
//! | `pause`                     | sleeps until SIGTERM/SIGINT, then exits 0: the pod infra container              |
//! | `sh [-i] [-c SCRIPT]`       | minimal shell: `;` `&&` `\|\|` `>` `>>`, quotes, `$VAR`; stdin when no `-c`      |
//! | `cat [FILE...]`             | prints files; copies stdin with no arguments or `-`                            |
//! | `echo [-n] ARGS`            | prints its arguments                                                           |
//! | `ls [-a] [PATH...]`         | lists directories, one name per line                                           |
//! | `sleep SECS`                | sleeps (fractions and `infinity` accepted)                                     |
//! | `touch FILE...`             | creates files or updates their modification time                              |
//! | `rm [-f] [-r] PATH...`      | removes files (directories with `-r`)                                          |
//! | `mkdir [-p] DIR...`         | creates directories                                                            |
//! | `ln [-s] [-f] TARGET LINK`  | creates a hard link, or a symbolic link with `-s`                              |
//! | `env`                       | prints the environment                                                         |
//! | `true`, `false`, `exit N`   | exit 0, 1, N                                                                   |
//! | `hostname`                  | prints the host name (the pod name in a pod)                                   |
//! | `wget [-q] [-O FILE] [-T SECS] URL` | plain-HTTP GET; writes the body to stdout (or FILE); exit 1 on failure |
//! | `get URL`                   | shorthand for `wget -q -O - URL`                                               |
//!
//! `serve` flags (durations are seconds, fractions allowed):
//!
//! | flag                         | effect                                                                    |
//! |------------------------------|---------------------------------------------------------------------------|
//! | `--port N`                   | HTTP port; default `$PORT`, else 8080                                     |
//! | `--exit-after SECS`          | exit after SECS (with `--exit-code`, default 0)                           |
//! | `--exit-code N`              | exit code for `--exit-after`; alone, exit with N at once                  |
//! | `--fail-health-after SECS`   | `/healthz` starts answering 500 after SECS                                |
//! | `--ready-after SECS`         | `/readyz` answers 503 until SECS have passed                              |
//! | `--log-every MILLIS`         | prints `tick 1`, `tick 2`, ... every MILLIS                               |
//! | `--tcp-echo PORT`            | also runs a TCP echo server on PORT                                       |
//! | `--udp-echo PORT`            | also runs a UDP echo server on PORT                                       |
//! | `--burn-cpu`                 | also keeps one CPU busy                                                   |
//! | `--term-delay SECS`          | on SIGTERM, wait SECS before exiting 0 (a slow graceful shutdown)         |
//! | `--alloc-mb N`               | allocate and touch N MiB before serving, and hold it (memory limits, OOM) |
//! | `--grpc-port N`              | also serve gRPC `grpc.health.v1.Health/Check` (h2c) on port N             |
//! | `--grpc-not-serving-after SECS` | the gRPC health check answers `NOT_SERVING` after SECS               |
//!
//! HTTP endpoints: `GET /` → `Hello from <POD_NAME or hostname>`; `/healthz` (200 `ok`, or 500 once told to
//! fail); `/readyz` (200, or 503 while unready); `/control/fail-health`, `/control/healthy`, `/control/unready`,
//! `/control/ready`, `/control/exit?code=N`; `/control/grpc-not-serving`, `/control/grpc-serving` switch the
//! gRPC health answer; `/env` prints the environment; `/burn?ms=N` burns CPU for N ms; `/alloc?mb=N` allocates
//! and holds N MiB more.
//!
//! This file is compiled twice: by cargo as an ordinary crate (for its unit tests) and by crates/image's build
//! script with bare rustc, statically linked, to embed it in the image. So it uses std only.

mod applets;
mod grpc;
mod http_get;
mod serve;
mod shell;
mod signals;

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let (applet, rest) = choose_applet(&args);

    // A container's PID 1 has no default action for SIGTERM: without a handler `docker stop` (and so pod
    // deletion) would wait out the whole grace period and then SIGKILL. Every applet installs the handler.
    signals::install();

    let mut stdout = std::io::stdout();
    let code = applets::run(applet, rest, &mut stdout);
    // process::exit skips destructors; make sure a last line without a newline is not lost.
    let _ = stdout.flush();
    std::process::exit(code);
}

/// Picks the applet to run and its arguments from the command line, busybox style: the program's own name
/// when it is an applet (a `/bin/sh` symlink), else the first argument, else `serve`.
fn choose_applet<'a>(args: &'a [String]) -> (&'a str, &'a [String]) {
    let basename = |path: &'a str| path.rsplit('/').next().unwrap_or(path);
    let invoked_as = args.first().map(|a| basename(a)).unwrap_or("");
    if applets::is_applet(invoked_as) {
        return (invoked_as, args.get(1..).unwrap_or(&[]));
    }
    match args.get(1) {
        // `/workload --port 9000` means `serve --port 9000`.
        Some(first) if first.starts_with('-') => ("serve", &args[1..]),
        // An image's Cmd or a pod's `args` may name the applet by path, `/bin/cat`: the entrypoint still runs.
        Some(first) if applets::is_applet(basename(first)) => (basename(first), &args[2..]),
        Some(first) => (first, &args[2..]),
        None => ("serve", &[]),
    }
}

#[cfg(test)]
mod tests {
    //! Checks how the applet is chosen from argv[0] and argv[1].
    use super::choose_applet;

    fn check(argv: &[&str], applet: &str, rest: &[&str]) {
        let args: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let (got, got_rest) = choose_applet(&args);
        assert_eq!(
            (got, got_rest),
            (applet, &rest.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..])
        );
    }

    #[test]
    fn applet_comes_from_symlink_name_then_first_argument_then_defaults_to_serve() {
        check(&["/bin/sh", "-c", "true"], "sh", &["-c", "true"]);
        check(&["cat", "/tmp/healthy"], "cat", &["/tmp/healthy"]);
        check(&["/workload", "pause"], "pause", &[]);
        check(&["/workload", "serve", "--port", "9000"], "serve", &["--port", "9000"]);
        check(&["/workload"], "serve", &[]);
        check(&["/workload", "--port", "9000"], "serve", &["--port", "9000"]);
        check(&["/workload", "nonsense"], "nonsense", &[]);
        check(&["/workload", "/bin/cat", "/etc/hostname"], "cat", &["/etc/hostname"]);
    }
}

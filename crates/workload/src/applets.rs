//! The applet table and the small coreutils: what each name runs, and the file and process utilities that exec
//! probes and `kubectl exec` sessions need in an image that contains nothing else. Each applet implements only
//! the common options documented in main.rs; none of them is a faithful copy of GNU or busybox.
//!
//! Applets write their normal output to the `out` they are given (so the shell can redirect it with `>`) and
//! report errors on stderr as `name: message`, returning the exit status.

use std::fs;
use std::io::{self, Write};
use std::thread;
use std::time::{Duration, SystemTime};

/// Every applet name. The image links `/bin/<name>` to the workload for most of them.
pub const NAMES: &[&str] = &[
    "serve", "pause", "sh", "cat", "echo", "ls", "sleep", "touch", "rm", "mkdir", "ln", "env", "true", "false", "exit",
    "hostname", "wget", "get",
];

/// The exit status shells use for "command not found".
pub const NOT_FOUND: i32 = 127;

/// Whether `name` is an applet.
pub fn is_applet(name: &str) -> bool {
    NAMES.contains(&name)
}

/// Runs applet `name` with `args` (not including the name) and returns its exit status.
pub fn run(name: &str, args: &[String], out: &mut dyn Write) -> i32 {
    let result = match name {
        "serve" => return crate::serve::main(args),
        "pause" => return pause(),
        "sh" => return crate::shell::main(args, out),
        "wget" => return crate::http_get::wget(args, out),
        "get" => return crate::http_get::get(args, out),
        "exit" => return exit_status(args),
        "true" => Ok(0),
        "false" => Ok(1),
        "cat" => cat(args, out),
        "echo" => echo(args, out),
        "ls" => ls(args, out),
        "sleep" => sleep(args),
        "touch" => touch(args),
        "rm" => rm(args),
        "mkdir" => mkdir(args),
        "ln" => ln(args),
        "env" => env(out),
        "hostname" => writeln!(out, "{}", hostname()).map(|_| 0),
        _ => {
            eprintln!("{name}: not an applet; the applets are: {}", NAMES.join(" "));
            return NOT_FOUND;
        }
    };
    let flushed = result.and_then(|code| out.flush().map(|_| code));
    flushed.unwrap_or_else(|err| {
        eprintln!("{name}: {err}");
        1
    })
}

/// The host name: /etc/hostname (which the container runtime writes), else `$HOSTNAME`.
pub fn hostname() -> String {
    fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Parses `exit`'s optional status argument (default 0).
pub fn exit_status(args: &[String]) -> i32 {
    match args.first().map(|a| a.parse::<i32>()) {
        None => 0,
        Some(Ok(code)) => code,
        Some(Err(_)) => {
            eprintln!("exit: {}: numeric argument required", args[0]);
            2
        }
    }
}

/// The pod infra container: it only has to exist, holding the pod's namespaces, until it is stopped.
fn pause() -> i32 {
    crate::signals::exit_gracefully_after(Duration::ZERO);
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// Splits leading single-letter flags (`-rf`) from the operands. Stops at `--` or the first operand.
fn split_flags(args: &[String]) -> (String, &[String]) {
    let mut flags = String::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            return (flags, &args[i + 1..]);
        }
        match arg.strip_prefix('-') {
            Some(letters) if !letters.is_empty() => flags.push_str(letters),
            _ => return (flags, &args[i..]),
        }
    }
    (flags, &[])
}

fn cat(args: &[String], out: &mut dyn Write) -> io::Result<i32> {
    if args.is_empty() {
        io::copy(&mut io::stdin().lock(), out)?;
        return Ok(0);
    }
    let mut status = 0;
    for path in args {
        if path == "-" {
            io::copy(&mut io::stdin().lock(), out)?;
            continue;
        }
        match fs::read(path) {
            Ok(bytes) => out.write_all(&bytes)?,
            Err(err) => {
                eprintln!("cat: {path}: {err}");
                status = 1;
            }
        }
    }
    Ok(status)
}

fn echo(args: &[String], out: &mut dyn Write) -> io::Result<i32> {
    let (newline, words) = match args.first() {
        Some(first) if first == "-n" => (false, &args[1..]),
        _ => (true, args),
    };
    out.write_all(words.join(" ").as_bytes())?;
    if newline {
        out.write_all(b"\n")?;
    }
    Ok(0)
}

fn ls(args: &[String], out: &mut dyn Write) -> io::Result<i32> {
    let (flags, paths) = split_flags(args);
    let show_hidden = flags.contains('a');
    let current = [".".to_string()];
    let paths = if paths.is_empty() { &current[..] } else { paths };
    let mut status = 0;
    for (i, path) in paths.iter().enumerate() {
        let metadata = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(err) => {
                eprintln!("ls: {path}: {err}");
                status = 1;
                continue;
            }
        };
        if !metadata.is_dir() {
            writeln!(out, "{path}")?;
            continue;
        }
        if paths.len() > 1 {
            writeln!(out, "{}{path}:", if i > 0 { "\n" } else { "" })?;
        }
        let mut names: Vec<String> = fs::read_dir(path)?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| show_hidden || !name.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            writeln!(out, "{name}")?;
        }
    }
    Ok(status)
}

fn sleep(args: &[String]) -> io::Result<i32> {
    let Some(arg) = args.first() else {
        eprintln!("usage: sleep SECS");
        return Ok(2);
    };
    if arg == "infinity" || arg == "inf" {
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    match crate::serve::parse_seconds(arg.trim_end_matches('s'), "sleep") {
        Ok(duration) => {
            thread::sleep(duration);
            Ok(0)
        }
        Err(message) => {
            eprintln!("{message}");
            Ok(1)
        }
    }
}

fn touch(args: &[String]) -> io::Result<i32> {
    let mut status = 0;
    for path in args {
        let touched = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|file| file.set_modified(SystemTime::now()));
        if let Err(err) = touched {
            eprintln!("touch: {path}: {err}");
            status = 1;
        }
    }
    Ok(status)
}

fn rm(args: &[String]) -> io::Result<i32> {
    let (flags, paths) = split_flags(args);
    let force = flags.contains('f');
    let recursive = flags.contains('r') || flags.contains('R');
    let mut status = 0;
    for path in paths {
        let is_dir = fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false);
        let removed = match (is_dir, recursive) {
            (true, true) => fs::remove_dir_all(path),
            (true, false) => Err(io::Error::other("is a directory (use -r)")),
            (false, _) => fs::remove_file(path),
        };
        match removed {
            Ok(()) => {}
            // Like rm -f: a missing file is not an error.
            Err(err) if force && err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                eprintln!("rm: {path}: {err}");
                status = 1;
            }
        }
    }
    if paths.is_empty() && !force {
        eprintln!("usage: rm [-f] [-r] PATH...");
        status = 2;
    }
    Ok(status)
}

fn mkdir(args: &[String]) -> io::Result<i32> {
    let (flags, paths) = split_flags(args);
    let parents = flags.contains('p');
    let mut status = 0;
    for path in paths {
        let made = if parents {
            fs::create_dir_all(path)
        } else {
            fs::create_dir(path)
        };
        if let Err(err) = made {
            eprintln!("mkdir: {path}: {err}");
            status = 1;
        }
    }
    Ok(status)
}

/// `ln [-s] [-f] TARGET LINK`: a hard link, or with `-s` a symbolic one whose target is stored as written
/// (berth's tests plant symlinks in volumes this way to check that the agent never follows them out).
fn ln(args: &[String]) -> io::Result<i32> {
    let (flags, operands) = split_flags(args);
    let [target, link] = operands else {
        eprintln!("usage: ln [-s] [-f] TARGET LINK");
        return Ok(2);
    };
    if flags.contains('f') {
        match fs::remove_file(link) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                eprintln!("ln: {link}: {err}");
                return Ok(1);
            }
        }
    }
    let made = if flags.contains('s') {
        std::os::unix::fs::symlink(target, link)
    } else {
        fs::hard_link(target, link)
    };
    match made {
        Ok(()) => Ok(0),
        Err(err) => {
            eprintln!("ln: {link}: {err}");
            Ok(1)
        }
    }
}

fn env(out: &mut dyn Write) -> io::Result<i32> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    vars.sort();
    for (key, value) in vars {
        writeln!(out, "{key}={value}")?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    //! Checks the file applets against a scratch directory.
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn run_captured(name: &str, args: &[&str]) -> (i32, String) {
        let mut out = Vec::new();
        let code = run(name, &strings(args), &mut out);
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn file_applets_create_list_read_and_remove() {
        let dir = std::env::temp_dir().join(format!("berth-workload-applets-{}", std::process::id()));
        let dir = dir.to_str().unwrap().to_string();
        let nested = format!("{dir}/a/b");
        let file = format!("{dir}/a/file");
        assert_eq!(run_captured("mkdir", &["-p", &nested]).0, 0);
        assert_eq!(
            run_captured("mkdir", &[&nested]).0,
            1,
            "mkdir without -p fails on an existing directory"
        );
        assert_eq!(run_captured("touch", &[&file]).0, 0);
        assert_eq!(run_captured("ls", &[&format!("{dir}/a")]), (0, "b\nfile\n".to_string()));
        assert_eq!(run_captured("cat", &[&file]), (0, String::new()));
        assert_eq!(run_captured("cat", &[&format!("{dir}/missing")]).0, 1);
        let link = format!("{dir}/a/link");
        assert_eq!(run_captured("ln", &["-s", "../..", &link]).0, 0);
        assert_eq!(std::fs::read_link(&link).unwrap(), std::path::Path::new("../.."));
        assert_eq!(run_captured("ln", &["-s", "/", &link]).0, 1, "the link exists");
        assert_eq!(run_captured("ln", &["-sf", "/", &link]).0, 0);
        assert_eq!(std::fs::read_link(&link).unwrap(), std::path::Path::new("/"));
        assert_eq!(run_captured("rm", &[&link]).0, 0);
        assert_eq!(run_captured("rm", &[&file]).0, 0);
        assert_eq!(run_captured("rm", &[&file]).0, 1);
        assert_eq!(run_captured("rm", &["-f", &file]).0, 0);
        assert_eq!(run_captured("rm", &[&dir]).0, 1, "directories need -r");
        assert_eq!(run_captured("rm", &["-rf", &dir]).0, 0);
        assert!(!std::path::Path::new(&dir).exists());
    }

    #[test]
    fn echo_true_false_exit_and_unknown() {
        assert_eq!(run_captured("echo", &["a", "b"]), (0, "a b\n".to_string()));
        assert_eq!(run_captured("echo", &["-n", "a"]), (0, "a".to_string()));
        assert_eq!(run_captured("true", &[]).0, 0);
        assert_eq!(run_captured("false", &[]).0, 1);
        assert_eq!(run_captured("exit", &["7"]).0, 7);
        assert_eq!(run_captured("nope", &[]).0, NOT_FOUND);
    }
}

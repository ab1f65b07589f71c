//! The `sh` applet: a deliberately minimal shell, enough for the command lines that pod manifests, exec probes
//! and `kubectl exec` sessions typically use, such as Kubernetes' liveness example
//! `sh -c "touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600"`.
//!
//! Supported: commands separated by `;` or newlines, `&&` and `||` (evaluated left to right like POSIX and-or
//! lists), `'single'` and `"double"` quotes, backslash escapes, `$VAR`, `${VAR}` and `$?`, `#` comments, stdout
//! redirection with `>` and `>>`, `exit [N]` and `exec CMD`. Applets run in-process; a command containing a `/`
//! runs as an external program. Not supported (reported as errors, never silently misread): pipes, `&`, input
//! redirection, command substitution, variable assignment, globbing, control flow. Unquoted expansions are not
//! split into several words; an unquoted word that expands to nothing disappears, as in sh.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use crate::applets;

/// `sh [-i] [-c SCRIPT]`: runs SCRIPT, or reads commands line by line from stdin. `-i` (or a terminal on stdin)
/// prints a `$ ` prompt before each line.
pub fn main(args: &[String], out: &mut dyn Write) -> i32 {
    let mut script = None;
    let mut prompt = io::stdin().is_terminal();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(letters) = arg.strip_prefix('-') else {
            eprintln!("sh: script files are not supported; use sh -c 'COMMANDS'");
            return 2;
        };
        for letter in letters.chars() {
            match letter {
                'c' => match args.next() {
                    Some(text) => script = Some(text.clone()),
                    None => {
                        eprintln!("sh: -c requires an argument");
                        return 2;
                    }
                },
                'i' => prompt = true,
                other => {
                    eprintln!("sh: unsupported option -{other}");
                    return 2;
                }
            }
        }
        if script.is_some() {
            // Like sh, arguments after the script are its $0, $1, ...; this shell does not expand those.
            break;
        }
    }
    let mut shell = Shell::new();
    match script {
        Some(script) => match shell.run_script(&script, out) {
            Ok(Flow::Next) => shell.last_status,
            Ok(Flow::Exit(code)) => code,
            Err(message) => {
                eprintln!("sh: {message}");
                2
            }
        },
        None => shell.run_stdin(prompt, out),
    }
}

/// A word as written: literal text and variable references, expanded only when its command runs (so `$?`
/// sees the status of the command before).
#[derive(Debug, Clone, PartialEq, Default)]
struct Word {
    pieces: Vec<Piece>,
    /// Whether any part was quoted: a quoted word survives expansion even when empty (`""`).
    quoted: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
}

impl Word {
    fn push_char(&mut self, c: char) {
        match self.pieces.last_mut() {
            Some(Piece::Text(text)) => text.push(c),
            _ => self.pieces.push(Piece::Text(c.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(Word),
    /// One of `;`, `\n`, `&&`, `||`, `>`, `>>`.
    Op(&'static str),
}

/// When a command of a list runs, relative to the status of the command before.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Connector {
    Always,
    IfSuccess,
    IfFailure,
}

/// One simple command: its words and an optional stdout redirection.
#[derive(Debug, Clone, PartialEq, Default)]
struct SimpleCommand {
    words: Vec<Word>,
    redirect: Option<Redirect>,
}

#[derive(Debug, Clone, PartialEq)]
struct Redirect {
    target: Word,
    append: bool,
}

/// What the shell does after a command: go on, or stop with a status (`exit`, `exec`).
#[derive(Debug, PartialEq)]
enum Flow {
    Next,
    Exit(i32),
}

/// Splits a script into words and operators, resolving quotes and escapes but not yet expanding variables.
fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut word: Option<Word> = None;
    let mut chars = src.chars().peekable();
    // Ends the word in progress, if any.
    fn finish(word: &mut Option<Word>, tokens: &mut Vec<Token>) {
        if let Some(w) = word.take() {
            tokens.push(Token::Word(w));
        }
    }
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => finish(&mut word, &mut tokens),
            '\n' | ';' => {
                finish(&mut word, &mut tokens);
                tokens.push(Token::Op(if c == '\n' { "\n" } else { ";" }));
            }
            '&' | '|' => {
                finish(&mut word, &mut tokens);
                if chars.next_if_eq(&c).is_none() {
                    return Err(if c == '&' {
                        "background jobs (&) are not supported"
                    } else {
                        "pipes (|) are not supported"
                    }
                    .to_string());
                }
                tokens.push(Token::Op(if c == '&' { "&&" } else { "||" }));
            }
            '>' => {
                finish(&mut word, &mut tokens);
                tokens.push(Token::Op(if chars.next_if_eq(&'>').is_some() { ">>" } else { ">" }));
            }
            '<' => return Err("input redirection (<) is not supported".to_string()),
            '`' => return Err("command substitution is not supported".to_string()),
            '#' if word.is_none() => {
                // A comment runs to the end of the line; the newline itself still separates commands.
                while chars.next_if(|&c| c != '\n').is_some() {}
            }
            '\'' => {
                let w = word.get_or_insert_with(Word::default);
                w.quoted = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push_char(c),
                        None => return Err("unterminated single quote".to_string()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(Word::default);
                w.quoted = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        // Inside double quotes a backslash only escapes these characters.
                        Some('\\') => match chars.next_if(|c| matches!(c, '"' | '\\' | '$' | '`' | '\n')) {
                            Some('\n') => {}
                            Some(c) => w.push_char(c),
                            None => w.push_char('\\'),
                        },
                        Some('$') => read_variable(&mut chars, w)?,
                        Some('`') => return Err("command substitution is not supported".to_string()),
                        Some(c) => w.push_char(c),
                        None => return Err("unterminated double quote".to_string()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {} // line continuation
                Some(c) => word.get_or_insert_with(Word::default).push_char(c),
                None => word.get_or_insert_with(Word::default).push_char('\\'),
            },
            '$' => read_variable(&mut chars, word.get_or_insert_with(Word::default))?,
            c => word.get_or_insert_with(Word::default).push_char(c),
        }
    }
    finish(&mut word, &mut tokens);
    Ok(tokens)
}

/// Reads what follows a `$`: `NAME`, `{NAME}` or `?`. A `$` followed by anything else is literal.
fn read_variable(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, word: &mut Word) -> Result<(), String> {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    if chars.next_if_eq(&'?').is_some() {
        word.pieces.push(Piece::Var("?".to_string()));
    } else if chars.next_if_eq(&'(').is_some() {
        return Err("command substitution is not supported".to_string());
    } else if chars.next_if_eq(&'{').is_some() {
        let mut name = String::new();
        while let Some(c) = chars.next_if(is_name) {
            name.push(c);
        }
        if chars.next_if_eq(&'}').is_none() || name.is_empty() {
            return Err("bad ${...} substitution (only ${NAME} is supported)".to_string());
        }
        word.pieces.push(Piece::Var(name));
    } else if chars.peek().is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') {
        let mut name = String::new();
        while let Some(c) = chars.next_if(is_name) {
            name.push(c);
        }
        word.pieces.push(Piece::Var(name));
    } else {
        word.push_char('$');
    }
    Ok(())
}

/// Groups tokens into commands joined by connectors, rejecting what sh would call a syntax error.
fn parse(tokens: Vec<Token>) -> Result<Vec<(Connector, SimpleCommand)>, String> {
    let mut list = Vec::new();
    let mut connector = Connector::Always;
    let mut command = SimpleCommand::default();
    let mut pending_redirect: Option<bool> = None; // Some(append) after `>` or `>>`
    for token in tokens {
        match token {
            Token::Word(word) => match pending_redirect.take() {
                Some(append) => command.redirect = Some(Redirect { target: word, append }),
                None => command.words.push(word),
            },
            Token::Op(op) if pending_redirect.is_some() => return Err(format!("syntax error near {op:?}")),
            Token::Op(op @ (">" | ">>")) => pending_redirect = Some(op == ">>"),
            // Blank lines, and a newline right after `&&` or `||`, are fine.
            Token::Op("\n") if command.words.is_empty() && command.redirect.is_none() => {}
            Token::Op(op) if command.words.is_empty() => return Err(format!("syntax error near {op:?}")),
            Token::Op(op) => {
                list.push((connector, std::mem::take(&mut command)));
                connector = match op {
                    "&&" => Connector::IfSuccess,
                    "||" => Connector::IfFailure,
                    _ => Connector::Always,
                };
            }
        }
    }
    if pending_redirect.is_some() {
        return Err("syntax error: redirection without a file".to_string());
    }
    if command.words.is_empty() {
        if connector != Connector::Always {
            return Err("syntax error: unexpected end after && or ||".to_string());
        }
    } else {
        list.push((connector, command));
    }
    Ok(list)
}

/// The shell's state between commands.
struct Shell {
    last_status: i32,
    /// Where `$NAME` is looked up: the process environment, or a fixed map in tests.
    vars: Option<HashMap<String, String>>,
}

impl Shell {
    fn new() -> Shell {
        Shell {
            last_status: 0,
            vars: None,
        }
    }

    /// Parses and runs a whole script. A syntax error runs nothing, as in sh.
    fn run_script(&mut self, src: &str, out: &mut dyn Write) -> Result<Flow, String> {
        let list = parse(tokenize(src)?)?;
        for (connector, command) in list {
            let runs = match connector {
                Connector::Always => true,
                Connector::IfSuccess => self.last_status == 0,
                Connector::IfFailure => self.last_status != 0,
            };
            if runs {
                if let Flow::Exit(code) = self.run_command(&command, out) {
                    return Ok(Flow::Exit(code));
                }
            }
        }
        Ok(Flow::Next)
    }

    /// Reads and runs stdin line by line until EOF or `exit`.
    fn run_stdin(&mut self, prompt: bool, out: &mut dyn Write) -> i32 {
        let stdin = io::stdin();
        let mut line = String::new();
        loop {
            if prompt {
                let _ = write!(out, "$ ").and_then(|_| out.flush());
            }
            line.clear();
            match stdin.lock().read_line(&mut line) {
                Ok(0) => return self.last_status,
                Ok(_) => {}
                Err(err) => {
                    eprintln!("sh: cannot read stdin: {err}");
                    return 1;
                }
            }
            match self.run_script(&line, out) {
                Ok(Flow::Next) => {}
                Ok(Flow::Exit(code)) => return code,
                Err(message) => {
                    eprintln!("sh: {message}");
                    self.last_status = 2;
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if name == "?" {
            return Some(self.last_status.to_string());
        }
        match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    /// Expands a word; `None` when an unquoted word expanded to nothing and so disappears.
    fn expand(&self, word: &Word) -> Option<String> {
        let mut text = String::new();
        for piece in &word.pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Var(name) => text.push_str(&self.lookup(name).unwrap_or_default()),
            }
        }
        (word.quoted || !text.is_empty()).then_some(text)
    }

    /// Runs one command and records its status.
    fn run_command(&mut self, command: &SimpleCommand, out: &mut dyn Write) -> Flow {
        let args: Vec<String> = command.words.iter().filter_map(|w| self.expand(w)).collect();
        let mut redirected = match &command.redirect {
            Some(redirect) => {
                let path = self.expand(&redirect.target).unwrap_or_default();
                let opened = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(redirect.append)
                    .truncate(!redirect.append)
                    .open(&path);
                match opened {
                    Ok(file) => Some(file),
                    Err(err) => {
                        eprintln!("sh: {path}: {err}");
                        self.last_status = 1;
                        return Flow::Next;
                    }
                }
            }
            None => None,
        };
        let flow = match args.split_first() {
            None => Flow::Next,
            Some((name, rest)) if name == "exit" => Flow::Exit(applets::exit_status(rest)),
            // `exec` replaces the shell: the command's status becomes the shell's.
            Some((name, rest)) if name == "exec" => match rest.split_first() {
                None => Flow::Next,
                Some((program, program_args)) => {
                    Flow::Exit(self.execute(program, program_args, redirected.as_mut(), out, true))
                }
            },
            Some((program, program_args)) => {
                self.last_status = self.execute(program, program_args, redirected.as_mut(), out, false);
                Flow::Next
            }
        };
        if let Flow::Exit(code) = flow {
            self.last_status = code;
        }
        flow
    }

    /// Runs an applet in-process or an external program (a name containing `/`), returning its status.
    fn execute(
        &self,
        program: &str,
        args: &[String],
        file: Option<&mut File>,
        out: &mut dyn Write,
        replace: bool,
    ) -> i32 {
        if applets::is_applet(program) {
            return match file {
                Some(file) => applets::run(program, args, file),
                None => applets::run(program, args, out),
            };
        }
        if !program.contains('/') {
            eprintln!("sh: {program}: not found");
            return applets::NOT_FOUND;
        }
        // Output already written must come before the child's.
        let _ = out.flush();
        let mut child = Command::new(program);
        child.args(args);
        if let Some(file) = file {
            match file.try_clone() {
                Ok(clone) => child.stdout(Stdio::from(clone)),
                Err(err) => {
                    eprintln!("sh: {err}");
                    return 1;
                }
            };
        }
        if replace {
            // Only returns on failure.
            let err = child.exec();
            eprintln!("sh: {program}: {err}");
            return if err.kind() == io::ErrorKind::NotFound {
                applets::NOT_FOUND
            } else {
                126
            };
        }
        match child.status() {
            // A child killed by a signal reports 128 + signal, as sh does.
            Ok(status) => status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1),
            Err(err) => {
                eprintln!("sh: {program}: {err}");
                if err.kind() == io::ErrorKind::NotFound {
                    applets::NOT_FOUND
                } else {
                    126
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Checks tokenizing, parsing into and-or lists, and running scripts of in-process applets.
    use super::*;

    /// The words of each command of `src`, expanded with `vars`, and the connector before it.
    fn commands(src: &str, vars: &[(&str, &str)]) -> Vec<(Connector, Vec<String>)> {
        let shell = Shell {
            last_status: 0,
            vars: Some(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        };
        parse(tokenize(src).unwrap())
            .unwrap()
            .into_iter()
            .map(|(connector, command)| {
                (
                    connector,
                    command.words.iter().filter_map(|w| shell.expand(w)).collect(),
                )
            })
            .collect()
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Runs `src` and returns its exit status and output.
    fn run(src: &str) -> (i32, String) {
        let mut shell = Shell {
            last_status: 0,
            vars: Some(HashMap::new()),
        };
        let mut out = Vec::new();
        let code = match shell.run_script(src, &mut out).unwrap() {
            Flow::Next => shell.last_status,
            Flow::Exit(code) => code,
        };
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_upstream_liveness_example_splits_into_four_commands() {
        let got = commands("touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600", &[]);
        assert_eq!(
            got,
            vec![
                (Connector::Always, words(&["touch", "/tmp/healthy"])),
                (Connector::Always, words(&["sleep", "30"])),
                (Connector::Always, words(&["rm", "-f", "/tmp/healthy"])),
                (Connector::Always, words(&["sleep", "600"])),
            ]
        );
    }

    #[test]
    fn operators_need_no_spaces_and_newlines_separate_commands() {
        let got = commands("true&&echo a||echo b\n\necho c # a comment\n", &[]);
        assert_eq!(
            got,
            vec![
                (Connector::Always, words(&["true"])),
                (Connector::IfSuccess, words(&["echo", "a"])),
                (Connector::IfFailure, words(&["echo", "b"])),
                (Connector::Always, words(&["echo", "c"])),
            ]
        );
    }

    #[test]
    fn quotes_escapes_and_variables() {
        let vars = [("NAME", "web-0"), ("EMPTY", "")];
        let got = commands(
            r#"echo 'a b' "c $NAME" d\ e ${NAME}x '$NAME' $EMPTY "$EMPTY" $ cost$"#,
            &vars,
        );
        assert_eq!(
            got,
            vec![(
                Connector::Always,
                words(&["echo", "a b", "c web-0", "d e", "web-0x", "$NAME", "", "$", "cost$"])
            )]
        );
    }

    #[test]
    fn syntax_errors_and_unsupported_features_are_reported() {
        for bad in [
            "&& true",
            "true &&",
            "true ;; true",
            "a | b",
            "a &",
            "echo 'open",
            "echo \"open",
            "echo >",
            "echo $(x)",
            "cat < f",
        ] {
            assert!(tokenize(bad).and_then(parse).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn and_or_lists_follow_the_last_status() {
        assert_eq!(run("false && echo no || echo yes"), (0, "yes\n".to_string()));
        assert_eq!(run("true || echo no && echo yes"), (0, "yes\n".to_string()));
        assert_eq!(run("false; echo $?"), (0, "1\n".to_string()));
        assert_eq!(run("false"), (1, String::new()));
        assert_eq!(run("nonexistent-command"), (applets::NOT_FOUND, String::new()));
    }

    #[test]
    fn exit_and_exec_stop_the_script() {
        assert_eq!(run("echo a; exit 3; echo b"), (3, "a\n".to_string()));
        assert_eq!(run("exec false; echo b"), (1, String::new()));
    }

    #[test]
    fn redirection_writes_and_appends_to_files() {
        let path = std::env::temp_dir().join(format!("berth-workload-sh-{}", std::process::id()));
        let path = path.to_str().unwrap();
        let script = format!("echo one > {path} && echo two >> {path}; cat {path}; rm {path}");
        assert_eq!(run(&script), (0, "one\ntwo\n".to_string()));
    }

    #[test]
    fn external_programs_run_by_path() {
        assert_eq!(run("/bin/sh -c 'exit 4'").0, 4);
        assert_eq!(run("/no/such/program").0, applets::NOT_FOUND);
    }
}

//! The lexer and recursive-descent parser for the `labelSelector` query grammar, a port of the behaviour of
//! upstream's `k8s.io/apimachinery/pkg/labels/selector.go` `Lexer`/`Parser`. The token set and every error text
//! follow upstream exactly, because kubectl shows them to users. It produces [`Requirement`]s; matching and
//! printing live in `label.rs`.

use super::label::{Operator, Requirement};
use super::validation::{invalid, qualified_name_errors};
use super::SelectorError;

/// Parses a whole selector string into its requirements, in the order written.
pub(super) fn parse_requirements(s: &str) -> Result<Vec<Requirement>, SelectorError> {
    Parser { tokens: lex(s), pos: 0 }.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

/// Splits the input into tokens. Operators are read greedily while they still form a known operator
/// (`!=` is one token, `=(` is `=` then `(`); everything else up to whitespace or an operator character is an
/// identifier or the keywords `in`/`notin`.
fn lex(s: &str) -> Vec<(Tok, String)> {
    let chars: Vec<char> = s.chars().collect();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < chars.len() && is_space(chars[pos]) {
            pos += 1;
        }
        let Some(&c) = chars.get(pos) else {
            out.push((Tok::End, String::new()));
            return out;
        };
        if is_special(c) {
            let mut buf = String::new();
            let mut last: Option<(Tok, String)> = None;
            while let Some(&c) = chars.get(pos) {
                if !is_special(c) {
                    break;
                }
                buf.push(c);
                match keyword(&buf) {
                    Some(tok) => last = Some((tok, buf.clone())),
                    None if last.is_some() => break,
                    None => {}
                }
                pos += 1;
            }
            // Every single operator character is itself a token, so `last` is always set here.
            out.push(last.unwrap_or((Tok::Identifier, buf)));
        } else {
            let start = pos;
            while pos < chars.len() && !is_special(chars[pos]) && !is_space(chars[pos]) {
                pos += 1;
            }
            let word: String = chars[start..pos].iter().collect();
            let tok = keyword(&word).unwrap_or(Tok::Identifier);
            out.push((tok, word));
        }
    }
}

/// Whether `in`/`notin` are read as keywords (after a key) or as plain identifiers (as values: `x in (in)`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    fn peek(&self, ctx: Ctx) -> (Tok, String) {
        // The token list always ends with `End`, and the parser never consumes past it.
        let (tok, lit) = self.tokens.get(self.pos).cloned().unwrap_or((Tok::End, String::new()));
        match tok {
            Tok::In | Tok::NotIn if ctx == Ctx::Values => (Tok::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn next(&mut self, ctx: Ctx) -> (Tok, String) {
        let item = self.peek(ctx);
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.peek(Ctx::Values);
            match tok {
                Tok::Identifier | Tok::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| SelectorError(format!("unable to parse requirement: {}", e.0)))?;
                    requirements.push(r);
                    let (t, l) = self.next(Ctx::Values);
                    match t {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let (t2, l2) = self.peek(Ctx::Values);
                            if t2 != Tok::Identifier && t2 != Tok::Not {
                                return Err(SelectorError(format!("found '{l2}', expected: identifier after ','")));
                            }
                        }
                        _ => return Err(SelectorError(format!("found '{l}', expected: ',' or 'end of string'"))),
                    }
                }
                Tok::End => return Ok(requirements),
                _ => {
                    return Err(SelectorError(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (mut tok, mut key) = self.next(Ctx::Values);
        let negated = tok == Tok::Not;
        if negated {
            (tok, key) = self.next(Ctx::Values);
        }
        if tok != Tok::Identifier {
            return Err(SelectorError(format!("found '{key}', expected: identifier")));
        }
        let key_errs = qualified_name_errors(&key);
        if !key_errs.is_empty() {
            // Upstream validates the key with a nil field path, hence the literal `<nil>` in the message.
            return Err(SelectorError(invalid("<nil>", &key, &key_errs.join("; "))));
        }
        if negated {
            return Requirement::new(&key, Operator::DoesNotExist, Vec::new());
        }
        let (next, _) = self.peek(Ctx::Values);
        if next == Tok::End || next == Tok::Comma {
            return Requirement::new(&key, Operator::Exists, Vec::new());
        }
        let (tok, lit) = self.next(Ctx::KeyAndOperator);
        let operator = match tok {
            Tok::In => Operator::In,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEquals => Operator::NotEquals,
            _ => {
                return Err(SelectorError(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                )))
            }
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, operator, values)
    }

    /// `( a, b, c )`, returned sorted and de-duplicated like upstream's `sets.String`. Empty entries are allowed:
    /// `()` and `(a,)` contain the empty string.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, lit) = self.next(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(SelectorError(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.peek(Ctx::Values);
        let mut set = std::collections::BTreeSet::new();
        match tok {
            Tok::Identifier | Tok::Comma => {
                self.identifiers(&mut set)?;
                if self.next(Ctx::Values).0 != Tok::ClosedPar {
                    return Err(SelectorError(format!("found '{lit}', expected: ')'")));
                }
            }
            Tok::ClosedPar => {
                self.next(Ctx::Values);
                set.insert(String::new());
            }
            _ => {
                return Err(SelectorError(format!(
                    "found '{lit}', expected: ',', ')' or identifier"
                )))
            }
        }
        Ok(set.into_iter().collect())
    }

    fn identifiers(&mut self, set: &mut std::collections::BTreeSet<String>) -> Result<(), SelectorError> {
        loop {
            let (tok, lit) = self.next(Ctx::Values);
            match tok {
                Tok::Identifier => {
                    set.insert(lit);
                    let (tok2, lit2) = self.peek(Ctx::Values);
                    match tok2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(()),
                        _ => return Err(SelectorError(format!("found '{lit2}', expected: ',' or ')'"))),
                    }
                }
                Tok::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (tok2, _) = self.peek(Ctx::Values);
                    if tok2 == Tok::ClosedPar {
                        set.insert(String::new());
                        return Ok(());
                    }
                    if tok2 == Tok::Comma {
                        self.next(Ctx::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(SelectorError(format!("found '{lit}', expected: ',', or identifier"))),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing before `,` or the end means the empty value.
    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, _) = self.peek(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.next(Ctx::Values);
        if tok == Tok::Identifier {
            return Ok(vec![lit]);
        }
        Err(SelectorError(format!("found '{lit}', expected: identifier")))
    }
}

//! Decoding one YAML document into a `serde_json::Value` from a stream of parser events, one event at a time,
//! under a byte budget and a depth limit that are checked before anything is built. It reads no bodies and picks
//! no status codes (that is [`crate::body::parse_yaml`]'s job).
//!
//! serde_yaml 0.9 first loads every event of a document into a `Vec` (each ~100 bytes) and only then runs the
//! visitor, so even alias-free YAML costs ~100 × its size while parsing (`[a,a,a,…]`: 15 MB for 140 KB). Here
//! `granit_parser` hands over events one by one and the value is built straight from them: the only memory
//! held is the value under construction, the open collections' stack and the anchored nodes.
//!
//! The result is the one serde_yaml → `serde_json::Value` gave (see `resolve`): YAML 1.2 core-schema scalars
//! with serde_yaml's extensions (`0b`, `+` signs, `True`), keys taken verbatim as strings, `<<` an ordinary key,
//! duplicate keys last-wins, local tags (`!foo`) refused, one document only.

use std::borrow::Cow;
use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// Why a document was not decoded.
#[derive(Debug)]
pub(crate) enum Error {
    /// The value would pass the byte budget.
    TooLarge,
    /// The value would nest deeper than the depth limit.
    TooDeep,
    /// Not YAML, or YAML that has no JSON form; the message says why.
    Invalid(String),
}

/// serde_yaml resolves `!!x` to this prefix followed by `x`.
const CORE: &str = "tag:yaml.org,2002:";

/// What an anchor names, kept to be copied at each alias.
enum Anchored {
    /// A scalar, kept as written: it resolves differently as a key (verbatim) and as a value.
    Scalar {
        text: String,
        plain: bool,
        tag: Option<String>,
    },
    /// A built collection, with the budget it cost, its height, and the alias expansions inside it.
    Node {
        value: Value,
        bytes: usize,
        height: usize,
        jumps: usize,
    },
}

/// An open sequence or mapping.
struct Frame {
    kind: Kind,
    /// The anchor id granit gave it, 0 for none.
    anchor: usize,
    /// The budget left before it was opened, to know what it cost once closed.
    left_at_start: usize,
    /// Alias expansions before it was opened.
    jumps_at_start: usize,
    /// The height of its tallest child so far (a scalar is 1).
    height: usize,
}

enum Kind {
    Seq(Vec<Value>),
    /// The entries so far and the key waiting for its value.
    Map(Map<String, Value>, Option<String>),
}

struct Decoder {
    left: usize,
    /// What is left for copies of anchored collections: each is kept apart from the result to be copied at its
    /// aliases, and anchors nest (`&a [&b [&c [..]]]` keeps the innermost list three times), so the copies are
    /// charged like the value, against a budget of their own.
    anchors_left: usize,
    max_depth: usize,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    /// Alias expansions so far, counting those replayed inside aliased nodes, as serde_yaml counts them.
    jumps: usize,
    /// Node events so far: serde_yaml refuses more than 100 expansions per event.
    events: usize,
}

/// Decodes `bytes` (UTF-8, one document) into JSON, charging each node its compact-JSON size against
/// `max_bytes` before building it, and refusing nesting deeper than `max_depth` as it opens.
pub(crate) fn decode(bytes: &[u8], max_bytes: usize, max_depth: usize) -> Result<Value, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Invalid(format!("invalid UTF-8: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut d = Decoder {
        left: max_bytes,
        anchors_left: max_bytes,
        max_depth,
        stack: Vec::new(),
        anchors: HashMap::new(),
        jumps: 0,
        events: 0,
    };
    let mut parser = Parser::new_from_str(text);
    let mut root = None;
    let mut documents = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| Error::Invalid(e.to_string()))?;
        match event {
            Event::StreamStart | Event::DocumentEnd => {}
            Event::StreamEnd => break,
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(Error::Invalid(
                        "deserializing from YAML containing more than one document is not supported".into(),
                    ));
                }
            }
            event => {
                d.events += 1;
                if let Some(v) = d.event(event, span)? {
                    root = Some(v);
                }
            }
        }
    }
    if d.jumps > d.events.saturating_mul(100) {
        return Err(Error::Invalid("repetition limit exceeded".into()));
    }
    match root {
        Some(v) => Ok(v),
        // An empty stream is null, as serde_yaml has it.
        None => {
            d.spend(4)?;
            Ok(Value::Null)
        }
    }
}

impl Decoder {
    fn spend(&mut self, bytes: usize) -> Result<(), Error> {
        self.left = self.left.checked_sub(bytes).ok_or(Error::TooLarge)?;
        Ok(())
    }

    /// Whether the next node is a mapping key.
    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                kind: Kind::Map(_, None),
                ..
            })
        )
    }

    /// Refuses a node of `height` about to be placed at the current position.
    fn fits(&self, height: usize) -> Result<(), Error> {
        if self.stack.len().saturating_add(height) > self.max_depth {
            return Err(Error::TooDeep);
        }
        Ok(())
    }

    /// Takes one node event; returns the root once it is complete.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<Option<Value>, Error> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain;
                // granit writes an omitted scalar (`a:`, `- `) as a plain `~` with an empty span; libyaml, and so
                // serde_yaml, as an empty string. The difference shows in keys and `!!str`.
                let text = if plain && span.start.index() == span.end.index() {
                    Cow::Borrowed("")
                } else {
                    text
                };
                let tag = tag.map(|t| format!("{}{}", t.handle(), t.suffix()));
                if anchor != 0 {
                    let kept = Anchored::Scalar {
                        text: text.to_string(),
                        plain,
                        tag: tag.clone(),
                    };
                    self.anchors.insert(anchor, kept);
                }
                if self.expecting_key() {
                    self.key(text.into_owned())?;
                    return Ok(None);
                }
                self.fits(1)?;
                let value = self.scalar(text, plain, tag.as_deref(), span)?;
                self.place(value, 1)
            }
            Event::SequenceStart(_, anchor, tag) => self.open(false, anchor, tag.as_deref(), span),
            Event::MappingStart(_, anchor, tag) => self.open(true, anchor, tag.as_deref(), span),
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(invalid("unexpected end of a collection".into(), span));
                };
                let value = match frame.kind {
                    Kind::Seq(items) => Value::Array(items),
                    Kind::Map(map, _) => Value::Object(map),
                };
                let height = frame.height + 1;
                if frame.anchor != 0 {
                    let bytes = frame.left_at_start - self.left;
                    self.anchors_left = self.anchors_left.checked_sub(bytes).ok_or(Error::TooLarge)?;
                    let kept = Anchored::Node {
                        value: value.clone(),
                        bytes,
                        height,
                        jumps: self.jumps - frame.jumps_at_start,
                    };
                    self.anchors.insert(frame.anchor, kept);
                }
                self.place(value, height)
            }
            Event::Alias(id) => self.alias(id, span),
            _ => Ok(None),
        }
    }

    /// Opens a sequence or mapping, once it is known to fit.
    fn open(
        &mut self,
        is_map: bool,
        anchor: usize,
        tag: Option<&granit_parser::Tag>,
        span: Span,
    ) -> Result<Option<Value>, Error> {
        if self.expecting_key() {
            let what = if is_map { "map" } else { "sequence" };
            return Err(invalid(format!("invalid type: {what}, expected a string key"), span));
        }
        if let Some(t) = tag {
            // serde_yaml reads a local tag (`!foo [..]`) as an enum variant; `!!seq` and the like are fine.
            if format!("{}{}", t.handle(), t.suffix()).starts_with('!') {
                return Err(invalid(
                    "invalid type: enum, expected any valid JSON value".into(),
                    span,
                ));
            }
        }
        self.fits(1)?;
        let frame = Frame {
            kind: if is_map {
                Kind::Map(Map::new(), None)
            } else {
                Kind::Seq(Vec::new())
            },
            anchor,
            left_at_start: self.left,
            jumps_at_start: self.jumps,
            height: 0,
        };
        self.spend(2)?;
        self.stack.push(frame);
        Ok(None)
    }

    /// Expands an alias: a fresh copy of what its anchor named, charged again in full.
    fn alias(&mut self, id: usize, span: Span) -> Result<Option<Value>, Error> {
        let expecting_key = self.expecting_key();
        let Some(anchored) = self.anchors.get(&id) else {
            // granit refuses unknown anchors; an anchor aliased inside itself is still open here.
            return Err(invalid("recursion limit exceeded".into(), span));
        };
        match anchored {
            Anchored::Scalar { text, plain, tag } => {
                let (text, plain, tag) = (text.clone(), *plain, tag.clone());
                self.jumps = self.jumps.saturating_add(1);
                if expecting_key {
                    self.key(text)?;
                    return Ok(None);
                }
                self.fits(1)?;
                let value = self.scalar(Cow::Owned(text), plain, tag.as_deref(), span)?;
                self.place(value, 1)
            }
            Anchored::Node {
                value,
                bytes,
                height,
                jumps,
            } => {
                if expecting_key {
                    let what = if value.is_object() { "map" } else { "sequence" };
                    return Err(invalid(format!("invalid type: {what}, expected a string key"), span));
                }
                let (bytes, height, jumps) = (*bytes, *height, *jumps);
                self.jumps = self.jumps.saturating_add(1).saturating_add(jumps);
                self.fits(height)?;
                self.spend(bytes)?;
                let value = match self.anchors.get(&id) {
                    Some(Anchored::Node { value, .. }) => value.clone(),
                    _ => Value::Null,
                };
                self.place(value, height)
            }
        }
    }

    /// Sets the pending key of the open mapping, charged with its quotes, colon and comma.
    fn key(&mut self, key: String) -> Result<(), Error> {
        self.spend(key.len() + 4)?;
        if let Some(Frame {
            kind: Kind::Map(_, pending),
            ..
        }) = self.stack.last_mut()
        {
            *pending = Some(key);
        }
        Ok(())
    }

    /// Builds a scalar value, charged first.
    fn scalar(&mut self, text: Cow<'_, str>, plain: bool, tag: Option<&str>, span: Span) -> Result<Value, Error> {
        let resolved = resolve(&text, plain, tag).map_err(|m| invalid(m, span))?;
        Ok(match resolved {
            Scalar::Null => {
                self.spend(4)?;
                Value::Null
            }
            Scalar::Bool(b) => {
                self.spend(5)?;
                Value::Bool(b)
            }
            Scalar::Int(n) => {
                self.spend(20)?;
                Value::Number(n)
            }
            Scalar::Float(f) => {
                self.spend(24)?;
                // JSON has no NaN or infinities: serde_json makes them null.
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            Scalar::Str => {
                self.spend(text.len() + 2)?;
                Value::String(text.into_owned())
            }
        })
    }

    /// Puts a finished node of `height` into the open collection, or returns it as the root.
    fn place(&mut self, value: Value, height: usize) -> Result<Option<Value>, Error> {
        if matches!(self.stack.last(), Some(Frame { kind: Kind::Seq(_), .. })) {
            self.spend(1)?;
        }
        let Some(frame) = self.stack.last_mut() else {
            return Ok(Some(value));
        };
        frame.height = frame.height.max(height);
        match &mut frame.kind {
            Kind::Seq(items) => items.push(value),
            Kind::Map(map, pending) => {
                if let Some(key) = pending.take() {
                    map.insert(key, value);
                }
            }
        }
        Ok(None)
    }
}

fn invalid(message: String, span: Span) -> Error {
    Error::Invalid(format!(
        "{message} at line {} column {}",
        span.start.line(),
        span.start.col() + 1
    ))
}

/// What a scalar resolves to as a value.
enum Scalar {
    Null,
    Bool(bool),
    Int(Number),
    Float(f64),
    /// The scalar's own text.
    Str,
}

/// Resolves a scalar used as a value exactly as serde_yaml 0.9's `deserialize_any` does for a visitor that
/// builds a `serde_json::Value`: local tags are enums (refused), `!!bool`/`!!int`/`!!float`/`!!null` must parse
/// as such, other `!!` tags and quoted or block scalars are strings, untagged plain scalars are resolved.
fn resolve(text: &str, plain: bool, tag: Option<&str>) -> Result<Scalar, String> {
    match tag {
        Some(t) if t.starts_with('!') || t.is_empty() => {
            Err("invalid type: enum, expected any valid JSON value".into())
        }
        Some(t) => match t.strip_prefix(CORE) {
            Some("bool") => parse_bool(text)
                .map(Scalar::Bool)
                .ok_or_else(|| format!("invalid value: string {text:?}, expected a boolean")),
            Some("int") => {
                int(text).unwrap_or_else(|| Err(format!("invalid value: string {text:?}, expected an integer")))
            }
            Some("float") => parse_f64(text)
                .map(Scalar::Float)
                .ok_or_else(|| format!("invalid value: string {text:?}, expected a float")),
            Some("null") => match text {
                "null" | "Null" | "NULL" | "~" => Ok(Scalar::Null),
                _ => Err(format!("invalid value: string {text:?}, expected null")),
            },
            _ => Ok(Scalar::Str),
        },
        None if plain => {
            if matches!(text, "" | "null" | "Null" | "NULL" | "~") {
                return Ok(Scalar::Null);
            }
            if let Some(b) = parse_bool(text) {
                return Ok(Scalar::Bool(b));
            }
            if let Some(r) = int(text) {
                return r;
            }
            if !digits_but_not_number(text) {
                if let Some(f) = parse_f64(text) {
                    return Ok(Scalar::Float(f));
                }
            }
            Ok(Scalar::Str)
        }
        None => Ok(Scalar::Str),
    }
}

// The number parsers below follow serde_yaml 0.9's `de.rs` (MIT OR Apache-2.0) line for line, so that numbers
// resolve as they did when serde_yaml decoded bodies.

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// An integer as serde_yaml's `visit_int` gives it to a JSON visitor: u64, then i64; integers that only fit
/// 128 bits are an error (the visitor has no `visit_u128`); `None` if it is no integer.
fn int(s: &str) -> Option<Result<Scalar, String>> {
    if let Some(n) = parse_unsigned_int(s, u64::from_str_radix) {
        return Some(Ok(Scalar::Int(n.into())));
    }
    if let Some(n) = parse_negative_int(s, i64::from_str_radix) {
        return Some(Ok(Scalar::Int(n.into())));
    }
    if let Some(n) = parse_unsigned_int(s, u128::from_str_radix) {
        return Some(Err(format!(
            "invalid type: integer `{n}` as u128, expected any valid JSON value"
        )));
    }
    if let Some(n) = parse_negative_int(s, i128::from_str_radix) {
        return Some(Err(format!(
            "invalid type: integer `{n}` as i128, expected any valid JSON value"
        )));
    }
    None
}

type Radix<T> = fn(&str, u32) -> Result<T, std::num::ParseIntError>;

fn parse_unsigned_int<T>(scalar: &str, from_str_radix: Radix<T>) -> Option<T> {
    let unpositive = scalar.strip_prefix('+').unwrap_or(scalar);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
    }
    if unpositive.starts_with(['+', '-']) || digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(unpositive, 10).ok()
}

fn parse_negative_int<T>(scalar: &str, from_str_radix: Radix<T>) -> Option<T> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = scalar.strip_prefix(prefix) {
            if let Ok(int) = from_str_radix(&format!("-{rest}"), radix) {
                return Some(int);
            }
        }
    }
    if digits_but_not_number(scalar) {
        return None;
    }
    from_str_radix(scalar, 10).ok()
}

fn parse_f64(scalar: &str) -> Option<f64> {
    let unpositive = if let Some(unpositive) = scalar.strip_prefix('+') {
        if unpositive.starts_with(['+', '-']) {
            return None;
        }
        unpositive
    } else {
        scalar
    };
    if let ".inf" | ".Inf" | ".INF" = unpositive {
        return Some(f64::INFINITY);
    }
    if let "-.inf" | "-.Inf" | "-.INF" = scalar {
        return Some(f64::NEG_INFINITY);
    }
    if let ".nan" | ".NaN" | ".NAN" = scalar {
        return Some(f64::NAN);
    }
    unpositive.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Leading zeros followed by digits are a string in YAML 1.2 (`0755`).
fn digits_but_not_number(scalar: &str) -> bool {
    let scalar = scalar.strip_prefix(['-', '+']).unwrap_or(scalar);
    scalar.len() > 1 && scalar.starts_with('0') && scalar[1..].bytes().all(|b| b.is_ascii_digit())
}

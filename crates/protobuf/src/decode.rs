//! The schema-driven walker: turns one message's wire bytes into its JSON value using the generated table —
//! field names, scalars, repeated fields (packed or not), maps, nested messages, inline embeds — and hands the
//! special apimachinery messages to `special.rs`. It does not know about the `k8s\0` envelope or kinds (`lib.rs`),
//! and it adds nothing that was not on the wire: no defaults, no zero-value pruning.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::schema::{self, Card, Field, Message, Ty};
use crate::special::Special;
use crate::wire::{Reader, WireValue};
use crate::ProtobufError;

/// Walks messages with a nesting limit.
pub(crate) struct Decoder {
    /// Deepest message nesting accepted; the top-level object is depth 0.
    pub(crate) max_depth: usize,
}

impl Decoder {
    /// The JSON value of `bytes` read as `message`, which sits `depth` messages below the top-level object.
    pub(crate) fn message(
        &self,
        bytes: &[u8],
        message: &'static Message,
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        self.check_depth(depth)?;
        if let Some(special) = Special::of(message.name) {
            return special.decode(bytes);
        }
        let mut out = Map::new();
        self.fields_into(bytes, message, depth, &mut out)?;
        Ok(Value::Object(out))
    }

    fn check_depth(&self, depth: usize) -> Result<(), ProtobufError> {
        if depth > self.max_depth {
            return Err(ProtobufError::TooDeep {
                path: String::new(),
                limit: self.max_depth,
            });
        }
        Ok(())
    }

    /// Adds the fields of `bytes` to `out`. Inline embeds land here too, which is how they are flattened.
    fn fields_into(
        &self,
        bytes: &[u8],
        message: &'static Message,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<(), ProtobufError> {
        let mut reader = Reader::new(bytes);
        while let Some((tag, value)) = reader.next_field().map_err(ProtobufError::wire)? {
            // proto2: fields this schema does not know (newer clients) are skipped, not rejected.
            let Some(field) = message.field(tag) else { continue };
            self.field_into(field, value, depth, out)
                .map_err(|e| e.within(field.json))?;
        }
        Ok(())
    }

    fn field_into(
        &self,
        field: &'static Field,
        value: WireValue<'_>,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<(), ProtobufError> {
        match field.card {
            Card::Single if field.inline => {
                let bytes = expect_bytes(value, field.ty)?;
                self.check_depth(depth + 1)?;
                self.fields_into(bytes, message_of(field.ty)?, depth + 1, out)
            }
            Card::Single => {
                let decoded = self.value(field.ty, value, depth)?;
                match out.get_mut(field.json) {
                    // proto2 merges a repeated occurrence of a singular message field into the first one.
                    Some(existing) => merge(existing, decoded),
                    None => {
                        out.insert(field.json.to_owned(), decoded);
                    }
                }
                Ok(())
            }
            Card::Repeated => {
                let slot = out.entry(field.json).or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = slot else {
                    return Err(invalid(
                        "repeated field collides with a singular field of the same JSON name",
                    ));
                };
                match (field.ty, value) {
                    // Packed encoding: one length-delimited run of varints or fixed64s. Go never packs the
                    // Kubernetes protos (proto2 default), but any proto encoder may, and parsers must accept both.
                    (Ty::Bool | Ty::Int32 | Ty::Int64, WireValue::Bytes(run)) => {
                        let mut r = Reader::new(run);
                        while !r.is_empty() {
                            let v = r.varint().map_err(ProtobufError::wire)?;
                            items.push(scalar_varint(field.ty, v));
                        }
                    }
                    (Ty::Double, WireValue::Bytes(run)) => {
                        let mut r = Reader::new(run);
                        while !r.is_empty() {
                            items.push(double(r.fixed64().map_err(ProtobufError::wire)?)?);
                        }
                    }
                    _ => items.push(self.value(field.ty, value, depth)?),
                }
                Ok(())
            }
            Card::Map(key_ty) => {
                // Each entry is a message {1: key, 2: value}; a missing half takes its type's zero value.
                let entry = expect_bytes(value, field.ty)?;
                self.check_depth(depth + 1)?;
                let (mut key, mut val) = (None, None);
                let mut reader = Reader::new(entry);
                while let Some((tag, v)) = reader.next_field().map_err(ProtobufError::wire)? {
                    match tag {
                        1 => key = Some(self.value(key_ty, v, depth + 1)?),
                        2 => val = Some(self.value(field.ty, v, depth + 1)?),
                        _ => {}
                    }
                }
                let key = match key {
                    None => String::new(),
                    Some(Value::String(s)) => s,
                    // JSON object keys are strings; Go's encoder prints integer keys in decimal too.
                    Some(other) => other.to_string(),
                };
                let val = match val {
                    Some(v) => v,
                    None => self.zero(field.ty, depth + 1)?,
                };
                let slot = out.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(map) = slot else {
                    return Err(invalid("map field collides with a non-map field of the same JSON name"));
                };
                // A later entry for the same key replaces the earlier one, as Go's map unmarshalling does.
                map.insert(key, val);
                Ok(())
            }
        }
    }

    /// One value of type `ty` (`depth` is that of the message holding it).
    fn value(&self, ty: Ty, value: WireValue<'_>, depth: usize) -> Result<Value, ProtobufError> {
        match (ty, value) {
            (Ty::Bool | Ty::Int32 | Ty::Int64, WireValue::Varint(v)) => Ok(scalar_varint(ty, v)),
            (Ty::Double, WireValue::Fixed64(v)) => double(v),
            // Go's generated unmarshallers do not validate UTF-8, and encoding/json replaces invalid bytes with
            // U+FFFD; a lossy conversion does the same.
            (Ty::String, WireValue::Bytes(b)) => Ok(Value::String(String::from_utf8_lossy(b).into_owned())),
            // []byte marshals to standard base64 in Go's encoding/json (Secret.data values).
            (Ty::Bytes, WireValue::Bytes(b)) => Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(b))),
            (Ty::Message(_), WireValue::Bytes(b)) => self.message(b, message_of(ty)?, depth + 1),
            (ty, other) => Err(invalid(format!("{} value for a {ty:?} field", other.kind_name()))),
        }
    }

    /// The value of an absent map value: the zero value of its type.
    fn zero(&self, ty: Ty, depth: usize) -> Result<Value, ProtobufError> {
        Ok(match ty {
            Ty::Bool => Value::Bool(false),
            Ty::Int32 | Ty::Int64 => Value::from(0),
            Ty::Double => Value::from(0.0),
            Ty::String | Ty::Bytes => Value::String(String::new()),
            Ty::Message(_) => self.message(&[], message_of(ty)?, depth)?,
        })
    }
}

/// A varint as its scalar type: proto `int32` is sign-extended to 64 bits on the wire and truncated back.
fn scalar_varint(ty: Ty, v: u64) -> Value {
    match ty {
        Ty::Bool => Value::Bool(v != 0),
        Ty::Int32 => Value::from(v as i64 as i32),
        _ => Value::from(v as i64),
    }
}

fn double(bits: u64) -> Result<Value, ProtobufError> {
    // JSON has no NaN or infinity; Go's encoder refuses them too.
    serde_json::Number::from_f64(f64::from_bits(bits))
        .map(Value::Number)
        .ok_or_else(|| invalid("non-finite double"))
}

fn expect_bytes(value: WireValue<'_>, ty: Ty) -> Result<&[u8], ProtobufError> {
    match value {
        WireValue::Bytes(b) => Ok(b),
        other => Err(invalid(format!("{} value for a {ty:?} field", other.kind_name()))),
    }
}

fn message_of(ty: Ty) -> Result<&'static Message, ProtobufError> {
    match ty {
        Ty::Message(i) => schema::message(i).ok_or_else(|| invalid("schema table references a missing message")),
        _ => Err(invalid("schema table marks a scalar field as a message")),
    }
}

/// Merges a second occurrence of a singular field into the first: objects field by field, arrays appended,
/// anything else replaced (proto2 "last one wins" for scalars).
fn merge(existing: &mut Value, new: Value) {
    match (existing, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (k, v) in new {
                match old.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        old.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(old), Value::Array(new)) => old.extend(new),
        (slot, new) => *slot = new,
    }
}

fn invalid(reason: impl Into<String>) -> ProtobufError {
    ProtobufError::InvalidValue {
        path: String::new(),
        reason: reason.into(),
    }
}

//! The protobuf wire format, one field at a time: tags, varints, fixed 32/64-bit values and length-delimited
//! payloads, every length checked against the bytes actually present. It knows no schema and builds no JSON; it
//! never allocates, so a hostile length prefix cannot make it reserve memory.

/// What can be wrong with the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a tag, a value or a length-delimited payload.
    #[error("truncated input")]
    Truncated,
    /// A varint ran past ten bytes, or past 64 bits.
    #[error("varint longer than 64 bits")]
    VarintOverflow,
    /// Field number 0 or above 2^29-1.
    #[error("invalid field number {0}")]
    BadFieldNumber(u64),
    /// Wire types 3 and 4 (groups, unused by the Kubernetes protos) and the undefined 6 and 7.
    #[error("unsupported wire type {0}")]
    BadWireType(u8),
}

/// One value as it appears on the wire, before the schema says what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, embedded messages, packed repeated scalars, map entries.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl WireValue<'_> {
    /// A short name for error messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "32-bit",
        }
    }
}

/// A cursor over one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// True when every byte has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next (field number, value), or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(WireError::BadFieldNumber(number));
        }
        let value = match (key & 7) as u8 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.take_array::<8>()?)),
            2 => {
                let len = self.varint()?;
                // Compare before converting: a length beyond the buffer is truncation, whatever its size.
                let remaining = (self.buf.len() - self.pos) as u64;
                if len > remaining {
                    return Err(WireError::Truncated);
                }
                WireValue::Bytes(self.take(len as usize)?)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.take_array::<4>()?)),
            other => return Err(WireError::BadWireType(other)),
        };
        // The check above bounds the number to 29 bits.
        Ok(Some((number as u32, value)))
    }

    /// A base-128 varint, little-endian groups of seven bits.
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(WireError::Truncated)?;
            self.pos += 1;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may only carry the 64th bit.
            if i == 9 && bits > 1 {
                return Err(WireError::VarintOverflow);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow)
    }

    /// Eight little-endian bytes (a packed `double`).
    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take_array::<8>()?))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(len).ok_or(WireError::Truncated)?;
        let slice = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(bytes: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, WireError> {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        while let Some(f) = r.next_field()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn reads_each_wire_type() {
        let bytes = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 0x02, b'h', b'i', // 3: "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        assert_eq!(
            fields(&bytes),
            Ok(vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::Fixed64(1)),
                (3, WireValue::Bytes(b"hi")),
                (4, WireValue::Fixed32(2)),
            ])
        );
    }

    #[test]
    fn negative_int32_uses_ten_byte_varint() {
        let bytes = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(fields(&bytes), Ok(vec![(1, WireValue::Varint(u64::MAX))]));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let check = |bytes: &[u8], expected: WireError| assert_eq!(fields(bytes), Err(expected), "{bytes:x?}");
        check(&[0x08], WireError::Truncated);
        check(&[0x08, 0x80], WireError::Truncated);
        check(&[0x0a, 0x05, 1, 2], WireError::Truncated);
        check(
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            WireError::Truncated,
        );
        check(&[0x11, 1, 2, 3], WireError::Truncated);
        check(&[0x15, 1], WireError::Truncated);
        check(
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            WireError::VarintOverflow,
        );
        check(
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            WireError::VarintOverflow,
        );
        check(&[0x00, 0x00], WireError::BadFieldNumber(0));
        check(&[0x0b], WireError::BadWireType(3));
        check(&[0x0e], WireError::BadWireType(6));
    }
}

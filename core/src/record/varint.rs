//! Kafka's variable-length integers: zig-zag encoded, then base-128 little-endian groups.
//!
//! Kafka's record format (and protobuf's `sint32`/`sint64`) writes a signed integer `n` as the
//! unsigned zig-zag value `(n << 1) ^ (n >> (bits - 1))` — so small magnitudes of either sign are
//! short — in groups of 7 bits, least significant group first, with the high bit of each byte set
//! when another byte follows. A 32-bit *varint* takes 1–5 bytes, a 64-bit *varlong* 1–10.
//!
//! | value            | zig-zag        | bytes            |
//! | ---------------- | -------------- | ---------------- |
//! | 0                | 0              | `00`             |
//! | -1               | 1              | `01`             |
//! | 1                | 2              | `02`             |
//! | 63               | 126            | `7e`             |
//! | -64              | 127            | `7f`             |
//! | 64               | 128            | `80 01`          |
//! | `i32::MAX`       | `0xffff_fffe`  | `fe ff ff ff 0f` |
//! | `i32::MIN`       | `0xffff_ffff`  | `ff ff ff ff 0f` |
//!
//! Decoding is stricter than Kafka's `ByteUtils` in one respect: bits that do not fit the type
//! (the top 4 bits of a varint's fifth byte, the top 7 of a varlong's tenth) must be zero, where
//! Kafka silently drops them. No Kafka encoder sets them, so only corrupt input is affected.
//! Non-minimal encodings (`80 00` for 0) are accepted, as Kafka and protobuf accept them.

/// The most bytes a 32-bit varint takes.
pub const VARINT_SIZE_MAX: usize = 5;
/// The most bytes a 64-bit varlong takes.
pub const VARLONG_SIZE_MAX: usize = 10;

/// The largest value the last (fifth) byte of a varint may hold: 32 − 4 × 7 = 4 bits left.
const VARINT_LAST_BYTE_MAX: u8 = 0x0f;
/// The largest value the last (tenth) byte of a varlong may hold: 64 − 9 × 7 = 1 bit left.
const VARLONG_LAST_BYTE_MAX: u8 = 0x01;

const _: () = assert!(VARINT_SIZE_MAX * 7 >= 32 && (VARINT_SIZE_MAX - 1) * 7 < 32);
const _: () = assert!(VARLONG_SIZE_MAX * 7 >= 64 && (VARLONG_SIZE_MAX - 1) * 7 < 64);
const _: () = assert!(VARINT_LAST_BYTE_MAX as u32 == (1 << (32 - 7 * (VARINT_SIZE_MAX - 1))) - 1);
const _: () = assert!(VARLONG_LAST_BYTE_MAX as u32 == (1 << (64 - 7 * (VARLONG_SIZE_MAX - 1))) - 1);

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended before the last byte of the varint (one without the continuation bit).
    Truncated,
    /// The varint is longer than its type allows, or sets bits beyond the type's width.
    Overlong,
}

/// Zig-zag encodes a 32-bit value: 0, -1, 1, -2, … become 0, 1, 2, 3, ….
#[inline]
pub const fn zigzag_encode_i32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

/// Inverse of [`zigzag_encode_i32`].
#[inline]
pub const fn zigzag_decode_i32(zigzag: u32) -> i32 {
    ((zigzag >> 1) as i32) ^ ((zigzag & 1) as i32).wrapping_neg()
}

/// Zig-zag encodes a 64-bit value.
#[inline]
pub const fn zigzag_encode_i64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag_encode_i64`].
#[inline]
pub const fn zigzag_decode_i64(zigzag: u64) -> i64 {
    ((zigzag >> 1) as i64) ^ ((zigzag & 1) as i64).wrapping_neg()
}

/// Bytes taken by an unsigned base-128 value: one per started group of 7 significant bits.
#[inline]
const fn unsigned_size(value: u64) -> usize {
    let significant_bits = 64 - (value | 1).leading_zeros() as usize;
    significant_bits.div_ceil(7)
}

/// Bytes [`put_varint`] writes for `value` (1–5).
#[inline]
pub const fn varint_size(value: i32) -> usize {
    unsigned_size(zigzag_encode_i32(value) as u64)
}

/// Bytes [`put_varlong`] writes for `value` (1–10).
#[inline]
pub const fn varlong_size(value: i64) -> usize {
    unsigned_size(zigzag_encode_i64(value))
}

#[inline]
fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    // Byte by byte: after the caller's reservation each push is a predictable branch and a
    // store, cheaper than a variable-length copy (a `memcpy` call) of a few bytes.
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` as a zig-zag varint (Kafka's `ByteUtils.writeVarint`).
#[inline]
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    let zigzag = zigzag_encode_i32(value);
    if zigzag < 0x80 {
        out.push(zigzag as u8);
    } else {
        put_unsigned(out, u64::from(zigzag));
    }
}

/// Appends `value` as a zig-zag varlong (Kafka's `ByteUtils.writeVarlong`).
#[inline]
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let zigzag = zigzag_encode_i64(value);
    if zigzag < 0x80 {
        out.push(zigzag as u8);
    } else {
        put_unsigned(out, zigzag);
    }
}

#[inline]
fn read_unsigned(
    bytes: &[u8],
    position: usize,
    size_max: usize,
    last_byte_max: u8,
) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for index in 0..size_max {
        let Some(&byte) = bytes.get(position + index) else {
            return Err(VarintError::Truncated);
        };
        if index == size_max - 1 && byte > last_byte_max {
            // Either the continuation bit is set on the last byte the type allows, or the
            // byte carries bits beyond the type's width.
            return Err(VarintError::Overlong);
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte < 0x80 {
            return Ok((value, position + index + 1));
        }
    }
    // Unreachable in practice: the last allowed byte either ends the value or is rejected above.
    Err(VarintError::Overlong)
}

/// Reads a zig-zag varint starting at `bytes[position]`; returns the value and the position just
/// past it.
#[inline]
pub fn read_varint(bytes: &[u8], position: usize) -> Result<(i32, usize), VarintError> {
    if let Some(&byte) = bytes.get(position)
        && byte < 0x80
    {
        return Ok((zigzag_decode_i32(u32::from(byte)), position + 1));
    }
    let (zigzag, next) = read_unsigned(bytes, position, VARINT_SIZE_MAX, VARINT_LAST_BYTE_MAX)?;
    // The last-byte bound keeps the value within 32 bits.
    Ok((zigzag_decode_i32(zigzag as u32), next))
}

/// Reads a zig-zag varlong starting at `bytes[position]`; returns the value and the position
/// just past it.
#[inline]
pub fn read_varlong(bytes: &[u8], position: usize) -> Result<(i64, usize), VarintError> {
    if let Some(&byte) = bytes.get(position)
        && byte < 0x80
    {
        return Ok((zigzag_decode_i64(u64::from(byte)), position + 1));
    }
    let (zigzag, next) = read_unsigned(bytes, position, VARLONG_SIZE_MAX, VARLONG_LAST_BYTE_MAX)?;
    Ok((zigzag_decode_i64(zigzag), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode32(value: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    fn encode64(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, value);
        out
    }

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_values() {
        let cases: [(i32, u32); 7] = [
            (0, 0),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (2, 4),
            (i32::MAX, 0xffff_fffe),
            (i32::MIN, u32::MAX),
        ];
        for (value, zigzag) in cases {
            assert_eq!(zigzag_encode_i32(value), zigzag, "{value}");
            assert_eq!(zigzag_decode_i32(zigzag), value, "{value}");
            assert_eq!(zigzag_encode_i64(i64::from(value)), u64::from(zigzag), "{value}");
        }
        assert_eq!(zigzag_encode_i64(i64::MAX), u64::MAX - 1);
        assert_eq!(zigzag_encode_i64(i64::MIN), u64::MAX);
        assert_eq!(zigzag_decode_i64(u64::MAX), i64::MIN);
        assert_eq!(zigzag_decode_i64(u64::MAX - 1), i64::MAX);
    }

    #[test]
    fn varint_bytes_match_hand_computed_vectors() {
        let cases: [(i32, &[u8]); 10] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (-65, &[0x81, 0x01]),
            (300, &[0xd8, 0x04]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (value, bytes) in cases {
            assert_eq!(encode32(value), bytes, "encode {value}");
            assert_eq!(varint_size(value), bytes.len(), "size {value}");
            assert_eq!(read_varint(bytes, 0), Ok((value, bytes.len())), "decode {value}");
        }
    }

    #[test]
    fn varlong_bytes_match_hand_computed_vectors() {
        let cases: [(i64, &[u8]); 8] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (168, &[0xd0, 0x02]),
            (i64::from(i32::MAX) + 1, &[0x80, 0x80, 0x80, 0x80, 0x10]),
            (i64::MAX, &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            (i64::MIN, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            (i64::MIN + 1, &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ];
        for (value, bytes) in cases {
            assert_eq!(encode64(value), bytes, "encode {value}");
            assert_eq!(varlong_size(value), bytes.len(), "size {value}");
            assert_eq!(read_varlong(bytes, 0), Ok((value, bytes.len())), "decode {value}");
        }
    }

    #[test]
    fn sizes_change_exactly_at_group_boundaries() {
        // Zig-zag values 2^(7k) - 1 are the largest of k bytes.
        for bytes in 1..VARINT_SIZE_MAX {
            let largest = (1u64 << (7 * bytes)) - 1;
            let positive = zigzag_decode_i32(largest as u32);
            assert_eq!(varint_size(positive), bytes);
            assert_eq!(varint_size(zigzag_decode_i32((largest + 1) as u32)), bytes + 1);
        }
        for bytes in 1..VARLONG_SIZE_MAX {
            let largest = (1u64 << (7 * bytes)) - 1;
            assert_eq!(varlong_size(zigzag_decode_i64(largest)), bytes);
            assert_eq!(varlong_size(zigzag_decode_i64(largest + 1)), bytes + 1);
        }
    }

    #[test]
    fn reads_at_an_offset_and_reports_the_next_position() {
        let bytes = [0xaa, 0xd8, 0x04, 0x02];
        assert_eq!(read_varint(&bytes, 1), Ok((300, 3)));
        assert_eq!(read_varint(&bytes, 3), Ok((1, 4)));
        assert_eq!(read_varint(&bytes, 4), Err(VarintError::Truncated));
        assert_eq!(read_varint(&bytes, usize::MAX), Err(VarintError::Truncated));
    }

    #[test]
    fn truncated_input_is_reported_as_truncated() {
        assert_eq!(read_varint(&[], 0), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0x80], 0), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff], 0), Err(VarintError::Truncated));
        assert_eq!(read_varlong(&[0xff; 9], 0), Err(VarintError::Truncated));
    }

    #[test]
    fn overlong_or_overflowing_input_is_rejected() {
        // Continuation bit on the fifth byte of a varint.
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x80, 0x00], 0),
            Err(VarintError::Overlong)
        );
        // Fifth byte carrying bits beyond 32.
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x10], 0), Err(VarintError::Overlong));
        // Tenth byte of a varlong carrying bits beyond 64.
        let mut bytes = [0xff; 10];
        bytes[9] = 0x02;
        assert_eq!(read_varlong(&bytes, 0), Err(VarintError::Overlong));
        bytes[9] = 0x81;
        assert_eq!(read_varlong(&bytes, 0), Err(VarintError::Overlong));
    }

    #[test]
    fn non_minimal_encodings_are_accepted_like_kafka() {
        assert_eq!(read_varint(&[0x80, 0x00], 0), Ok((0, 2)));
        assert_eq!(read_varlong(&[0x82, 0x80, 0x00], 0), Ok((1, 3)));
    }

    #[test]
    fn every_boundary_value_round_trips() {
        let mut values32 = vec![0, 1, -1, i32::MAX, i32::MIN, i32::MAX - 1, i32::MIN + 1];
        let mut values64 = vec![0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1];
        for shift in 0..63 {
            let power = 1i64 << shift;
            values64.extend([power, power - 1, -power, -power - 1]);
            if shift < 31 {
                let power = 1i32 << shift;
                values32.extend([power, power - 1, -power, -power - 1]);
            }
        }
        for value in values32 {
            let bytes = encode32(value);
            assert_eq!(bytes.len(), varint_size(value));
            assert_eq!(read_varint(&bytes, 0), Ok((value, bytes.len())));
        }
        for value in values64 {
            let bytes = encode64(value);
            assert_eq!(bytes.len(), varlong_size(value));
            assert_eq!(read_varlong(&bytes, 0), Ok((value, bytes.len())));
        }
    }
}

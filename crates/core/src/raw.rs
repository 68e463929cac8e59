//! The protocol's raw tensor encoding, shared by the HTTP binary tensor data extension and gRPC's
//! `raw_input_contents` / `raw_output_contents`: elements row-major, little-endian, at their
//! natural width (BOOL one byte, 0 or 1; FP16/BF16 their 16-bit patterns); `BYTES` elements each
//! a 4-byte little-endian length followed by that many bytes.

use crate::{DataType, InferError, TensorData};

/// Bytes `data` takes in the raw encoding.
pub fn encoded_len(data: &TensorData) -> usize {
    match data {
        TensorData::Bytes(v) => v.iter().map(|e| 4 + e.len()).sum(),
        other => other.len() * other.datatype().size().unwrap_or(0),
    }
}

/// Appends the raw encoding of `data` to `out`.
pub fn encode(data: &TensorData, out: &mut Vec<u8>) {
    out.reserve(encoded_len(data));
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Uint16(v) => le!(v),
        TensorData::Uint32(v) => le!(v),
        TensorData::Uint64(v) => le!(v),
        TensorData::Int8(v) => out.extend(v.iter().map(|&x| x as u8)),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp16(v) => le!(v),
        TensorData::Bf16(v) => le!(v),
        TensorData::Fp32(v) => le!(v),
        TensorData::Fp64(v) => le!(v),
        TensorData::Bytes(v) => {
            for e in v {
                // Elements longer than 4 GiB cannot be framed; nothing we produce comes close.
                out.extend_from_slice(&(e.len() as u32).to_le_bytes());
                out.extend_from_slice(e);
            }
        }
    }
}

/// The raw encoding of `data` as a new buffer.
pub fn to_vec(data: &TensorData) -> Vec<u8> {
    let mut out = Vec::new();
    encode(data, &mut out);
    out
}

/// Splits a `BYTES` buffer into its length-prefixed elements.
fn decode_bytes(name: &str, raw: &[u8], n: usize) -> Result<Vec<Vec<u8>>, InferError> {
    let mut out = Vec::with_capacity(n.min(raw.len() / 4));
    let mut rest = raw;
    while !rest.is_empty() {
        let [a, b, c, d, ..] = *rest else {
            return Err(InferError::invalid(format!(
                "input '{name}': BYTES element {} has a truncated 4-byte length prefix ({} byte(s) left)",
                out.len(),
                rest.len()
            )));
        };
        let len = u32::from_le_bytes([a, b, c, d]) as usize;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(InferError::invalid(format!(
                "input '{name}': BYTES element {} claims {len} bytes but only {} remain",
                out.len(),
                rest.len()
            )));
        }
        out.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    if out.len() != n {
        return Err(InferError::invalid(format!(
            "input '{name}': the shape needs {n} BYTES element(s) but the raw data holds {}",
            out.len()
        )));
    }
    Ok(out)
}

/// Decodes `n` elements of type `dt` from `raw`, which must hold exactly that many.
pub fn decode(name: &str, dt: DataType, raw: &[u8], n: usize) -> Result<TensorData, InferError> {
    let Some(width) = dt.size() else {
        return Ok(TensorData::Bytes(decode_bytes(name, raw, n)?));
    };
    let want = n.checked_mul(width).ok_or_else(|| {
        InferError::invalid(format!("input '{name}': {n} elements of {dt} are too many"))
    })?;
    if raw.len() != want {
        return Err(InferError::invalid(format!(
            "input '{name}': {n} {dt} element(s) need {want} bytes of raw data, got {}",
            raw.len()
        )));
    }
    macro_rules! le {
        ($var:ident, $t:ty, $w:literal) => {
            TensorData::$var(
                raw.chunks_exact($w)
                    .map(|c| {
                        let mut b = [0u8; $w];
                        b.copy_from_slice(c);
                        <$t>::from_le_bytes(b)
                    })
                    .collect(),
            )
        };
    }
    Ok(match dt {
        DataType::Bool => TensorData::Bool(
            raw.iter()
                .enumerate()
                .map(|(i, &b)| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    other => Err(InferError::invalid(format!(
                        "input '{name}': BOOL element {i} is the byte {other}; expected 0 or 1"
                    ))),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
        DataType::Int8 => TensorData::Int8(raw.iter().map(|&b| b as i8).collect()),
        DataType::Uint16 => le!(Uint16, u16, 2),
        DataType::Int16 => le!(Int16, i16, 2),
        DataType::Fp16 => le!(Fp16, u16, 2),
        DataType::Bf16 => le!(Bf16, u16, 2),
        DataType::Uint32 => le!(Uint32, u32, 4),
        DataType::Int32 => le!(Int32, i32, 4),
        DataType::Fp32 => le!(Fp32, f32, 4),
        DataType::Uint64 => le!(Uint64, u64, 8),
        DataType::Int64 => le!(Int64, i64, 8),
        DataType::Fp64 => le!(Fp64, f64, 8),
        DataType::Bytes => TensorData::Bytes(decode_bytes(name, raw, n)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<TensorData> {
        vec![
            TensorData::Bool(vec![true, false, true]),
            TensorData::Uint8(vec![0, 255]),
            TensorData::Uint16(vec![1, 65535]),
            TensorData::Uint32(vec![7, u32::MAX]),
            TensorData::Uint64(vec![u64::MAX]),
            TensorData::Int8(vec![-128, 127]),
            TensorData::Int16(vec![-2, 300]),
            TensorData::Int32(vec![-70000]),
            TensorData::Int64(vec![i64::MIN, 5]),
            TensorData::Fp16(vec![0x3c00, 0xc000]),
            TensorData::Bf16(vec![0x3f80]),
            TensorData::Fp32(vec![1.5, -0.0, f32::INFINITY]),
            TensorData::Fp64(vec![std::f64::consts::PI]),
            // BYTES are bytes: NUL and invalid UTF-8 travel as they are.
            TensorData::Bytes(vec![
                b"setosa".to_vec(),
                vec![],
                vec![0, 1, 2],
                vec![0xff, 0xfe],
                vec![0],
            ]),
        ]
    }

    #[test]
    fn every_type_round_trips() {
        for d in samples() {
            let raw = to_vec(&d);
            assert_eq!(raw.len(), encoded_len(&d));
            let back = decode("x", d.datatype(), &raw, d.len()).unwrap();
            assert_eq!(back, d);
        }
    }

    #[test]
    fn little_endian_and_length_prefixed() {
        assert_eq!(to_vec(&TensorData::Fp32(vec![1.0])), vec![0, 0, 0x80, 0x3f]);
        assert_eq!(
            to_vec(&TensorData::Bytes(vec![b"ab".to_vec()])),
            vec![2, 0, 0, 0, b'a', b'b']
        );
    }

    #[test]
    fn sizes_that_do_not_add_up_are_errors() {
        let e = decode("x", DataType::Fp32, &[0; 7], 2).unwrap_err();
        assert!(e.message.contains("need 8 bytes"), "{}", e.message);
        let e = decode("x", DataType::Bytes, &[5, 0, 0, 0, 1], 1).unwrap_err();
        assert!(e.message.contains("claims 5 bytes"), "{}", e.message);
        let e = decode("x", DataType::Bytes, &[1, 0], 1).unwrap_err();
        assert!(e.message.contains("truncated"), "{}", e.message);
        let e = decode("x", DataType::Bytes, &[0, 0, 0, 0], 2).unwrap_err();
        assert!(e.message.contains("needs 2"), "{}", e.message);
        let e = decode("x", DataType::Bool, &[2], 1).unwrap_err();
        assert!(e.message.contains("expected 0 or 1"), "{}", e.message);
        assert!(decode("x", DataType::Fp64, &[], usize::MAX).is_err());
    }
}

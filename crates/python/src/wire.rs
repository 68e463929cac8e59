//! The channel between the server and a worker: frames on a Unix stream socket (the worker's
//! fd 3). A frame is a 4-byte little-endian body length, a 1-byte tag and the body. Tensors
//! travel as raw bytes in the protocol's raw encoding ([`ferroserve_core::raw`]: row-major,
//! little-endian, BYTES elements length-prefixed), so a batch costs one copy each way and no
//! text; only the small control messages (ready, errors, an adapter's query) are JSON.
//!
//! Tensors body: `u32` count, then per tensor `u16` name length, the name, `u8` data type (its
//! index in [`DataType::ALL`]), `u8` flags (bit 0: BYTES elements are JSON texts), `u8` rank,
//! `rank × i64` dimensions, `u64` byte length, the bytes. The runner (`python/ferroserve/
//! _runner.py`) reads and writes the same.

use std::io::{self, IoSlice, Read, Write};

use ferroserve_core::tensor::{Param, Parameters};
use ferroserve_core::{raw, DataType, Tensor, TensorData};

/// Server → worker: run `predict` on these tensors.
pub const PREDICT: u8 = 1;
/// Server → worker: run the HTTP adapter (JSON header, then the request body).
pub const ADAPT: u8 = 2;
/// Worker → server: started, with a JSON description.
pub const READY: u8 = 16;
/// Worker → server: the answer's tensors.
pub const OK: u8 = 17;
/// Worker → server: `predict` or the adapter raised (JSON: type, message, traceback, kind).
pub const ERROR: u8 = 18;
/// Worker → server: could not start (JSON as for [`ERROR`]).
pub const START_FAILED: u8 = 19;

/// Largest frame either side accepts (a batch of 1 GiB is refused, not allocated).
pub const MAX_FRAME: usize = 1 << 30;

/// The parameter that marks a BYTES output whose elements are JSON texts, one per row.
pub const CONTENT_TYPE: &str = "content_type";
pub const JSON: &str = "json";

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, tag: u8, body: &[u8]) -> io::Result<()> {
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a batch of {} bytes is over the worker channel's {} bytes",
                body.len(),
                MAX_FRAME
            ),
        ));
    }
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    head[4] = tag;
    // One write for head and body when the socket takes it: a reader woken by the head alone
    // would sleep again for the body, a second wake-up per call (tens of microseconds).
    let mut sent = 0;
    let total = head.len() + body.len();
    while sent < total {
        let n = if sent < head.len() {
            w.write_vectored(&[IoSlice::new(&head[sent..]), IoSlice::new(body)])
        } else {
            w.write(&body[sent - head.len()..])
        };
        match n {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    w.flush()
}

/// Reads one frame: its tag and body.
pub fn read_frame(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("worker sent a frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((head[4], body))
}

fn code(dt: DataType) -> u8 {
    DataType::ALL
        .iter()
        .position(|d| *d == dt)
        .expect("every data type is in DataType::ALL") as u8
}

fn is_json(t: &Tensor) -> bool {
    t.parameters.get(CONTENT_TYPE).and_then(Param::as_str) == Some(JSON)
}

/// Encodes tensors. BF16 goes as FP32 (NumPy has no bfloat16).
pub fn encode_tensors(tensors: &[Tensor]) -> Vec<u8> {
    let size: usize = tensors
        .iter()
        .map(|t| 16 + t.name.len() + 8 * t.shape.len() + raw::encoded_len(&t.data) * 2)
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(tensors.len() as u32).to_le_bytes());
    for t in tensors {
        let name = t.name.as_bytes();
        let name = &name[..name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        let widened;
        let data = match &t.data {
            TensorData::Bf16(v) => {
                widened = TensorData::Fp32(
                    v.iter()
                        .map(|&h| ferroserve_core::tensor::bf16_to_f32(h))
                        .collect(),
                );
                &widened
            }
            d => d,
        };
        out.push(code(data.datatype()));
        out.push(u8::from(is_json(t)));
        out.push(t.shape.len() as u8);
        for d in &t.shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        let len_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        raw::encode(data, &mut out);
        let n = (out.len() - len_at - 8) as u64;
        out[len_at..len_at + 8].copy_from_slice(&n.to_le_bytes());
    }
    out
}

/// A reader over a frame body that names what was short.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| "the worker's answer is cut short".to_string())?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

/// Decodes tensors written by the runner.
pub fn decode_tensors(body: &[u8]) -> Result<Vec<Tensor>, String> {
    let mut c = Cursor { b: body, at: 0 };
    let count = c.u32()? as usize;
    if count > 4096 {
        return Err(format!("the worker answered {count} outputs"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let n = c.u16()? as usize;
        let name = String::from_utf8_lossy(c.take(n)?).into_owned();
        let dt = *DataType::ALL
            .get(c.u8()? as usize)
            .ok_or_else(|| format!("output {name:?}: unknown data type code"))?;
        let flags = c.u8()?;
        let rank = c.u8()? as usize;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = c.u64()? as i64;
            if d < 0 {
                return Err(format!("output {name:?}: negative dimension"));
            }
            shape.push(d);
        }
        let len = c.u64()? as usize;
        let bytes = c.take(len)?;
        let elements = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d as usize))
            .ok_or_else(|| format!("output {name:?}: shape too large"))?;
        let data = raw::decode(&name, dt, bytes, elements).map_err(|e| e.message)?;
        let mut parameters = Parameters::default();
        if flags & 1 != 0 {
            parameters.insert(CONTENT_TYPE, Param::Str(JSON.into()));
        }
        out.push(Tensor {
            name,
            shape,
            data,
            parameters,
        });
    }
    if c.at != body.len() {
        return Err("the worker's answer has bytes past its last output".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip() {
        let mut json = Tensor::new(
            "j",
            vec![2],
            TensorData::Bytes(vec![b"[1, 2]".to_vec(), b"{}".to_vec()]),
        );
        json.parameters
            .insert(CONTENT_TYPE, Param::Str(JSON.into()));
        let ts = vec![
            Tensor::new(
                "a",
                vec![2, 2],
                TensorData::Fp64(vec![1.0, f64::NAN, -0.0, 4.5]),
            ),
            Tensor::new("b", vec![3], TensorData::Int64(vec![i64::MIN, 0, 7])),
            Tensor::new("s", vec![1], TensorData::Bytes(vec![b"a\0b".to_vec()])),
            json,
        ];
        let back = decode_tensors(&encode_tensors(&ts)).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back[1], ts[1]);
        assert_eq!(back[2], ts[2]);
        assert_eq!(back[3], ts[3]);
        let TensorData::Fp64(v) = &back[0].data else {
            panic!()
        };
        assert!(v[1].is_nan() && v[2].is_sign_negative() && v[3] == 4.5);
        assert_eq!(back[0].shape, vec![2, 2]);
    }

    #[test]
    fn bfloat16_goes_as_fp32() {
        let t = Tensor::new("h", vec![1], TensorData::Bf16(vec![0x3f80]));
        let back = decode_tensors(&encode_tensors(&[t])).unwrap();
        assert_eq!(back[0].data, TensorData::Fp32(vec![1.0]));
    }

    #[test]
    fn short_or_bad_answers_are_errors() {
        let body = encode_tensors(&[Tensor::new("a", vec![2], TensorData::Int32(vec![1, 2]))]);
        for cut in [1, 5, body.len() - 1] {
            assert!(decode_tensors(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = body.clone();
        long.push(0);
        assert!(decode_tensors(&long).unwrap_err().contains("past its last"));
        // A shape that does not match the bytes.
        let mut bad = body;
        let dims_at = 4 + 2 + 1 + 1 + 1 + 1;
        bad[dims_at..dims_at + 8].copy_from_slice(&3u64.to_le_bytes());
        assert!(decode_tensors(&bad).is_err());
    }

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let mut buf = Vec::new();
        write_frame(&mut buf, PREDICT, b"abc").unwrap();
        let (tag, body) = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!((tag, body.as_slice()), (PREDICT, &b"abc"[..]));
        let mut huge = Vec::new();
        huge.extend_from_slice(&(u32::MAX).to_le_bytes());
        huge.push(OK);
        assert!(read_frame(&mut huge.as_slice()).is_err());
    }

    /// A writer that takes at most three bytes per call, as a full socket may.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(3);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_written_in_pieces_arrive_whole() {
        let body: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let mut w = Trickle(Vec::new());
        write_frame(&mut w, ADAPT, &body).unwrap();
        let (tag, got) = read_frame(&mut w.0.as_slice()).unwrap();
        assert_eq!((tag, got), (ADAPT, body));
        // Over a real socket, with a body larger than its buffer.
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let big: Vec<u8> = (0..=250u8).cycle().take(3 << 20).collect();
        let sent = big.clone();
        let writer = std::thread::spawn(move || write_frame(&mut a, PREDICT, &sent));
        let (tag, got) = read_frame(&mut b).unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(tag, PREDICT);
        assert!(got == big, "the body arrived changed");
    }
}

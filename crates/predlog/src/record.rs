//! One prediction record: what the log keeps of one inference request, answered or refused.

use std::time::{SystemTime, UNIX_EPOCH};

use ferroserve_core::{Tensor, TensorData};
use serde_json::{json, Map, Value};

/// One inference request, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The request's id, or one the server made (`fs-...`).
    pub id: String,
    /// When the request arrived, milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub model: String,
    pub version: u64,
    /// `http_v2`, `grpc`, `grpc_stream` or `friendly`.
    pub protocol: &'static str,
    /// The route (`/v2/models/{m}/infer`, a friendly route's path, the gRPC method).
    pub route: String,
    /// The HTTP status answered (for gRPC, the status HTTP would have answered: 200 for OK).
    pub status: u16,
    /// The error message, for a request that failed.
    pub error: Option<String>,
    /// From arrival to answer, microseconds.
    pub latency_us: u64,
    /// Rows in the request (answered ones on success).
    pub rows: u64,
    /// Rows of the request past `max_rows`: not in `inputs` and `outputs`.
    pub rows_omitted: u64,
    /// The inputs (their first `max_rows` rows), when recorded.
    pub inputs: Option<Vec<Tensor>>,
    /// The outputs, likewise.
    pub outputs: Option<Vec<Tensor>>,
}

impl Record {
    /// The record as one JSON object (the shape every sink and the read-back route use).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("time".into(), json!(rfc3339(self.time_ms)));
        m.insert("model".into(), json!(self.model));
        m.insert("version".into(), json!(self.version.to_string()));
        m.insert("protocol".into(), json!(self.protocol));
        m.insert("route".into(), json!(self.route));
        m.insert("status".into(), json!(self.status));
        m.insert("error".into(), json!(self.error));
        m.insert("latency_us".into(), json!(self.latency_us));
        m.insert("rows".into(), json!(self.rows));
        m.insert("rows_omitted".into(), json!(self.rows_omitted));
        let tensors = |t: &Option<Vec<Tensor>>| {
            t.as_ref()
                .map_or(Value::Null, |t| tensors_json(t, usize::MAX))
        };
        m.insert("inputs".into(), tensors(&self.inputs));
        m.insert("outputs".into(), tensors(&self.outputs));
        Value::Object(m)
    }

    /// The inputs as the JSON text sinks store (`[{name, datatype, shape, data}]`).
    pub fn inputs_text(&self) -> Option<String> {
        self.inputs.as_deref().map(crate::text::tensors_text)
    }

    /// The outputs, likewise.
    pub fn outputs_text(&self) -> Option<String> {
        self.outputs.as_deref().map(crate::text::tensors_text)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The tensors as `[{name, datatype, shape, data}]` with at most `rows` rows each (along the
/// first dimension): numbers as JSON numbers (NaN and infinities as null), BYTES as text.
pub fn tensors_json(tensors: &[Tensor], rows: usize) -> Value {
    Value::Array(
        tensors
            .iter()
            .map(|t| {
                let (shape, n) = match t.shape.split_first() {
                    Some((&first, rest)) => {
                        let per_row: usize = rest.iter().map(|&d| d.max(0) as usize).product();
                        let keep = (first.max(0) as usize).min(rows);
                        let mut shape = t.shape.clone();
                        shape[0] = keep as i64;
                        (shape, keep * per_row)
                    }
                    None => (Vec::new(), 1),
                };
                json!({
                    "name": t.name,
                    "datatype": t.data.datatype().as_str(),
                    "shape": shape,
                    "data": values(&t.data, n.min(t.data.len())),
                })
            })
            .collect(),
    )
}

/// The first `n` elements as JSON values.
fn values(d: &TensorData, n: usize) -> Value {
    let float = |x: f64| {
        if x.is_finite() {
            json!(x)
        } else {
            Value::Null
        }
    };
    Value::Array(match d {
        TensorData::Bool(v) => v[..n].iter().map(|&b| json!(b)).collect(),
        TensorData::Uint8(v) => v[..n].iter().map(|&x| json!(x)).collect(),
        TensorData::Uint16(v) => v[..n].iter().map(|&x| json!(x)).collect(),
        TensorData::Uint32(v) => v[..n].iter().map(|&x| json!(x)).collect(),
        TensorData::Uint64(v) => v[..n].iter().map(|&x| json!(x)).collect(),
        TensorData::Int8(v) => v[..n].iter().map(|&x| json!(x)).collect(),
        TensorData::Int16(v) => v[..n].iter().map(|&x| json!(x)).collect(),
        TensorData::Int32(v) => v[..n].iter().map(|&x| json!(x)).collect(),
        TensorData::Int64(v) => v[..n].iter().map(|&x| json!(x)).collect(),
        TensorData::Fp32(v) => v[..n].iter().map(|&x| float(x as f64)).collect(),
        TensorData::Fp64(v) => v[..n].iter().map(|&x| float(x)).collect(),
        TensorData::Bytes(v) => v[..n]
            .iter()
            .map(|b| json!(String::from_utf8_lossy(b)))
            .collect(),
        TensorData::Fp16(_) | TensorData::Bf16(_) => (0..n)
            .map(|i| float(d.get_f64(i).unwrap_or(f64::NAN)))
            .collect(),
    })
}

/// `2026-12-02T10:11:12.345Z` for milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Milliseconds since the epoch of `2026-12-02T10:11:12Z`, `2026-12-02T10:11:12.5Z` or
/// `2026-12-02` (UTC), or of a plain number of milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let milli = if frac.is_empty() {
        0
    } else {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?
    };
    let days = days_from_civil(y, m, day);
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000 + milli)
}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_and_parse_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2026-12-02T10:11:12.345Z, computed independently: 20789 days after the epoch.
        let ms = (20_789 * 86_400 + 10 * 3600 + 11 * 60 + 12) * 1000 + 345;
        assert_eq!(rfc3339(ms), "2026-12-02T10:11:12.345Z");
        assert_eq!(parse_time("2026-12-02T10:11:12.345Z"), Some(ms));
        assert_eq!(parse_time("2026-12-02T10:11:12.3Z"), Some(ms - 45));
        assert_eq!(parse_time("2026-12-02"), Some(20_789 * 86_400 * 1000));
        assert_eq!(parse_time(&ms.to_string()), Some(ms));
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-12-02T25:00:00Z",
            "2026-12-02T1:2:3.x",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn tensors_become_values_cut_to_rows() {
        let t = Tensor::new(
            "x",
            vec![3, 2],
            TensorData::Fp32(vec![1.0, 2.5, f32::NAN, 4.0, 5.0, 6.0]),
        );
        let s = Tensor::new(
            "s",
            vec![3],
            TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]),
        );
        let v = tensors_json(&[t, s], 2);
        assert_eq!(
            v,
            json!([
                {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.5, null, 4.0]},
                {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}
            ])
        );
    }
}

//! One prediction record: what the log keeps of one inference request, answered or refused.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use ferroserve_core::Tensor;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// A record's inputs or outputs: tensors as the request path hands them over, or their JSON
/// text as read back from the spool.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Tensors(Vec<Tensor>),
    /// `[{name, datatype, shape, data}]`, as [`crate::text::tensors_text`] writes it.
    Json(String),
}

impl Values {
    /// The JSON text sinks store.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Values::Tensors(t) => Cow::Owned(crate::text::tensors_text(t)),
            Values::Json(s) => Cow::Borrowed(s),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            // Through the text, so that values read as every sink stores them (an FP32 value
            // as its shortest text, 0.1, not 0.10000000149011612).
            Values::Tensors(_) | Values::Json(_) => {
                serde_json::from_str(&self.text()).unwrap_or(Value::Null)
            }
        }
    }
}

/// One inference request, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The request's id, or one the server made (`fs-...`).
    pub id: String,
    /// When the request arrived, milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub model: String,
    pub version: u64,
    /// `http_v2`, `grpc`, `grpc_stream`, `friendly` or `job`.
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
    pub inputs: Option<Values>,
    /// The outputs, likewise.
    pub outputs: Option<Values>,
}

/// A record as one JSON line reads (the spool, the JSON Lines sink).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
    #[serde(borrow)]
    protocol: Cow<'a, str>,
    #[serde(borrow)]
    route: Cow<'a, str>,
    status: u16,
    error: Option<String>,
    latency_us: u64,
    rows: u64,
    rows_omitted: u64,
    #[serde(borrow)]
    inputs: Option<&'a RawValue>,
    #[serde(borrow)]
    outputs: Option<&'a RawValue>,
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
        let values = |t: &Option<Values>| t.as_ref().map_or(Value::Null, Values::to_json);
        m.insert("inputs".into(), values(&self.inputs));
        m.insert("outputs".into(), values(&self.outputs));
        Value::Object(m)
    }

    /// The record as one line of JSON text, ending in a newline: the object [`Record::to_json`]
    /// makes (the same keys, in the same order), written directly.
    pub fn json_line(&self) -> String {
        let inputs = self.inputs_text();
        let outputs = self.outputs_text();
        let payload =
            inputs.as_deref().map_or(0, str::len) + outputs.as_deref().map_or(0, str::len);
        let mut s = String::with_capacity(256 + payload);
        let text = |s: &mut String, key: &str, v: &str| {
            s.push_str(key);
            crate::text::push_json_str(s, v);
        };
        text(&mut s, "{\"id\":", &self.id);
        text(&mut s, ",\"time\":", &rfc3339(self.time_ms));
        text(&mut s, ",\"model\":", &self.model);
        text(&mut s, ",\"version\":", &self.version.to_string());
        text(&mut s, ",\"protocol\":", self.protocol);
        text(&mut s, ",\"route\":", &self.route);
        s.push_str(&format!(",\"status\":{}", self.status));
        match &self.error {
            Some(e) => text(&mut s, ",\"error\":", e),
            None => s.push_str(",\"error\":null"),
        }
        s.push_str(&format!(
            ",\"latency_us\":{},\"rows\":{},\"rows_omitted\":{}",
            self.latency_us, self.rows, self.rows_omitted
        ));
        for (key, v) in [(",\"inputs\":", &inputs), (",\"outputs\":", &outputs)] {
            s.push_str(key);
            s.push_str(v.as_deref().unwrap_or("null"));
        }
        s.push_str("}\n");
        s
    }

    /// A record back from the text [`Record::json_line`] wrote.
    pub fn from_json_line(line: &str) -> Result<Record, String> {
        let l: Line<'_> = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let payload = |v: Option<&RawValue>| {
            v.map(RawValue::get)
                .filter(|t| *t != "null")
                .map(|t| Values::Json(t.to_string()))
        };
        Ok(Record {
            id: l.id.into_owned(),
            time_ms: parse_time(&l.time).ok_or_else(|| format!("time: {}", l.time))?,
            model: l.model.into_owned(),
            version: l
                .version
                .parse()
                .map_err(|_| format!("version: {}", l.version))?,
            protocol: protocol(&l.protocol),
            route: l.route.into_owned(),
            status: l.status,
            error: l.error,
            latency_us: l.latency_us,
            rows: l.rows,
            rows_omitted: l.rows_omitted,
            inputs: payload(l.inputs),
            outputs: payload(l.outputs),
        })
    }

    /// The inputs as the JSON text sinks store (`[{name, datatype, shape, data}]`).
    pub fn inputs_text(&self) -> Option<Cow<'_, str>> {
        self.inputs.as_ref().map(Values::text)
    }

    /// The outputs, likewise.
    pub fn outputs_text(&self) -> Option<Cow<'_, str>> {
        self.outputs.as_ref().map(Values::text)
    }
}

/// The protocol label `s` names (`unknown` for none of them).
fn protocol(s: &str) -> &'static str {
    ["http_v2", "grpc", "grpc_stream", "friendly", "job"]
        .into_iter()
        .find(|p| *p == s)
        .unwrap_or("unknown")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    use ferroserve_core::TensorData;

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
    fn a_json_line_is_the_json_object_and_reads_back() {
        let r = Record {
            id: "a\"b\\c\u{7}".into(),
            time_ms: 1_764_670_272_345,
            model: "iris".into(),
            version: 12,
            protocol: "grpc",
            route: "inference.GRPCInferenceService/ModelInfer".into(),
            status: 400,
            error: Some("line\nbreak".into()),
            latency_us: 77,
            rows: 3,
            rows_omitted: 1,
            inputs: Some(Values::Tensors(vec![Tensor::new(
                "x",
                vec![2],
                TensorData::Fp32(vec![0.1, f32::NAN]),
            )])),
            outputs: None,
        };
        let line = r.json_line();
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, r.to_json());
        let back = Record::from_json_line(line.trim_end()).unwrap();
        assert_eq!(back.to_json(), r.to_json());
        assert_eq!(back.inputs_text(), r.inputs_text());
        assert_eq!(back.outputs, None);
        assert!(Record::from_json_line("{\"id\": 1}").is_err());
    }
}

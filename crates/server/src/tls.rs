//! TLS on both fronts (rustls): a certificate and key, read again when they change (certificate
//! rotation without a restart), optionally client certificates checked against a CA (mTLS).
//! HTTP/2 is offered by ALPN (`h2`, then `http/1.1`).
//!
//! Every connection takes the configuration in force when it is accepted; a rotation applies to
//! the connections accepted after it. A certificate, key or CA that cannot be read or does not
//! fit is logged, and the one in force stays.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

use crate::conn::Front;

/// Where the certificate, its key and the client CA are read from (`--tls-cert`, `--tls-key`,
/// `--tls-client-ca`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// A file as last read: modification time and length of each, and a hash of all the content.
type Stamp = (Vec<(Option<SystemTime>, u64)>, [u8; 32]);

/// The TLS settings of a server, shared by both fronts.
pub struct Tls {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
    seen: Mutex<Option<Stamp>>,
    /// Handshakes per front: completed, failed (bad client hello, refused client certificate,
    /// timeout).
    handshakes: [[AtomicU64; 2]; 2],
    /// Reads of changed files: applied, refused.
    reloads: [AtomicU64; 2],
    /// When the certificate in force expires (its leaf's notAfter), Unix seconds; 0: unknown.
    not_after: AtomicU64,
}

const OK: usize = 0;
const FAILED: usize = 1;

fn shown(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(flag: &str, p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", shown(p)))
}

/// The server configuration the files hold, or what is wrong with them (naming the flag).
fn build(
    files: &TlsFiles,
    cert: &[u8],
    key: &[u8],
    ca: Option<&[u8]>,
) -> Result<(ServerConfig, Option<u64>), String> {
    let flag_cert = "--tls-cert";
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{flag_cert} {}: not a PEM certificate chain ({e})",
                shown(&files.cert)
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{flag_cert} {}: holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            shown(&files.cert)
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        format!(
            "--tls-key {}: no private key in it (expected PEM: PKCS#8, PKCS#1 RSA or SEC1 EC; {e})",
            shown(&files.key)
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match (ca, &files.client_ca) {
        (Some(ca), Some(path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|e| {
                    format!(
                        "--tls-client-ca {}: not PEM certificates ({e})",
                        shown(path)
                    )
                })?;
                roots.add(c).map_err(|e| {
                    format!(
                        "--tls-client-ca {}: a certificate is not usable as a CA ({e})",
                        shown(path)
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "--tls-client-ca {}: holds no certificate",
                    shown(path)
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", shown(path)))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let not_after = not_after(&certs[0]);
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "--tls-cert {} / --tls-key {}: {e} (is the key the certificate's?)",
            shown(&files.cert),
            shown(&files.key)
        )
    })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((cfg, not_after))
}

/// One DER element: its tag, its content and what follows it.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | x as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An X.509 time (UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`), Unix seconds.
fn x509_time(tag: u8, v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let days = days_from_civil(year, n(0)?, n(2)?);
    let secs = days * 86_400 + n(4)? * 3600 + n(6)? * 60 + n(8)?;
    u64::try_from(secs).ok()
}

/// When a certificate expires (its validity's notAfter), Unix seconds.
fn not_after(cert: &[u8]) -> Option<u64> {
    let (_, c, _) = der(cert)?;
    let (_, tbs, _) = der(c)?;
    let (mut tag, mut field, mut rest) = der(tbs)?;
    if tag == 0xa0 {
        // The explicit version.
        (tag, field, rest) = der(rest)?;
    }
    let _serial = (tag, field);
    let (_, _, rest) = der(rest)?; // signature algorithm
    let (_, _, rest) = der(rest)?; // issuer
    let (_, validity, _) = der(rest)?;
    let (_, _, after) = der(validity)?; // notBefore
    let (tag, v, _) = der(after)?;
    x509_time(tag, v)
}

impl Tls {
    /// Reads the files; an error names the flag and what is wrong.
    pub fn new(files: TlsFiles) -> Result<Tls, String> {
        let times = Self::times(&files)?;
        let (cfg, digest, not_after) = Self::read_config(&files)?;
        let tls = Tls {
            config: RwLock::new(Arc::new(cfg)),
            files,
            seen: Mutex::new(Some((times, digest))),
            handshakes: Default::default(),
            reloads: Default::default(),
            not_after: AtomicU64::new(0),
        };
        tls.note_expiry(not_after);
        Ok(tls)
    }

    /// Keeps the certificate's expiry for `/metrics`, and warns when it is near or past.
    fn note_expiry(&self, not_after: Option<u64>) {
        self.not_after
            .store(not_after.unwrap_or(0), Ordering::Relaxed);
        let Some(at) = not_after else { return };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if at <= now {
            tracing::error!("the TLS certificate (--tls-cert) has expired: clients will refuse it; replace the file (it is read again when it changes)");
        } else if at - now < 14 * 86_400 {
            tracing::warn!(
                days_left = (at - now) / 86_400,
                "the TLS certificate (--tls-cert) expires soon"
            );
        }
    }

    /// When the certificate in force expires, Unix seconds (`None`: not read from it).
    pub fn expires(&self) -> Option<u64> {
        Some(self.not_after.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// Each file's modification time and length.
    fn times(files: &TlsFiles) -> Result<Vec<(Option<SystemTime>, u64)>, String> {
        let paths = [
            ("--tls-cert", files.cert.as_path()),
            ("--tls-key", files.key.as_path()),
        ]
        .into_iter()
        .chain(files.client_ca.as_deref().map(|p| ("--tls-client-ca", p)));
        let mut times = Vec::new();
        for (flag, p) in paths {
            let m = std::fs::metadata(p).map_err(|e| format!("{flag} {}: {e}", shown(p)))?;
            times.push((m.modified().ok(), m.len()));
        }
        Ok(times)
    }

    #[allow(clippy::type_complexity)]
    fn read_config(files: &TlsFiles) -> Result<(ServerConfig, [u8; 32], Option<u64>), String> {
        let cert = read("--tls-cert", &files.cert)?;
        let key = read("--tls-key", &files.key)?;
        let ca = match &files.client_ca {
            Some(p) => Some(read("--tls-client-ca", p)?),
            None => None,
        };
        let mut h = Sha256::new();
        for part in [Some(&cert), Some(&key), ca.as_ref()].into_iter().flatten() {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let (cfg, not_after) = build(files, &cert, &key, ca.as_deref())?;
        Ok((cfg, h.finalize().into(), not_after))
    }

    /// The configuration for a connection accepted now.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again if one changed (modification time, length, content). `Ok(true)`:
    /// the new certificate is in force. An error leaves the one in force.
    pub fn reload(&self) -> Result<bool, String> {
        let times = Self::times(&self.files)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen
            .as_ref()
            .is_some_and(|(t, _)| *t == times && times.iter().all(|(m, _)| m.is_some()))
        {
            return Ok(false);
        }
        // A refused read is not repeated until a file changes again (a renewal that writes
        // the key, then the certificate, is refused between the two and taken after).
        let (cfg, digest, not_after) = match Self::read_config(&self.files) {
            Ok(c) => c,
            Err(e) => {
                self.reloads[FAILED].fetch_add(1, Ordering::Relaxed);
                if let Some(s) = seen.as_mut() {
                    s.0 = times;
                }
                return Err(e);
            }
        };
        let changed = seen.as_ref().is_none_or(|(_, d)| *d != digest);
        *seen = Some((times, digest));
        if changed {
            *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
            self.reloads[OK].fetch_add(1, Ordering::Relaxed);
            self.note_expiry(not_after);
        }
        Ok(changed)
    }

    /// Follows the files: every `every`, reads them again when one changed (a bad one is
    /// logged once per change and the certificate in force stays), until the process exits.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("fs-tls".into())
            .spawn(move || {
                let mut last_error = None::<String>;
                loop {
                    std::thread::sleep(every);
                    let Some(tls) = weak.upgrade() else { return };
                    match tls.reload() {
                        Ok(true) => {
                            last_error = None;
                            tracing::info!("TLS certificate read again: new connections use it")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            if last_error.as_ref() != Some(&e) {
                                tracing::error!(error = %e, "TLS files not read again: the certificate in force stays");
                            }
                            last_error = Some(e);
                        }
                    }
                }
            })
            .ok();
    }

    /// Notes a handshake's outcome on `front`.
    pub fn handshake(&self, front: Front, ok: bool) {
        self.handshakes[front.index()][if ok { OK } else { FAILED }]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Whether client certificates are required.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// `ferroserve_tls_handshakes_total` and `ferroserve_tls_reloads_total`, in the Prometheus
    /// text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("# HELP ferroserve_tls_handshakes_total TLS handshakes by front and result (failed: a bad or timed-out hello, or a client certificate refused).\n# TYPE ferroserve_tls_handshakes_total counter\n");
        for front in [Front::Http, Front::Grpc] {
            for (i, result) in ["ok", "failed"].iter().enumerate() {
                let n = self.handshakes[front.index()][i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "ferroserve_tls_handshakes_total{{front=\"{}\",result=\"{result}\"}} {n}",
                    front.as_str()
                );
            }
        }
        out.push_str("# HELP ferroserve_tls_reloads_total Changed TLS files read again: applied, or refused (the certificate in force stayed).\n# TYPE ferroserve_tls_reloads_total counter\n");
        for (i, result) in ["applied", "refused"].iter().enumerate() {
            let n = self.reloads[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "ferroserve_tls_reloads_total{{result=\"{result}\"}} {n}"
            );
        }
        if let Some(at) = self.expires() {
            out.push_str("# HELP ferroserve_tls_certificate_expiry_timestamp_seconds When the certificate in force expires (its notAfter), Unix time.\n# TYPE ferroserve_tls_certificate_expiry_timestamp_seconds gauge\n");
            let _ = writeln!(
                out,
                "ferroserve_tls_certificate_expiry_timestamp_seconds {at}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x509_times_and_civil_dates_convert_to_unix_seconds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(x509_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(x509_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(x509_time(0x18, b"20261204120000Z"), Some(1_796_385_600));
        assert_eq!(x509_time(0x18, b"2026120412000Z"), None);
        assert_eq!(x509_time(0x17, b"261204120000"), None);
    }

    #[test]
    fn a_certificates_expiry_is_read_from_its_der() {
        for (year, month, day) in [(2031, 7, 15), (2049, 12, 31), (2051, 1, 2)] {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            p.not_after = rcgen::date_time_ymd(year, month, day);
            let cert = p.self_signed(&key).unwrap();
            let want = days_from_civil(year as i64, month as i64, day as i64) as u64 * 86_400;
            assert_eq!(not_after(cert.der()), Some(want), "{year}-{month}-{day}");
        }
        assert_eq!(not_after(b"\x30\x03\x02\x01"), None);
        assert_eq!(not_after(&[]), None);
    }
}

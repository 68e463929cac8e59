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
) -> Result<ServerConfig, String> {
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
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "--tls-cert {} / --tls-key {}: {e} (is the key the certificate's?)",
            shown(&files.cert),
            shown(&files.key)
        )
    })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Tls {
    /// Reads the files; an error names the flag and what is wrong.
    pub fn new(files: TlsFiles) -> Result<Tls, String> {
        let times = Self::times(&files)?;
        let (cfg, digest) = Self::read_config(&files)?;
        Ok(Tls {
            config: RwLock::new(Arc::new(cfg)),
            files,
            seen: Mutex::new(Some((times, digest))),
            handshakes: Default::default(),
            reloads: Default::default(),
        })
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

    fn read_config(files: &TlsFiles) -> Result<(ServerConfig, [u8; 32]), String> {
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
        let cfg = build(files, &cert, &key, ca.as_deref())?;
        Ok((cfg, h.finalize().into()))
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
        let (cfg, digest) = match Self::read_config(&self.files) {
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
    }
}

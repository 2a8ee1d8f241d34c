//! TLS client configuration per libpq sslmode, shared by the replication connection and
//! [`crate::config::conninfo::connect_sql`].
//!
//! `require` encrypts without verifying (libpq's meaning: protects against passive sniffing only),
//! `verify-ca` checks the chain but not the name, `verify-full` checks both.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::ReplicationError;
use crate::config::conninfo::{ConnInfo, SslMode};

/// Builds the rustls configuration `info.sslmode` asks for (only meaningful for modes that use
/// TLS; `disable`/`allow` get the `require` configuration, which is never used).
pub(crate) fn client_config(info: &ConnInfo) -> Result<Arc<ClientConfig>, ReplicationError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ReplicationError::Tls(e.to_string()))?;
    let builder = match info.sslmode {
        SslMode::VerifyFull => builder.with_root_certificates(root_store(info)?),
        SslMode::VerifyCa => {
            let inner = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(info)?),
                provider.clone(),
            )
            .build()
            .map_err(|e| ReplicationError::Tls(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
        }
        SslMode::Disable | SslMode::Allow | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification { provider })),
    };
    let config = match (&info.sslcert, &info.sslkey) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| ReplicationError::Tls(format!("client certificate: {e}")))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name the certificate must carry: the host as an IP address or a DNS name.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, ReplicationError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| ReplicationError::Tls(format!("invalid TLS server name {host:?}: {e}")))
}

/// `sslrootcert` file, or the webpki roots when unset or `system`.
fn root_store(info: &ConnInfo) -> Result<RootCertStore, ReplicationError> {
    let mut roots = RootCertStore::empty();
    match info.sslrootcert.as_deref() {
        Some(path) if path != Path::new("system") => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| {
                    ReplicationError::Tls(format!(
                        "bad root certificate in {}: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        _ => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ReplicationError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ReplicationError::Tls(format!("cannot read {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ReplicationError::Tls(format!("cannot parse {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ReplicationError::Tls(format!(
            "no certificate found in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, ReplicationError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ReplicationError::Tls(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| ReplicationError::Tls(format!("cannot parse {}: {e}", path.display())))?
        .ok_or_else(|| ReplicationError::Tls(format!("no private key in {}", path.display())))
}

/// `sslmode=require`: accept any certificate, but still check the handshake signatures so the
/// session is at least bound to the presented key.
#[derive(Debug)]
struct NoVerification {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `sslmode=verify-ca`: the full webpki check, except that a name mismatch is accepted (webpki
/// checks the name only after the chain, so a name error means the chain was fine).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

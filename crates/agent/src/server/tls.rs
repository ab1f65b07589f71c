//! The agent's serving certificate: a self-signed certificate and key generated at every start, held only in
//! memory, and the SHA-256 fingerprint the agent publishes on its Node so the API server can pin it.
//!
//! There is no CA here on purpose. Upstream's kubelet also defaults to a self-signed serving certificate; berth
//! closes the gap upstream leaves (the API server does not verify that certificate by default) by pinning: the
//! API server accepts exactly the certificate whose fingerprint the Node object carries. This file does not
//! serve anything and does not write the Node.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::ServerError;

/// A TLS configuration serving a freshly generated self-signed certificate, and that certificate's fingerprint.
#[derive(Clone)]
pub struct ServingCert {
    /// The rustls configuration to accept connections with (ALPN `http/1.1` only: exec needs an HTTP/1.1
    /// upgrade).
    pub config: Arc<rustls::ServerConfig>,
    /// Lowercase hex SHA-256 of the certificate's DER encoding; the agent publishes it in the Node annotation
    /// [`super::CERT_ANNOTATION`].
    pub sha256_hex: String,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("sha256_hex", &self.sha256_hex)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex SHA-256 of a certificate's DER bytes: the form of the Node annotation.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Generates a self-signed serving certificate for a node named `node_name`, reachable at `addresses`.
///
/// The names in the certificate are informational: the API server pins the fingerprint and ignores them. They
/// are still filled in (the node name when it is a valid DNS name, `localhost`, and the addresses) so that an
/// operator inspecting the certificate, or a client that does check names, sees what it expects.
pub fn serving_cert(node_name: &str, addresses: &[IpAddr]) -> Result<ServingCert, ServerError> {
    let key = KeyPair::generate().map_err(ServerError::Certificate)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ServerError::Certificate)?;
    let mut dn = DistinguishedName::new();
    // Upstream's kubelet names its self-signed certificate `<host>@<timestamp>`; the node name is enough here
    // because a new key is generated at every start anyway.
    dn.push(DnType::CommonName, format!("{node_name}@berth-agent"));
    params.distinguished_name = dn;
    let mut sans = Vec::new();
    for name in [node_name, "localhost"] {
        // A node name need not be a valid DNS name (it is only a Kubernetes object name); skip it if not.
        if let Ok(dns) = name.to_string().try_into() {
            sans.push(SanType::DnsName(dns));
        }
    }
    sans.extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    // Validity from yesterday (tolerates clock skew) for ten years; the certificate lives as long as the process.
    let now = chrono::Utc::now();
    let ymd = |t: chrono::DateTime<chrono::Utc>| {
        use chrono::Datelike;
        // Day 28 exists in every month, so the date is always valid.
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day().min(28) as u8)
    };
    params.not_before = ymd(now - chrono::Duration::days(1));
    params.not_after = ymd(now + chrono::Duration::days(3650));
    let cert = params.self_signed(&key).map_err(ServerError::Certificate)?;

    let sha256_hex = fingerprint(cert.der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ServerError::Tls)?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(ServerError::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServingCert {
        config: Arc::new(config),
        sha256_hex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_lowercase_hex_sha256() {
        // SHA-256 of the empty input, a well-known value.
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_start_gets_a_new_certificate() {
        let a = serving_cert("node-1", &["127.0.0.1".parse().unwrap()]).unwrap();
        let b = serving_cert("node-1", &[]).unwrap();
        assert_eq!(a.sha256_hex.len(), 64);
        assert_ne!(a.sha256_hex, b.sha256_hex);
        assert_eq!(a.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn node_names_that_are_not_dns_names_are_accepted() {
        serving_cert("Node_With_Underscores", &[]).unwrap();
    }
}

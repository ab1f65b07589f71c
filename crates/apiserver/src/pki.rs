//! The cluster's credentials, created on first start and reused after: a CA (`ca.crt`, `ca.key`), a serving
//! certificate signed by it and an admin bearer token, all in the data directory, plus the admin kubeconfig.
//!
//! The serving certificate is reissued at every start (from the same CA) so its SANs always cover the
//! addresses the server listens and advertises on; clients trust the CA, which never changes. Python's OpenSSL
//! is strict, so the leaf is a real CA-signed certificate with SANs, the `serverAuth` EKU and an AKI.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Credentials loaded from (or created in) the data directory.
pub struct Pki {
    /// The CA certificate, PEM (goes into kubeconfigs).
    pub ca_pem: String,
    /// The admin bearer token.
    pub token: String,
    /// The TLS configuration serving the API (ALPN h2 and http/1.1).
    pub tls: Arc<rustls::ServerConfig>,
}

const CA_NAME: &str = "berth-ca";

fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, 10);
    Ok(params)
}

/// Validity bounds as calendar dates: from yesterday until `years` from today.
fn validity(params: &mut CertificateParams, years: i32) {
    use chrono::Datelike;
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let end = chrono::Utc::now() + chrono::Duration::days(1);
    params.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    // Day 28 exists in every month, so the end date is always valid.
    params.not_after = rcgen::date_time_ymd(end.year() + years, end.month() as u8, end.day().min(28) as u8);
}

impl Pki {
    /// Loads the credentials from `dir`, creating what is missing, and issues a serving certificate for
    /// `hosts` (DNS names or IP addresses) plus localhost and the loopback addresses.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki> {
        fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        let ca_crt = dir.join("ca.crt");
        let ca_key_path = dir.join("ca.key");
        let (ca_key, ca_pem) = if ca_crt.exists() && ca_key_path.exists() {
            let key_pem = fs::read_to_string(&ca_key_path).context("reading ca.key")?;
            let key = KeyPair::from_pem(&key_pem).context("parsing ca.key")?;
            (key, fs::read_to_string(&ca_crt).context("reading ca.crt")?)
        } else {
            let key = KeyPair::generate().context("generating the CA key")?;
            let cert = ca_params()?.self_signed(&key).context("self-signing the CA")?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
            write_private(&ca_crt, cert.pem().as_bytes())?;
            (key, cert.pem())
        };
        // Signing only needs the CA's name and key; rebuilding the issuer from the same parameters and key
        // yields certificates that verify against the CA certificate on disk.
        let issuer = ca_params()?.self_signed(&ca_key).context("loading the CA")?;

        let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        if let Ok(h) = hostname() {
            sans.push(h);
        }
        sans.extend(hosts.iter().cloned());
        sans.sort();
        sans.dedup();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "berth-apiserver");
        params.distinguished_name = dn;
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(s.clone().try_into()?)),
            })
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 1);
        let leaf_key = KeyPair::generate()?;
        let leaf = params
            .signed_by(&leaf_key, &issuer, &ca_key)
            .context("issuing the serving certificate")?;
        write_private(&dir.join("server.crt"), leaf.pem().as_bytes())?;

        let token_path = dir.join("token");
        let token = match fs::read_to_string(&token_path) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let mut bytes = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut bytes);
                let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                write_private(&token_path, t.as_bytes())?;
                t
            }
        };

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Pki {
            ca_pem,
            token,
            tls: Arc::new(tls),
        })
    }

    /// The admin kubeconfig for a server at `url`.
    pub fn kubeconfig(&self, url: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: berth\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: berth-admin\n  user:\n    token: {token}\ncontexts:\n- name: berth\n  context:\n    cluster: berth\n    user: berth-admin\n    namespace: default\ncurrent-context: berth\n",
            token = self.token
        )
    }
}

/// Writes the kubeconfig atomically, readable by the owner only (it holds the admin token).
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<()> {
    write_private(path, contents.as_bytes())
}

fn hostname() -> Result<String> {
    let h = fs::read_to_string("/proc/sys/kernel/hostname")?;
    let h = h.trim().to_string();
    anyhow::ensure!(!h.is_empty(), "empty hostname");
    Ok(h)
}

//! The trust roots of every outbound TLS connection a function makes, built once per process.
//!
//! By default rustls (through `rustls-native-certs`) reads the system bundle and then every
//! file of `/etc/ssl/certs` at each client build, and the AWS SDK builds a client per service:
//! the largest part of a cold start that was not the function's own work (docs/PERFORMANCE.md).
//! Here the roots are Mozilla's list compiled into the binary (`webpki-root-certs`, the list
//! `webpki-roots` and most Rust Lambda functions use), parsed once, and shared: one rustls
//! `ClientConfig` for `reqwest` (GitHub, Heroku, the chats, Telegram), and one SDK HTTP client
//! (one connection pool) for every AWS SDK client built from the `SdkConfig`.
//!
//! `SSL_CERT_FILE`, when set, replaces the compiled-in list with that PEM bundle, as OpenSSL
//! reads the variable: the way to trust a company's own CA (GitHub Enterprise Server behind
//! one). The file must then hold the public roots too; a missing or empty one stops the cold
//! start.

use std::sync::{Arc, OnceLock};

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// What every client of a process trusts.
pub struct Tls {
    /// For `reqwest::ClientBuilder::tls_backend_preconfigured` (which takes it by value: clone
    /// it; the clone shares the verifier and its root store).
    pub rustls: Arc<rustls::ClientConfig>,
    /// For `aws_config::defaults(..).http_client(..)`.
    pub sdk_http: SharedHttpClient,
}

/// The SDK's HTTP client, minus the check it makes at every `Client::new`
/// (`validate_base_client_config`), which for the default client builds a throw-away
/// connector, root store included, to report a bad trust store early: these roots were checked
/// when they were built, so a function's five or nine SDK clients cost one root parse, not one
/// each here (the SDK still parses its PEM copy when it builds a connector, cached per timeout
/// setting by the inner client).
#[derive(Debug)]
struct OneRootParse(SharedHttpClient);

impl HttpClient for OneRootParse {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

/// The roots: `SSL_CERT_FILE`'s bundle when set, else the compiled-in list.
fn root_certs() -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> =
        match std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
            Some(path) => CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<Result<_, _>>())
                .map_err(|e| format!("SSL_CERT_FILE {}: {e}", path.to_string_lossy()))?,
            None => webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec(),
        };
    if certs.is_empty() {
        return Err(
            "SSL_CERT_FILE holds no certificate: no TLS connection could be trusted".into(),
        );
    }
    Ok(certs)
}

/// The same certificates as one PEM bundle: the SDK's `TrustStore` takes PEM only.
fn to_pem(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = Vec::with_capacity(certs.len() * 2048);
    for cert in certs {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        pem.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(cert)
                .as_bytes(),
        );
        pem.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
    }
    pem
}

fn build() -> Result<Tls, String> {
    let certs = root_certs()?;
    let mut roots = rustls::RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(certs.iter().cloned());
    if roots.is_empty() {
        return Err(format!(
            "none of the {unusable} root certificates could be used"
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest is built without HTTP/2 here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(to_pem(&certs)))
        .build()
        .map_err(|e| e.to_string())?;
    let sdk_http = SharedHttpClient::new(OneRootParse(
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context)
            .build_https(),
    ));
    Ok(Tls {
        rustls: Arc::new(config),
        sdk_http,
    })
}

/// The process's roots, built on first use.
pub fn tls() -> Result<&'static Tls, String> {
    static TLS: OnceLock<Result<Tls, String>> = OnceLock::new();
    TLS.get_or_init(build).as_ref().map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_build_and_survive_the_pem_round_trip_the_sdk_needs() {
        let tls = tls().unwrap();
        assert_eq!(tls.rustls.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // The PEM round trip the SDK's trust store relies on.
        let certs = root_certs().unwrap();
        let pem = to_pem(&certs[..3]);
        let back: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, certs[..3].to_vec());
    }
}

//! The school's inspection certificate (F5): the page that tells staff how
//! to install it on each kind of device, and the certificate itself in PEM
//! and DER for download.
//!
//! The downloads need no sign-in: a certificate is public, and a device
//! being set up has no console session. The page is for signed-in staff.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::auth::Viewer;
use crate::html;
use crate::ConsoleState;

pub(crate) fn routes() -> axum::Router<ConsoleState> {
    axum::Router::new()
        .route("/certificate", get(page))
        .route("/certificate/inspection-ca.pem", get(pem))
        .route("/certificate/inspection-ca.der", get(der))
}

async fn page(State(state): State<ConsoleState>, viewer: Viewer) -> Response {
    let body = match &state.settings().inspection_certificate {
        None => "<h1>Inspection certificate</h1>\
            <p>HTTPS inspection is not set up. A technician makes the school's \
            certificate authority with <code>sheepdog ca init</code> on the server, then sets \
            <code>[proxy] inspection = true</code>; the certificate can then be downloaded here.</p>"
            .to_string(),
        Some(pem) => {
            let fingerprint = CertificateDer::from_pem_slice(pem.as_bytes())
                .map(|der| {
                    use sha2::Digest;
                    sha2::Sha256::digest(der.as_ref())
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect::<Vec<_>>()
                        .join(":")
                })
                .unwrap_or_default();
            format!(
                "<h1>Inspection certificate</h1>\
                 <p>The web filter reads search engines, YouTube and pages named on the IWF and \
                 police lists over HTTPS, so it can see search terms, keep safe search on and block \
                 single pages. School devices must trust the school's certificate for this; \
                 devices without it cannot open those sites through the filter.</p>\
                 <p><a class=\"button\" href=\"/certificate/inspection-ca.pem\" download>Download (PEM, .pem)</a> \
                 <a class=\"button\" href=\"/certificate/inspection-ca.der\" download>Download (DER, .cer)</a></p>\
                 <p>Check the fingerprint on the device before trusting it:<br>\
                 SHA-256 <code id=\"fingerprint\">{fingerprint}</code></p>\
                 <h2>Windows</h2><p>For many devices, push it by Group Policy: Computer Configuration → \
                 Policies → Windows Settings → Security Settings → Public Key Policies → \
                 Trusted Root Certification Authorities → Import, and choose the .cer file. \
                 On one computer: open the .cer file → Install Certificate → Local Machine → \
                 Place all certificates in the following store → Trusted Root Certification Authorities.</p>\
                 <h2>macOS</h2><p>Push a configuration profile with a Certificate payload from the MDM. \
                 On one Mac: open the .pem file in Keychain Access, add it to the System keychain, \
                 open it and set “When using this certificate” to Always Trust.</p>\
                 <h2>iPad and iPhone</h2><p>Push it with the MDM (Certificate payload). By hand: open \
                 the download in Safari, install the profile in Settings → Profile Downloaded, then \
                 turn it on in Settings → General → About → Certificate Trust Settings.</p>\
                 <h2>Chromebook</h2><p>In the Google Admin console: Devices → Networks → Certificates → \
                 Add certificate, upload the .pem file and tick “Chromebook” under Use this certificate \
                 as an HTTPS certificate authority, for the organisational units of school devices.</p>\
                 <h2>Firefox</h2><p>Firefox keeps its own list unless the enterprise policy \
                 <code>Certificates → ImportEnterpriseRoots</code> is on (Windows and macOS), or the \
                 certificate is imported in Settings → Privacy &amp; Security → Certificates.</p>"
            )
        }
    };
    html::page(&viewer, "Inspection certificate", &body).into_response()
}

async fn pem(State(state): State<ConsoleState>) -> Response {
    match &state.settings().inspection_certificate {
        Some(pem) => (
            [
                (header::CONTENT_TYPE, "application/x-pem-file"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"school-inspection-ca.pem\"",
                ),
            ],
            pem.clone(),
        )
            .into_response(),
        None => not_set_up(),
    }
}

async fn der(State(state): State<ConsoleState>) -> Response {
    let der = state
        .settings()
        .inspection_certificate
        .as_deref()
        .and_then(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).ok());
    match der {
        Some(der) => (
            [
                (header::CONTENT_TYPE, "application/pkix-cert"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"school-inspection-ca.cer\"",
                ),
            ],
            der.as_ref().to_vec(),
        )
            .into_response(),
        None => not_set_up(),
    }
}

fn not_set_up() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        "HTTPS inspection is not set up: run `sheepdog ca init` on the server.\n",
    )
        .into_response()
}

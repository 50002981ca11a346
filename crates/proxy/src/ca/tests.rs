use super::*;

#[test]
fn a_new_authority_loads_back_and_mints_host_certificates() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (certificate, key) = CertificateAuthority::write_new(dir.path(), "Test Primary", false)
        .unwrap_or_else(|e| panic!("{e}"));
    let mode = std::fs::metadata(&key)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default();
    assert_eq!(mode, 0o600, "the key is the owner's alone");
    let authority =
        CertificateAuthority::load(&certificate, &key).unwrap_or_else(|e| panic!("{e}"));
    assert!(authority.certificate_pem().contains("BEGIN CERTIFICATE"));
    let leaf = authority
        .leaf("www.example.test")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(leaf.cert.len(), 2, "host certificate, then the authority");
    assert_eq!(leaf.cert[1].as_ref(), authority.certificate_der());
    let again = authority
        .leaf("www.example.test")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(Arc::ptr_eq(&leaf, &again), "minted once, then cached");
}

#[test]
fn an_existing_authority_is_kept_unless_replaced() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (certificate, _) = CertificateAuthority::write_new(dir.path(), "Test Primary", false)
        .unwrap_or_else(|e| panic!("{e}"));
    let before = std::fs::read(&certificate).unwrap_or_default();
    let refused = CertificateAuthority::write_new(dir.path(), "Test Primary", false);
    assert!(matches!(refused, Err(InspectError::Exists(_))));
    assert_eq!(std::fs::read(&certificate).unwrap_or_default(), before);
    CertificateAuthority::write_new(dir.path(), "Test Primary", true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(std::fs::read(&certificate).unwrap_or_default(), before);
}

#[test]
fn a_key_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (certificate, key) = CertificateAuthority::write_new(dir.path(), "Test Primary", false)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let error = CertificateAuthority::load(&certificate, &key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("chmod 600"), "{error}");
}

#[test]
fn a_certificate_file_that_is_not_pem_names_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (certificate, key) = CertificateAuthority::write_new(dir.path(), "Test Primary", false)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&certificate, "not a certificate").unwrap_or_else(|e| panic!("{e}"));
    let error = CertificateAuthority::load(&certificate, &key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("inspection-ca.pem"), "{error}");
}

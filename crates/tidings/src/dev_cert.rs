//! `tidings dev-cert`: a certificate authority and a server certificate it signed, for
//! `https://` / `wss://` on a development machine.
//!
//! Two certificates, not one self-signed certificate, because rustls (the CLI, tidings-client)
//! refuses a CA certificate as a server's own (`CaUsedAsEndEntity`) and Python ≥ 3.13 checks
//! certificates strictly (`VERIFY_X509_STRICT`): the CA has critical basic constraints
//! (`CA:TRUE`, path length 0) and may only sign certificates; the server certificate has
//! `CA:FALSE`, the `serverAuth` purpose, an authority key identifier and the names to serve.
//! The CA's private key is never written: nothing else can ever be signed with it, so trusting
//! `ca.pem` (even system-wide) vouches for this one server certificate only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Names every development certificate is valid for.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The longest validity: Apple platforms refuse TLS server certificates valid for more than
/// 825 days.
const MAX_DAYS: u32 = 825;

/// Options of `tidings dev-cert`.
#[derive(Debug, Args)]
pub struct DevCertArgs {
    /// Directory to write ca.pem, cert.pem and key.pem to (created if missing).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Another DNS name or IP address for the server certificate, besides localhost,
    /// 127.0.0.1 and ::1; repeatable.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Days the certificates are valid (at most 825).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS as i64))]
    days: u32,
    /// Replace files that exist.
    #[arg(long)]
    force: bool,
}

/// The PEM texts of one development PKI.
struct DevPki {
    ca: String,
    cert: String,
    key: String,
}

fn generate(names: &[String], days: u32, now: SystemTime) -> anyhow::Result<DevPki> {
    let not_before = time::OffsetDateTime::from(now - Duration::from_secs(3600));
    let not_after = time::OffsetDateTime::from(now + Duration::from_secs(u64::from(days) * 86_400));

    let ca_key = KeyPair::generate().context("cannot generate the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    // A name of its own, so that two development CAs in one trust store are never mixed up.
    let id: String = ca
        .key_identifier(&ca_key)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("tidings development CA {id}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).context("cannot sign the CA")?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().context("cannot generate the server key")?;
    let mut leaf = CertificateParams::new(names.to_vec())
        .with_context(|| format!("invalid name among {names:?}"))?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let cert = leaf
        .signed_by(&key, &issuer)
        .context("cannot sign the server certificate")?;
    Ok(DevPki {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes `text` to `path`, readable by its owner only when `private`.
fn write(path: &Path, text: &str, private: bool, force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} exists (--force replaces it)", path.display())
        } else {
            format!("cannot write {}", path.display())
        }
    })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn dev_cert(args: DevCertArgs) -> anyhow::Result<()> {
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| (*n).to_owned()).collect();
    for name in &args.names {
        if name.is_empty() {
            bail!("--name must not be empty");
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let pki = generate(&names, args.days, SystemTime::now())?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let [ca, cert, key] = ["ca.pem", "cert.pem", "key.pem"].map(|f| args.dir.join(f));
    if !args.force {
        // All or nothing: never leave a new key beside an old certificate.
        for path in [&ca, &cert, &key] {
            if path.exists() {
                bail!("{} exists (--force replaces it)", path.display());
            }
        }
    }
    write(&key, &pki.key, true, args.force)?;
    write(&cert, &pki.cert, false, args.force)?;
    write(&ca, &pki.ca, false, args.force)?;
    let (ca, cert, key) = (ca.display(), cert.display(), key.display());
    let text = format!(
        "wrote {ca} (the CA to trust; its key is not kept), {cert} and {key} (the server's, for \
         {names}; valid {days} days)\n\
         serve:   tidings serve --tls-cert {cert} --tls-key {key}\n\
         CLI:     tidings topics --url https://localhost:3000 --ca-file {ca}\n\
         Node:    io(\"https://localhost:3000\", {{ ca: fs.readFileSync(\"{ca}\") }})\n\
         Python:  a requests.Session with verify=\"{ca}\" as socketio.Client(http_session=…)\n\
         curl:    curl --cacert {ca} https://localhost:3000/v1/topics",
        names = names.join(", "),
        days = args.days,
    );
    writeln!(std::io::stdout(), "{text}").context("cannot print what was written")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    /// The server certificate verifies against the CA for every name, as rustls (the CLI's
    /// verifier) checks it; the CA alone is not accepted as a server certificate.
    #[test]
    fn rustls_accepts_the_server_certificate_for_every_name() {
        let names: Vec<String> = ["localhost", "127.0.0.1", "::1", "dev.example"]
            .map(String::from)
            .to_vec();
        let pki = generate(&names, 30, SystemTime::now()).unwrap();
        let ca = CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap();
        let cert = CertificateDer::from_pem_slice(pki.cert.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        let now = UnixTime::now();
        for name in &names {
            let name = ServerName::try_from(name.as_str()).unwrap();
            verifier
                .verify_server_cert(&cert, &[], &name, &[], now)
                .unwrap();
        }
        let other = ServerName::try_from("example.com").unwrap();
        assert!(
            verifier
                .verify_server_cert(&cert, &[], &other, &[], now)
                .is_err()
        );
        let localhost = ServerName::try_from("localhost").unwrap();
        let err = verifier
            .verify_server_cert(&ca, &[], &localhost, &[], now)
            .unwrap_err();
        assert!(format!("{err:?}").contains("CaUsedAsEndEntity"), "{err:?}");
        // Expired after its days.
        let later = UnixTime::since_unix_epoch(
            (SystemTime::now() + Duration::from_secs(31 * 86_400))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap(),
        );
        assert!(
            verifier
                .verify_server_cert(&cert, &[], &localhost, &[], later)
                .is_err()
        );
    }
}

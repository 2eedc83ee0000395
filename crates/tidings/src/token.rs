//! `tidings token`: mints a JSON Web Token for development and tests, signed with the key the
//! server verifies with — the HS256 secret (`--jwt-secret`, `TIDINGS_JWT_SECRET`, `[access]
//! jwt_secret`), or the private half of the server's `--jwt-public-key` — with the claims the
//! server reads: `sub`, `exp`, `iat`, the `tidings` permissions, and `aud` / `iss` when the
//! config file sets them.
//!
//! Production tokens come from your own issuer: whoever can run this with the secret can be
//! anyone (docs/SECURITY.md).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::config_file::{ConfigFile, TokenSettings};

/// Options of `tidings token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The identity the token names (its `sub`).
    subject: String,
    /// A topic pattern the token may publish to (and room it may broadcast to); repeatable.
    /// `*` is one dot-separated segment, `>` the rest: `orders.>` does not match `orders`.
    #[arg(long, value_name = "PATTERN")]
    publish: Vec<String>,
    /// A topic pattern the token may subscribe to and read; repeatable.
    #[arg(long, value_name = "PATTERN")]
    subscribe: Vec<String>,
    /// A room pattern the token may join; repeatable.
    #[arg(long, value_name = "PATTERN")]
    join: Vec<String>,
    /// Everything, including other identities' queues on the HTTP API.
    #[arg(long)]
    admin: bool,
    /// How long the token is valid: seconds, or a number with s, m, h or d (`90s`, `15m`,
    /// `12h`, `7d`).
    #[arg(long, default_value = "1h", value_parser = parse_lifetime)]
    expires_in: Duration,
    /// The server's HS256 secret (at least 32 bytes).
    #[arg(
        long,
        env = "TIDINGS_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_private_key"
    )]
    jwt_secret: Option<String>,
    /// PEM private key whose public half the server verifies with (`--jwt-public-key`):
    /// RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA.
    #[arg(long, env = "TIDINGS_JWT_PRIVATE_KEY")]
    jwt_private_key: Option<PathBuf>,
    /// The server's TOML file: its `[access]` secret, audience and issuer are used.
    #[arg(long, env = "TIDINGS_CONFIG")]
    config: Option<PathBuf>,
}

/// `90`, `90s`, `15m`, `12h`, `7d`.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected e.g. 90s, 15m, 12h or 7d, got {text:?}"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    if n == 0 {
        return Err("the lifetime must be more than 0".into());
    }
    n.checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text} is too long"))
}

/// The signing key and its algorithm, from the flags, the variables or the config file.
fn signing_key(
    args: &TokenArgs,
    file: &TokenSettings<'_>,
) -> anyhow::Result<(EncodingKey, Algorithm)> {
    if let Some(path) = &args.jwt_private_key {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the JWT private key {}", path.display()))?;
        return private_key(&pem).with_context(|| format!("{}", path.display()));
    }
    let Some(secret) = args.jwt_secret.as_deref().or(file.jwt_secret) else {
        if let Some(public) = file.jwt_public_key {
            bail!(
                "the server verifies tokens with the public key {}: sign with its private half \
                 (--jwt-private-key FILE)",
                public.display()
            );
        }
        bail!(
            "no key to sign with: give the server's --jwt-secret (or TIDINGS_JWT_SECRET, or \
             --config with [access] jwt_secret), or --jwt-private-key"
        );
    };
    // The server's own check, so that a token it would never accept is not minted.
    tidings_server::auth::Authenticator::hs256(secret.as_bytes())?;
    Ok((
        EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    ))
}

/// A PEM private key and the algorithm the server pins for its public half.
fn private_key(pem: &[u8]) -> anyhow::Result<(EncodingKey, Algorithm)> {
    if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = EncodingKey::from_ec_pem(pem) {
        return Ok((key, Algorithm::ES256));
    }
    if let Ok(key) = EncodingKey::from_ed_pem(pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    bail!("not a PEM RSA, EC P-256 or Ed25519 private key")
}

/// The claims the server reads (auth.rs): `sub`, `exp`, the `tidings` permissions.
fn claims(args: &TokenArgs, file: &TokenSettings<'_>, now: SystemTime) -> anyhow::Result<Value> {
    anyhow::ensure!(
        tidings_core::store::SubscriptionName::identity(&args.subject).is_ok(),
        "the subject must be 1 to 200 bytes without control characters"
    );
    let iat = now
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let mut claims = json!({
        "sub": args.subject,
        "iat": iat,
        "exp": iat.saturating_add(args.expires_in.as_secs()),
        "tidings": {
            "publish": args.publish,
            "subscribe": args.subscribe,
            "join": args.join,
            "admin": args.admin,
        },
    });
    if let Some(audience) = file.audience {
        claims["aud"] = json!(audience);
    }
    if let Some(issuer) = file.issuer {
        claims["iss"] = json!(issuer);
    }
    Ok(claims)
}

/// Prints the token alone on stdout: `export TIDINGS_TOKEN=$(tidings token …)`.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let settings = file.token_settings();
    let token = mint(&args, &settings, SystemTime::now())?;
    use std::io::Write;
    writeln!(std::io::stdout(), "{token}").context("cannot print the token")
}

fn mint(args: &TokenArgs, file: &TokenSettings<'_>, now: SystemTime) -> anyhow::Result<String> {
    let (key, algorithm) = signing_key(args, file)?;
    let claims = claims(args, file, now)?;
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).context("cannot sign the token")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;
    use tidings_server::auth::{Action, Authenticator};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TokenArgs,
    }

    fn args(line: &[&str]) -> TokenArgs {
        Cli::try_parse_from([&["tidings-token"], line].concat())
            .unwrap()
            .args
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_lifetime("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_lifetime("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "h", "1w", "0", "-1h", "1.5h"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_hs256_token_the_server_accepts_with_its_permissions() {
        let a = args(&[
            "alice",
            "--publish",
            "orders.>",
            "--subscribe",
            "orders.*",
            "--expires-in",
            "2h",
            "--jwt-secret",
            SECRET,
        ]);
        let token = mint(&a, &TokenSettings::default(), SystemTime::now()).unwrap();
        let who = Authenticator::hs256(SECRET.as_bytes())
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(who.identity(), "alice");
        assert!(who.allows(Action::Publish, "orders.eu.1"));
        assert!(!who.allows(Action::Publish, "orders"));
        assert!(who.allows(Action::Subscribe, "orders.eu"));
        assert!(!who.is_admin());
        let left = who
            .expires_at()
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(7000) && left < Duration::from_secs(7300));

        // Another secret: refused.
        let other = Authenticator::hs256(b"another-secret-of-at-least-32-bytes!").unwrap();
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn expired_when_its_lifetime_has_passed() {
        let a = args(&["bob", "--expires-in", "1m", "--jwt-secret", SECRET]);
        let past = SystemTime::now() - Duration::from_secs(3600);
        let token = mint(&a, &TokenSettings::default(), past).unwrap();
        let err = Authenticator::hs256(SECRET.as_bytes())
            .unwrap()
            .verify(&token)
            .unwrap_err();
        assert_eq!(err.code(), tidings_server::ErrorCode::TokenExpired);
    }

    #[test]
    fn the_config_files_secret_audience_and_issuer() {
        let file: ConfigFile = toml::from_str(&format!(
            "[access]\njwt_secret = \"{SECRET}\"\naudience = \"tidings\"\nissuer = \"dev\""
        ))
        .unwrap();
        let server = file
            .authenticator(&crate::config_file::KeyOverride::default())
            .unwrap()
            .unwrap();
        let token = mint(
            &args(&["carol", "--admin"]),
            &file.token_settings(),
            SystemTime::now(),
        )
        .unwrap();
        assert!(server.verify(&token).unwrap().is_admin());
    }

    #[test]
    fn private_keys_sign_for_their_public_half() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
            let pair = rcgen::KeyPair::generate_for(alg).unwrap();
            let private = dir.path().join("private.pem");
            std::fs::write(&private, pair.serialize_pem()).unwrap();
            let a = args(&["dave", "--jwt-private-key", private.to_str().unwrap()]);
            let token = mint(&a, &TokenSettings::default(), SystemTime::now()).unwrap();
            let server =
                Authenticator::from_public_key_pem(pair.public_key_pem().as_bytes()).unwrap();
            assert_eq!(server.verify(&token).unwrap().identity(), "dave");
        }
    }

    #[test]
    fn refusals() {
        let none = mint(
            &args(&["eve"]),
            &TokenSettings::default(),
            SystemTime::now(),
        );
        assert!(format!("{:#}", none.unwrap_err()).contains("no key to sign with"));
        let short = mint(
            &args(&["eve", "--jwt-secret", "short"]),
            &TokenSettings::default(),
            SystemTime::now(),
        );
        assert!(format!("{:#}", short.unwrap_err()).contains("at least 32 bytes"));
        let public = TokenSettings {
            jwt_public_key: Some(std::path::Path::new("jwt.pem")),
            ..TokenSettings::default()
        };
        let err = mint(&args(&["eve"]), &public, SystemTime::now()).unwrap_err();
        assert!(format!("{err:#}").contains("--jwt-private-key"), "{err:#}");
        let bad = mint(
            &args(&["", "--jwt-secret", SECRET]),
            &TokenSettings::default(),
            SystemTime::now(),
        );
        assert!(bad.is_err());
    }
}

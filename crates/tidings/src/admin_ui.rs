//! `tidings serve --admin-ui`: the Socket.IO Admin UI's settings, from flags and `TIDINGS_…`
//! variables over the `[admin_ui]` section of the TOML file (docs/OPERATIONS.md).

use clap::{Args, ValueEnum};
use tidings_server::{AdminAuth, AdminUiConfig};

use crate::config_file::AdminUiSection;

/// What the Admin UI shows as it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdminMode {
    /// Every socket, and its connections, disconnections and room changes as they happen.
    Development,
    /// Server statistics only (cheaper on a busy server).
    Production,
}

/// The Admin UI (`@socket.io/admin-ui`).
#[derive(Debug, Default, Args)]
pub struct AdminArgs {
    /// Serve the Socket.IO Admin UI protocol on `/admin` (the web app of `@socket.io/admin-ui`,
    /// e.g. https://admin.socket.io, logs in there). Off by default.
    #[arg(long, env = "TIDINGS_ADMIN_UI")]
    admin_ui: bool,
    /// The Admin UI's username (with --admin-password-hash).
    #[arg(long, env = "TIDINGS_ADMIN_USERNAME")]
    admin_username: Option<String>,
    /// The bcrypt hash of the Admin UI's password (`htpasswd -nbBC 10 "" PASSWORD | cut -d: -f2`).
    #[arg(long, env = "TIDINGS_ADMIN_PASSWORD_HASH", hide_env_values = true)]
    admin_password_hash: Option<String>,
    /// The Admin UI only looks: no emit, join, leave or disconnect from the web app.
    #[arg(long, env = "TIDINGS_ADMIN_READ_ONLY")]
    admin_read_only: bool,
    /// What the Admin UI shows as it happens (default development, as in Node).
    #[arg(long, env = "TIDINGS_ADMIN_MODE", value_enum)]
    admin_mode: Option<AdminMode>,
}

impl AdminArgs {
    /// The Admin UI's settings, None when it is off. `tokens`: the server verifies tokens
    /// (then an admin token is a password too, and a login is required even without
    /// credentials).
    pub fn config(
        &self,
        file: &AdminUiSection,
        tokens: bool,
    ) -> anyhow::Result<Option<AdminUiConfig>> {
        if !(self.admin_ui || file.enabled) {
            anyhow::ensure!(
                self.admin_username.is_none() && self.admin_password_hash.is_none(),
                "--admin-username / --admin-password-hash need --admin-ui"
            );
            return Ok(None);
        }
        let username = self.admin_username.clone().or(file.username.clone());
        let hash = self
            .admin_password_hash
            .clone()
            .or(file.password_hash.clone());
        let auth = match (username, hash) {
            (Some(username), Some(password_hash)) => AdminAuth::Basic {
                username,
                password_hash,
            },
            (None, None) => AdminAuth::None,
            _ => anyhow::bail!(
                "the Admin UI needs both --admin-username and --admin-password-hash (or neither)"
            ),
        };
        match (&auth, tokens) {
            (AdminAuth::None, false) => tracing::warn!(
                "ADMIN UI WITHOUT LOGIN: whoever reaches this server administers it from the \
                 Admin UI (set --admin-username and --admin-password-hash, docs/OPERATIONS.md)"
            ),
            (AdminAuth::None, true) => tracing::info!(
                "admin UI: log in with an admin token as the password (any username)"
            ),
            (AdminAuth::Basic { username, .. }, _) => {
                tracing::info!(username = %username, "admin UI: log in with the configured credentials")
            }
        }
        let mut config = AdminUiConfig::new(auth);
        config.read_only = self.admin_read_only || file.read_only;
        let file_mode = match file.mode.as_deref() {
            None => None,
            Some("development") => Some(AdminMode::Development),
            Some("production") => Some(AdminMode::Production),
            Some(other) => anyhow::bail!(
                "[admin_ui] mode must be \"development\" or \"production\", not {other:?}"
            ),
        };
        let mode = self
            .admin_mode
            .or(file_mode)
            .unwrap_or(AdminMode::Development);
        config.development = mode == AdminMode::Development;
        if let Some(ns) = &file.namespace {
            config.namespace = ns.clone();
        }
        Ok(Some(config))
    }
}

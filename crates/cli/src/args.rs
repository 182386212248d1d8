//! The command line: every subcommand, flag and its help text (clap).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "breakglass",
    version,
    about = "Emergency privileged access: break glass, get scoped time-bound credentials, leave a verifiable audit trail."
)]
pub struct Cli {
    /// Server URL for client commands.
    #[arg(long, global = true, env = "BREAKGLASS_SERVER")]
    pub server: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Extra CA certificate (PEM) to trust for an HTTPS server with a private CA.
    #[arg(long, global = true, env = "BREAKGLASS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

// Parsed once per run: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Cmd {
    /// Create the data directory, store and keys (idempotent; never overwrites keys).
    Init {
        #[arg(long, env = "BREAKGLASS_DATA_DIR")]
        data_dir: PathBuf,
        /// Keep the store in this PostgreSQL database (several nodes share it; each needs the
        /// same key-encryption key) instead of the data directory's SQLite file. `init`
        /// records it in the data directory, so later commands find it.
        #[arg(long, env = "BREAKGLASS_DATABASE_URL", hide_env_values = true)]
        database: Option<String>,
    },
    /// Run the server.
    Serve {
        #[arg(long, env = "BREAKGLASS_DATA_DIR")]
        data_dir: PathBuf,
        /// Keep the store in this PostgreSQL database (several nodes share it; each needs the
        /// same key-encryption key) instead of the data directory's SQLite file. `init`
        /// records it in the data directory, so later commands find it.
        #[arg(long, env = "BREAKGLASS_DATABASE_URL", hide_env_values = true)]
        database: Option<String>,

        #[arg(long, default_value = "127.0.0.1:8700", env = "BREAKGLASS_LISTEN")]
        listen: std::net::SocketAddr,
        #[arg(long, env = "BREAKGLASS_POLICY")]
        policy: PathBuf,
        /// Sign an audit checkpoint after this many events.
        #[arg(long, default_value_t = 1000)]
        checkpoint_events: u64,
        /// …or after this long (e.g. 10s).
        #[arg(long, default_value = "10s")]
        checkpoint_every: String,
        /// Wrong codes before a user's MFA locks.
        #[arg(long, default_value_t = 5)]
        mfa_max_failures: u32,
        /// How long an MFA lock-out lasts.
        #[arg(long, default_value = "15m")]
        mfa_lockout: String,
        /// Delivery attempts before an alert is dead-lettered.
        #[arg(long, default_value_t = 10)]
        alert_retries: u32,
        /// First alert retry delay (doubles each attempt, with jitter).
        #[arg(long, default_value = "2s")]
        alert_backoff: String,
        /// Where people reach this server (used for links in alerts).
        #[arg(long, env = "BREAKGLASS_PUBLIC_URL")]
        public_url: Option<String>,
        /// Serve HTTPS: PEM certificate chain (with --tls-key).
        #[arg(long, requires = "tls_key", env = "BREAKGLASS_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert", env = "BREAKGLASS_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// How long a node holds an alert it is delivering before it may be retried.
        #[arg(long, default_value = "60s")]
        alert_lease: String,
        /// How often targets are swept for credentials no grant owns (also at start-up).
        #[arg(long, default_value = "60s")]
        sweep_every: String,
        /// A request's head (and a TLS handshake) must arrive within this; idle keep-alive
        /// connections close after it too.
        #[arg(long, default_value = "10s")]
        header_timeout: String,
        /// Connections served at once; beyond it new connections are closed at once.
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
        /// Protect /metrics: require `Authorization: Bearer <token in FILE>`.
        #[arg(long, env = "BREAKGLASS_METRICS_TOKEN_FILE")]
        metrics_token_file: Option<PathBuf>,
        /// A reverse proxy whose X-Forwarded-For is believed for login throttling (repeat
        /// for several); without it the TCP peer is the client.
        #[arg(long = "trust-proxy", value_name = "IP")]
        trust_proxy: Vec<std::net::IpAddr>,
        /// Serve /metrics on this address only (plain HTTP), not on --listen.
        #[arg(long, env = "BREAKGLASS_METRICS_LISTEN")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// The alert outbox (admins): pending, delivered and dead-lettered alerts.
    Alerts {
        /// Only alerts in this state: pending, delivered or failed.
        #[arg(long)]
        state: Option<String>,
        #[command(subcommand)]
        cmd: Option<AlertsCmd>,
    },
    /// Drills (admins): run the real break-glass path end to end now, or show results.
    #[command(subcommand)]
    Drill(DrillCmd),
    /// Operator commands on the server host (work on the data directory).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Log in and keep the session in the config directory.
    Login {
        #[arg(long)]
        user: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        otp: Option<String>,
    },
    /// End the saved session.
    Logout,
    /// Who am I logged in as.
    Whoami,
    /// Multi-factor authentication.
    #[command(subcommand)]
    Mfa(MfaCmd),
    /// Break glass: request access to a resource.
    Request {
        resource: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        ticket: Option<String>,
        /// How long, e.g. 30m (the policy default when absent).
        #[arg(long = "for")]
        duration: Option<String>,
        #[arg(long)]
        otp: Option<String>,
        /// Your SSH public key, for SSH resources (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub
        /// or id_rsa.pub). The certificate is written beside it as `<key>-cert.pub`.
        #[arg(long)]
        ssh_key: Option<PathBuf>,
    },
    /// Follow a grant's live sessions, read-only (security team; the view is audited).
    Watch { grant_id: String },
    /// Export a grant's session recording: asciicast v2 (`asciinema play FILE`) or plain text.
    Recording {
        grant_id: String,
        /// Which session (when the grant has several).
        #[arg(long)]
        session: Option<String>,
        /// `cast` (asciicast v2) or `text` (a transcript without terminal escapes).
        #[arg(long, default_value = "cast")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show grants, or one grant with its countdown.
    Status {
        grant_id: Option<String>,
        /// Every grant you may see, not only yours.
        #[arg(long)]
        all: bool,
        /// Keep a live countdown until the grant ends.
        #[arg(long)]
        watch: bool,
    },
    /// Approve a pending grant (needs MFA).
    Approve {
        grant_id: String,
        #[arg(long)]
        otp: Option<String>,
    },
    /// Deny a pending grant.
    Deny {
        grant_id: String,
        #[arg(long)]
        reason: String,
    },
    /// End a grant now (or cancel a pending one).
    Revoke {
        grant_id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Extend an active grant, within the policy maximum.
    Extend {
        grant_id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        otp: Option<String>,
    },
    /// Pick up, once, the credential issued when approvers activated your grant.
    Credential {
        grant_id: String,
        /// For SSH grants: the key the certificate is for (it is written beside it).
        #[arg(long)]
        ssh_key: Option<PathBuf>,
    },
    /// SSH: `ssh GRANT_ID [-- ssh args]` logs in with the grant's certificate; `ssh ca-key` and
    /// `ssh krl --out FILE` are for the hosts (sshd's TrustedUserCAKeys and RevokedKeys).
    #[command(args_conflicts_with_subcommands = true)]
    Ssh {
        #[command(subcommand)]
        cmd: Option<SshCmd>,
        grant_id: Option<String>,
        /// The key the certificate was issued for (default: as for `request`).
        #[arg(long)]
        ssh_key: Option<PathBuf>,
        /// Log in as this principal (default: the certificate's first).
        #[arg(long)]
        login: Option<String>,
        /// Extra ssh option, as for `ssh -o` (repeatable), e.g. -o StrictHostKeyChecking=accept-new.
        #[arg(short = 'o', long = "option")]
        options: Vec<String>,
        /// Arguments passed to ssh after the destination (e.g. a command).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// On an SSH host, as the certificate's force-command: runs the shell (or the requested
    /// command) and ends it at the grant's expiry, or as soon as the host's KRL revokes it.
    Session {
        #[arg(long)]
        grant: String,
        #[arg(long)]
        serial: u64,
        /// Expiry, Unix seconds (from the signed certificate).
        #[arg(long)]
        until: i64,
        /// The host's KRL file (sshd's RevokedKeys), watched for this certificate's serial.
        #[arg(long)]
        krl: Option<PathBuf>,
        /// Record the session (streamed to --server): `required` (no recording, no
        /// session) or `best_effort`.
        #[arg(long, value_parser = ["required", "best_effort"])]
        record: Option<String>,
    },
    /// Post-incident reviews: `review list`, or `review GRANT_ID --verdict V --notes TEXT`.
    #[command(args_conflicts_with_subcommands = true)]
    Review {
        #[command(subcommand)]
        cmd: Option<ReviewCmd>,
        grant_id: Option<String>,
        /// appropriate or inappropriate
        #[arg(long)]
        verdict: Option<String>,
        #[arg(long)]
        notes: Option<String>,
        #[arg(long)]
        otp: Option<String>,
    },
    /// The incident report of a grant, or with --since a period summary for auditors.
    Report {
        #[arg(required_unless_present = "since", conflicts_with = "since")]
        grant_id: Option<String>,
        /// Summarise the period from this date (YYYY-MM-DD, UTC) instead.
        #[arg(long)]
        since: Option<String>,
        /// md, html or json
        #[arg(long, default_value = "md")]
        format: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sealed secrets (resource kind: secret).
    #[command(subcommand)]
    Secret(SecretCmd),
    /// The offline glass case: seal (admins), open (no server), reconcile (admins).
    #[command(subcommand)]
    GlassCase(crate::commands::GlassCaseCmd),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Policy files.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

#[derive(Subcommand)]
pub enum ReviewCmd {
    /// Reviews you may see (open ones unless --all).
    List {
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Store a secret read from standard input (admins).
    Put { resource: String },
    /// Store a new value after changing it at the source; clears "must rotate" (admins).
    Rotate { resource: String },
    /// Release the secret under your active grant (audited).
    Show { grant_id: String },
    /// Secrets and their rotation state, never their values (admins).
    List,
}

#[derive(Subcommand)]
pub enum SshCmd {
    /// Print the CA public key line for sshd's TrustedUserCAKeys.
    CaKey,
    /// Fetch the revocation list for sshd's RevokedKeys (written atomically).
    Krl {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum AlertsCmd {
    /// Re-queue a dead-lettered alert.
    Retry { id: i64 },
}

#[derive(Subcommand)]
pub enum DrillCmd {
    /// Run the drill of RESOURCE now (every drilled resource without it); exits non-zero if
    /// a drill fails.
    Run { resource: Option<String> },
    /// Past drills, newest first: verdict, failing step, timings.
    History {
        #[arg(long)]
        resource: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Per drilled resource: last result, last success, next due, overdue.
    Status,
    /// Open a people drill (game day, admins): grants real responders request inside it are
    /// marked training. Only `--people` drills are started by hand (`drill run` runs the rest).
    Start {
        /// A game day for people (required: scheduled drills run with `drill run`).
        #[arg(long)]
        people: bool,
        /// How long the window stays open (at most 24h).
        #[arg(long = "for", default_value = "2h")]
        duration: String,
        /// Resources it covers, comma-separated (every resource when absent).
        #[arg(long, value_delimiter = ',')]
        resources: Vec<String>,
        #[arg(long)]
        reason: String,
    },
    /// End the open people drills (or only --window ID).
    Stop {
        #[arg(long)]
        window: Option<String>,
    },
    /// People-drill windows, newest first.
    Windows {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// User accounts.
    #[command(subcommand)]
    User(UserCmd),
}

#[derive(Args, Clone)]
pub struct DataDirArg {
    #[arg(long, env = "BREAKGLASS_DATA_DIR")]
    pub data_dir: PathBuf,
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user.
    Add {
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// List users.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Disable a user: end their sessions and every grant they hold (credentials revoked at
    /// the targets by the server).
    Disable {
        name: String,
        #[command(flatten)]
        dir: DataDirArg,
        /// The policy the server runs with (default: the one it last started with).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Remove a user's authenticator so they can enrol again.
    ResetMfa {
        name: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Lift an MFA lock-out.
    Unlock {
        name: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Subcommand)]
pub enum MfaCmd {
    /// TOTP authenticator apps.
    #[command(subcommand)]
    Totp(TotpCmd),
}

#[derive(Subcommand)]
pub enum TotpCmd {
    /// Start enrolment: prints the otpauth:// URI for your authenticator app.
    Enroll,
    /// Finish enrolment with a code from the app.
    Confirm { code: String },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verify the audit chain and its signed checkpoints.
    Verify {
        /// Verify the store in this data directory (on the server host).
        #[arg(long, conflicts_with = "file")]
        data_dir: Option<PathBuf>,
        /// Verify an export produced by `audit export`.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The audit public key (PEM) to trust; by default the data dir's, or the export's own.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Also check the log against the checkpoint copies in this witness directory: each
        /// copy's signature, and a consistency proof from it to the log's current tree.
        #[arg(long, value_name = "DIR")]
        witness: Option<PathBuf>,
    },
    /// Where each audit stream and the checkpoint witness stand (admins).
    Streams,
    /// Export events and checkpoints.
    Export {
        #[arg(long, default_value = "jsonl")]
        format: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Read the store directly instead of asking the server.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Validate a policy file.
    Check { file: PathBuf },
}

//! What each subcommand does: [`run`] hands each to its group's module.
//!
//! `common` holds what the groups share (output, prompts, the client with the saved session, the
//! data directory); the groups use it and never each other.

mod admin;
mod alerts;
mod audit;
mod auth;
mod common;
mod drills;
mod glass_case;
mod grants;
mod recordings;
mod secrets;
mod serve;

pub use common::print_error;
pub(crate) use common::program;
pub use glass_case::GlassCaseCmd;

use crate::args::{AdminCmd, Cli, Cmd, MfaCmd, PolicyCmd};
use anyhow::Result;

pub async fn run(cli: Cli) -> Result<()> {
    let j = cli.json;
    let cli = &cli;
    match &cli.cmd {
        Cmd::Init { data_dir, database } => admin::init(j, data_dir, database.as_deref()).await?,
        Cmd::Serve { .. } => serve::serve(cli).await?,
        Cmd::Watch { grant_id } => recordings::watch(cli, grant_id).await?,
        Cmd::Recording {
            grant_id,
            session,
            format,
            out,
        } => {
            recordings::recording(cli, grant_id, session.as_deref(), format, out.as_deref(), j)
                .await?
        }
        Cmd::Admin(AdminCmd::User(u)) => admin::admin_user(u, j).await?,
        Cmd::Login {
            user,
            password_stdin,
            otp,
        } => auth::login(cli, user, *password_stdin, otp).await?,
        Cmd::Logout => auth::logout(cli).await?,
        Cmd::Whoami => auth::whoami(cli).await?,
        Cmd::Mfa(MfaCmd::Totp(t)) => auth::totp(cli, t).await?,
        Cmd::Request {
            resource,
            reason,
            ticket,
            duration,
            otp,
            ssh_key,
        } => grants::request(cli, resource, reason, ticket, duration, otp, ssh_key).await?,
        Cmd::Ssh {
            cmd,
            grant_id,
            ssh_key,
            login,
            options,
            args,
        } => grants::ssh(cli, cmd, grant_id, ssh_key, login, options, args).await?,
        Cmd::Credential { grant_id, ssh_key } => grants::credential(cli, grant_id, ssh_key).await?,
        Cmd::Session {
            grant,
            serial,
            until,
            krl,
            record,
        } => {
            let recording = match (record, &cli.server) {
                (Some(mode), Some(server)) => Some(crate::session::Recording {
                    best_effort: mode == "best_effort",
                    server: server.clone(),
                }),
                (Some(_), None) => anyhow::bail!("--record needs --server URL"),
                _ => None,
            };
            let code = crate::session::run(grant, *serial, *until, krl.clone(), recording).await?;
            std::process::exit(code);
        }
        Cmd::Status {
            grant_id,
            all,
            watch,
        } => grants::status(cli, grant_id, *all, *watch).await?,
        Cmd::Approve { grant_id, otp } => grants::approve(cli, grant_id, otp).await?,
        Cmd::Deny { grant_id, reason } => grants::deny(cli, grant_id, reason).await?,
        Cmd::Revoke { grant_id, reason } => grants::revoke(cli, grant_id, reason).await?,
        Cmd::Extend { grant_id, by, otp } => grants::extend(cli, grant_id, by, otp).await?,
        Cmd::Alerts { state, cmd } => alerts::alerts(cli, state, cmd).await?,
        Cmd::Drill(cmd) => drills::drill(cli, cmd).await?,
        Cmd::Review {
            cmd,
            grant_id,
            verdict,
            notes,
            otp,
        } => audit::review(cli, cmd, grant_id, verdict, notes, otp).await?,
        Cmd::Report {
            grant_id,
            since,
            format,
            out: path,
        } => audit::report(cli, grant_id, since, format, path).await?,
        Cmd::Secret(cmd) => secrets::secret(cli, cmd).await?,
        Cmd::GlassCase(cmd) => glass_case::glass_case(cli, cmd).await?,
        Cmd::Audit(a) => audit::audit(cli, a, j).await?,
        Cmd::Policy(PolicyCmd::Check { file }) => admin::policy_check(j, file)?,
    }
    Ok(())
}

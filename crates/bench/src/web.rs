//! Page weight of the web UI's break-glass and approval pages: the HTML of each page as served
//! (real router on loopback, real session cookie) plus the one style sheet it loads. The UI has
//! no scripts, fonts or images, so that is every byte a phone downloads (HTTP headers aside).

use crate::{Principal, RequestInput, fixture_with, mfa};
use anyhow::Result;
use breakglass_core::time::Timestamp;
use breakglass_server::engine::{Clock, SystemClock};

const POLICY: &str = r#"
admins: { groups: [security] }
resources:
  - { name: prod-db, kind: secret }
  - { name: bastion, kind: secret }
policies:
  - name: dba-emergency
    resources: [prod-db]
    who: { groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$", min_reason: 15 }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
  - name: bastion-with-approval
    resources: [bastion]
    who: { groups: [oncall] }
    require: { mfa: true, ticket: "^INC-[0-9]+$" }
    approval: { mode: quorum, count: 1, from: [oncall], timeout: 10m, on_timeout: deny }
    duration: { default: 15m, max: 1h }
"#;

pub async fn page_weight() -> Result<()> {
    let f = fixture_with(2, POLICY).await?;
    let now: Timestamp = SystemClock.now();
    let code = mfa::code_for_step(&f.secret, mfa::step_at(now));
    let who = Principal {
        name: "u0".into(),
        groups: vec!["oncall".into()],
    };
    let pending = f
        .engine
        .request(
            &who,
            RequestInput {
                resource: "bastion".into(),
                reason: "bastion unreachable, deploys blocked".into(),
                ticket: Some("INC-4711".into()),
                duration: None,
                otp: Some(code),
                ssh_public_key: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = breakglass_server::web::router(
        f.engine.clone(),
        breakglass_server::web::WebConfig { tls: false },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::new();
    let get = |path: String, token: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{addr}{path}"))
                .header("cookie", format!("breakglass={token}"))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
            Ok::<_, anyhow::Error>(r.bytes().await?.len())
        }
    };
    let css = get("/static/app.css".into(), "tok-0").await?;
    for (what, path, token) in [
        (
            "break-glass form (2 resources)",
            "/request".to_string(),
            "tok-0",
        ),
        (
            "approval queue (1 request)",
            "/approvals".to_string(),
            "tok-1",
        ),
        (
            "a pending request's page, approve/deny forms",
            format!("/grants/{}", pending.id),
            "tok-1",
        ),
    ] {
        let html = get(path, token).await?;
        println!(
            "web page weight, {what}: {:.1} KB ({html} B HTML + {css} B CSS, no scripts/fonts/images)",
            (html + css) as f64 / 1000.0
        );
    }
    Ok(())
}

//! Anomaly flags: signs that a break-glass grant deserves a closer look. Flags never block
//! access (that is the policy's job); they are carried in the grant, its audit events, its
//! alerts and its review. Pure: the engine gathers the facts, this module decides.

use crate::policy::AnomalyRules;
use crate::time::{Timestamp, weekday_and_minute};
use serde::{Deserialize, Serialize};

/// What the engine found out about a request.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The user's grants within the per-user window, not counting this one.
    pub user_recent: u64,
    /// Grants on the resource within the per-resource window, not counting this one.
    pub resource_recent: u64,
    /// Whether the user ever had a grant on this resource before.
    pub user_had_resource: bool,
    /// When the user's last MFA lock-out ends (or ended), if ever.
    pub lockout_until: Option<Timestamp>,
}

/// One flag: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub code: String,
    pub message: String,
}

fn flag(code: &str, message: String) -> Flag {
    Flag {
        code: code.into(),
        message,
    }
}

/// Flags for a new request.
pub fn on_request(
    rules: &AnomalyRules,
    f: &Facts,
    user: &str,
    resource: &str,
    now: Timestamp,
) -> Vec<Flag> {
    let mut out = Vec::new();
    let fmt = crate::duration::format;
    if f.user_recent + 1 > u64::from(rules.per_user.0) {
        out.push(flag(
            "user-frequency",
            format!(
                "{user} has had {} grants within {}",
                f.user_recent + 1,
                fmt(rules.per_user.1)
            ),
        ));
    }
    if f.resource_recent + 1 > u64::from(rules.per_resource.0) {
        out.push(flag(
            "resource-frequency",
            format!(
                "{resource} has had {} grants within {}",
                f.resource_recent + 1,
                fmt(rules.per_resource.1)
            ),
        ));
    }
    if rules.first_grant && !f.user_had_resource {
        out.push(flag(
            "first-grant",
            format!("{user}'s first ever grant on {resource}"),
        ));
    }
    if let Some(until) = f.lockout_until
        && now < until.plus(rules.after_lockout)
    {
        out.push(flag(
            "after-mfa-lockout",
            format!(
                "{user}'s MFA was locked out until {until}, less than {} ago",
                fmt(rules.after_lockout)
            ),
        ));
    }
    if let Some(h) = &rules.hours {
        let (wd, minute) = weekday_and_minute(now);
        if !h.days.contains(&wd) || minute < h.from || minute >= h.to {
            out.push(flag(
                "outside-hours",
                format!("requested outside working hours ({} UTC)", h.source),
            ));
        }
    }
    out
}

/// The flag for an extension, if this one exceeds the rule.
pub fn on_extension(rules: &AnomalyRules, extensions_after: u32) -> Option<Flag> {
    (extensions_after > rules.max_extensions).then(|| {
        flag(
            "repeated-extensions",
            format!(
                "extended {extensions_after} times (more than {})",
                rules.max_extensions
            ),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let r = AnomalyRules::default();
        let now = Timestamp(1_795_313_820_000);
        let quiet = Facts {
            user_had_resource: true,
            ..Default::default()
        };
        assert!(on_request(&r, &quiet, "bob", "db", now).is_empty());
        let busy = Facts {
            user_recent: 3,
            resource_recent: 10,
            user_had_resource: false,
            lockout_until: Some(Timestamp(now.0 - 3_600_000)),
        };
        let codes: Vec<String> = on_request(&r, &busy, "bob", "db", now)
            .into_iter()
            .map(|f| f.code)
            .collect();
        assert_eq!(
            codes,
            [
                "user-frequency",
                "resource-frequency",
                "first-grant",
                "after-mfa-lockout"
            ]
        );
        assert!(on_extension(&r, 2).is_none());
        assert_eq!(on_extension(&r, 3).unwrap().code, "repeated-extensions");
    }
}

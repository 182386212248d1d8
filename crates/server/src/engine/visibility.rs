//! Loading grants and who may see them.

use super::views::GrantView;
use super::{Engine, Principal};
use crate::error::ApiError;
use breakglass_core::grant::AnyGrant;
use breakglass_core::{policy, time};
use breakglass_store::GrantFilter;
use serde_json::json;

impl Engine {
    /// A grant held by `who` (anyone else's is reported as not found, revealing nothing).
    pub(crate) async fn load_own(&self, who: &Principal, id: &str) -> Result<AnyGrant, ApiError> {
        let g = self.load(id).await?;
        if g.info().user != who.name {
            return Err(ApiError::NotFound(format!("no grant {id:.64} of yours")));
        }
        Ok(g)
    }

    pub(crate) async fn load(&self, id: &str) -> Result<AnyGrant, ApiError> {
        if id.len() > 64 {
            return Err(ApiError::NotFound(format!("no grant {id:.64}")));
        }
        self.store.grant(id).await?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "no grant {id}: check the id with `breakglass status`"
            ))
        })
    }

    pub(crate) fn may_see(&self, who: &Principal, g: &AnyGrant) -> bool {
        let info = g.info();
        if info.user == who.name || self.is_admin(who) {
            return true;
        }
        let policy = self.policy();
        let in_any = |groups: &[String]| who.groups.iter().any(|x| groups.contains(x));
        match g {
            AnyGrant::Pending(p) if in_any(&p.state.from) => true,
            _ => {
                in_any(&info.review_by)
                    || policy
                        .set
                        .policy(&info.policy)
                        .is_some_and(|p| match &p.approval {
                            policy::Approval::Quorum { from, .. } => in_any(from),
                            _ => false,
                        })
            }
        }
    }

    pub fn is_admin(&self, who: &Principal) -> bool {
        self.policy().set.is_admin(&who.name, &who.groups)
    }

    /// Refuses (403, nothing changed) unless `who` is an admin.
    pub(crate) fn admin_only(&self, who: &Principal, what: &str) -> Result<(), ApiError> {
        if self.is_admin(who) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{what} is for admins (policy `admins`)"
            )))
        }
    }

    pub async fn grant(&self, who: &Principal, id: &str) -> Result<GrantView, ApiError> {
        let g = self.load(id).await?;
        if !self.may_see(who, &g) {
            return Err(ApiError::NotFound(format!("no grant {id}")));
        }
        let mut v = GrantView::of(&g, self.now());
        v.review = self.review_of(id).await?;
        v.credential_status = self.store.credential(id).await?.map(|c| {
            let mut v = json!({"kind": c.kind, "fingerprint": c.fingerprint, "state": c.state,
                   "revocation_pending": c.state == "revoking", "attempts": c.attempts,
                   "last_error": c.last_error, "revoked_at": c.revoked_at.map(time::rfc3339)});
            // Public identifiers only (never a password or the hook's output).
            for k in ["serial", "principals", "host", "port", "role"] {
                if let Some(x) = c.handle.get(k) {
                    v[k] = x.clone();
                }
            }
            v
        });
        Ok(v)
    }

    pub async fn grants(
        &self,
        who: &Principal,
        all: bool,
        states: Vec<String>,
    ) -> Result<Vec<GrantView>, ApiError> {
        let now = self.now();
        let filter = GrantFilter {
            user: if all { None } else { Some(who.name.clone()) },
            states,
            limit: 200,
        };
        let list = self.store.grants(&filter).await?;
        Ok(list
            .iter()
            .filter(|g| self.may_see(who, g))
            .map(|g| GrantView::of(g, now))
            .collect())
    }
}

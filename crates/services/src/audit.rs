//! The audit trail of administrative acts: recorded after each act made through the API, read
//! by the organization's admins.

use agentyard_store::audit::{AuditEntry, NewAuditEntry};

use crate::{Page, Principal, Result, Services};

impl Services {
    /// Records that `who` did `action` on `target_type` `target_id`. The act is done: a failure
    /// to record it is logged as an error, not returned to the caller.
    pub async fn audit(
        &self,
        who: &Principal,
        action: &str,
        target_type: &str,
        target_id: impl std::fmt::Display,
        details: serde_json::Value,
    ) {
        let entry = NewAuditEntry {
            org: who.org_id,
            user: who.user_id,
            token: who.token_id,
            action,
            target_type,
            target_id: target_id.to_string(),
            details,
        };
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!(error = %e, org_id = %who.org_id, action, target_type,
                target_id = entry.target_id, "cannot record an act in the audit log");
        }
    }

    /// The organization's acts, newest first; `cursor` is a page's `next_cursor`.
    ///
    /// # Errors
    /// `invalid_query` for a bad cursor; database failures.
    pub async fn audit_log(
        &self,
        who: &Principal,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Page<AuditEntry>> {
        let before = cursor
            .map(|c| {
                c.parse::<i64>().map_err(|_| {
                    crate::Error::invalid("invalid_query", "cursor is not one we gave")
                })
            })
            .transpose()?;
        let data = self.store.audit_log(who.org_id, before, limit).await?;
        let next_cursor = (i64::try_from(data.len()).unwrap_or(0) == limit)
            .then(|| data.last())
            .flatten()
            .map(|e| e.id.to_string());
        Ok(Page { data, next_cursor })
    }
}

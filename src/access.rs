//! The authorizer as a service: `authorizer.class.name`, `super.users` and
//! `allow.everyone.if.no.acl.found` with the ACLs of this broker's applied metadata image.
//! Built once by `node`, held by the `Broker` and carried by every request's context
//! (`api::RequestContext::access`), so an API handler asks "may this principal …?" without
//! reaching into the broker.
//!
//! Reads are local: an ACL change is enforced by a broker once it has applied it (like a
//! Kafka broker's metadata cache, about a heartbeat behind the controller at most).
//!
//! May depend on: `security` (the authorizer's rules), `metadata_source`. Not on `broker`
//! or `api`.

use std::sync::Arc;

use crate::metadata_source::MetadataSource;
use crate::security::acl::{Operation, ResourceType};
use crate::security::authorizer::{AuthorizerSettings, Subject};
use crate::security::Principal;

/// See the module documentation.
pub struct Access {
    settings: AuthorizerSettings,
    metadata: Arc<MetadataSource>,
}

/// Who asks, as the authorizer compares it: a principal and the client's IP address as text
/// (`127.0.0.1`; empty when unknown, which only `*` host rules match).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub principal: &'a Principal,
    pub host: &'a str,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Access {
    pub fn new(settings: AuthorizerSettings, metadata: Arc<MetadataSource>) -> Self {
        Self { settings, metadata }
    }

    /// Whether an authorizer is configured (without one, everything is allowed).
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Whether `who` may perform `op` on `(rt, name)`.
    pub fn allowed(&self, who: Asker<'_>, op: Operation, rt: ResourceType, name: &str) -> bool {
        if !self.settings.enabled {
            return true;
        }
        self.settings
            .authorize(&self.metadata.image().acls, &subject(who), op, rt, name)
    }

    /// Whether `who` may perform `op` on at least one resource of type `rt` (Kafka's
    /// `authorizeByResourceType`).
    pub fn allowed_on_any(&self, who: Asker<'_>, op: Operation, rt: ResourceType) -> bool {
        if !self.settings.enabled {
            return true;
        }
        self.settings
            .authorize_any(&self.metadata.image().acls, &subject(who), op, rt)
    }

    /// KIP-430's bit set of the operations of `supported` `who` may perform on `(rt, name)`:
    /// every supported one without an authorizer.
    pub fn operations(
        &self,
        who: Asker<'_>,
        rt: ResourceType,
        name: &str,
        supported: &[Operation],
    ) -> i32 {
        if !self.settings.enabled {
            return supported.iter().fold(0, |set, op| set | (1 << op.code()));
        }
        self.settings.authorized_operations(
            &self.metadata.image().acls,
            &subject(who),
            rt,
            name,
            supported,
        )
    }
}

fn subject(who: Asker<'_>) -> Subject<'_> {
    Subject {
        principal: who.principal,
        host: who.host,
    }
}

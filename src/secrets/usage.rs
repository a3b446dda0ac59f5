//! Who uses an object: the services whose specs name it. Computed from the
//! services at every read rather than stored in the object's record, so it
//! cannot go stale when a service is applied or deleted.

use crate::model::ServiceBody;

use super::ObjectKind;

/// How a service and its tasks name an object's version: `secret/NAME`,
/// `config/NAME`.
pub fn version_key(kind: ObjectKind, name: &str) -> String {
    format!("{}/{name}", kind.noun())
}

/// The services (by name, sorted) whose spec names `kind` `name`.
pub fn used_by<'a>(
    kind: ObjectKind,
    name: &str,
    services: impl IntoIterator<Item = (&'a str, &'a ServiceBody)>,
) -> Vec<String> {
    let mut users: Vec<String> = services
        .into_iter()
        .filter(|(_, body)| match kind {
            ObjectKind::Secret => body.secret_names().contains(name),
            ObjectKind::Config => body.config_names().contains(name),
        })
        .map(|(service, _)| service.to_string())
        .collect();
    users.sort();
    users.dedup();
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(yaml: &str) -> ServiceBody {
        crate::model::parse_service(&format!(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  image: busybox\n{yaml}"
        ))
        .expect("valid")
        .spec
    }

    #[test]
    fn files_and_env_from_count_as_uses() {
        let web = body("  secrets: [{name: pw}]\n  configs: [{name: conf}]\n");
        let api = body("  envFrom: [{config: conf}]\n");
        let services = [("web", &web), ("api", &api)];
        assert_eq!(used_by(ObjectKind::Secret, "pw", services), vec!["web"]);
        assert_eq!(
            used_by(ObjectKind::Config, "conf", services),
            vec!["api", "web"]
        );
        assert!(used_by(ObjectKind::Config, "pw", services).is_empty());
    }
}

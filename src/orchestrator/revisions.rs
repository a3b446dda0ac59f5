//! A service's kept generations (`ServiceRecord::revisions`): what `apply`
//! and `rollout undo` add, what they keep, and the few words `rollout
//! history` shows for each. Pure: the API (`node::orchestration`) calls it
//! with the time.

use crate::model::ServiceSpec;
use crate::orchestrator::records::{Revision, ServiceRecord};

/// Records `record`'s current generation (already bumped, its spec already
/// the new one) as a revision, and keeps the newest `revisionHistory`.
/// `before`: the spec of the generation before (None for a new service).
pub fn push_revision(
    record: &mut ServiceRecord,
    before: Option<(u64, &ServiceSpec, u64)>,
    change: String,
    now_unix: u64,
) {
    if record.revisions.is_empty() {
        // A record from before revisions were kept: its generation stands
        // for itself, so that `undo` can go back to it.
        if let Some((generation, spec, updated_unix)) = before {
            record.revisions.push(Revision {
                generation,
                spec: spec.clone(),
                created_unix: updated_unix,
                change: "(recorded before revisions were kept)".to_string(),
            });
        }
    }
    record.revisions.push(Revision {
        generation: record.generation,
        spec: record.spec.clone(),
        created_unix: now_unix,
        change,
    });
    let keep = usize::try_from(record.spec.spec.revision_history.max(1)).unwrap_or(usize::MAX);
    let excess = record.revisions.len().saturating_sub(keep);
    record.revisions.drain(..excess);
}

/// What changed between two specs of a service, in a few words: the image
/// in full, other fields by name. Replicas and rollout settings do not make
/// a generation and are not named.
pub fn describe_change(old: &ServiceSpec, new: &ServiceSpec) -> String {
    let mut changed = Vec::new();
    if old.spec.image != new.spec.image {
        changed.push(format!("image {} -> {}", old.spec.image, new.spec.image));
    }
    let (Ok(old_body), Ok(new_body)) = (
        serde_json::to_value(&old.spec),
        serde_json::to_value(&new.spec),
    ) else {
        return "spec changed".to_string();
    };
    let ignored = ["image", "replicas", "update", "rollback", "revisionHistory"];
    if let (Some(old_fields), Some(new_fields)) = (old_body.as_object(), new_body.as_object()) {
        let names: std::collections::BTreeSet<&String> =
            old_fields.keys().chain(new_fields.keys()).collect();
        for name in names {
            if !ignored.contains(&name.as_str()) && old_fields.get(name) != new_fields.get(name) {
                changed.push(name.clone());
            }
        }
    }
    if old.metadata.labels != new.metadata.labels {
        changed.push("labels".to_string());
    }
    if changed.is_empty() {
        "spec changed".to_string()
    } else {
        changed.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_service;

    fn spec(image: &str, extra: &str) -> ServiceSpec {
        parse_service(&format!(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  \
             image: {image}\n  revisionHistory: 3\n{extra}"
        ))
        .unwrap()
    }

    fn record(spec: ServiceSpec, generation: u64) -> ServiceRecord {
        ServiceRecord {
            spec,
            generation,
            created_unix: 0,
            updated_unix: 0,
            previous: None,
            revisions: Vec::new(),
            paused: false,
            resumes: 0,
            promotes: 0,
            objects: Default::default(),
        }
    }

    #[test]
    fn a_change_names_the_image_and_the_fields_not_the_replicas() {
        let old = spec("web:1", "  replicas: 2\n");
        let new = spec("web:2", "  replicas: 5\n  env: {A: b}\n");
        assert_eq!(describe_change(&old, &new), "image web:1 -> web:2, env");
    }

    #[test]
    fn revisions_keep_the_newest_and_seed_an_old_record() {
        let first = spec("web:1", "");
        let mut service = record(first.clone(), 4);
        // A record from before revisions: generation 4 is seeded.
        service.generation = 5;
        service.spec = spec("web:2", "");
        push_revision(&mut service, Some((4, &first, 7)), "image".into(), 10);
        assert_eq!(
            service
                .revisions
                .iter()
                .map(|r| r.generation)
                .collect::<Vec<_>>(),
            vec![4, 5]
        );
        for generation in 6..=8 {
            service.generation = generation;
            push_revision(&mut service, None, "env".into(), 20);
        }
        // revisionHistory: 3.
        assert_eq!(
            service
                .revisions
                .iter()
                .map(|r| r.generation)
                .collect::<Vec<_>>(),
            vec![6, 7, 8]
        );
        assert_eq!(service.spec_of(5), None);
        assert!(service.spec_of(7).is_some());
    }
}

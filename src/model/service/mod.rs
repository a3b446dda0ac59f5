//! The service spec: what a user writes to run a service, in YAML, in the
//! manner of Kubernetes (`apiVersion`/`kind`/`metadata`/`spec`, camelCase
//! keys) and compose (env as a map, `ports` with `container`/`host`).
//!
//! [`parse_service`] deserializes and validates it. Unknown fields are an
//! error at every level (`deny_unknown_fields`), and every error names the
//! field path and its line. This module does no IO and knows nothing of the
//! runtime's container spec; names match it where they meet (env as a map,
//! volumes `local`/`hostPath`/`tmpfs`/`device`, network `bridge`/`host`).
//!
//! A full example (also `examples/web.yaml`):
//!
//! ```yaml
//! apiVersion: edgectl/v1
//! kind: Service
//! metadata:
//!   name: web
//!   labels:
//!     app: web
//! spec:
//!   image: registry.local/web:1.4
//!   command: ["/bin/httpd"]          # replaces the image's ENTRYPOINT
//!   args: ["-f", "-p", "8080"]       # replaces the image's CMD
//!   env:                             # a map; values are taken as text
//!     LOG_LEVEL: info
//!     PORT: "8080"
//!   replicas: 3                      # default 1, at most REPLICAS_MAX
//!   resources:
//!     requests: {cpu: 250m, memory: 64Mi}   # what the scheduler packs
//!     limits: {cpu: "1", memory: 128Mi}     # what cgroups enforce
//!   restartPolicy:
//!     condition: on-failure          # always (default) | on-failure | never
//!     backoff: {initial: 1s, max: 5m}   # doubles after every restart
//!   placement:
//!     constraints:
//!       - node.labels.zone == north
//!       - node.labels.gpu != true
//!     spread: node.labels.rack       # true (default) | false | node.labels.KEY
//!   volumes:
//!     - {name: data, type: local}
//!     - {name: config, type: hostPath, path: /etc/web}
//!     - {name: scratch, type: tmpfs, size: 64Mi}
//!     - {name: serial, type: device, path: /dev/ttyUSB0}
//!   mounts:
//!     - {volume: data, path: /var/lib/web}
//!     - {volume: config, path: /etc/web, readOnly: true}
//!     - {volume: scratch, path: /tmp}
//!     - {volume: serial, path: /dev/ttyUSB0}
//!   network: bridge                  # bridge (default) | host
//!   user: "1000:1000"                # uid[:gid] or a name (default: the image's)
//!   secrets:                         # read-only files, in a tmpfs on the task's node
//!     - name: db-password            # /run/secrets/db-password, 0:0, 0444
//!     - {name: tls-key, target: /etc/tls/key.pem, uid: 1000, gid: 1000, mode: 0400}
//!   configs:                         # read-only files; default /run/configs/<name>
//!     - {name: web.conf, target: /etc/web/web.conf}
//!   envFrom:                         # KEY=VALUE lines of a config; env wins
//!     - config: web.env
//!   update:
//!     parallelism: 1                 # old tasks replaced at once (default 1)
//!   probes:                          # each exactly one of exec | http | tcp
//!     readiness:                     # out of rotation until it passes, and while it fails
//!       http: {path: /ready, port: 8080}   # 2xx/3xx passes
//!       initialDelay: 0s             # defaults: 0s, 10s, 3s, 1, 3
//!       interval: 10s
//!       timeout: 3s
//!       successThreshold: 1
//!       failureThreshold: 3
//!     liveness:                      # killed and restarted by policy when it fails
//!       exec: ["wget", "-q", "-O-", "localhost:8080/health"]
//!     startup:                       # readiness and liveness wait until it passes
//!       tcp: {port: 8080}
//!       failureThreshold: 30
//!   # healthCheck: {exec, interval, timeout, retries, startPeriod} is the older
//!   # form of probes.liveness (exec only), still read; not both at once.
//!   ports:
//!     - {container: 8080, host: 80}  # protocol tcp (default) | udp; on the task's node
//!     - {container: 8443, host: 8443, publish: cluster}  # on every node, to any task
//!     - {container: 9090}            # reachable through the service only
//! ```
//!
//! Where errors point: errors that serde_yaml finds (YAML syntax, wrong
//! types, unknown or missing fields, bad quantities, constraints and
//! durations) carry serde_yaml's own line and column. Errors found after
//! deserialization (limits below requests, undeclared volumes, duplicate
//! ports...) carry the line of the offending key, found by a small scan of
//! the source text (`locate.rs`), since serde_yaml 0.9 keeps no spans.

mod codec;
mod error;
mod parse;
mod probes;
mod references;
mod rollout;
mod types;
mod validate;

pub use error::{Location, SpecError};
pub use parse::{parse_service, parse_service_document};
pub use probes::*;
pub use references::check_references;
pub use rollout::*;
pub use types::*;
pub use validate::{valid_dns_label, valid_label_key, valid_label_value, validate};

#[cfg(test)]
mod tests;

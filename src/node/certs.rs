//! Node certificate renewal, so that a device never locks itself out.
//!
//! Every member holds the cluster CA's key in its replica, sealed under the
//! keyring's data key (`/sys/ca/sealed-key`), and opens it with its own
//! keyring key, so a node re-issues its own certificate with no one's help: while it runs,
//! once less than half of its validity is left, and at start when it comes
//! back from a drawer with a certificate that ran out meanwhile — before it
//! dials anyone, since its peers would refuse the expired one. A running
//! node presents the new certificate from the next handshake on; connections
//! already open keep the one they were made with.
//!
//! The node that ran `edgectl init` also keeps the admin client certificate
//! in its data dir fresh (`admin/admin.pem`, which the admin config and its
//! copy in `~/.config/edgectl` point to), so the operator is not locked out
//! of a cluster that outlived a year. Copies taken elsewhere still expire.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use raft::store::KvReader;
use raft::transport::{pki, TlsIdentity};
use tracing::{info, warn};

use super::{keyring, Node, NodeError};
use crate::paths::{write_file_atomic, DataDir, NodeIdentity};
use crate::secrets::crypto::NodeKey;

/// Longest pause between two checks of the certificate's expiry.
const CHECK_EVERY_MAX: Duration = Duration::from_secs(3600);

/// Common name of the admin client certificate `init` issues.
pub(super) const ADMIN_CLIENT_NAME: &str = "admin";

/// Whether a certificate expiring at `not_after` is due for renewal at
/// `now`, for certificates issued for `validity`: when less than half of it
/// is left, or it has expired. Pure, for the loop and its tests.
pub fn renewal_due(not_after: SystemTime, validity: Duration, now: SystemTime) -> bool {
    match not_after.duration_since(now) {
        Ok(left) => left < validity / 2,
        Err(_) => true,
    }
}

/// How often the running node checks: a tenth of the validity, at most
/// hourly, so renewal happens well inside the second half.
pub fn check_interval(validity: Duration) -> Duration {
    (validity / 10).clamp(Duration::from_millis(200), CHECK_EVERY_MAX)
}

/// Where a node finds the CA's key: its replica, opened with its keyring key.
pub struct CaKeySource<'a> {
    pub kv: &'a KvReader,
    pub node_id: u64,
    /// None when this node's keyring key cannot be read: only a cluster
    /// whose CA key is not sealed yet can sign then.
    pub node_key: Option<&'a NodeKey>,
}

/// The cluster CA, with its key from the replica (every member holds it,
/// sealed), issuing node certificates valid for `validity`.
pub(super) fn ca_from_replica(
    source: &CaKeySource<'_>,
    ca_cert_pem: &str,
    validity: Duration,
) -> Result<pki::ClusterCa, String> {
    let ca_key_pem = keyring::ca_key_pem(source.kv, source.node_id, source.node_key)
        .map_err(|e| format!("cannot open the CA key in the local replica: {e}"))?;
    Ok(pki::ClusterCa::from_pem(ca_cert_pem, &ca_key_pem)
        .map_err(|e| format!("the CA in the replica is unusable: {e}"))?
        .with_leaf_validity(validity))
}

/// Where one renewable certificate lives and how to re-issue it.
struct Renewable<'a> {
    what: &'static str,
    cert_path: PathBuf,
    key_path: PathBuf,
    issue: &'a dyn Fn(&pki::ClusterCa) -> Result<pki::CertifiedKey, pki::PkiError>,
}

/// Re-issues `renewable` from the CA in the replica if `cert_pem` is due,
/// writing the new key and certificate in place. None when nothing was due.
fn reissue_if_due(
    renewable: Renewable<'_>,
    cert_pem: &str,
    source: &CaKeySource<'_>,
    ca_cert_pem: &str,
    validity: Duration,
) -> Result<Option<pki::CertifiedKey>, NodeError> {
    let tls_error = |reason: String| NodeError::Tls {
        path: renewable.cert_path.clone(),
        reason,
    };
    let not_after = pki::not_after(cert_pem).map_err(|e| tls_error(e.to_string()))?;
    if !renewal_due(not_after, validity, SystemTime::now()) {
        return Ok(None);
    }
    let ca = ca_from_replica(source, ca_cert_pem, validity).map_err(tls_error)?;
    let renewed = (renewable.issue)(&ca).map_err(|e| tls_error(e.to_string()))?;
    // Key first: a crash between the two writes leaves the old certificate
    // with a key it does not match, which the next check renews again.
    write_file_atomic(&renewable.key_path, renewed.key_pem.as_bytes(), 0o600)?;
    write_file_atomic(&renewable.cert_path, renewed.cert_pem.as_bytes(), 0o644)?;
    info!(
        expired = not_after <= SystemTime::now(),
        valid_for = ?validity,
        "{} certificate renewed from the cluster CA in the local replica",
        renewable.what
    );
    Ok(Some(renewed))
}

/// Renews this node's certificate if it is due, writing the new key and
/// certificate into the data dir. Returns the identity to present: the new
/// one, or `current` when nothing was due.
pub fn renew_if_due(
    data_dir: &DataDir,
    identity: &NodeIdentity,
    source: &CaKeySource<'_>,
    current: TlsIdentity,
    validity: Duration,
) -> Result<TlsIdentity, NodeError> {
    let node = Renewable {
        what: "node",
        cert_path: data_dir.node_cert(),
        key_path: data_dir.node_key(),
        issue: &|ca| ca.issue_node(identity.node_id, &identity.name),
    };
    match reissue_if_due(
        node,
        &current.cert_pem,
        source,
        &current.ca_cert_pem,
        validity,
    )? {
        None => Ok(current),
        Some(renewed) => Ok(TlsIdentity {
            ca_cert_pem: current.ca_cert_pem,
            cert_pem: renewed.cert_pem,
            key_pem: renewed.key_pem,
        }),
    }
}

/// Renews the admin client certificate in the data dir (only the node that
/// ran `init` has one) if it is due. Returns whether it was renewed.
pub fn renew_admin_if_due(
    data_dir: &DataDir,
    source: &CaKeySource<'_>,
    ca_cert_pem: &str,
    validity: Duration,
) -> Result<bool, NodeError> {
    let admin = Renewable {
        what: "admin client",
        cert_path: data_dir.admin_cert(),
        key_path: data_dir.admin_key(),
        issue: &|ca| ca.issue_client(ADMIN_CLIENT_NAME),
    };
    let cert_pem = match std::fs::read_to_string(&admin.cert_path) {
        Ok(pem) => pem,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            return Err(NodeError::Tls {
                path: admin.cert_path,
                reason: error.to_string(),
            })
        }
    };
    Ok(reissue_if_due(admin, &cert_pem, source, ca_cert_pem, validity)?.is_some())
}

impl Node {
    /// Renews the certificate whenever it falls due, for as long as the node
    /// runs, and presents the new one on the endpoint.
    pub(super) async fn cert_renewal_loop(self) {
        let validity = self.inner.config.cert_validity;
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(check_interval(validity)) => {}
                _ = shutdown.changed() => return,
            }
            let data_dir = self.inner.config.data_dir.clone();
            let current = match super::load_tls(&data_dir) {
                Ok(current) => current,
                Err(error) => {
                    warn!(%error, "cannot read this node's certificate to check its expiry");
                    continue;
                }
            };
            let before = current.cert_pem.clone();
            let ca_cert_pem = current.ca_cert_pem.clone();
            let node_key = self.loaded_node_key();
            let source = CaKeySource {
                kv: &self.inner.kv,
                node_id: self.id(),
                node_key: node_key.as_deref(),
            };
            match renew_if_due(&data_dir, &self.inner.identity, &source, current, validity) {
                Ok(tls) if tls.cert_pem != before => {
                    if let Err(error) = self.inner.endpoint.set_identity(tls) {
                        warn!(%error, "cannot present the renewed certificate");
                    }
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "certificate renewal failed; retrying later"),
            }
            if let Err(error) = renew_admin_if_due(&data_dir, &source, &ca_cert_pem, validity) {
                warn!(%error, "admin certificate renewal failed; retrying later");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn due_in_the_second_half_of_the_validity_and_after_expiry() {
        let now = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let year = 365 * DAY;
        assert!(!renewal_due(now + 300 * DAY, year, now));
        assert!(!renewal_due(now + 183 * DAY, year, now));
        assert!(renewal_due(now + 182 * DAY, year, now));
        assert!(renewal_due(now, year, now));
        assert!(renewal_due(now - DAY, year, now));
    }

    #[test]
    fn checks_often_enough_for_short_validities_and_hourly_at_most() {
        assert_eq!(check_interval(365 * DAY), CHECK_EVERY_MAX);
        assert_eq!(
            check_interval(Duration::from_secs(20)),
            Duration::from_secs(2)
        );
        assert_eq!(
            check_interval(Duration::from_millis(10)),
            Duration::from_millis(200)
        );
    }
}

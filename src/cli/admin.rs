//! Commands that talk to a running node over the client API.

use anyhow::{bail, Context};
use edgectl::api::{ApiRequest, ApiResponse, RaftRole, ReadConsistency};
use raft::{KvOp, KvRequest, Txn};
use serde::Serialize;

use super::args::{Cli, ClusterCommand, KvCommand, NodeCommand, OutputFormat, TokenCommand};
use super::connect::call;
use super::output::{self, ago_ms, table, unix_time};

fn consistency(stale: bool) -> ReadConsistency {
    if stale {
        ReadConsistency::Stale
    } else {
        ReadConsistency::Linearizable
    }
}

pub async fn token(cli: &Cli, command: &TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { ttl, description } => {
            let request = ApiRequest::TokenCreate {
                ttl_secs: ttl.as_secs(),
                description: description.clone(),
            };
            let ApiResponse::TokenCreated { token, info } = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            match cli.output {
                OutputFormat::Table => println!("{token}"),
                format => {
                    #[derive(Serialize)]
                    struct Created<'a> {
                        token: &'a str,
                        #[serde(flatten)]
                        info: &'a edgectl::api::TokenInfo,
                    }
                    output::print(
                        format,
                        &Created {
                            token: &token,
                            info: &info,
                        },
                        |_| table(&[]),
                    )?;
                }
            }
        }
        TokenCommand::Ls => {
            let ApiResponse::Tokens(tokens) = call(cli, ApiRequest::TokenList).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &tokens, |tokens| {
                let mut t = table(&["ID", "CREATED", "EXPIRES", "STATE", "DESCRIPTION"]);
                let now = edgectl::clock::now_unix();
                for token in tokens {
                    let state = if token.revoked {
                        "revoked"
                    } else if token.expires_unix != 0 && token.expires_unix <= now {
                        "expired"
                    } else {
                        "valid"
                    };
                    t.add_row(vec![
                        token.id.clone(),
                        unix_time(token.created_unix),
                        unix_time(token.expires_unix),
                        state.into(),
                        token.description.clone(),
                    ]);
                }
                t
            })?;
        }
        TokenCommand::Revoke { id } => {
            call(cli, ApiRequest::TokenRevoke { id: id.clone() }).await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

pub async fn node(cli: &Cli, command: &NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Ls => {
            let ApiResponse::Nodes(nodes) = call(cli, ApiRequest::NodeList).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &nodes, |nodes| {
                let mut t = table(&[
                    "ID",
                    "NAME",
                    "ADDRESS",
                    "ROLE",
                    "LEADER",
                    "LAST HEARTBEAT",
                    "HEALTH",
                    "MATCHED",
                ]);
                for n in nodes {
                    t.add_row(vec![
                        n.id.to_string(),
                        n.name.clone(),
                        n.address.clone(),
                        match n.role {
                            RaftRole::Voter => "voter".into(),
                            RaftRole::Learner => "learner".into(),
                        },
                        if n.leader { "*".into() } else { String::new() },
                        ago_ms(n.last_heartbeat_ms),
                        if n.healthy {
                            "healthy".into()
                        } else {
                            "unhealthy".into()
                        },
                        n.matched_index
                            .map(|i| i.to_string())
                            .unwrap_or_else(|| "-".into()),
                    ]);
                }
                t
            })?;
        }
        NodeCommand::Status => {
            let ApiResponse::NodeSelf(status) = call(cli, ApiRequest::NodeSelf).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &status, |s| {
                let mut t = table(&["FIELD", "VALUE"]);
                let leader = s
                    .leader_id
                    .map_or_else(|| "none".to_string(), |id| id.to_string());
                let dns = if s.dns_listen.is_empty() {
                    "-".to_string()
                } else {
                    s.dns_listen.join(" ")
                };
                for (field, value) in [
                    ("node", format!("{} ({})", s.id, s.name)),
                    ("leader", leader),
                    ("term", s.term.to_string()),
                    ("last applied", s.last_applied_index.to_string()),
                    ("leader contact", ago_ms(s.leader_contact_ms)),
                    ("dns", dns),
                ] {
                    t.add_row(vec![field.to_string(), value]);
                }
                t
            })?;
        }
        change => super::orchestration::node_change(cli, change).await?,
    }
    Ok(())
}

pub async fn cluster(cli: &Cli, command: &ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => {
            let ApiResponse::Status(status) = call(cli, ApiRequest::ClusterStatus).await? else {
                bail!("unexpected answer")
            };
            output::print(cli.output, &status, |s| {
                let mut t = table(&["FIELD", "VALUE"]);
                let ids = |v: &[u64]| {
                    v.iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                t.add_row(vec!["cluster".into(), s.cluster_id.clone()]);
                t.add_row(vec![
                    "leader".into(),
                    format!("{} ({})", s.leader_name, s.leader_id),
                ]);
                t.add_row(vec!["term".into(), s.term.to_string()]);
                t.add_row(vec![
                    "voters".into(),
                    format!("{} (target {})", ids(&s.voters), s.target_voters),
                ]);
                t.add_row(vec!["learners".into(), ids(&s.learners)]);
                t.add_row(vec![
                    "nodes healthy".into(),
                    format!("{}/{}", s.healthy_nodes, s.total_nodes),
                ]);
                t.add_row(vec![
                    "log index".into(),
                    format!("{} (applied {})", s.last_log_index, s.last_applied_index),
                ]);
                t.add_row(vec!["store revision".into(), s.revision.to_string()]);
                t
            })?;
        }
    }
    Ok(())
}

pub async fn kv(cli: &Cli, command: &KvCommand) -> anyhow::Result<()> {
    match command {
        KvCommand::Put { key, value } => {
            let request =
                ApiRequest::Write(KvRequest::Txn(Txn::put(key.as_bytes(), value.as_bytes())));
            let ApiResponse::Written(response) = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            match cli.output {
                OutputFormat::Table => println!("revision {}", response.revision),
                format => output::print(format, &response, |_| table(&[]))?,
            }
        }
        KvCommand::Del { key } => {
            let txn = Txn {
                success: vec![KvOp::Delete {
                    key: key.as_bytes().to_vec(),
                }],
                ..Txn::default()
            };
            let ApiResponse::Written(response) =
                call(cli, ApiRequest::Write(KvRequest::Txn(txn))).await?
            else {
                bail!("unexpected answer")
            };
            println!("revision {}", response.revision);
        }
        KvCommand::Get { key, stale } => {
            let request = ApiRequest::Get {
                key: key.as_bytes().to_vec(),
                consistency: consistency(*stale),
            };
            let ApiResponse::Value { kv, .. } = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            let kv = kv.with_context(|| format!("key {key:?} not found"))?;
            match cli.output {
                OutputFormat::Table => println!("{}", String::from_utf8_lossy(&kv.value)),
                format => output::print(format, &Entry::from(&kv), |_| table(&[]))?,
            }
        }
        KvCommand::Ls { prefix, stale } => {
            let request = ApiRequest::Range {
                prefix: prefix.as_bytes().to_vec(),
                consistency: consistency(*stale),
            };
            let ApiResponse::Range { kvs, .. } = call(cli, request).await? else {
                bail!("unexpected answer")
            };
            let entries: Vec<Entry> = kvs.iter().map(Entry::from).collect();
            output::print(cli.output, &entries, |entries| {
                let mut t = table(&["KEY", "VALUE", "MOD REVISION", "VERSION"]);
                for e in entries {
                    t.add_row(vec![
                        e.key.clone(),
                        e.value.clone(),
                        e.mod_revision.to_string(),
                        e.version.to_string(),
                    ]);
                }
                t
            })?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct Entry {
    key: String,
    value: String,
    create_revision: u64,
    mod_revision: u64,
    version: u64,
}

impl From<&raft::KeyValue> for Entry {
    fn from(kv: &raft::KeyValue) -> Self {
        Entry {
            key: String::from_utf8_lossy(&kv.key).into_owned(),
            value: String::from_utf8_lossy(&kv.value).into_owned(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }
}

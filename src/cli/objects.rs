//! `edgectl secret ...` and `edgectl config ...`. No command prints a
//! secret's value; a config's value only with `config inspect --show`.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use edgectl::api::{ApiRequest, ApiResponse, ObjectView};
use edgectl::secrets::records::ObjectMeta;
use edgectl::secrets::{ObjectKind, ObjectValue};

use super::args::{Cli, ConfigCommand, ObjectPutArgs, OutputFormat, SecretCommand};
use super::connect::call;
use super::output::{self, table, unix_time};

pub async fn secret(cli: &Cli, command: &SecretCommand) -> anyhow::Result<()> {
    let kind = ObjectKind::Secret;
    match command {
        SecretCommand::Create(args) => put(cli, kind, args, true).await,
        SecretCommand::Update(args) => put(cli, kind, args, false).await,
        SecretCommand::Rm(args) => remove(cli, kind, &args.name).await,
        SecretCommand::Ls => list(cli, kind).await,
        SecretCommand::Inspect(args) => inspect(cli, kind, &args.name, false).await,
        SecretCommand::RotateKey => {
            let ApiResponse::KeyRotated {
                generation,
                secrets,
            } = call(cli, ApiRequest::SecretRotateKey).await?
            else {
                bail!("unexpected answer")
            };
            println!("keyring at generation {generation}; {secrets} secret(s) re-encrypted");
            Ok(())
        }
    }
}

pub async fn config(cli: &Cli, command: &ConfigCommand) -> anyhow::Result<()> {
    let kind = ObjectKind::Config;
    match command {
        ConfigCommand::Create(args) => put(cli, kind, args, true).await,
        ConfigCommand::Update(args) => put(cli, kind, args, false).await,
        ConfigCommand::Rm(args) => remove(cli, kind, &args.name).await,
        ConfigCommand::Ls => list(cli, kind).await,
        ConfigCommand::Inspect { object, show } => inspect(cli, kind, &object.name, *show).await,
    }
}

/// Reads at most one byte more than `kind` allows, so that a huge file is
/// not read whole only to be refused by the node (which names the limit).
fn read_value(kind: ObjectKind, file: &Path) -> anyhow::Result<Vec<u8>> {
    let cap = kind.bytes_max() as u64 + 1;
    let mut value = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .take(cap)
            .read_to_end(&mut value)
            .context("cannot read the value from standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(cap).read_to_end(&mut value))
            .with_context(|| format!("cannot read {}", file.display()))?;
    }
    Ok(value)
}

async fn put(
    cli: &Cli,
    kind: ObjectKind,
    args: &ObjectPutArgs,
    create: bool,
) -> anyhow::Result<()> {
    let value = ObjectValue(read_value(kind, &args.file)?);
    let request = ApiRequest::ObjectPut {
        kind,
        name: args.name.clone(),
        value,
        create,
    };
    let verb = if create { "created" } else { "updated" };
    let response = call(cli, request)
        .await
        .with_context(|| format!("{} {} was not {verb}", kind.noun(), args.name))?;
    let ApiResponse::Object(view) = response else {
        bail!("unexpected answer")
    };
    if cli.output == OutputFormat::Table {
        println!(
            "{} {} {verb} (version {}, {} bytes)",
            kind.noun(),
            view.meta.name,
            view.meta.version,
            view.meta.size_bytes
        );
        Ok(())
    } else {
        output::print(cli.output, &view.meta, |_| table(&[]))
    }
}

async fn remove(cli: &Cli, kind: ObjectKind, name: &str) -> anyhow::Result<()> {
    let request = ApiRequest::ObjectRemove {
        kind,
        name: name.to_string(),
    };
    let ApiResponse::ObjectRemoved = call(cli, request)
        .await
        .with_context(|| format!("{} {name} was not removed", kind.noun()))?
    else {
        bail!("unexpected answer")
    };
    println!("{} {name} removed", kind.noun());
    Ok(())
}

fn used_by(meta: &ObjectMeta) -> String {
    if meta.used_by.is_empty() {
        "none".into()
    } else {
        meta.used_by.join(",")
    }
}

async fn list(cli: &Cli, kind: ObjectKind) -> anyhow::Result<()> {
    let ApiResponse::Objects(metas) = call(cli, ApiRequest::ObjectList { kind }).await? else {
        bail!("unexpected answer")
    };
    output::print(cli.output, &metas, |metas| {
        let mut t = table(&["NAME", "VERSION", "SIZE", "DIGEST", "UPDATED", "USED BY"]);
        for meta in metas {
            t.add_row(vec![
                meta.name.clone(),
                meta.version.to_string(),
                meta.size_bytes.to_string(),
                meta.digest.clone(),
                unix_time(meta.updated_unix),
                used_by(meta),
            ]);
        }
        t
    })
}

async fn inspect(cli: &Cli, kind: ObjectKind, name: &str, show: bool) -> anyhow::Result<()> {
    let request = ApiRequest::ObjectInspect {
        kind,
        name: name.to_string(),
        show_value: show,
    };
    let ApiResponse::Object(view) = call(cli, request).await? else {
        bail!("unexpected answer")
    };
    let ObjectView { meta, value } = view;
    if cli.output != OutputFormat::Table {
        // The value, when asked for, as text if it is UTF-8, else hex.
        #[derive(serde::Serialize)]
        struct Inspected<'a> {
            #[serde(flatten)]
            meta: &'a ObjectMeta,
            #[serde(skip_serializing_if = "Option::is_none")]
            value: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            value_hex: Option<String>,
        }
        let text = value
            .as_ref()
            .and_then(|v| String::from_utf8(v.0.clone()).ok());
        let value_hex = match (&value, &text) {
            (Some(v), None) => Some(hex::encode(&v.0)),
            _ => None,
        };
        return output::print(
            cli.output,
            &Inspected {
                meta: &meta,
                value: text,
                value_hex,
            },
            |_| table(&[]),
        );
    }
    let mut t = table(&["FIELD", "VALUE"]);
    t.add_row(vec!["name".to_string(), meta.name.clone()]);
    t.add_row(vec!["kind".to_string(), kind.noun().to_string()]);
    t.add_row(vec!["version".to_string(), meta.version.to_string()]);
    t.add_row(vec![
        "size".to_string(),
        format!("{} bytes", meta.size_bytes),
    ]);
    t.add_row(vec!["digest".to_string(), meta.digest.clone()]);
    t.add_row(vec!["created".to_string(), unix_time(meta.created_unix)]);
    t.add_row(vec!["updated".to_string(), unix_time(meta.updated_unix)]);
    t.add_row(vec!["used by".to_string(), used_by(&meta)]);
    println!("{t}");
    if let Some(value) = value {
        // The bytes as they are: a config file may be binary.
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&value.0)?;
        stdout.flush()?;
    }
    Ok(())
}

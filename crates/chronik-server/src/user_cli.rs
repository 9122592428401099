//! `chronik-server user …`: SASL users, managed over a member's admin port
//! (which needs the cluster secret or a peer certificate). Credentials are
//! derived here from the password; only the salted keys travel and are kept.

use anyhow::bail;
use chronik_broker::security::scram;
use chronik_raft::grpc::PeerSecurity;
use chronik_state::metadata::MetadataCommand;
use chronik_state::users::{self, CredentialChange, ScramMechanism};
use clap::{Args, Subcommand};

use crate::membership_cli::{Cluster, Via};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, or set a new password for one.
    Create(CreateUser),
    /// Delete a user's credentials.
    Delete(DeleteUser),
    /// List the users and their SCRAM mechanisms.
    List(Via),
}

#[derive(Debug, Args)]
pub struct CreateUser {
    #[command(flatten)]
    pub via: Via,
    #[arg(long)]
    pub name: String,
    /// The password; CHRONIK_USER_PASSWORD keeps it out of the process list.
    #[arg(long, env = "CHRONIK_USER_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512 [default: both].
    #[arg(long)]
    pub mechanism: Option<String>,
    /// PBKDF2 iterations, 4096 to 16384.
    #[arg(long, default_value_t = users::MIN_ITERATIONS)]
    pub iterations: i32,
}

#[derive(Debug, Args)]
pub struct DeleteUser {
    #[command(flatten)]
    pub via: Via,
    #[arg(long)]
    pub name: String,
    /// Delete only this mechanism's credential [default: every one].
    #[arg(long)]
    pub mechanism: Option<String>,
}

fn mechanisms(name: Option<&str>) -> anyhow::Result<Vec<ScramMechanism>> {
    match name {
        None => Ok(ScramMechanism::ALL.to_vec()),
        Some(name) => match ScramMechanism::from_name(name) {
            Some(m) => Ok(vec![m]),
            None => bail!("--mechanism '{name}' is not SCRAM-SHA-256 or SCRAM-SHA-512"),
        },
    }
}

pub async fn run(command: UserCommand, security: PeerSecurity) -> anyhow::Result<u8> {
    match command {
        UserCommand::Create(args) => {
            users::check_user_name(&args.name).map_err(anyhow::Error::msg)?;
            if !(users::MIN_ITERATIONS..=users::MAX_ITERATIONS).contains(&args.iterations) {
                bail!(
                    "--iterations must be between {} and {}",
                    users::MIN_ITERATIONS,
                    users::MAX_ITERATIONS
                );
            }
            let changes = mechanisms(args.mechanism.as_deref())?
                .into_iter()
                .map(|mechanism| CredentialChange::Upsert {
                    user: args.name.clone(),
                    mechanism,
                    credential: scram::new_credential(mechanism, &args.password, args.iterations),
                })
                .collect();
            let (cluster, _) = Cluster::connect(&args.via, security).await?;
            cluster.submit(&MetadataCommand::AlterUsers { changes }).await?;
            println!("user {} has a password", args.name);
        }
        UserCommand::Delete(args) => {
            let (cluster, entry) = Cluster::connect(&args.via, security).await?;
            let Some(user) = entry.users.iter().find(|u| u.name == args.name) else {
                bail!(
                    "there is no user '{}'; `chronik-server user list` shows the users",
                    args.name
                );
            };
            let changes: Vec<CredentialChange> = mechanisms(args.mechanism.as_deref())?
                .into_iter()
                .filter(|m| user.mechanisms.iter().any(|(name, _)| name == m.name()))
                .map(|mechanism| CredentialChange::Delete {
                    user: args.name.clone(),
                    mechanism,
                })
                .collect();
            if changes.is_empty() {
                bail!("user '{}' has no credential of that mechanism", args.name);
            }
            cluster.submit(&MetadataCommand::AlterUsers { changes }).await?;
            println!("deleted credentials of user {}", args.name);
        }
        UserCommand::List(via) => {
            let (_, entry) = Cluster::connect(&via, security).await?;
            if via.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entry.users).expect("users serialize")
                );
            } else {
                for user in &entry.users {
                    let mechanisms: Vec<String> = user
                        .mechanisms
                        .iter()
                        .map(|(m, i)| format!("{m} ({i} iterations)"))
                        .collect();
                    println!("{}\t{}", user.name, mechanisms.join(", "));
                }
            }
        }
    }
    Ok(0)
}

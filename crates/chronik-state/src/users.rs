//! SASL users, replicated in the metadata: for each user and SCRAM
//! mechanism, the salt, iteration count and the two keys RFC 5802 derives
//! from the salted password. The password itself is never stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Users the cluster keeps at most.
pub const MAX_USERS: usize = 100_000;
/// Kafka's bounds on SCRAM iterations.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;
/// Longest user name accepted, so that one request cannot grow the metadata much.
pub const MAX_USER_NAME_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// Kafka's code in DescribeUserScramCredentials and AlterUserScramCredentials.
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// What the server keeps of one user's password for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: i32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// A change to one user's credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialChange {
    Upsert {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

/// Every user's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Users(BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>);

impl Users {
    pub fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.0.get(user)?.get(&mechanism)
    }

    pub fn mechanisms_of(&self, user: &str) -> Option<&BTreeMap<ScramMechanism, ScramCredential>> {
        self.0.get(user)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &BTreeMap<ScramMechanism, ScramCredential>)> {
        self.0.iter()
    }

    /// Applies the changes in order. Deleting what does not exist is a no-op
    /// here: the edge reports it before proposing.
    pub fn apply(&mut self, changes: Vec<CredentialChange>) -> Result<(), String> {
        for change in &changes {
            if let CredentialChange::Upsert { user, credential, .. } = change {
                check_user_name(user)?;
                if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&credential.iterations) {
                    return Err(format!(
                        "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
                    ));
                }
                if !self.0.contains_key(user) && self.0.len() >= MAX_USERS {
                    return Err(format!("the cluster holds at most {MAX_USERS} users"));
                }
            }
        }
        for change in changes {
            match change {
                CredentialChange::Upsert {
                    user,
                    mechanism,
                    credential,
                } => {
                    self.0.entry(user).or_default().insert(mechanism, credential);
                }
                CredentialChange::Delete { user, mechanism } => {
                    if let Some(mechanisms) = self.0.get_mut(&user) {
                        mechanisms.remove(&mechanism);
                        if mechanisms.is_empty() {
                            self.0.remove(&user);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

pub fn check_user_name(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    if user.len() > MAX_USER_NAME_LEN {
        return Err(format!("user names are at most {MAX_USER_NAME_LEN} bytes"));
    }
    Ok(())
}

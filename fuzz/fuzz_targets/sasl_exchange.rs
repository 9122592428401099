//! Drives one connection's SASL exchange (SaslHandshake v0/v1, then
//! SaslAuthenticate tokens, in any order). Steps are raw tokens, or PLAIN
//! and SCRAM messages built with fuzzed fields: gs2 headers, user names,
//! nonces (echoed right, doubled as old librdkafka does, or wrong), channel
//! bindings and proofs (right or fuzzed), so every stage of both mechanisms
//! sees arbitrary input. None of it may panic, and the only principal it may
//! ever grant is the one user that exists, and only for its password.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chronik_broker::security::sasl::{Mechanism, Outcome, SaslExchange};
use chronik_broker::security::scram::{new_credential, salted_password};
use chronik_state::users::{ScramCredential, ScramMechanism};
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256, Sha512};

const USER: &str = "user";
const PASSWORD: &str = "pencil";

#[derive(Arbitrary, Debug)]
enum Step {
    Handshake { mechanism: u8, other: String, v0: bool },
    Raw(Vec<u8>),
    Plain { authzid: String, known_user: bool, right_password: bool, junk: Vec<u8> },
    ScramFirst { gs2: u8, known_user: bool, name: String, nonce: String, extensions: String },
    ScramFinal { nonce: u8, binding: u8, right_proof: bool, proof: Vec<u8>, junk: String },
}

/// The one user; one iteration keeps PLAIN's key stretching cheap to fuzz.
fn credential(mechanism: ScramMechanism) -> ScramCredential {
    static CREDENTIALS: OnceLock<[ScramCredential; 2]> = OnceLock::new();
    let credentials = CREDENTIALS.get_or_init(|| ScramMechanism::ALL.map(|m| new_credential(m, PASSWORD, 1)));
    credentials[usize::from(mechanism == ScramMechanism::Sha512)].clone()
}

fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        ScramMechanism::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// A PLAIN token of the user with the right password.
fn plain_ok(token: &[u8]) -> bool {
    let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
    matches!(parts.as_slice(), [authzid, user, password]
        if (authzid.is_empty() || *authzid == USER.as_bytes()) && *user == USER.as_bytes() && *password == PASSWORD.as_bytes())
}

/// What the client side of the exchange remembers.
#[derive(Default)]
struct Client {
    mechanism: Option<ScramMechanism>,
    first_bare: String,
    client_nonce: String,
    server_first: String,
}

fuzz_target!(|steps: Vec<Step>| {
    let mut exchange = SaslExchange::new(Mechanism::ALL.to_vec());
    let mut client = Client::default();
    for step in steps.into_iter().take(8) {
        // Whether this step's token is one the user could have sent.
        let mut legitimate = false;
        let token: Vec<u8> = match step {
            Step::Handshake { mechanism, other, v0 } => {
                let name = match mechanism % 4 {
                    0 => "PLAIN".to_string(),
                    1 => "SCRAM-SHA-256".to_string(),
                    2 => "SCRAM-SHA-512".to_string(),
                    _ => other,
                };
                client = Client {
                    mechanism: ScramMechanism::from_name(&name),
                    ..Client::default()
                };
                let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(name));
                match exchange.handshake(&request, if v0 { 0 } else { 1 }).1 {
                    Outcome::Close => return,
                    _ => continue,
                }
            }
            Step::Raw(bytes) => bytes,
            Step::Plain { authzid, known_user, right_password, junk } => {
                let user = if known_user { USER } else { "stranger" };
                let password = if right_password { PASSWORD } else { "guess" };
                let mut token = format!("{authzid}\0{user}\0{password}").into_bytes();
                token.extend(junk);
                token
            }
            Step::ScramFirst { gs2, known_user, name, nonce, extensions } => {
                let header = ["n,,", "y,,", "p=tls-unique,,", "n,a=user,"][usize::from(gs2 % 4)];
                let user = if known_user { USER.to_string() } else { name };
                client.first_bare = format!("n={user},r={nonce}{extensions}");
                client.client_nonce = nonce;
                format!("{header}{}", client.first_bare).into_bytes()
            }
            Step::ScramFinal { nonce, binding, right_proof, proof, junk } => {
                let server_nonce = client
                    .server_first
                    .split(',')
                    .find_map(|f| f.strip_prefix("r="))
                    .unwrap_or_default()
                    .to_string();
                let echoed = match nonce % 3 {
                    0 => server_nonce,
                    1 => format!("{}{server_nonce}", client.client_nonce),
                    _ => junk,
                };
                let binding = ["biws", "eSws", "bixhPXVzZXIs"][usize::from(binding % 3)];
                let without_proof = format!("c={binding},r={echoed}");
                let proof = match client.mechanism.filter(|_| right_proof) {
                    Some(mechanism) => {
                        legitimate = true;
                        let stored = credential(mechanism);
                        let salted = salted_password(mechanism, PASSWORD.as_bytes(), &stored.salt, 1);
                        let client_key = hmac(mechanism, &salted, b"Client Key");
                        let auth = format!("{},{},{without_proof}", client.first_bare, client.server_first);
                        let signature = hmac(mechanism, &hash(mechanism, &client_key), auth.as_bytes());
                        client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect()
                    }
                    None => proof,
                };
                format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes()
            }
        };
        if client.mechanism.is_none() {
            legitimate = plain_ok(&token);
        }
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let (response, outcome) =
            exchange.authenticate(&request, |user, mechanism| (user == USER).then(|| credential(mechanism)));
        match outcome {
            Outcome::Continue => client.server_first = String::from_utf8_lossy(&response.auth_bytes).into_owned(),
            Outcome::Authenticated(principal) => {
                assert_eq!(principal, format!("User:{USER}"), "granted a principal that does not exist");
                assert!(exchange.is_authenticated());
                // PLAIN grants only the right password; SCRAM only a proof
                // made from it (the harness makes one only with the password).
                assert!(legitimate, "authenticated without the password");
            }
            Outcome::Close => return,
        }
    }
});

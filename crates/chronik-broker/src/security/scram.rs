//! SCRAM (RFC 5802, with SHA-256 per RFC 7677 and SHA-512): deriving the
//! stored credential from a password, and the server side of the exchange.
//! Built on RustCrypto's `hmac`, `sha2` and `pbkdf2`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chronik_state::users::{ScramCredential, ScramMechanism};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Longest client message accepted in the exchange.
const MAX_MESSAGE_LEN: usize = 4096;

fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        ScramMechanism::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
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

/// RFC 5802's SaltedPassword: PBKDF2 with the mechanism's HMAC.
pub fn salted_password(mechanism: ScramMechanism, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
        ScramMechanism::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
    }
}

/// The credential the server keeps, from the salted password (what
/// AlterUserScramCredentials carries).
pub fn credential_from_salted(
    mechanism: ScramMechanism,
    salted: &[u8],
    salt: Vec<u8>,
    iterations: i32,
) -> ScramCredential {
    let client_key = hmac(mechanism, salted, b"Client Key");
    ScramCredential {
        salt,
        iterations,
        stored_key: hash(mechanism, &client_key),
        server_key: hmac(mechanism, salted, b"Server Key"),
    }
}

/// A credential for `password` with a fresh random salt.
pub fn new_credential(mechanism: ScramMechanism, password: &str, iterations: i32) -> ScramCredential {
    let salt: [u8; 16] = rand::random();
    let salted = salted_password(mechanism, password.as_bytes(), &salt, iterations.max(1) as u32);
    credential_from_salted(mechanism, &salted, salt.to_vec(), iterations)
}

/// Whether `password` is the one `credential` was made from (SASL/PLAIN
/// checks passwords against the SCRAM credentials).
pub fn password_matches(mechanism: ScramMechanism, credential: &ScramCredential, password: &str) -> bool {
    let salted = salted_password(
        mechanism,
        password.as_bytes(),
        &credential.salt,
        credential.iterations.max(1) as u32,
    );
    let derived = credential_from_salted(mechanism, &salted, Vec::new(), credential.iterations);
    bool::from(derived.stored_key.ct_eq(&credential.stored_key))
}

/// Why an exchange failed. The client is told only that authentication
/// failed; the reason goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("unknown user")]
    UnknownUser,
    #[error("the client proof does not match")]
    BadProof,
    #[error("the exchange is already over")]
    Finished,
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    phase: Phase,
}

enum Phase {
    /// Waiting for client-first-message.
    Start,
    /// Sent server-first-message; waiting for client-final-message.
    Challenged(Box<Challenge>),
    Done,
}

/// What the server-first-message committed to.
struct Challenge {
    user: String,
    credential: ScramCredential,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    client_nonce: String,
    nonce: String,
}

/// A step's outcome: the message to send back, and once the client is
/// proven, the user it authenticated as.
pub struct Step {
    pub reply: Vec<u8>,
    pub authenticated: Option<String>,
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            phase: Phase::Start,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Takes the next client message. `lookup` finds a user's credential for
    /// the mechanism; `server_nonce` is the random part the server adds.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<Step, ScramError> {
        if message.len() > MAX_MESSAGE_LEN {
            return Err(ScramError::Malformed("message too long"));
        }
        let message = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mechanism = self.mechanism;
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Start => {
                let (gs2_header, bare) = split_gs2_header(message)?;
                let mut fields = attributes(bare);
                let user = fields
                    .next()
                    .and_then(|(k, v)| (k == 'n').then_some(v))
                    .ok_or(ScramError::Malformed("client-first-message lacks n="))?;
                let user = unescape_name(user)?;
                let client_nonce = fields
                    .next()
                    .and_then(|(k, v)| (k == 'r').then_some(v))
                    .filter(|n| !n.is_empty())
                    .ok_or(ScramError::Malformed("client-first-message lacks r="))?;
                let credential = lookup(&user).ok_or(ScramError::UnknownUser)?;
                let nonce = format!("{client_nonce}{server_nonce}");
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    BASE64.encode(&credential.salt),
                    credential.iterations
                );
                let reply = server_first.clone().into_bytes();
                self.phase = Phase::Challenged(Box::new(Challenge {
                    user,
                    credential,
                    gs2_header: gs2_header.to_string(),
                    client_first_bare: bare.to_string(),
                    server_first,
                    client_nonce: client_nonce.to_string(),
                    nonce,
                }));
                Ok(Step {
                    reply,
                    authenticated: None,
                })
            }
            Phase::Challenged(challenge) => {
                let Challenge {
                    user,
                    credential,
                    gs2_header,
                    client_first_bare,
                    server_first,
                    client_nonce,
                    nonce,
                } = *challenge;
                let (without_proof, proof) = message
                    .rsplit_once(",p=")
                    .ok_or(ScramError::Malformed("client-final-message lacks p="))?;
                let mut fields = attributes(without_proof);
                let binding = fields
                    .next()
                    .and_then(|(k, v)| (k == 'c').then_some(v))
                    .ok_or(ScramError::Malformed("client-final-message lacks c="))?;
                if BASE64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
                    return Err(ScramError::Malformed("channel binding does not match the gs2 header"));
                }
                let their_nonce = fields
                    .next()
                    .and_then(|(k, v)| (k == 'r').then_some(v))
                    .ok_or(ScramError::Malformed("client-final-message lacks r="))?;
                // librdkafka before 2.6.1 sends the client nonce twice
                // (librdkafka#4895); Kafka 3.8.1 accepts that too. The whole
                // nonce the server chose must still be there.
                if their_nonce != nonce && their_nonce.strip_prefix(client_nonce.as_str()) != Some(nonce.as_str()) {
                    return Err(ScramError::Malformed("the nonce does not match"));
                }
                let proof = BASE64
                    .decode(proof)
                    .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = hmac(mechanism, &credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(ScramError::BadProof);
                }
                let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
                if !bool::from(hash(mechanism, &client_key).ct_eq(&credential.stored_key)) {
                    return Err(ScramError::BadProof);
                }
                let server_signature = hmac(mechanism, &credential.server_key, auth_message.as_bytes());
                Ok(Step {
                    reply: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
                    authenticated: Some(user),
                })
            }
            Phase::Done => Err(ScramError::Finished),
        }
    }
}

/// Splits `gs2-header` (`n,,` or `y,,` or `n,a=authzid,`) from the bare message.
fn split_gs2_header(message: &str) -> Result<(&str, &str), ScramError> {
    let malformed = ScramError::Malformed("client-first-message lacks a gs2 header");
    let first = message.find(',').ok_or(malformed.clone())?;
    let second = message[first + 1..].find(',').ok_or(malformed.clone())? + first + 1;
    match &message[..first] {
        "n" | "y" => {}
        _ => return Err(ScramError::Malformed("channel binding is not supported")),
    }
    Ok((&message[..=second], &message[second + 1..]))
}

/// `k=v` pairs, in order.
fn attributes(text: &str) -> impl Iterator<Item = (char, &str)> {
    text.split(',').filter_map(|field| {
        let mut chars = field.chars();
        let key = chars.next()?;
        field[key.len_utf8()..].strip_prefix('=').map(|value| (key, value))
    })
}

/// RFC 5802's saslname: ',' is sent as '=2C' and '=' as '=3D'.
fn unescape_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_test_vector() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        let credential = credential_from_salted(ScramMechanism::Sha256, &salted, salt, 4096);
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let first = server
            .step(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |user| (user == "user").then(|| credential.clone()),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .unwrap();
        assert_eq!(
            first.reply,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let last = server
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                |_| None,
                "",
            )
            .unwrap();
        assert_eq!(last.reply, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(last.authenticated.as_deref(), Some("user"));
        assert!(matches!(server.step(b"x", |_| None, ""), Err(ScramError::Finished)));
    }

    /// The client-final-message of librdkafka before 2.6.1, with the client
    /// nonce twice, and one with a nonce of another exchange.
    #[test]
    fn old_librdkafka_nonces_pass_and_foreign_ones_do_not() {
        let password = "pencil";
        let credential = new_credential(ScramMechanism::Sha256, password, 4096);
        let final_message = |nonce: &str| {
            let bare = "n=user,r=abc";
            let server_first = format!("r=abcxyz,s={},i=4096", BASE64.encode(&credential.salt));
            let without_proof = format!("c=biws,r={nonce}");
            let auth_message = format!("{bare},{server_first},{without_proof}");
            let salted = salted_password(ScramMechanism::Sha256, password.as_bytes(), &credential.salt, 4096);
            let client_key = hmac(ScramMechanism::Sha256, &salted, b"Client Key");
            let signature = hmac(
                ScramMechanism::Sha256,
                &hash(ScramMechanism::Sha256, &client_key),
                auth_message.as_bytes(),
            );
            let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
            format!("{without_proof},p={}", BASE64.encode(proof))
        };
        for (nonce, accepted) in [
            ("abcxyz", true),
            ("abcabcxyz", true),
            ("zzzabcxyz", false),
            ("abcxyzabc", false),
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            server
                .step(b"n,,n=user,r=abc", |_| Some(credential.clone()), "xyz")
                .unwrap();
            let outcome = server.step(final_message(nonce).as_bytes(), |_| None, "");
            assert_eq!(outcome.is_ok(), accepted, "{nonce}: {:?}", outcome.err());
        }
    }

    #[test]
    fn a_wrong_proof_or_user_fails() {
        let credential = new_credential(ScramMechanism::Sha512, "secret", 4096);
        assert!(password_matches(ScramMechanism::Sha512, &credential, "secret"));
        assert!(!password_matches(ScramMechanism::Sha512, &credential, "Secret"));
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        assert_eq!(
            server.step(b"n,,n=nobody,r=abc", |_| None, "xyz").err(),
            Some(ScramError::UnknownUser)
        );
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        server
            .step(b"n,,n=a=3Db,r=abc", |u| (u == "a=b").then(|| credential.clone()), "xyz")
            .unwrap();
        let proof = BASE64.encode([0u8; 64]);
        let bad = format!("c=biws,r=abcxyz,p={proof}");
        assert_eq!(
            server.step(bad.as_bytes(), |_| None, "").err(),
            Some(ScramError::BadProof)
        );
    }

    #[test]
    fn garbage_never_panics() {
        for message in [
            &b""[..],
            b"n",
            b"n,",
            b"p=x,,n=u,r=1",
            b"n,,r=1",
            b"\xff\xfe",
            b"n,,n=a=9,r=1",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            assert!(server.step(message, |_| None, "s").is_err(), "{message:?}");
        }
    }
}

//! NATS nkeys: ed25519 keys written as base32 with a type prefix and a
//! CRC16, and `.creds` files (a user JWT plus the user's seed). A dozen
//! lines of encoding did not warrant a crate; the signature is ring's, which
//! rustls already brings in.

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use std::fmt;

/// Prefix bytes (nkeys `PrefixByte*`), already shifted into place.
const PREFIX_SEED: u8 = 18 << 3; // 'S'
pub const PREFIX_USER: u8 = 20 << 3; // 'U'
pub const PREFIX_ACCOUNT: u8 = 0; // 'A'
pub const PREFIX_OPERATOR: u8 = 14 << 3; // 'O'

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why a seed or creds file is unusable. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NkeyError(pub String);

impl fmt::Display for NkeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NkeyError {}

fn err(s: &str) -> NkeyError {
    NkeyError(s.to_owned())
}

/// CRC-16/XMODEM, as nkeys checksums keys.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// RFC 4648 base32, no padding.
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = B32.iter().position(|&x| x == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// A prefixed, checksummed key in its text form.
pub fn encode_key(prefix: u8, key: &[u8]) -> String {
    let mut raw = Vec::with_capacity(key.len() + 3);
    raw.push(prefix);
    raw.extend_from_slice(key);
    let crc = crc16(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    base32_encode(&raw)
}

/// A seed in its text form (`S` + the key type's letter).
pub fn encode_seed(prefix: u8, seed: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(36);
    raw.push(PREFIX_SEED | (prefix >> 5));
    raw.push((prefix & 31) << 3);
    raw.extend_from_slice(seed);
    let crc = crc16(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    base32_encode(&raw)
}

/// An nkey from its seed: signs server nonces.
pub struct KeyPair {
    prefix: u8,
    pair: Ed25519KeyPair,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", self.public_key())
    }
}

impl KeyPair {
    /// Decodes a seed (`SU…`, `SA…`, `SO…`): base32, CRC16 checked.
    pub fn from_seed(text: &str) -> Result<KeyPair, NkeyError> {
        let raw = base32_decode(text.trim())
            .ok_or_else(|| err("the seed is not base32 (expected a line starting SU)"))?;
        if raw.len() != 36 {
            return Err(err("the seed has the wrong length for an nkey seed"));
        }
        let (body, crc) = raw.split_at(34);
        if crc16(body).to_le_bytes() != crc {
            return Err(err("the seed's checksum does not match (a typo?)"));
        }
        let (b0, b1) = (body[0], body[1]);
        if b0 & 0xf8 != PREFIX_SEED {
            return Err(err("this is not an nkey seed (it must start with S)"));
        }
        let prefix = ((b0 & 7) << 5) | ((b1 & 0xf8) >> 3);
        let pair = Ed25519KeyPair::from_seed_unchecked(&body[2..34])
            .map_err(|_| err("the seed is not a valid ed25519 key"))?;
        Ok(KeyPair { prefix, pair })
    }

    /// The public key's text form (`U…` for a user).
    pub fn public_key(&self) -> String {
        encode_key(self.prefix, self.pair.public_key().as_ref())
    }

    /// The key type's prefix byte ([`PREFIX_USER`] …).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.pair.sign(data).as_ref().to_vec()
    }

    /// The signature of a server nonce as CONNECT's `sig` expects it:
    /// base64 URL-safe without padding.
    pub fn sign_nonce(&self, nonce: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.sign(nonce.as_bytes()))
    }
}

/// A `.creds` file: the user JWT and the user's seed.
pub struct Credentials {
    pub jwt: String,
    pub key: KeyPair,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?})", self.key)
    }
}

impl Credentials {
    /// The file as `nsc` writes it: a `-----BEGIN NATS USER JWT-----` block,
    /// then a `-----BEGIN USER NKEY SEED-----` block (the first line
    /// between the markers of each).
    pub fn parse(text: &str) -> Result<Credentials, NkeyError> {
        let block = |marker: &str| -> Option<String> {
            let mut lines = text.lines().skip_while(|l| !l.contains(marker));
            lines.next()?;
            lines
                .map(str::trim)
                .find(|l| !l.is_empty())
                .filter(|l| !l.starts_with("---"))
                .map(str::to_owned)
        };
        let jwt = block("BEGIN NATS USER JWT")
            .ok_or_else(|| err("no -----BEGIN NATS USER JWT----- block"))?;
        let seed = block("BEGIN USER NKEY SEED")
            .ok_or_else(|| err("no -----BEGIN USER NKEY SEED----- block"))?;
        let key = KeyPair::from_seed(&seed)?;
        Ok(Credentials { jwt, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From the nkeys repository's README/tests: a user seed and its key.
    const SEED: &str = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU";

    #[test]
    fn base32_and_crc_round_trip() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            assert_eq!(base32_decode(&base32_encode(data)).unwrap(), data);
        }
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert!(base32_decode("a1").is_none());
    }

    #[test]
    fn seeds_decode_sign_and_refuse_damage() {
        let k = KeyPair::from_seed(SEED).unwrap();
        assert_eq!(k.prefix(), PREFIX_USER);
        let public = k.public_key();
        assert!(public.starts_with('U') && public.len() == 56, "{public}");
        let sig = k.sign(b"nonce");
        let pk = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            k.pair.public_key().as_ref(),
        );
        assert!(pk.verify(b"nonce", &sig).is_ok());
        // A seed written back from its parts is the same text.
        let raw = base32_decode(SEED).unwrap();
        let seed: [u8; 32] = raw[2..34].try_into().unwrap();
        assert_eq!(encode_seed(PREFIX_USER, &seed), SEED);

        let mut typo = SEED.to_owned();
        typo.replace_range(10..11, if &SEED[10..11] == "A" { "B" } else { "A" });
        assert!(KeyPair::from_seed(&typo)
            .unwrap_err()
            .0
            .contains("checksum"));
        assert!(KeyPair::from_seed(&public).is_err());
        assert!(KeyPair::from_seed("not base32!").is_err());
    }

    #[test]
    fn creds_files_parse_and_errors_never_quote_the_seed() {
        let text = format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGc.x.y\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             -----BEGIN USER NKEY SEED-----\n{SEED}\n------END USER NKEY SEED------\n"
        );
        let c = Credentials::parse(&text).unwrap();
        assert_eq!(c.jwt, "eyJhbGc.x.y");
        assert_eq!(
            c.key.public_key(),
            KeyPair::from_seed(SEED).unwrap().public_key()
        );
        let broken = text.replace(SEED, &SEED[..40]);
        let e = Credentials::parse(&broken).unwrap_err();
        assert!(!e.0.contains(&SEED[..20]), "{e}");
        assert!(Credentials::parse("nothing").is_err());
    }
}

//! A compact JWS (RFC 7515 section 7.1) as we accept it: three base64url parts, a JSON
//! header and JSON claims in which no object names a member twice, and no `crit` header
//! (we understand no extension, RFC 7515 section 4.1.11).

use std::cell::Cell;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{MAX_TOKEN_BYTES, TokenError};

/// A token split and its header read; the claims wait for the signature to verify.
pub(super) struct Jwt<'a> {
    pub header: Value,
    /// `header.claims`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The signature, still base64url.
    pub signature: &'a str,
    claims: &'a str,
}

impl<'a> Jwt<'a> {
    pub fn parse(token: &'a str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, claims) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
        if claims.contains('.') {
            return Err(TokenError::Malformed);
        }
        let header = decode_json(header)?;
        if header.get("crit").is_some() {
            return Err(TokenError::CriticalHeader);
        }
        Ok(Self {
            header,
            signing_input,
            signature,
            claims,
        })
    }

    /// The header's `alg`, if it is a string.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// The header's `kid`: `Ok(None)` without one, an error when it is not a string.
    pub fn kid(&self) -> Result<Option<&str>, TokenError> {
        match self.header.get("kid") {
            None => Ok(None),
            Some(Value::String(kid)) => Ok(Some(kid)),
            Some(_) => Err(TokenError::Malformed),
        }
    }

    /// The claims, to be read only once the signature has verified.
    pub fn claims(&self) -> Result<Value, TokenError> {
        decode_json(self.claims)
    }
}

/// A base64url JSON object with no member name repeated in any of its objects.
fn decode_json(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    let repeated = Cell::new(false);
    let mut reader = serde_json::Deserializer::from_slice(&bytes);
    let parsed = UniqueNames {
        repeated: &repeated,
    }
    .deserialize(&mut reader)
    .and_then(|v| reader.end().map(|()| v));
    match parsed {
        Ok(v @ Value::Object(_)) => Ok(v),
        Err(_) if repeated.get() => Err(TokenError::RepeatedMember),
        _ => Err(TokenError::Malformed),
    }
}

/// Reads JSON into a [`Value`] like serde_json does, but fails on an object that names a
/// member twice (serde_json keeps the last), and says so in `repeated`.
#[derive(Clone, Copy)]
struct UniqueNames<'a> {
    repeated: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for UniqueNames<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueNames<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON whose objects name each member once")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                self.repeated.set(true);
                return Err(de::Error::custom(format_args!("member {name:?} repeated")));
            }
            let value = map.next_value_seed(self)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

//! JSON as request validation reads it. HTTP bodies are parsed into `serde_json::Value`.
//! WebSocket frames, one per message sent, are parsed into [`Loose`]: strings borrowed
//! from the frame unless they hold escapes, and an object's members kept in a list, not
//! a map of owned keys. A send parsed into `Value` cost about 7% of the server's
//! instructions per 1:1 message (perf-history.md, round nine).
//!
//! The validation in `protocol` is written once, against [`JsonValue`] and
//! [`JsonObject`], so a frame and a body are checked alike, with the same errors.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value, as far as validation asks about it.
pub(crate) trait JsonValue {
    type Object: JsonObject<Value = Self>;

    fn as_object(&self) -> Option<&Self::Object>;
    fn as_str(&self) -> Option<&str>;
    /// An integer from 0 to `u64::MAX`; `None` for any other number or value.
    fn as_u64(&self) -> Option<u64>;
    fn as_bool(&self) -> Option<bool>;
    fn is_null(&self) -> bool;
}

/// A JSON object.
pub(crate) trait JsonObject {
    type Value: JsonValue<Object = Self>;

    /// The member `name`; the last one if the object repeats it.
    fn get(&self, name: &str) -> Option<&Self::Value>;
}

impl JsonValue for Value {
    type Object = Map<String, Value>;

    fn as_object(&self) -> Option<&Map<String, Value>> {
        Value::as_object(self)
    }
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
    fn as_u64(&self) -> Option<u64> {
        Value::as_u64(self)
    }
    fn as_bool(&self) -> Option<bool> {
        Value::as_bool(self)
    }
    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
}

impl JsonObject for Map<String, Value> {
    type Value = Value;

    fn get(&self, name: &str) -> Option<&Value> {
        Map::get(self, name)
    }
}

/// A JSON value parsed for validation only: see the module docs.
#[derive(Debug)]
pub(crate) enum Loose<'a> {
    Null,
    Bool(bool),
    U64(u64),
    /// A negative or fractional number, or one past `u64::MAX`.
    OtherNumber,
    Str(Cow<'a, str>),
    /// Its elements are read and dropped: no field of a frame is an array.
    Array,
    Object(LooseObject<'a>),
}

/// An object's members in the order given.
#[derive(Debug, Default)]
pub(crate) struct LooseObject<'a>(Vec<(Cow<'a, str>, Loose<'a>)>);

impl<'a> JsonValue for Loose<'a> {
    type Object = LooseObject<'a>;

    fn as_object(&self) -> Option<&LooseObject<'a>> {
        match self {
            Loose::Object(o) => Some(o),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_u64(&self) -> Option<u64> {
        match self {
            Loose::U64(n) => Some(*n),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Loose::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Loose::Null)
    }
}

impl<'a> JsonObject for LooseObject<'a> {
    type Value = Loose<'a>;

    fn get(&self, name: &str) -> Option<&Loose<'a>> {
        // The last one wins, as in `serde_json::Map`.
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(b))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Loose::U64(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(n).map_or(Loose::OtherNumber, Loose::U64))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Loose::OtherNumber)
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Each element read as a value, not skipped: serde_json skips without its nesting
        // limit, and a frame too deep for `Value` must be too deep here.
        while seq.next_element::<Loose<'de>>()?.is_some() {}
        Ok(Loose::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Loose<'de>>()? {
            let Loose::Str(key) = key else {
                return Err(A::Error::custom("object keys are strings"));
            };
            members.push((key, map.next_value()?));
        }
        Ok(Loose::Object(LooseObject(members)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` both ways and checks that validation sees the same thing.
    fn same_reading(text: &str) {
        let value: Result<Value, _> = serde_json::from_str(text);
        let loose: Result<Loose<'_>, _> = serde_json::from_str(text);
        let (value, loose) = match (value, loose) {
            (Ok(v), Ok(l)) => (v, l),
            (Err(_), Err(_)) => return,
            (v, l) => panic!("{text}: one parse failed: {v:?} / {l:?}"),
        };
        assert_same(text, &value, &loose);
    }

    fn assert_same(text: &str, value: &Value, loose: &Loose<'_>) {
        assert_eq!(JsonValue::as_str(value), loose.as_str(), "{text}");
        assert_eq!(JsonValue::as_u64(value), loose.as_u64(), "{text}");
        assert_eq!(JsonValue::as_bool(value), loose.as_bool(), "{text}");
        assert_eq!(JsonValue::is_null(value), loose.is_null(), "{text}");
        assert_eq!(value.is_object(), loose.as_object().is_some(), "{text}");
        if let (Some(v), Some(l)) = (JsonValue::as_object(value), loose.as_object()) {
            for name in v.keys() {
                let l = l.get(name).expect("member read both ways");
                assert_same(text, &v[name], l);
            }
            assert_eq!(v.len(), {
                let mut keys: Vec<_> = l.0.iter().map(|(k, _)| k).collect();
                keys.sort();
                keys.dedup();
                keys.len()
            });
        }
    }

    #[test]
    fn reads_what_serde_json_values_read() {
        for text in [
            r#"{"a":"x","b":1,"c":-1,"d":1.5,"e":true,"f":null,"g":[1,{"x":2}],"h":{"i":"j"}}"#,
            r#"{"esc\u0061ped":"tab\there","snow":"\u2603","big":18446744073709551615}"#,
            r#"{"over":18446744073709551616,"exp":1e2,"zero":0,"negzero":-0}"#,
            r#"{"dup":1,"dup":"two"}"#,
            r#"{"nested":{"dup":{"a":1},"dup":{"b":2}}}"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"{"a":1,}"#,
            r#"{"a":[1,}"#,
            r#"{"a":1} trailing"#,
            "{\"lone\":\"\\ud800\"}",
            "not json",
        ] {
            same_reading(text);
        }
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let loose: Loose<'_> = serde_json::from_str(r#"{"a":"plain","b":"tab\t"}"#).unwrap();
        let o = loose.as_object().unwrap();
        assert!(matches!(
            o.get("a"),
            Some(Loose::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(o.get("b"), Some(Loose::Str(Cow::Owned(s))) if s == "tab\t"));
    }

    #[test]
    fn nesting_is_bounded_as_for_values() {
        let deep_arrays = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
        for deep in [deep_arrays, deep_objects] {
            assert!(serde_json::from_str::<Loose<'_>>(&deep).is_err());
            assert!(serde_json::from_str::<Value>(&deep).is_err());
        }
    }
}

//! Serde support for socket addresses written as `"127.0.0.1:4433"` or `"[::1]:4433"`.
//!
//! Used with `#[serde(with = "crate::addr")]`: the standard implementation only says "invalid
//! socket address syntax", which does not tell a user what to write instead.

use std::fmt;
use std::net::SocketAddr;

use serde::Serializer;
use serde::de::{self, Deserializer, Visitor};

pub(crate) fn serialize<S: Serializer>(
    addr: &SocketAddr,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(addr)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    deserializer.deserialize_str(AddrVisitor)
}

struct AddrVisitor;

impl Visitor<'_> for AddrVisitor {
    type Value = SocketAddr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an IP address and port such as \"127.0.0.1:4433\" or \"[::1]:4433\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
        v.parse().map_err(|_| {
            E::custom(format_args!(
                "invalid address `{v}`: expected an IP address and port such as \
                 \"127.0.0.1:4433\" or \"[::1]:4433\" (host names are not resolved)"
            ))
        })
    }
}

//! Scalar functions rules call beside DataFusion's own.

use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use cairn_ingest::normalize::identity::normalize_principal;

/// `normalize_principal(text)`: the identity key of a principal written in any form
/// (`CORP\alice`, `Alice@Corp.com`, an STS assumed-role ARN, a SID, an Entra object id), the
/// same key the `identities` table and findings' `identity_keys` hold; NULL for machine and
/// built-in accounts and for what names no one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizePrincipal {
    signature: Signature,
}

impl Default for NormalizePrincipal {
    fn default() -> Self {
        NormalizePrincipal {
            signature: Signature::uniform(1, vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for NormalizePrincipal {
    fn name(&self) -> &str {
        "normalize_principal"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = arrays[0].as_string::<i32>();
        let out: StringArray = input
            .iter()
            .map(|v| v.and_then(normalize_principal))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// `ip_is_private(ip)`: true for addresses that are not public unicast ones: internal (RFC 1918,
/// carrier-grade NAT, loopback, link-local, IPv6 unique-local) and not routable to a single
/// host (`0.0.0.0/8`, multicast, reserved, broadcast); IPv4-mapped IPv6 is judged as IPv4.
/// False for public addresses, NULL for what is not an address. Rules use it to keep such
/// addresses out of "same remote IP" joins.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IpIsPrivate {
    signature: Signature,
}

impl Default for IpIsPrivate {
    fn default() -> Self {
        IpIsPrivate {
            signature: Signature::uniform(1, vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

/// Parses an address as records write it (`::ffff:10.0.0.1`, `[2001:db8::1]`, with spaces).
fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = t.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// Whether an address is internal (see [`IpIsPrivate`]).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || a == 0
                || a >= 224
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

impl ScalarUDFImpl for IpIsPrivate {
    fn name(&self) -> &str {
        "ip_is_private"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = arrays[0].as_string::<i32>();
        let out: BooleanArray = input
            .iter()
            .map(|v| v.and_then(parse_ip).map(is_private))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// `cidr_match(ip, cidr)`: whether the address lies in the network (`10.0.0.0/8`,
/// `2001:db8::/32`, or a bare address for a single host); NULL when either is not valid.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CidrMatch {
    signature: Signature,
}

impl Default for CidrMatch {
    fn default() -> Self {
        CidrMatch {
            signature: Signature::uniform(2, vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

/// Whether `ip` is in `cidr`: `None` when either does not parse, `false` when an IPv4 address
/// meets an IPv6 network or the other way round. The network is taken as written (an
/// IPv4-mapped network keeps its IPv6 prefix length); the address is compared in the
/// network's family, so `::ffff:10.0.0.1` is in `10.0.0.0/8` and `10.0.0.1` in
/// `::ffff:10.0.0.0/104`.
pub fn cidr_contains(cidr: &str, ip: &str) -> Option<bool> {
    let ip = parse_ip(ip)?;
    let parse_net = |t: &str| -> Option<IpAddr> {
        t.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    };
    let (net, bits) = match cidr.trim().split_once('/') {
        Some((n, b)) => (parse_net(n)?, Some(b.trim().parse::<u32>().ok()?)),
        None => (parse_net(cidr)?, None),
    };
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(i), IpAddr::V4(n)) => (u32::from(i) as u128, u32::from(n) as u128, 32),
        (IpAddr::V6(i), IpAddr::V6(n)) => (u128::from(i), u128::from(n), 128),
        (IpAddr::V4(i), IpAddr::V6(n)) if n.to_ipv4_mapped().is_some() => {
            (u128::from(i.to_ipv6_mapped()), u128::from(n), 128)
        }
        _ => return Some(false),
    };
    let bits = bits.unwrap_or(width);
    if bits > width {
        return None;
    }
    let mask = if bits == 0 {
        0
    } else {
        (u128::MAX << (128 - bits)) >> (128 - width)
    };
    Some(ip & mask == net & mask)
}

impl ScalarUDFImpl for CidrMatch {
    fn name(&self) -> &str {
        "cidr_match"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let ips = arrays[0].as_string::<i32>();
        let cidrs = arrays[1].as_string::<i32>();
        let out: BooleanArray = ips
            .iter()
            .zip(cidrs.iter())
            .map(|(ip, cidr)| cidr_contains(cidr?, ip?))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// Every function of this module, to register in a session.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(NormalizePrincipal::default()),
        ScalarUDF::new_from_impl(IpIsPrivate::default()),
        ScalarUDF::new_from_impl(CidrMatch::default()),
    ]
}

//! An IPv4 block in CIDR form (`10.88.0.0/16`): what the pod CIDR and each
//! node's block are. Stored and shown as that text.

use core::fmt;
// `core::net`, not `std::net`: plain address arithmetic, no sockets (this
// module is a pure core, see scripts/check-layering.sh).
use core::net::Ipv4Addr;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a text is not an IPv4 block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{text:?} is not an IPv4 CIDR like 10.88.0.0/16")]
    Syntax { text: String },
    #[error("{text:?} has host bits set: did you mean {suggested}?")]
    HostBitsSet { text: String, suggested: Ipv4Cidr },
}

/// A network address and a prefix length, with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// The block at `address/prefix_len`; None when `prefix_len` is over 32
    /// or `address` has host bits set.
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Cidr> {
        Ipv4Cidr::from_octets(address.octets(), prefix_len)
    }

    /// `new` from octets, usable in constants.
    pub const fn from_octets(octets: [u8; 4], prefix_len: u8) -> Option<Ipv4Cidr> {
        let network = u32::from_be_bytes(octets);
        if prefix_len <= 32 && network & !mask(prefix_len) == 0 {
            Some(Ipv4Cidr {
                network,
                prefix_len,
            })
        } else {
            None
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `other` lies wholly inside this block.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix_len >= self.prefix_len && other.network & mask(self.prefix_len) == self.network
    }

    /// Whether the two blocks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// How many blocks of `/sub_prefix_len` this block holds; None when
    /// `sub_prefix_len` is not longer than this block's (or over 32).
    pub fn subblock_count(&self, sub_prefix_len: u8) -> Option<u64> {
        (sub_prefix_len > self.prefix_len && sub_prefix_len <= 32)
            .then(|| 1u64 << (sub_prefix_len - self.prefix_len))
    }

    /// The `index`-th block of `/sub_prefix_len` inside this one (0 is the
    /// first); None past the last.
    pub fn subblock(&self, sub_prefix_len: u8, index: u64) -> Option<Ipv4Cidr> {
        let count = self.subblock_count(sub_prefix_len)?;
        if index >= count {
            return None;
        }
        let offset = u32::try_from(index).ok()? << (32 - u32::from(sub_prefix_len));
        Some(Ipv4Cidr {
            network: self.network | offset,
            prefix_len: sub_prefix_len,
        })
    }

    /// How many addresses the block spans (network and broadcast included).
    pub fn address_count(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    /// The `index`-th address of the block (0 is the network address); None
    /// past the last.
    pub fn address(&self, index: u64) -> Option<Ipv4Addr> {
        if index >= self.address_count() {
            return None;
        }
        let offset = u32::try_from(index).ok()?;
        Some(Ipv4Addr::from(self.network | offset))
    }

    /// Where `address` sits in the block; None when it lies outside.
    pub fn address_index(&self, address: Ipv4Addr) -> Option<u64> {
        let bits = u32::from(address);
        (bits & mask(self.prefix_len) == self.network).then(|| u64::from(bits - self.network))
    }

    /// Where `block` sits among this block's `/block.prefix_len` blocks;
    /// None when it is not one of them.
    pub fn subblock_index(&self, block: &Ipv4Cidr) -> Option<u64> {
        if block.prefix_len <= self.prefix_len || !self.contains(block) {
            return None;
        }
        let offset = block.network - self.network;
        Some(u64::from(offset >> (32 - u32::from(block.prefix_len))))
    }
}

const fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else if prefix_len >= 32 {
        u32::MAX
    } else {
        u32::MAX << (32 - prefix_len as u32)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax {
            text: text.to_owned(),
        };
        let (address, prefix_len) = text.split_once('/').ok_or_else(syntax)?;
        let address: Ipv4Addr = address.parse().map_err(|_| syntax())?;
        let prefix_len: u8 = prefix_len.parse().map_err(|_| syntax())?;
        if prefix_len > 32 {
            return Err(syntax());
        }
        Ipv4Cidr::new(address, prefix_len).ok_or_else(|| CidrError::HostBitsSet {
            text: text.to_owned(),
            suggested: Ipv4Cidr {
                network: u32::from(address) & mask(prefix_len),
                prefix_len,
            },
        })
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;

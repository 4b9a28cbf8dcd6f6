//! Settlement a token contract can pay from: every contributor's cumulative reward as a leaf
//! `(address, uint256)` of a Merkle tree in OpenZeppelin's `StandardMerkleTree` format
//! (`standard-v1`), so a contract using OpenZeppelin's `MerkleProof` pays each address on
//! its proof alone.
//!
//! ```text
//! leaf      = keccak256(keccak256(abi.encode(address, uint256)))   (double: never a node)
//! node      = keccak256(min(a, b) ‖ max(a, b))                      (sorted pair)
//! tree      = leaves sorted by hash, laid out as a complete binary tree in an array:
//!             leaf i at [len - 1 - i], node j over [2j + 1] and [2j + 2], the root at [0]
//! ```
//!
//! [`SettlementTree::dump`] writes the library's own dump, which `StandardMerkleTree.load`
//! reads back.

use serde::{Deserialize, Serialize};
use tessera_formats::payout::{PayoutAddress, keccak256};

/// A 32-byte tree node.
pub type Node = [u8; 32];

/// The leaf of `address` owed `amount`.
pub fn leaf_hash(address: &PayoutAddress, amount: u128) -> Node {
    let mut encoded = [0u8; 64];
    encoded[12..32].copy_from_slice(&address.0);
    encoded[48..64].copy_from_slice(&amount.to_be_bytes());
    keccak256(&keccak256(&encoded))
}

fn hash_pair(a: &Node, b: &Node) -> Node {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(lo);
    both[32..].copy_from_slice(hi);
    keccak256(&both)
}

/// Whether `proof` shows that `address` is owed `amount` under `root`.
pub fn verify(root: &Node, address: &PayoutAddress, amount: u128, proof: &[Node]) -> bool {
    proof
        .iter()
        .fold(leaf_hash(address, amount), |at, sibling| {
            hash_pair(&at, sibling)
        })
        == *root
}

/// A settlement with nobody to pay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a settlement needs at least one address to pay")]
pub struct EmptySettlement;

/// Every address and what it is owed, as a standard Merkle tree.
#[derive(Debug, Clone)]
pub struct SettlementTree {
    tree: Vec<Node>,
    /// Each value in the order given, with its place in `tree`.
    values: Vec<(PayoutAddress, u128, usize)>,
}

impl SettlementTree {
    /// The tree of `values` (each address once: sum a contributor's amounts first).
    pub fn of(values: &[(PayoutAddress, u128)]) -> Result<Self, EmptySettlement> {
        if values.is_empty() {
            return Err(EmptySettlement);
        }
        let mut hashed: Vec<(Node, usize)> = values
            .iter()
            .enumerate()
            .map(|(i, (address, amount))| (leaf_hash(address, *amount), i))
            .collect();
        hashed.sort();
        let len = 2 * hashed.len() - 1;
        let mut tree = vec![[0u8; 32]; len];
        let mut place = vec![0; values.len()];
        for (i, (hash, value)) in hashed.iter().enumerate() {
            tree[len - 1 - i] = *hash;
            place[*value] = len - 1 - i;
        }
        for j in (0..len - hashed.len()).rev() {
            tree[j] = hash_pair(&tree[2 * j + 1], &tree[2 * j + 2]);
        }
        Ok(Self {
            tree,
            values: values
                .iter()
                .zip(place)
                .map(|((address, amount), at)| (*address, *amount, at))
                .collect(),
        })
    }

    /// The root a contract is given.
    pub fn root(&self) -> Node {
        self.tree[0]
    }

    /// What `address` is owed and the proof of it; none when it is not in the tree.
    pub fn proof(&self, address: &PayoutAddress) -> Option<(u128, Vec<Node>)> {
        let (_, amount, mut at) = *self.values.iter().find(|(a, _, _)| a == address)?;
        let mut proof = Vec::new();
        while at > 0 {
            let sibling = if at % 2 == 1 { at + 1 } else { at - 1 };
            proof.push(self.tree[sibling]);
            at = (at - 1) / 2;
        }
        Some((amount, proof))
    }

    /// The addresses and amounts, in the order given.
    pub fn values(&self) -> impl Iterator<Item = (PayoutAddress, u128)> + '_ {
        self.values.iter().map(|(a, v, _)| (*a, *v))
    }

    /// The tree in `StandardMerkleTree`'s dump format.
    pub fn dump(&self) -> StandardDump {
        StandardDump {
            format: "standard-v1".into(),
            leaf_encoding: vec!["address".into(), "uint256".into()],
            tree: self.tree.iter().map(|n| hex0x(n)).collect(),
            values: self
                .values
                .iter()
                .map(|(address, amount, at)| DumpValue {
                    value: (address.lower(), amount.to_string()),
                    tree_index: *at,
                })
                .collect(),
        }
    }
}

/// `0x` and lower-case hex, as the library writes nodes.
pub fn hex0x(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("0x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `StandardMerkleTree.dump()`'s shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandardDump {
    /// `standard-v1`.
    pub format: String,
    /// `["address", "uint256"]`.
    pub leaf_encoding: Vec<String>,
    /// Every node, the root first.
    pub tree: Vec<String>,
    /// Each leaf's value and its place in `tree`.
    pub values: Vec<DumpValue>,
}

/// One leaf of a [`StandardDump`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DumpValue {
    /// The address (lower case) and the amount (decimal).
    pub value: (String, String),
    /// Its place in the tree.
    pub tree_index: usize,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn address(i: u8) -> PayoutAddress {
        PayoutAddress([i; 20])
    }

    #[test]
    fn the_library_readme_example_gives_its_root() {
        // @openzeppelin/merkle-tree's README: two airdrop leaves and the root it prints.
        let values = [
            (
                "0x1111111111111111111111111111111111111111"
                    .parse()
                    .unwrap(),
                5_000_000_000_000_000_000,
            ),
            (
                "0x2222222222222222222222222222222222222222"
                    .parse()
                    .unwrap(),
                2_500_000_000_000_000_000,
            ),
        ];
        let dump = SettlementTree::of(&values).unwrap().dump();
        assert_eq!(
            dump.tree,
            [
                "0xd4dee0beab2d53f2cc83e567171bd2820e49898130a22622b10ead383e90bd77",
                "0xeb02c421cfa48976e66dfb29120745909ea3a0f843456c263cf8f1253483e283",
                "0xb92c48e9d7abe27fd8dfd6b5dfdbfb1c9a463f80c712b66f3a5180a090cccafc",
            ]
        );
        assert_eq!(dump.values[0].tree_index, 1);
        assert_eq!(dump.values[1].tree_index, 2);
    }

    /// Trees of 1 to 33 leaves, amounts up to `u128::MAX`, each checked here and, when
    /// `TESSERA_SETTLEMENT_OUT` names a folder, written there for `scripts/test-settlement`
    /// to check with `@openzeppelin/merkle-tree`.
    #[test]
    fn trees_of_many_shapes_prove_every_leaf() {
        let out = std::env::var_os("TESSERA_SETTLEMENT_OUT").map(std::path::PathBuf::from);
        for n in [1usize, 2, 3, 4, 5, 8, 33] {
            let values: Vec<(PayoutAddress, u128)> = (0..n)
                .map(|i| {
                    let i = u8::try_from(i).unwrap();
                    let amount = match i % 3 {
                        0 => u128::MAX - u128::from(i),
                        1 => u128::from(i),
                        _ => 1u128 << (60 + u32::from(i)),
                    };
                    (
                        PayoutAddress(std::array::from_fn(|b| {
                            i.wrapping_mul(37).wrapping_add(u8::try_from(b).unwrap())
                        })),
                        amount,
                    )
                })
                .collect();
            let tree = SettlementTree::of(&values).unwrap();
            let mut proofs = Vec::new();
            for (address, amount) in &values {
                let (_, proof) = tree.proof(address).unwrap();
                assert!(verify(&tree.root(), address, *amount, &proof));
                proofs.push(serde_json::json!({
                    "value": [address.lower(), amount.to_string()],
                    "proof": proof.iter().map(|p| hex0x(p)).collect::<Vec<_>>(),
                }));
            }
            if let Some(dir) = &out {
                let checked = serde_json::json!({
                    "dump": tree.dump(),
                    "root": hex0x(&tree.root()),
                    "proofs": proofs,
                });
                std::fs::write(
                    dir.join(format!("shapes-{n}.json")),
                    serde_json::to_vec_pretty(&checked).unwrap(),
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn nobody_to_pay_is_refused() {
        assert_eq!(SettlementTree::of(&[]).unwrap_err(), EmptySettlement);
    }

    proptest! {
        #[test]
        fn every_leaf_proves_and_no_other_amount_does(
            amounts in proptest::collection::vec(0u128..u128::MAX, 1..40)
        ) {
            let values: Vec<(PayoutAddress, u128)> = amounts
                .iter()
                .enumerate()
                .map(|(i, a)| (address(u8::try_from(i).unwrap()), *a))
                .collect();
            let tree = SettlementTree::of(&values).unwrap();
            for (a, amount) in &values {
                let (owed, proof) = tree.proof(a).unwrap();
                prop_assert_eq!(owed, *amount);
                prop_assert!(verify(&tree.root(), a, *amount, &proof));
                prop_assert!(!verify(&tree.root(), a, amount.wrapping_add(1), &proof));
            }
            prop_assert!(tree.proof(&address(200)).is_none());
            let dump = tree.dump();
            prop_assert_eq!(dump.tree.len(), 2 * values.len() - 1);
            prop_assert_eq!(&dump.tree[0], &hex0x(&tree.root()));
        }
    }
}

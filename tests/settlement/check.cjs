// Checks Tessera's settlement trees with @openzeppelin/merkle-tree, an independent
// implementation of the StandardMerkleTree format a token contract's claims are proven in.
// Each file: { dump: StandardMerkleTree.dump(), root, proofs: [{ value, proof }] }.
//
//   node tests/settlement/check.cjs FILE...
"use strict";
const fs = require("fs");
const assert = require("assert");
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");

const files = process.argv.slice(2);
assert(files.length > 0, "no settlement files to check");
let proofs = 0;
for (const file of files) {
  const { dump, root, proofs: claimed } = JSON.parse(fs.readFileSync(file, "utf8"));
  // Tessera's dump loads, and every node and leaf in it is what the library computes.
  const loaded = StandardMerkleTree.load(dump);
  loaded.validate();
  assert.strictEqual(loaded.root, root, `${file}: the dump's root`);
  // The same values, built by the library from scratch, give the same root and proofs.
  const encoding = ["address", "uint256"];
  const rebuilt = StandardMerkleTree.of(dump.values.map((v) => v.value), encoding);
  assert.strictEqual(rebuilt.root, root, `${file}: the root built from the values`);
  assert(claimed.length > 0, `${file}: no proofs`);
  for (const { value, proof } of claimed) {
    assert(StandardMerkleTree.verify(root, encoding, value, proof), `${file}: proof of ${value}`);
    assert.deepStrictEqual(rebuilt.getProof(value), proof, `${file}: the library's proof of ${value}`);
    const more = [value[0], (BigInt(value[1]) + 1n).toString()];
    assert(!StandardMerkleTree.verify(root, encoding, more, proof), `${file}: ${value} plus one`);
    proofs += 1;
  }
}
console.log(`settlement: ${files.length} trees and ${proofs} proofs agree with @openzeppelin/merkle-tree`);

//! HMAC-SHA-256 (RFC 2104) over `sha2`, for authenticating cache entries.
//!
//! Why HMAC and not `sha256(secret || data)`: the plain keyed hash is open
//! to length extension (anyone who sees a tag can compute the tag of the
//! data with bytes appended). HMAC is the standard fix and is a dozen lines
//! on top of the hash we already depend on, so it is written out here and
//! checked against the RFC 4231 test vectors.

use sha2::{Digest, Sha256};

const BLOCK_BYTES: usize = 64;
/// Bytes of an HMAC-SHA-256 tag.
pub(crate) const TAG_BYTES: usize = 32;

/// An HMAC-SHA-256 computation in progress.
pub(crate) struct HmacSha256 {
    inner: Sha256,
    outer_key: [u8; BLOCK_BYTES],
}

impl HmacSha256 {
    pub(crate) fn new(key: &[u8]) -> HmacSha256 {
        let mut block_key = [0u8; BLOCK_BYTES];
        if key.len() > BLOCK_BYTES {
            block_key[..TAG_BYTES].copy_from_slice(&Sha256::digest(key));
        } else {
            block_key[..key.len()].copy_from_slice(key);
        }
        let mut inner_key = block_key;
        let mut outer_key = block_key;
        for byte in &mut inner_key {
            *byte ^= 0x36;
        }
        for byte in &mut outer_key {
            *byte ^= 0x5c;
        }
        let mut inner = Sha256::new();
        inner.update(inner_key);
        HmacSha256 { inner, outer_key }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    pub(crate) fn finish(self) -> [u8; TAG_BYTES] {
        let inner_hash = self.inner.finalize();
        let mut outer = Sha256::new();
        outer.update(self.outer_key);
        outer.update(inner_hash);
        outer.finalize().into()
    }
}

/// Compares two tags in time independent of where they differ.
pub(crate) fn tags_equal(a: &[u8; TAG_BYTES], b: &[u8; TAG_BYTES]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac(key: &[u8], data: &[u8]) -> String {
        let mut mac = HmacSha256::new(key);
        mac.update(data);
        hex::encode(mac.finish())
    }

    #[test]
    fn rfc4231_vectors() {
        // Test case 1.
        assert_eq!(
            hmac(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2.
        assert_eq!(
            hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn tag_comparison() {
        let a = [7u8; TAG_BYTES];
        let mut b = a;
        assert!(tags_equal(&a, &b));
        b[31] ^= 1;
        assert!(!tags_equal(&a, &b));
    }
}

//! Self-verifying payloads shared by the crash-test child binary and the
//! test that kills it: any record found after a crash can be checked for
//! integrity on its own, and an acknowledged one by its hash. Not part of
//! the stable API.

/// Payload layout: `magic u32 | writer u32 | seq u64 | seed u64 | filler`,
/// where the filler is a pure function of (seed, writer, seq).
const MAGIC: u32 = 0x1EE5_C0DE;
const HEADER_BYTES: usize = 24;

/// Filler bytes every payload has at least, so that damage to the header
/// fields also shows as a filler mismatch.
const FILLER_BYTES_MIN: usize = 8;

/// Builds the payload for the `seq`-th append of `writer`, `bytes` long
/// (at least the 24-byte header plus 8 filler bytes).
pub fn crash_payload(seed: u64, writer: u32, seq: u64, bytes: usize) -> Vec<u8> {
    let bytes = bytes.max(HEADER_BYTES + FILLER_BYTES_MIN);
    let mut payload = Vec::with_capacity(bytes);
    payload.extend_from_slice(&MAGIC.to_le_bytes());
    payload.extend_from_slice(&writer.to_le_bytes());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(&seed.to_le_bytes());
    // A bijective mix of all three inputs: flipping any bit of any of
    // them changes the filler.
    let mut state = splitmix64(
        seed ^ u64::from(writer).wrapping_mul(0xA076_1D64_78BD_642F)
            ^ splitmix64(seq.wrapping_add(0x9E37_79B9_7F4A_7C15)),
    )
    .max(1);
    while payload.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        payload.push(state as u8);
    }
    payload
}

/// True if `payload` is exactly what `crash_payload` produces for the
/// parameters embedded in it.
pub fn crash_payload_is_intact(payload: &[u8]) -> bool {
    let Some(header) = payload.first_chunk::<HEADER_BYTES>() else {
        return false;
    };
    if payload.len() < HEADER_BYTES + FILLER_BYTES_MIN {
        return false;
    }
    let word = |range: std::ops::Range<usize>| {
        header[range]
            .iter()
            .rev()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
    };
    if word(0..4) as u32 != MAGIC {
        return false;
    }
    let (writer, seq, seed) = (word(4..8) as u32, word(8..16), word(16..24));
    crash_payload(seed, writer, seq, payload.len()) == payload
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a, 64 bit: the child reports it for each acknowledged payload.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_verify_and_damage_is_seen() {
        for bytes in [0, 24, 33, 1000] {
            let payload = crash_payload(7, 3, 99, bytes);
            assert!(crash_payload_is_intact(&payload));
            for at in 0..payload.len() {
                let mut damaged = payload.clone();
                damaged[at] ^= 1;
                assert!(!crash_payload_is_intact(&damaged), "byte {at} of {bytes}");
            }
        }
    }
}

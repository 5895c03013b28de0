//! A fast hasher for the per-record maps of the hot path (folders by key, a batch's deltas by
//! window and key).

use std::hash::Hasher;

/// A multiply-rotate hasher (as rustc's FxHash) with splitmix64's finalizer, so that both the low
/// bits (the bucket) and the top bits (hashbrown's tag) of consecutive or strided ids spread: a
/// few cycles per key instead of SipHash's tens. Keys are the user's data and the hash is not
/// keyed, so it is only for maps that live a short while (a folder map one commit interval, a
/// delta index one poll batch) and hold at most that span's keys: a collision-heavy key set then
/// costs speed, never correctness.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(SEED);
    }

    #[inline]
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_spreads_consecutive_ids() {
        use std::hash::BuildHasher;
        let h = std::hash::BuildHasherDefault::<FastHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..1024i64).map(|v| h.hash_one(v) >> 54).collect();
        assert!(
            buckets.len() > 512,
            "the top bits of 1024 consecutive ids fall into {} of 1024 buckets",
            buckets.len()
        );
    }
}

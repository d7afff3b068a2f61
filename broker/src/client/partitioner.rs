//! Partition choice exactly as the Java client makes it: murmur2 of the key for keyed records,
//! and a sticky partition that changes once a batch's worth of bytes went to it for keyless ones.

use std::collections::HashMap;

use rand::Rng;

/// Java's `Utils.murmur2`: 32-bit MurmurHash2 with seed 0x9747b28c over little-endian words.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record, as Java's `BuiltInPartitioner.partitionForKey`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// The sticky choice for keyless records: one partition per topic until `batch_bytes` went to it.
#[derive(Debug, Default)]
pub(crate) struct StickyPartitioner {
    topics: HashMap<String, Sticky>,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: i32,
    produced_bytes: usize,
}

impl StickyPartitioner {
    /// The partition for a keyless record of `record_bytes` in a topic of `partitions` partitions.
    pub(crate) fn partition(&mut self, topic: &str, partitions: i32, record_bytes: usize, batch_bytes: usize) -> i32 {
        let previous = self.topics.get(topic).copied();
        let sticky = match previous {
            Some(s) if s.partition < partitions && s.produced_bytes < batch_bytes => s,
            _ => Sticky {
                partition: next_partition(previous.map(|s| s.partition), partitions),
                produced_bytes: 0,
            },
        };
        let sticky = self.topics.entry(topic.to_string()).insert_entry(sticky).into_mut();
        sticky.produced_bytes += record_bytes;
        sticky.partition
    }
}

/// A random partition, different from `previous` when there is a choice.
fn next_partition(previous: Option<i32>, partitions: i32) -> i32 {
    let mut rng = rand::thread_rng();
    let mut next = rng.gen_range(0..partitions);
    if partitions > 1 && Some(next) == previous {
        next = (next + 1) % partitions;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Apache Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keyed_partitions_use_the_positive_hash() {
        // (-790332482 & 0x7fffffff) % 50 = 1357151166 % 50 = 16.
        assert_eq!(partition_for_key(b"foobar", 50), 16);
        for partitions in 1..=12 {
            let p = partition_for_key(b"customer-42", partitions);
            assert!((0..partitions).contains(&p));
            assert_eq!(p, partition_for_key(b"customer-42", partitions));
        }
    }

    #[test]
    fn sticky_partition_moves_after_a_batch_worth_of_bytes() {
        let mut sticky = StickyPartitioner::default();
        let first = sticky.partition("t", 4, 40, 100);
        assert_eq!(sticky.partition("t", 4, 40, 100), first);
        assert_eq!(sticky.partition("t", 4, 40, 100), first);
        let next = sticky.partition("t", 4, 40, 100);
        assert_ne!(next, first);
        assert_eq!(sticky.partition("solo", 1, 1_000, 100), 0);
        assert_eq!(sticky.partition("solo", 1, 1_000, 100), 0);
    }
}

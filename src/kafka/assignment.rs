//! Which worker reads which Kafka partition.
//!
//! The dataflow, not Kafka's consumer-group protocol, decides ownership: every worker computes the
//! same answer from (partition, total workers) alone, so there is no rebalance, no coordinator and
//! no chance of two workers reading one partition. Workers are numbered globally across processes
//! (timely's `worker.index()`), so 2 processes × 2 workers spread partitions over 4 readers.

/// The global worker index that owns `partition` when `workers` workers run in total.
///
/// Round-robin keeps ownership balanced (no worker owns two partitions while another owns none)
/// and stable: a partition added later goes to the next worker in turn without moving the others.
pub fn owner(partition: i32, workers: usize) -> usize {
    assert!(workers > 0, "a dataflow has at least one worker");
    assert!(partition >= 0, "Kafka partitions are numbered from 0");
    partition as usize % workers
}

/// The partitions among `0..partitions` that `worker` owns.
pub fn owned_partitions(worker: usize, workers: usize, partitions: usize) -> Vec<i32> {
    (0..partitions as i32).filter(|&p| owner(p, workers) == worker).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for workers in 1..=8 {
            for partitions in 0..=20 {
                let mut seen = vec![0; partitions];
                for w in 0..workers {
                    for p in owned_partitions(w, workers, partitions) {
                        seen[p as usize] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "workers={workers} partitions={partitions}");
            }
        }
    }

    #[test]
    fn ownership_is_balanced() {
        for workers in 1..=8 {
            for partitions in 0..=20 {
                let counts: Vec<usize> =
                    (0..workers).map(|w| owned_partitions(w, workers, partitions).len()).collect();
                let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                assert!(max - min <= 1, "workers={workers} partitions={partitions}: {counts:?}");
            }
        }
    }

    #[test]
    fn three_partitions_four_workers_leaves_one_idle() {
        assert_eq!(owned_partitions(0, 4, 3), vec![0]);
        assert_eq!(owned_partitions(3, 4, 3), Vec::<i32>::new());
        assert_eq!(owner(2, 2), 0);
        assert_eq!(owner(1, 2), 1);
    }

    #[test]
    fn adding_a_partition_moves_no_existing_one() {
        for workers in 1..=5 {
            let before: Vec<usize> = (0..3).map(|p| owner(p, workers)).collect();
            let after: Vec<usize> = (0..4).map(|p| owner(p, workers)).collect();
            assert_eq!(before[..], after[..3]);
        }
    }
}

//! How the processes of a multi-process run find each other.
//!
//! Timely's own setup (`CommunicationConfig::Cluster`) connects with the right protocol but
//! sleeps a whole second whenever a peer is not there yet: the connecting side after a refused
//! connection, the listening side after every poll that found no new connection. Processes started
//! together nearly always hit both, so every `-n 2` run paid about one second before reading
//! anything (measured: 1.9 s against 1.0 s for `-w 2` on 1M events). It also waits forever and
//! ignores SIGINT/SIGTERM while it waits.
//!
//! This module speaks the same protocol (process `i` connects to every process below it and
//! sends its index as a big-endian u64; it accepts connections from every process above it),
//! polls every few milliseconds, logs which peers it is still waiting for, gives up after
//! `--peer-timeout` with an error naming them, and stops when shutdown is requested. The sockets
//! then go to timely's `initialize_networking_from_sockets`, so everything after the handshake is
//! timely's.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Config as CommunicationConfig, Hooks};

use crate::signals::Shutdown;

/// How often a missing peer is retried or polled for.
const POLL: Duration = Duration::from_millis(5);
/// How often the processes still missing are logged.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Why the cluster could not be formed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "process {me} could not reach {missing} within {waited:?}; start every process with the same \
         -n and hostfile (each with its own -p), or raise --peer-timeout if they start far apart"
    )]
    Timeout { me: usize, missing: String, waited: Duration },
    #[error("process {me} cannot listen on {address} (its line in the hostfile): {source}")]
    Listen {
        me: usize,
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("process {me}: the connection handshake with {peer} failed: {source}")]
    Handshake {
        me: usize,
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("process {me}: a connection on {address} announced process {claimed}, which is not above {me} in a cluster of {processes}")]
    UnexpectedPeer { me: usize, address: String, claimed: u64, processes: usize },
    #[error("shutdown requested while waiting for the other processes of the cluster")]
    Interrupted,
    #[error("starting timely's network layer: {0}")]
    Timely(String),
}

/// Builds the allocators for `config`: for a cluster, after connecting to every peer as
/// described above; otherwise exactly as timely would.
pub fn build(
    config: CommunicationConfig,
    timeout: Duration,
    shutdown: &Shutdown,
) -> Result<(Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>), ClusterError> {
    let CommunicationConfig::Cluster { threads, process, addresses, .. } = config else {
        return config.try_build().map_err(ClusterError::Timely);
    };
    let sockets = connect_all(&addresses, process, timeout, shutdown)?;
    let hooks = Hooks::default();
    let process_allocators =
        ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(process_allocators, sockets, process, threads, hooks)
            .map_err(|e| ClusterError::Timely(e.to_string()))?;
    Ok((builders.into_iter().map(AllocatorBuilder::Tcp).collect(), Box::new(guard)))
}

/// One socket per process, `None` at `me`, in process order.
fn connect_all(
    addresses: &[String],
    me: usize,
    timeout: Duration,
    shutdown: &Shutdown,
) -> Result<Vec<Option<TcpStream>>, ClusterError> {
    let listener = TcpListener::bind(&addresses[me])
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ClusterError::Listen { me, address: addresses[me].clone(), source })?;
    let mut sockets: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
    let started = Instant::now();
    let mut last_report = started;
    loop {
        // Connect to every lower process not yet connected; a refusal means "not up yet".
        for peer in 0..me {
            if sockets[peer].is_none() {
                if let Ok(mut stream) = TcpStream::connect(&addresses[peer]) {
                    stream
                        .set_nodelay(true)
                        .and_then(|()| stream.write_all(&(me as u64).to_be_bytes()))
                        .map_err(|source| ClusterError::Handshake {
                            me,
                            peer: addresses[peer].clone(),
                            source,
                        })?;
                    sockets[peer] = Some(stream);
                }
            }
        }
        // Accept every higher process that has connected to us.
        loop {
            match listener.accept() {
                Ok((mut stream, from)) => {
                    let handshake = |source| ClusterError::Handshake { me, peer: from.to_string(), source };
                    stream.set_nonblocking(false).map_err(handshake)?;
                    stream.set_nodelay(true).map_err(handshake)?;
                    let mut index = [0u8; 8];
                    stream.read_exact(&mut index).map_err(handshake)?;
                    let claimed = u64::from_be_bytes(index);
                    let slot = usize::try_from(claimed).ok().filter(|&i| i > me && i < addresses.len());
                    let Some(slot) = slot else {
                        return Err(ClusterError::UnexpectedPeer {
                            me,
                            address: addresses[me].clone(),
                            claimed,
                            processes: addresses.len(),
                        });
                    };
                    sockets[slot] = Some(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(source) => {
                    return Err(ClusterError::Listen { me, address: addresses[me].clone(), source })
                }
            }
        }
        let missing: Vec<String> = (0..addresses.len())
            .filter(|&i| i != me && sockets[i].is_none())
            .map(|i| format!("process {i} ({})", addresses[i]))
            .collect();
        if missing.is_empty() {
            tracing::info!(
                process = me,
                processes = addresses.len(),
                waited_ms = started.elapsed().as_millis() as u64,
                "cluster connected"
            );
            return Ok(sockets);
        }
        if shutdown.requested() {
            return Err(ClusterError::Interrupted);
        }
        if started.elapsed() >= timeout {
            return Err(ClusterError::Timeout { me, missing: missing.join(", "), waited: timeout });
        }
        if last_report.elapsed() >= REPORT_EVERY {
            tracing::info!(process = me, missing = %missing.join(", "), "waiting for the other processes of the cluster");
            last_report = Instant::now();
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addresses(n: usize) -> Vec<String> {
        let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        held.iter().map(|l| l.local_addr().unwrap().to_string()).collect()
    }

    #[test]
    fn three_processes_connect_each_pair_once_whatever_the_start_order() {
        let addresses = free_addresses(3);
        let shutdown = Shutdown::never();
        let handles: Vec<_> = [2usize, 0, 1]
            .into_iter()
            .map(|me| {
                let (addresses, shutdown) = (addresses.clone(), shutdown.clone());
                std::thread::spawn(move || {
                    // Stagger the starts so that some connections are refused at first.
                    std::thread::sleep(Duration::from_millis(20 * me as u64));
                    (me, connect_all(&addresses, me, Duration::from_secs(10), &shutdown).unwrap())
                })
            })
            .collect();
        for handle in handles {
            let (me, sockets) = handle.join().unwrap();
            for (i, socket) in sockets.iter().enumerate() {
                assert_eq!(socket.is_some(), i != me, "process {me}, slot {i}");
            }
        }
    }

    #[test]
    fn a_missing_peer_is_named_after_the_timeout() {
        let addresses = free_addresses(2);
        let err = connect_all(&addresses, 1, Duration::from_millis(200), &Shutdown::never()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("process 0 ({})", addresses[0])), "{text}");
        assert!(text.contains("--peer-timeout"), "{text}");
    }
}

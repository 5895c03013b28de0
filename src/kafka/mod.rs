//! Everything that talks to Kafka: client settings, topic administration, the event producer,
//! partition ownership, the high-water marks for lag, and the timely source operator.

pub mod admin;
pub mod assignment;
pub mod batch;
pub mod client;
pub mod errors;
pub mod offsets;
pub mod producer;
pub mod topic_id;

//! Everything that talks to Kafka: client settings (`settings`, `context`, `diagnose`), topic administration, the event producer,
//! partition ownership, the high-water marks for lag, the group offsets for Kafka's lag tools, and the timely source operator.

pub mod admin;
pub mod assignment;
pub mod batch;
pub mod client;
pub mod context;
pub mod diagnose;
pub mod error;
pub mod error_class;
pub mod group;
pub mod offsets;
pub mod producer;
pub mod settings;
pub mod topic_id;

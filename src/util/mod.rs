//! Small helpers shared by every layer; nothing here imports another streamlake module.

pub mod duration;
pub mod fanout;
pub mod fs;
pub mod hash;

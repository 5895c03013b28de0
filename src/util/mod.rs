pub mod fanout;
pub mod fs;

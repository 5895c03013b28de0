//! Where datasets are stored: the locations `run --output` and `validate --path` accept, and the
//! [`Store`] operations the commit protocol needs from them.
//!
//! A local or mounted file system ([`LocalStore`]) keeps the hidden-name, fsync and rename
//! protocol; an S3-compatible object store ([`ObjectStoreRoot`], through the `object_store`
//! crate) has neither rename nor fsync, and relies on single PUTs and conditional create instead
//! (the protocol is in docs/format.md, "Object storage"). A running job writes through
//! [`Patient`], which waits out a store that does not answer.

mod local;
mod location;
mod object;
mod patient;
mod profile;
mod store;

pub use local::LocalStore;
pub use location::{Location, LocationError};
pub use object::{ObjectStoreRoot, ObjectUrl};
pub use patient::{Patient, Requests};
pub use store::{Created, Listed, Store, StoreError};

//! Where datasets are stored: the locations `run --output` and `validate --path` accept, and the
//! [`Store`] operations the commit protocol needs from them.
//!
//! A local or mounted file system ([`LocalStore`]) keeps the hidden-name, fsync and rename
//! protocol; an S3-compatible object store ([`ObjectStoreRoot`], through the `object_store`
//! crate) has neither rename nor fsync, and relies on single PUTs and conditional create instead.
//! The raw sink and `validate` still write and read only local folders: `run` and `validate`
//! refuse `s3://` until the object-store commit protocol (docs/format.md) is built on [`Store`].

mod local;
mod location;
mod object;
mod store;

pub use local::LocalStore;
pub use location::{Location, LocationError};
pub use object::{ObjectStoreRoot, ObjectUrl};
pub use store::{Created, Listed, Store, StoreError};

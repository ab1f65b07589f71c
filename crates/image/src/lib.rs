//! berth-image: builds container images without a registry, a Dockerfile or a base image. It writes `docker save`
//! format tarballs (the input of `docker load` and of bollard's `import_image`) in memory and deterministically —
//! fixed timestamps and owners, sorted entries — so the same input always gives the same image id. It also
//! carries berth's own workload image, whose single program (crates/workload) build.rs compiles statically.
//!
//! It does not talk to Docker, pull or push, compress layers, or build images with more than one layer.
//!
//! ```
//! let image = berth_image::workload_image();
//! assert_eq!(image.reference, berth_image::WORKLOAD_IMAGE);
//! assert!(image.id.starts_with("sha256:"));
//! ```

mod tarball;
mod workload;

pub use tarball::{build_tarball, ImageConfig, ImageTarball, LayerEntry};
pub use workload::{workload_image, WORKLOAD_IMAGE};

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference is not `name:tag` in Docker's syntax (a tag is required: berth never relies on `latest`).
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A layer entry's path is empty, the root, or contains `.`, `..` or NUL components.
    #[error("invalid layer path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two layer entries have the same path.
    #[error("layer path {path:?} is given twice")]
    DuplicatePath {
        /// The normalised path (no leading `/`).
        path: String,
    },
    /// An entry lies below a path that the layer makes a file or a symlink.
    #[error("layer path {path:?} is below {parent:?}, which is not a directory")]
    ParentNotDirectory {
        /// The entry's normalised path.
        path: String,
        /// The ancestor that is a file or symlink.
        parent: String,
    },
    /// The tar writer rejected an entry (for example a symlink target it cannot encode).
    #[error("cannot write tar entry {path:?}")]
    WriteTar {
        /// The entry's path inside its tar archive.
        path: String,
        /// The tar writer's error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising the image config or manifest failed.
    #[error("cannot encode the image {what}")]
    EncodeJson {
        /// `config` or `manifest`.
        what: &'static str,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
}

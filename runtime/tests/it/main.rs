//! Integration tests of the runtime crate: real images, real containers
//! (run as root), real cgroups and mounts. Every test ends with
//! `Env::finish`, which fails if a mount, cgroup or container is left.

mod adoption;
mod bad_input;
mod blob_ingest;
mod containers;
mod hostile_images;
mod images;
mod network;
mod support;

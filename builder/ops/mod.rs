//! Operations on built images and running nodes: boot tests, flash, seal, verify, diff,
//! upload. Each command of the CLI calls one of these.

pub mod diff;
pub mod flash;
pub mod init;
pub mod integrity;
pub mod lock;
pub mod seal;
pub mod test;
pub mod upload;
pub mod verify;

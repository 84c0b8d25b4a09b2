//! Where finished lines go: a writer thread ([`non_blocking`]) in front of stdout, a rotating
//! file ([`rolling`]), or any `Write` the caller supplies.

pub mod non_blocking;
pub mod rolling;

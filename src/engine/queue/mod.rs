//! The hot path, from `junos_sync_queue` to the loop thread: the byte and entry budget
//! (`budget`), the ring that carries TLVs without a lock or a per-message object (`ring`), and
//! the loop's sleep and wake-up (`wake`), and a producer's yield to a loop behind it (`pace`).

pub(crate) mod budget;
pub(crate) mod pace;
pub(crate) mod ring;
pub(crate) mod wake;

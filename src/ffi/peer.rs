//! `junos_sync_get_peer_info`: the link as the loop last published it, size-versioned.

use super::api::{context, ctx_ref};
use super::panic::ffi_boundary;
use super::types::*;

/// Copies the context's replication state into `*info` (since 1.1): role, peer, connection
/// state and its age, whether it is keyed, the master's lag (age of the oldest unacknowledged
/// TLV) and unacknowledged entries and bytes, the current full resync's progress, and (since
/// 1.2) the peer's address as text, IPv6 included. Any thread; never waits for the loop
/// (which publishes it every turn). Set `info->size` to `sizeof(junos_sync_peer_info_t)` first:
/// only the fields within `size` bytes are written (a `size` of release 1.1's struct gets no
/// `peer_address`). `JUNOS_SYNC_ERR_INVALID` for NULL arguments or a `size` under 8.
///
/// # Safety
/// `ctx` is NULL or a live context; `info` is NULL or writable for `info->size` bytes.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_get_peer_info(
    ctx: *mut junos_sync_context_t,
    info: *mut junos_sync_peer_info_t,
) -> junos_sync_status_t {
    ffi_boundary! {
        let c = context!(ctx);
        if info.is_null() {
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        }
        // SAFETY: non-NULL and (contract) at least `size` bytes, so its first 4 are readable.
        let size = unsafe { std::ptr::addr_of!((*info).size).read_unaligned() } as usize;
        if size < 8 {
            c.log("junos_sync_get_peer_info: set info->size to sizeof(junos_sync_peer_info_t)");
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        }
        let s = match c.status() {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        let stats = c.stats().unwrap_or_default();
        let (peer_addr, peer_port) = match s.peer {
            Some(std::net::SocketAddr::V4(a)) => (u32::from(*a.ip()), a.port()),
            Some(a) => (0, a.port()),
            None => (0, 0),
        };
        let mut peer_address = [0 as libc::c_char; JUNOS_SYNC_ADDRSTRLEN];
        let text = s.peer_address().unwrap_or_default();
        for (d, b) in peer_address.iter_mut().zip(text.bytes().take(JUNOS_SYNC_ADDRSTRLEN - 1)) {
            *d = b as libc::c_char;
        }
        let full = junos_sync_peer_info_t {
            size: size as u32,
            state: match s.state {
                crate::LinkState::Down => junos_sync_link_state_t::JUNOS_SYNC_LINK_DOWN,
                crate::LinkState::Connecting => junos_sync_link_state_t::JUNOS_SYNC_LINK_CONNECTING,
                crate::LinkState::Handshake => junos_sync_link_state_t::JUNOS_SYNC_LINK_HANDSHAKE,
                crate::LinkState::Up => junos_sync_link_state_t::JUNOS_SYNC_LINK_UP,
            },
            port: s.port,
            peer_port,
            peer_addr,
            is_master: s.is_master,
            keyed: s.keyed,
            resync_running: s.resync.is_some_and(|r| r.running),
            resync_complete: s.resync.is_some_and(|r| r.complete),
            reserved: [0; 4],
            state_ms: s.since.as_millis() as u64,
            lag_ms: s.lag.as_millis() as u64,
            unacked_entries: s.unacked_entries,
            unacked_bytes: stats.backlog_bytes,
            resync_walked: s.resync.map_or(0, |r| r.walked),
            resync_acked: s.resync.map_or(0, |r| r.acked),
            peer_address,
        };
        let mut n = size.min(std::mem::size_of::<junos_sync_peer_info_t>());
        // Text is written whole or not at all: a caller's string always ends in its NUL.
        let text_at = std::mem::offset_of!(junos_sync_peer_info_t, peer_address);
        if n < text_at + JUNOS_SYNC_ADDRSTRLEN {
            n = n.min(text_at);
        }
        // SAFETY: `info` is writable for `size` bytes (contract) and we write `n <= size` from
        // a local of at least `n` bytes; the regions are distinct.
        unsafe { std::ptr::copy_nonoverlapping(std::ptr::addr_of!(full).cast::<u8>(), info.cast::<u8>(), n) };
        junos_sync_status_t::JUNOS_SYNC_OK
    }
}

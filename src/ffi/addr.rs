//! `junos_sync_set_address`: a role's address as text, for what `server_addr` (IPv4 in a
//! `uint32_t`, the ABI of `junos_sync_state_t`) cannot say: IPv6, scopes, host names.

use libc::c_char;

use super::api::{context, ctx_ref, status};
use super::panic::ffi_boundary;
use super::types::{junos_sync_context_t, junos_sync_status_t};

/// Longest `address` read, terminating NUL included: far more than any address or host name
/// (253 bytes), and a bound on the scan of a string that lacks its NUL.
const MAX_ADDRESS: usize = 1024;

/// Gives the context its address as text: IPv4, IPv6, link-local with its interface, or a host
/// name (since 1.2).
///
/// The address and `port` replace `server_addr` and `server_port` of the `junos_sync_state_t`,
/// which hold IPv4 only, for the next role the context takes up (see "Which role" below).
///
/// `address` is a NUL-terminated string, copied; one of:
/// - an IPv4 address, `192.0.2.1`;
/// - an IPv6 address, `2001:db8::1` (or `[2001:db8::1]`); a link-local one names its
///   interface after `%`, by name or index: `fe80::1%eth1`, `fe80::1%3`;
/// - a host name, `sync-a.example.net`, looked up (getaddrinfo) when the role starts.
///
/// Master: where to listen; `port` 0 for any free port, which `sync_bind_done_func` reports as
/// before. `::` listens on IPv6 and IPv4 both (IPv4 peers show as IPv4 addresses), `0.0.0.0` on
/// IPv4 only; a host name listens on the first of its addresses that it can bind. Backup: the
/// master's address and port; a host name's addresses are tried in turn (the next after one
/// that fails to connect, the one that worked first again after a lost connection). A backup
/// with port 0, or an unspecified address (`::`, `0.0.0.0`), is refused by the start. (A
/// backup's `junos_sync_state_t` must still name an address and a port for `junos_sync_init`,
/// as with libjunos-sync: any, say 127.0.0.1 and 1, when this call gives the real ones.)
///
/// Which role: called before `junos_sync_start`, the one the start starts; once started, the
/// one the next `junos_sync_switchover` switches to, whose `junos_sync_state_t` then gives the
/// role but not the address (the running role is not touched). A switchover with no call
/// before it takes `server_addr` and `server_port` of its state, as always. A call replaces the
/// address of an earlier one that no start or switchover took yet; one that fails (a bind
/// error, a name that does not resolve) leaves it set for the next attempt.
///
/// A host name is looked up once, during `junos_sync_start` (or `junos_sync_switchover`), never
/// by the loop thread: that call waits for the system's resolver (getaddrinfo, on a thread of
/// its own) for at most 5 seconds, and returns `JUNOS_SYNC_ERR_INVALID` (logged, the context
/// unchanged) for a name that does not resolve or has not resolved by then; a backup's start
/// still does not wait for the master. The addresses are kept for the life of the role: a
/// changed DNS record is seen by the next start or switchover.
///
/// Any thread. Returns `JUNOS_SYNC_ERR_INVALID`, with a log line saying why, for a NULL `ctx`
/// or `address`, text that is neither an IP address nor a host name, a link-local address
/// without its interface, an interface that does not exist, a multicast address;
/// `JUNOS_SYNC_ERR_STATE` once the context is exiting; `JUNOS_SYNC_ERR_INTERNAL` if it failed.
///
/// # Safety
/// `ctx` is NULL or a live context; `address` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn junos_sync_set_address(
    ctx: *mut junos_sync_context_t,
    address: *const c_char,
    port: u16,
) -> junos_sync_status_t {
    ffi_boundary! {
        let c = context!(ctx);
        if address.is_null() {
            c.log("junos_sync_set_address: address is NULL");
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        }
        // SAFETY: a NUL-terminated string (contract), read up to its NUL or MAX_ADDRESS bytes.
        let len = unsafe { libc::strnlen(address, MAX_ADDRESS) };
        if len == MAX_ADDRESS {
            c.log(&format!("junos_sync_set_address: address is longer than {} bytes", MAX_ADDRESS - 1));
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        }
        // SAFETY: `len` readable bytes before the NUL found just above; read at once, not kept.
        let bytes = unsafe { std::slice::from_raw_parts(address.cast::<u8>(), len) };
        let Ok(text) = std::str::from_utf8(bytes) else {
            c.log(&format!("junos_sync_set_address: {:?} is not an address", String::from_utf8_lossy(bytes)));
            return junos_sync_status_t::JUNOS_SYNC_ERR_INVALID;
        };
        status(c.set_address(text, port))
    }
}

//! The memory bound: one bound over everything in flight.
//!
//! In: what the reader takes for each chunk of entries it reads, what the read buffers and
//! the stages hold, what each request body holds while it exists; what is given back when a
//! sink is done with a batch. Out: the reader waits at the bound, so the files, not the
//! heap, are the buffer while a sink is slow or down; `tailrace_memory_in_flight_bytes`.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::observe::server::Health;

/// One bound over what is in flight: every entry read and not yet accepted by Loki, the
/// read buffers that hold partial lines, and the encoded request bodies. At the bound the
/// reader waits: the files are the buffer.
///
/// With several tenants, no tenant's entries may hold more than half the bound
/// ([`tenant_room`](Self::tenant_room)): the reader leaves that tenant's files alone until
/// Loki takes some, so a tenant Loki throttles cannot fill the bound and stop the others.
pub struct MemoryBudget {
    state: Mutex<InFlight>,
    freed: Condvar,
    max: usize,
    /// The most one tenant's entries may hold: the bound with one tenant, half with more.
    tenant_share: usize,
    /// `tailrace_memory_in_flight_bytes`, kept equal to the total.
    gauge: prometheus_client::metrics::gauge::Gauge,
    /// Told when entries begin to wait and when none wait any more (for `/ready`).
    health: Option<Arc<Health>>,
}

#[derive(Default)]
struct InFlight {
    entries: usize,
    /// `entries`, per tenant.
    by_tenant: HashMap<Arc<str>, usize>,
    buffers: usize,
    bodies: usize,
    closed: bool,
    /// `entries > 0` as last told to the health state.
    waiting: bool,
}

impl InFlight {
    fn total(&self) -> usize {
        self.entries + self.buffers + self.bodies
    }
}

impl MemoryBudget {
    /// A bound of `max` bytes, reported in `gauge` as it changes.
    pub fn new(max: usize, gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        Self {
            state: Mutex::new(InFlight::default()),
            freed: Condvar::new(),
            max,
            tenant_share: max,
            gauge,
            health: None,
        }
    }

    /// Tells `health` when entries begin to wait and when none wait any more, so `/ready`
    /// counts a stall from the moment entries began to wait.
    pub fn reporting_to(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// Lines go to `tenants` tenants: with more than one, each may hold half the bound.
    pub fn with_tenants(mut self, tenants: usize) -> Self {
        self.tenant_share = if tenants > 1 { self.max / 2 } else { self.max };
        self
    }

    /// Takes `n` bytes for an entry of `tenant`, waiting while that would pass the bound
    /// (when no entry is in flight one is let through whatever its size, so buffers and
    /// bodies alone can never stop the pipeline), and returns the bytes now in use. `None`
    /// when closed.
    pub fn acquire(&self, tenant: &Arc<str>, n: usize) -> Option<usize> {
        let mut st = self.state.lock().expect("memory lock");
        while st.entries > 0 && st.total() + n > self.max && !st.closed {
            st = self.freed.wait(st).expect("memory lock");
        }
        if st.closed {
            return None;
        }
        st.entries += n;
        match st.by_tenant.get_mut(&**tenant) {
            Some(held) => *held += n,
            None => {
                st.by_tenant.insert(Arc::clone(tenant), n);
            }
        }
        self.publish(&mut st);
        Some(st.total())
    }

    /// Gives back bytes of `tenant`'s entries (Loki accepted them, or they were given up).
    pub fn release(&self, tenant: &str, n: usize) {
        self.update(|st| {
            st.entries = st.entries.saturating_sub(n);
            if let Some(held) = st.by_tenant.get_mut(tenant) {
                *held = held.saturating_sub(n);
            }
        });
    }

    /// How many more bytes `tenant`'s entries may take before it holds its share.
    pub fn tenant_room(&self, tenant: &str) -> usize {
        let st = self.state.lock().expect("memory lock");
        let held = st.by_tenant.get(tenant).copied().unwrap_or(0);
        self.tenant_share.saturating_sub(held)
    }

    /// Whether a tenant's share can be reached at all (several tenants).
    pub fn shared(&self) -> bool {
        self.tenant_share < self.max
    }

    /// The read buffers now hold `n` bytes (set by the reader after each poll).
    pub fn set_buffers(&self, n: usize) {
        self.update(|st| st.buffers = n);
    }

    /// A request body of `n` bytes exists until [`release_body`](Self::release_body).
    pub fn hold_body(&self, n: usize) {
        self.update(|st| st.bodies += n);
    }

    pub fn release_body(&self, n: usize) {
        self.update(|st| st.bodies = st.bodies.saturating_sub(n));
    }

    fn update(&self, change: impl FnOnce(&mut InFlight)) {
        let mut st = self.state.lock().expect("memory lock");
        change(&mut st);
        self.publish(&mut st);
        self.freed.notify_all();
    }

    /// The gauge, and the health state when entries began or stopped waiting.
    fn publish(&self, st: &mut InFlight) {
        self.gauge.set(st.total() as i64);
        let waiting = st.entries > 0;
        if waiting != st.waiting {
            st.waiting = waiting;
            if let Some(health) = &self.health {
                health.set_entries_waiting(waiting, Instant::now());
            }
        }
    }

    /// Wakes waiters and refuses further takes.
    pub fn close(&self) {
        self.update(|st| st.closed = true);
    }

    /// Everything in flight, in bytes.
    pub fn in_use(&self) -> usize {
        self.state.lock().expect("memory lock").total()
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn memory_budget_blocks_at_the_bound_and_lets_one_big_entry_through() {
        let m = Arc::new(MemoryBudget::new(100, Default::default()));
        let t: Arc<str> = Arc::from("");
        assert_eq!(m.acquire(&t, 500), Some(500), "alone, a big entry passes");
        let (m2, t2) = (Arc::clone(&m), Arc::clone(&t));
        let waiter = std::thread::spawn(move || m2.acquire(&t2, 10));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "must wait for room");
        m.release(&t, 500);
        assert_eq!(waiter.join().unwrap(), Some(10));
        assert_eq!(m.in_use(), 10);
        m.close();
        assert_eq!(m.acquire(&t, 1000), None);
    }

    #[test]
    fn entries_beginning_and_ending_to_wait_reach_the_health_state() {
        let health = Arc::new(Health::new(Duration::ZERO));
        health.set_positions_loaded();
        health.set_discovery_done();
        let m = MemoryBudget::new(100, Default::default()).reporting_to(Arc::clone(&health));
        let t: Arc<str> = Arc::from("");
        let later = || Instant::now() + Duration::from_secs(1);
        m.set_buffers(50);
        assert!(
            health.readiness(later()).ready,
            "buffers alone are not waiting entries"
        );
        m.acquire(&t, 10);
        assert!(
            !health.readiness(later()).ready,
            "an entry waits, nothing accepted"
        );
        m.release(&t, 10);
        assert!(health.readiness(later()).ready, "nothing waits any more");
    }

    #[test]
    fn buffers_and_bodies_count_against_the_bound() {
        let m = Arc::new(MemoryBudget::new(100, Default::default()));
        let t: Arc<str> = Arc::from("");
        assert_eq!(m.acquire(&t, 10), Some(10));
        m.set_buffers(50);
        m.hold_body(30);
        assert_eq!(m.in_use(), 90);
        let (m2, t2) = (Arc::clone(&m), Arc::clone(&t));
        let waiter = std::thread::spawn(move || m2.acquire(&t2, 20));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "10 + 50 + 30 + 20 is over 100");
        m.release_body(30);
        assert_eq!(waiter.join().unwrap(), Some(80));
        // With no entry in flight, one passes even when buffers alone fill the bound.
        m.release(&t, 30);
        m.set_buffers(500);
        assert_eq!(m.acquire(&t, 5), Some(505));
    }

    #[test]
    fn a_tenant_holds_at_most_half_the_bound_when_there_are_several() {
        let one = MemoryBudget::new(100, Default::default()).with_tenants(1);
        assert!(!one.shared());
        let m = MemoryBudget::new(100, Default::default()).with_tenants(2);
        assert!(m.shared());
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert_eq!(m.tenant_room("a"), 50);
        m.acquire(&a, 45);
        assert_eq!((m.tenant_room("a"), m.tenant_room("b")), (5, 50));
        m.acquire(&a, 10);
        assert_eq!(
            m.tenant_room("a"),
            0,
            "over its share: no room, not an underflow"
        );
        m.acquire(&b, 20);
        m.release("a", 55);
        assert_eq!((m.tenant_room("a"), m.tenant_room("b")), (50, 30));
        assert_eq!(m.in_use(), 20);
    }
}

//! The receive ring accounting itself (`struct if_rxring`) and the refill
//! reservation.

use crate::RxRingError;

/// Receive ring accounting with adaptive watermarks: OpenBSD's `if_rxring`.
///
/// A driver posts empty buffers to its rx descriptor ring and the hardware
/// fills them. `RxRing` decides how many buffers may be on the ring at once:
///
/// * `alive` ([`inuse`](Self::inuse)): slots handed to the hardware and not yet
///   taken back;
/// * `cwm` ([`cwm`](Self::cwm)), the current watermark: `get` never lets
///   `alive` exceed it;
/// * `lwm` and `hwm`: the bounds `cwm` moves between;
/// * `adjusted`: the tick of the last adjustment; `cwm` moves by at most one
///   per tick.
///
/// The current watermark **grows** by one (up to `hwm`) in [`get`](Self::get)
/// when at least one tick has passed and the ring ran below `lwm` (the
/// hardware is consuming buffers faster than the driver posts them), and
/// **shrinks** by one (down to `lwm`) in [`livelocked`](Self::livelocked) when
/// the stack above reports it cannot keep up, so fewer buffers are spent on
/// packets that would be dropped anyway. Both share the once-per-tick gate.
///
/// Not internally synchronised: every method takes `&mut self`. Keep the ring
/// under the driver's rx mutex (the seed-000 em(4) `rx_mtx`), or use
/// [`LockedRxRing`](crate::LockedRxRing), whose guard is the proof of holding
/// it.
///
/// # Ticks
///
/// Time is injected: every method that may adjust `cwm` takes `now`, a `u64`
/// tick count from whatever clock the caller keeps (the kernel's `ticks`, a
/// timer interrupt count). The counter may wrap: the elapsed time is
/// `now - adjusted` in wrapping arithmetic, read as signed like the kernel's
/// `int` ticks, so `u64::MAX` → `0` is one tick and a `now` slightly *behind*
/// the last adjustment (a tick read on another CPU) counts as no time passed.
/// A kernel whose `ticks` is a 32-bit `int` passes
/// [`ring.widen_ticks(ticks)`](Self::widen_ticks) as `now`, which keeps its
/// signed 32-bit arithmetic across the 2³¹ and 2³² wraps.
///
/// # Examples
///
/// The refill and completion paths of a driver (em(4)'s `em_rxfill` and
/// `em_rxeof`):
///
/// ```
/// use mpsafe_rxring::RxRing;
///
/// # fn main() -> Result<(), mpsafe_rxring::RxRingError> {
/// let mut now = 100;
/// let mut ring = RxRing::new(4, 1024, now)?;
///
/// // Refill: ask for up to a whole ring; the watermark says how many.
/// assert_eq!(ring.get(1024, now), 4);
/// assert_eq!(ring.inuse(), 4);
///
/// // Completion: the hardware filled three buffers; take them back.
/// ring.put(3)?;
/// assert!(ring.needs_refill()); // 1 < lwm
///
/// // A tick later the ring ran below lwm, so the watermark grows by one.
/// now += 1;
/// assert_eq!(ring.get(1024, now), 4); // up to cwm = 5
/// assert_eq!(ring.cwm(), 5);
///
/// // The stack could not keep up: back off by one (once per tick).
/// now += 1;
/// ring.livelocked(now);
/// assert_eq!(ring.cwm(), 4);
///
/// // Down: no further refill can succeed; the driver frees what was posted.
/// assert_eq!(ring.teardown(), 5);
/// assert_eq!(ring.get(1024, now + 10), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxRing {
    /// Tick of the last adjustment (or of `init`).
    adjusted: u64,
    /// Slots handed out by `get` and not yet `put` back.
    alive: u32,
    /// Current watermark: `get` never takes `alive` above it.
    cwm: u32,
    /// Low watermark: floor of `cwm`; below it the ring "needs refill".
    lwm: u32,
    /// High watermark: ceiling of `cwm`.
    hwm: u32,
}

impl Default for RxRing {
    /// A torn-down ring, like a zeroed `struct if_rxring`: every
    /// [`get`](RxRing::get) returns 0 until [`init`](RxRing::init).
    fn default() -> Self {
        Self::torn_down()
    }
}

/// `true` if at least one tick passed from `since` to `now`: the kernel's
/// `ticks - rxr_adjusted >= 1` on `int` ticks, on wrapping `u64` ticks.
#[inline]
const fn tick_passed(now: u64, since: u64) -> bool {
    // Reinterpreting the wrapped difference as signed is the point: a `now`
    // up to 2^63 ticks ahead counts as elapsed, one behind does not.
    (now.wrapping_sub(since) as i64) >= 1
}

/// Checks a watermark pair for `init`; `(0, 0)` (teardown) is valid.
const fn check_watermarks(lwm: u32, hwm: u32) -> Result<(), RxRingError> {
    if lwm > hwm {
        Err(RxRingError::LowAboveHigh { lwm, hwm })
    } else if lwm == 0 && hwm != 0 {
        Err(RxRingError::ZeroLow { hwm })
    } else {
        Ok(())
    }
}

impl RxRing {
    /// A ring with watermarks `lwm ..= hwm`, the current watermark at `lwm`,
    /// nothing in use, initialised at tick `now` (`if_rxr_init`).
    ///
    /// `lwm` is the fewest buffers the ring should run with (em(4) uses
    /// `max(4, 2 * (hardmtu / MCLBYTES + 1))`), `hwm` the most (em(4): the
    /// number of descriptors).
    ///
    /// # Errors
    ///
    /// [`RxRingError::LowAboveHigh`] if `lwm > hwm`, [`RxRingError::ZeroLow`]
    /// if `lwm == 0 < hwm`. `new(0, 0, now)` is valid and equals
    /// [`torn_down`](Self::torn_down).
    pub const fn new(lwm: u32, hwm: u32, now: u64) -> Result<Self, RxRingError> {
        match check_watermarks(lwm, hwm) {
            Ok(()) => Ok(Self {
                adjusted: now,
                alive: 0,
                cwm: lwm,
                lwm,
                hwm,
            }),
            Err(e) => Err(e),
        }
    }

    /// A torn-down ring (all zero, like the kernel's zeroed softc): every
    /// [`get`](Self::get) returns 0 until [`init`](Self::init) gives it
    /// watermarks.
    pub const fn torn_down() -> Self {
        Self {
            adjusted: 0,
            alive: 0,
            cwm: 0,
            lwm: 0,
            hwm: 0,
        }
    }

    /// Re-initialises the ring at tick `now` (`if_rxr_init`): watermarks
    /// `lwm ..= hwm`, current watermark `lwm`, **nothing in use**.
    ///
    /// Returns how many slots were in use before: the buffers still posted to
    /// the descriptor ring are no longer counted here and are the caller's to
    /// free (this is how a driver going down ends with zero buffers on the
    /// ring in `systat mbuf`).
    ///
    /// `init(0, 0, now)` is the teardown form (see [`teardown`](Self::teardown)):
    /// afterwards every [`get`](Self::get) returns 0, so a completion path
    /// that runs only while [`inuse`](Self::inuse) is non-zero, and a refill
    /// path that posts only what `get` grants, cannot touch a ring that is
    /// being freed.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); on error the ring is unchanged.
    pub fn init(&mut self, lwm: u32, hwm: u32, now: u64) -> Result<u32, RxRingError> {
        let ring = Self::new(lwm, hwm, now)?;
        Ok(core::mem::replace(self, ring).alive)
    }

    /// Re-initialises the ring like [`init`](Self::init), but with the
    /// current watermark starting at `cwm` (clamped into `lwm ..= hwm`)
    /// instead of at `lwm`.
    ///
    /// Seed 000 on tearing the ring down with `if_rxr_init(0, 0)`: "it also
    /// resets the water marks, which may or may not be a good idea". A
    /// driver that wants the watermark its traffic had grown to back after
    /// `down`/`up` reads [`cwm`](Self::cwm) before [`teardown`](Self::teardown)
    /// and passes it here; the ring then posts that many buffers on the
    /// first refill instead of growing back by one per tick from `lwm`.
    /// With `cwm <= lwm` this is exactly `init`.
    ///
    /// ```
    /// use mpsafe_rxring::RxRing;
    ///
    /// let mut ring = RxRing::new(4, 64, 0)?;
    /// let mut now = 0;
    /// for _ in 0..20 {
    ///     now += 1; // the ring ran empty every tick: it grows
    ///     ring.get(64, now);
    ///     ring.put(ring.inuse())?;
    /// }
    /// assert_eq!(ring.cwm(), 24);
    ///
    /// let kept = ring.cwm();
    /// ring.teardown(); // down
    /// ring.init_with_cwm(4, 64, kept, now)?; // up, keeping the watermark
    /// assert_eq!(ring.get(64, now), 24); // the whole watermark at once
    ///
    /// ring.teardown();
    /// ring.init(4, 64, now)?; // up, watermarks reset (seed 000)
    /// assert_eq!(ring.get(64, now), 4);
    /// # Ok::<(), mpsafe_rxring::RxRingError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new); on error the ring is unchanged.
    pub fn init_with_cwm(
        &mut self,
        lwm: u32,
        hwm: u32,
        cwm: u32,
        now: u64,
    ) -> Result<u32, RxRingError> {
        let mut ring = Self::new(lwm, hwm, now)?;
        // lwm <= hwm was checked by `new`, so the clamp cannot panic.
        ring.cwm = cwm.clamp(lwm, hwm);
        Ok(core::mem::replace(self, ring).alive)
    }

    /// Tears the ring down (`if_rxr_init(rxr, 0, 0)`): watermarks and use
    /// count to zero, so every later [`get`](Self::get) returns 0 until the
    /// next [`init`](Self::init).
    ///
    /// Returns how many slots were in use: those buffers are still on the
    /// descriptor ring, no longer counted, and the caller frees them. The
    /// adjustment tick is left as it was (with zero watermarks it cannot
    /// matter).
    pub fn teardown(&mut self) -> u32 {
        let alive = self.alive;
        *self = Self {
            adjusted: self.adjusted,
            ..Self::torn_down()
        };
        alive
    }

    /// Reserves up to `max` slots for refilling (`if_rxr_get`) and returns how
    /// many were granted; the caller posts that many buffers, and
    /// [`put`](Self::put)s back any it could not allocate.
    ///
    /// First, if at least one tick passed since the last adjustment and fewer
    /// than `lwm` slots are in use, the current watermark grows by one (not
    /// past `hwm`) and the adjustment tick becomes `now`. Then the grant is
    /// `min(cwm - inuse, max)`, or 0 if `inuse >= cwm` (as after a
    /// [livelock](Self::livelocked) shrink). Never returns more than `max`.
    ///
    /// Prefer [`reserve`](Self::reserve) in refill loops: it returns unused
    /// slots by itself.
    #[inline]
    pub fn get(&mut self, max: u32, now: u64) -> u32 {
        if tick_passed(now, self.adjusted) {
            self.adjust_cwm(now);
        }
        if self.alive >= self.cwm {
            return 0;
        }
        let granted = (self.cwm - self.alive).min(max);
        // Cannot overflow: alive + granted <= cwm.
        self.alive += granted;
        granted
    }

    /// The growth half of the watermark adjustment; called at most once per
    /// tick from `get`.
    #[inline]
    fn adjust_cwm(&mut self, now: u64) {
        if self.alive >= self.lwm {
            // Enough buffers on the ring: no reason to grow, and the tick is
            // not spent (a livelock report this tick may still shrink).
            return;
        }
        if self.cwm < self.hwm {
            self.cwm += 1;
        }
        // Spent even at hwm, as the kernel does: an adjustment happened.
        self.adjusted = now;
    }

    /// Reserves up to `max` slots like [`get`](Self::get), as a [`Fill`] that
    /// gives back, when dropped, every slot not
    /// [committed](Fill::take_one) to a posted buffer.
    ///
    /// ```
    /// use mpsafe_rxring::RxRing;
    ///
    /// let mut ring = RxRing::new(8, 16, 0).unwrap();
    /// let mut pool = vec![(); 5]; // only five buffers to be had
    ///
    /// let mut fill = ring.reserve(16, 0);
    /// while !fill.is_empty() {
    ///     let Some(buf) = pool.pop() else { break }; // allocation failed
    ///     let _ = buf; // ... post it to the next descriptor ...
    ///     fill.take_one();
    /// }
    /// assert_eq!(fill.finish(), 5);
    /// assert_eq!(ring.inuse(), 5); // the three unused slots came back
    /// ```
    #[inline]
    pub fn reserve(&mut self, max: u32, now: u64) -> Fill<'_> {
        let left = self.get(max, now);
        Fill {
            ring: self,
            left,
            used: 0,
        }
    }

    /// Releases `n` slots (`if_rxr_put`): buffers the hardware filled and the
    /// driver took off the ring, or reserved slots it did not fill.
    ///
    /// # Errors
    ///
    /// [`RxRingError::OverRelease`] if `n` exceeds [`inuse`](Self::inuse);
    /// the ring is unchanged (C's `rxr_alive -= n` would wrap).
    #[inline]
    pub fn put(&mut self, n: u32) -> Result<(), RxRingError> {
        match self.alive.checked_sub(n) {
            Some(alive) => {
                self.alive = alive;
                Ok(())
            }
            None => Err(RxRingError::OverRelease {
                released: n,
                inuse: self.alive,
            }),
        }
    }

    /// Reports that the system could not keep up with the packets this ring
    /// delivered (`if_rxr_livelocked`; em(4) calls it when `ifiq_input`
    /// reports pressure): if at least one tick passed since the last
    /// adjustment, the current watermark shrinks by one, never below `lwm`,
    /// and the adjustment tick becomes `now`.
    ///
    /// Slots already in use stay in use; `get` grants nothing until enough
    /// are put back to go below the new watermark.
    #[inline]
    pub fn livelocked(&mut self, now: u64) {
        if tick_passed(now, self.adjusted) {
            if self.cwm > self.lwm {
                self.cwm -= 1;
            }
            self.adjusted = now;
        }
    }

    /// Slots in use: handed out by `get` and not put back
    /// (`if_rxr_inuse`). A completion path with nothing in use has nothing
    /// to look at, which after [`teardown`](Self::teardown) keeps it off a
    /// ring being freed.
    #[inline]
    #[must_use]
    pub const fn inuse(&self) -> u32 {
        self.alive
    }

    /// The current watermark (`if_rxr_cwm`).
    #[inline]
    #[must_use]
    pub const fn cwm(&self) -> u32 {
        self.cwm
    }

    /// The low watermark.
    #[inline]
    #[must_use]
    pub const fn lwm(&self) -> u32 {
        self.lwm
    }

    /// The high watermark (0 when torn down).
    #[inline]
    #[must_use]
    pub const fn hwm(&self) -> u32 {
        self.hwm
    }

    /// The `u64` tick that a 32-bit kernel tick `ticks` stands for, to pass
    /// as `now`: OpenBSD's `int ticks` wraps at 2³², and its
    /// `ticks - rxr_adjusted` is a signed 32-bit difference.
    ///
    /// Returns the last adjustment tick plus that signed difference, so the
    /// ring sees exactly the kernel's elapsed time: the 2³¹ and 2³² wraps
    /// are one tick like any other, a tick read slightly behind stays
    /// behind, and (as in the kernel) a tick more than 2³¹ − 1 ahead of the
    /// last adjustment reads as behind. Passing `u64::from(ticks)` instead
    /// would make time jump back 2³² at the wrap and freeze the watermarks.
    ///
    /// ```
    /// use mpsafe_rxring::RxRing;
    ///
    /// let mut kernel_ticks: u32 = u32::MAX; // about to wrap
    /// let mut ring = RxRing::new(2, 8, u64::from(kernel_ticks))?;
    /// kernel_ticks = kernel_ticks.wrapping_add(1); // 0
    /// assert_eq!(ring.get(8, ring.widen_ticks(kernel_ticks)), 3); // grew
    /// # Ok::<(), mpsafe_rxring::RxRingError>(())
    /// ```
    #[inline]
    #[must_use]
    pub const fn widen_ticks(&self, ticks: u32) -> u64 {
        // Truncating `adjusted` to 32 bits and the difference to `i32` is the
        // point: the kernel's `int` arithmetic.
        let elapsed = ticks.wrapping_sub(self.adjusted as u32) as i32;
        self.adjusted.wrapping_add_signed(elapsed as i64)
    }

    /// The tick of the last watermark adjustment (or of `init`).
    #[inline]
    #[must_use]
    pub const fn adjusted(&self) -> u64 {
        self.adjusted
    }

    /// `true` if fewer than `lwm` slots are in use (`if_rxr_needrefill`): a
    /// driver whose refill got nothing posted schedules a retry (em(4):
    /// `timeout_add(&rx_refill, 1)`). Never true for a torn-down ring.
    #[inline]
    #[must_use]
    pub const fn needs_refill(&self) -> bool {
        self.alive < self.lwm
    }

    /// A plain snapshot for statistics (`struct if_rxring_info`), as shown by
    /// `systat mbuf`; see [`RxRingInfoTable`](crate::RxRingInfoTable).
    #[must_use]
    pub const fn info(&self, name: crate::RxRingName, size: u32) -> crate::RxRingInfo {
        crate::RxRingInfo {
            name,
            size,
            adjusted: self.adjusted,
            alive: self.alive,
            cwm: self.cwm,
            lwm: self.lwm,
            hwm: self.hwm,
        }
    }
}

/// Slots reserved by [`RxRing::reserve`] for one refill pass; the slots not
/// committed go back to the ring when it is dropped.
///
/// This is `for (slots = if_rxr_get(..); slots > 0; slots--) { .. break; }
/// if_rxr_put(.., slots);` with the final `put` done by `Drop`, so a refill
/// that stops early (buffer allocation failed, `?` returned an error, a
/// panic unwound) cannot leak accounting.
///
/// A `Fill` borrows the ring mutably, so it ends before the lock that guards
/// the ring is released. Under [`LockedRxRing`](crate::LockedRxRing), take it
/// from [`RxRingGuard::split`](crate::RxRingGuard::split) to keep the
/// descriptor state usable alongside it.
///
/// Leaking a `Fill` (`mem::forget`) keeps its unused slots counted as in use:
/// the ring grants less, never more.
#[derive(Debug)]
#[must_use = "dropping a Fill at once gives every reserved slot back"]
pub struct Fill<'a> {
    ring: &'a mut RxRing,
    /// Reserved and not yet committed; given back on drop.
    left: u32,
    /// Committed to posted buffers.
    used: u32,
}

impl Fill<'_> {
    /// Reserved slots not yet committed.
    #[inline]
    #[must_use]
    pub const fn len(&self) -> u32 {
        self.left
    }

    /// `true` if no reserved slot is left to fill.
    #[inline]
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// Slots committed so far.
    #[inline]
    #[must_use]
    pub const fn committed(&self) -> u32 {
        self.used
    }

    /// Commits one reserved slot to a buffer just posted. Returns `false`,
    /// changing nothing, if none is left.
    #[inline]
    pub fn take_one(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.used += 1;
        true
    }

    /// Commits `n` reserved slots to buffers just posted.
    ///
    /// # Errors
    ///
    /// [`RxRingError::OverCommit`] if fewer than `n` are left; nothing
    /// changes.
    #[inline]
    pub fn commit(&mut self, n: u32) -> Result<(), RxRingError> {
        if n > self.left {
            return Err(RxRingError::OverCommit {
                committed: n,
                left: self.left,
            });
        }
        self.left -= n;
        self.used += n;
        Ok(())
    }

    /// Ends the reservation, giving the uncommitted slots back, and returns
    /// how many were committed (em(4)'s `post`).
    #[inline]
    pub fn finish(self) -> u32 {
        self.used
        // `self` drops here and gives `left` back.
    }
}

impl Drop for Fill<'_> {
    #[inline]
    fn drop(&mut self) {
        // `reserve` added `left + used` to `alive` and the exclusive borrow
        // kept everyone else away since, so `alive >= left` and this cannot
        // underflow.
        self.ring.alive -= self.left;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a ring with 32-bit kernel ticks `start, start+1, ...` (always
    /// below lwm, so each tick may grow cwm by one) and returns cwm after
    /// `n` ticks. `to_now` turns the 32-bit tick into the `now` passed.
    fn grow_over(start: u32, n: u32, to_now: impl Fn(&RxRing, u32) -> u64) -> u32 {
        let mut r = RxRing::new(2, 1000, u64::from(start)).unwrap();
        for i in 1..=n {
            let ticks = start.wrapping_add(i);
            let now = to_now(&r, ticks);
            let got = r.get(1000, now);
            r.put(got).unwrap();
        }
        r.cwm()
    }

    #[test]
    fn widened_32_bit_ticks_keep_growing_across_2_31_and_2_32() {
        for start in [0x7FFF_FFF0_u32, 0xFFFF_FFF0] {
            // 32 ticks across the boundary: cwm grows by one per tick, from
            // lwm (2) to 34, as on the kernel's int ticks.
            assert_eq!(
                grow_over(start, 32, |r, t| r.widen_ticks(t)),
                2 + 32,
                "{start:#x}"
            );
        }
    }

    #[test]
    fn widen_ticks_is_the_kernels_signed_32_bit_difference() {
        let r = RxRing::new(2, 8, 0xFFFF_FFFF).unwrap();
        assert_eq!(r.widen_ticks(0xFFFF_FFFF), 0xFFFF_FFFF);
        assert_eq!(r.widen_ticks(0), 0x1_0000_0000, "the 2^32 wrap is one tick");
        assert_eq!(
            r.widen_ticks(0xFFFF_FFFE),
            0xFFFF_FFFE,
            "a tick behind stays behind"
        );
        let r = RxRing::new(2, 8, 0x7FFF_FFFF).unwrap();
        assert_eq!(
            r.widen_ticks(0x8000_0000),
            0x8000_0000,
            "the 2^31 wrap is one tick"
        );
        // From tick 0 (adjusted 0): 2^31 - 1 ahead is ahead, 2^31 ahead reads
        // as behind, exactly like `ticks - rxr_adjusted` on int ticks.
        let r = RxRing::new(2, 8, 0).unwrap();
        assert_eq!(r.widen_ticks(0x7FFF_FFFF), 0x7FFF_FFFF);
        assert_eq!(r.widen_ticks(0x8000_0000), 0u64.wrapping_sub(0x8000_0000));
    }

    #[test]
    fn unwidened_32_bit_ticks_freeze_at_the_2_32_wrap() {
        // Why the widening exists: passing the 32-bit tick straight through
        // makes time jump back 2^32 at the wrap, and growth stops.
        assert!(grow_over(0xFFFF_FFF0, 32, |_, t| u64::from(t)) < 2 + 32);
    }

    fn ring(lwm: u32, hwm: u32) -> RxRing {
        RxRing::new(lwm, hwm, 0).unwrap()
    }

    #[test]
    fn init_with_cwm_starts_at_the_kept_watermark_clamped() {
        let mut r = ring(4, 16);
        assert_eq!(r.get(3, 0), 3);
        // Returns what was in use, like `init`; nothing is in use after.
        assert_eq!(r.init_with_cwm(4, 16, 10, 9), Ok(3));
        assert_eq!(
            (r.inuse(), r.cwm(), r.lwm(), r.hwm(), r.adjusted()),
            (0, 10, 4, 16, 9)
        );
        // The whole kept watermark is granted at once, in the same tick.
        assert_eq!(r.get(100, 9), 10);
        // Clamped into lwm..=hwm.
        r.init_with_cwm(4, 16, 99, 9).unwrap();
        assert_eq!(r.cwm(), 16);
        r.init_with_cwm(4, 16, 1, 9).unwrap();
        assert_eq!(r, RxRing::new(4, 16, 9).unwrap(), "below lwm: plain init");
        // Teardown form and errors as `init`.
        r.init_with_cwm(0, 0, 7, 9).unwrap();
        assert_eq!(r.get(100, 50), 0);
        let before = r.clone();
        assert_eq!(
            r.init_with_cwm(5, 4, 5, 0),
            Err(RxRingError::LowAboveHigh { lwm: 5, hwm: 4 })
        );
        assert_eq!(
            r.init_with_cwm(0, 8, 5, 0),
            Err(RxRingError::ZeroLow { hwm: 8 })
        );
        assert_eq!(r, before);
    }

    #[test]
    fn init_starts_at_lwm_with_nothing_in_use() {
        let r = RxRing::new(4, 16, 7).unwrap();
        assert_eq!(
            (r.inuse(), r.cwm(), r.lwm(), r.hwm(), r.adjusted()),
            (0, 4, 4, 16, 7)
        );
        assert!(r.needs_refill());
    }

    #[test]
    fn bad_watermarks_are_errors_that_change_nothing() {
        assert_eq!(
            RxRing::new(5, 4, 0),
            Err(RxRingError::LowAboveHigh { lwm: 5, hwm: 4 })
        );
        assert_eq!(
            RxRing::new(1, 0, 0),
            Err(RxRingError::LowAboveHigh { lwm: 1, hwm: 0 })
        );
        assert_eq!(RxRing::new(0, 8, 0), Err(RxRingError::ZeroLow { hwm: 8 }));

        let mut r = ring(2, 8);
        assert_eq!(r.get(3, 0), 2);
        let before = r.clone();
        assert!(r.init(9, 8, 5).is_err());
        assert!(r.init(0, 8, 5).is_err());
        assert_eq!(r, before);
    }

    #[test]
    fn equal_watermarks_are_fine() {
        let mut r = ring(8, 8);
        assert_eq!(r.get(100, 0), 8);
        r.put(8).unwrap();
        assert_eq!(r.get(100, 1), 8);
        assert_eq!(r.cwm(), 8);
    }

    #[test]
    fn get_is_bounded_by_max_and_cwm() {
        let mut r = ring(4, 16);
        assert_eq!(r.get(3, 0), 3);
        assert_eq!(r.get(3, 0), 1); // cwm - alive
        assert_eq!(r.get(3, 0), 0);
        assert_eq!(r.inuse(), 4);
        assert_eq!(r.get(0, 0), 0);
    }

    #[test]
    fn growth_needs_a_tick_and_a_ring_below_lwm() {
        let mut r = ring(4, 16);
        // Same tick as init: no growth.
        assert_eq!(r.get(16, 0), 4);
        r.put(4).unwrap();
        assert_eq!(r.get(16, 0), 4);
        assert_eq!(r.cwm(), 4);
        // Next tick but ring at lwm (alive 4 >= lwm 4): no growth.
        assert_eq!(r.get(16, 1), 0);
        assert_eq!((r.cwm(), r.adjusted()), (4, 0));
        // Ring drained below lwm: grow by one, adjusted moves.
        r.put(1).unwrap();
        assert_eq!(r.get(16, 1), 2);
        assert_eq!((r.cwm(), r.adjusted(), r.inuse()), (5, 1, 5));
    }

    #[test]
    fn no_growth_twice_within_one_tick() {
        let mut r = ring(4, 16);
        r.get(16, 0);
        r.put(4).unwrap();
        assert_eq!(r.get(16, 1), 5);
        r.put(5).unwrap(); // below lwm again, same tick
        assert_eq!(r.get(16, 1), 5);
        assert_eq!(r.cwm(), 5);
        r.put(5).unwrap();
        assert_eq!(r.get(16, 2), 6); // next tick: grows again
    }

    #[test]
    fn growth_never_above_hwm() {
        let mut r = ring(2, 4);
        for now in 1..100 {
            r.put(r.inuse()).unwrap();
            r.get(100, now);
            assert!(r.cwm() <= 4);
        }
        assert_eq!(r.cwm(), 4);
        assert_eq!(r.inuse(), 4);
    }

    #[test]
    fn growth_attempt_at_hwm_still_spends_the_tick() {
        let mut r = ring(2, 2);
        r.get(2, 5);
        r.put(2).unwrap();
        r.get(0, 6); // below lwm, cwm == hwm: adjusted = 6 anyway
        assert_eq!((r.cwm(), r.adjusted()), (2, 6));
    }

    #[test]
    fn livelock_shrinks_once_per_tick_never_below_lwm() {
        let mut r = ring(2, 8);
        for now in 1..=6 {
            r.put(r.inuse()).unwrap();
            r.get(8, now);
        }
        assert_eq!(r.cwm(), 8);
        r.livelocked(6); // same tick as the last growth: nothing
        assert_eq!(r.cwm(), 8);
        r.livelocked(7);
        assert_eq!((r.cwm(), r.adjusted()), (7, 7));
        r.livelocked(7); // twice in one tick: once
        assert_eq!(r.cwm(), 7);
        for now in 8..100 {
            r.livelocked(now);
            assert!(r.cwm() >= 2);
        }
        assert_eq!(r.cwm(), 2);
        // At lwm the tick is still spent.
        r.livelocked(100);
        assert_eq!((r.cwm(), r.adjusted()), (2, 100));
    }

    #[test]
    fn livelock_and_growth_share_the_tick() {
        let mut r = ring(2, 8);
        r.get(8, 0);
        r.put(2).unwrap();
        r.livelocked(1); // cwm == lwm: no shrink, but tick 1 is spent
        assert_eq!(r.get(8, 1), 2); // below lwm, but no growth this tick
        assert_eq!(r.cwm(), 2);
    }

    #[test]
    fn shrink_below_inuse_grants_nothing_until_put() {
        let mut r = ring(2, 8);
        for now in 1..=6 {
            r.put(r.inuse()).unwrap();
            r.get(8, now);
        }
        assert_eq!(r.inuse(), 8);
        r.livelocked(7);
        r.livelocked(8);
        assert_eq!(r.cwm(), 6);
        assert_eq!(r.get(8, 8), 0);
        r.put(3).unwrap();
        assert_eq!(r.get(8, 8), 1);
        assert_eq!(r.inuse(), 6);
    }

    #[test]
    fn teardown_blocks_gets_and_reports_what_was_in_use() {
        let mut r = ring(4, 16);
        assert_eq!(r.get(16, 0), 4);
        assert_eq!(r.teardown(), 4);
        assert_eq!((r.inuse(), r.cwm(), r.lwm(), r.hwm()), (0, 0, 0, 0));
        for now in 0..50 {
            assert_eq!(r.get(u32::MAX, now), 0);
            r.livelocked(now);
            assert!(!r.needs_refill());
        }
        assert_eq!(r.cwm(), 0);
        // The freed buffers were not counted any more: putting them is an error.
        assert!(r.put(1).is_err());
        // init(0, 0, now) is the same teardown.
        let mut s = ring(4, 16);
        s.get(2, 0);
        assert_eq!(s.init(0, 0, 3), Ok(2));
        assert_eq!(s.get(16, 9), 0);
        assert_eq!(RxRing::default().get(16, 1), 0);
        // Re-init brings it back.
        assert_eq!(s.init(4, 16, 10), Ok(0));
        assert_eq!(s.get(16, 10), 4);
    }

    #[test]
    fn over_release_is_an_error_that_changes_nothing() {
        let mut r = ring(4, 16);
        r.get(3, 0);
        let before = r.clone();
        assert_eq!(
            r.put(4),
            Err(RxRingError::OverRelease {
                released: 4,
                inuse: 3
            })
        );
        assert_eq!(r, before);
        assert_eq!(r.put(3), Ok(()));
        assert_eq!(r.put(0), Ok(()));
        assert!(r.put(1).is_err());
    }

    #[test]
    fn ticks_wrap_like_the_kernel() {
        let start = u64::MAX - 1;
        let mut r = RxRing::new(2, 8, start).unwrap();
        r.get(8, start);
        r.put(2).unwrap();
        // MAX-1 -> MAX -> 0 -> 1: each a tick.
        for (i, now) in [u64::MAX, 0, 1].into_iter().enumerate() {
            r.put(r.inuse()).unwrap();
            r.get(8, now);
            assert_eq!(r.cwm(), 3 + i as u32);
            assert_eq!(r.adjusted(), now);
        }
        // A tick behind the last adjustment is not elapsed time.
        r.put(r.inuse()).unwrap();
        r.get(8, 0);
        assert_eq!(r.cwm(), 5);
        r.livelocked(0);
        assert_eq!(r.cwm(), 5);
        // Half the counter ahead still counts as elapsed.
        r.livelocked(1 + (1 << 62));
        assert_eq!(r.cwm(), 4);
    }

    #[test]
    fn tick_gate_matches_signed_difference() {
        assert!(!tick_passed(5, 5));
        assert!(tick_passed(6, 5));
        assert!(!tick_passed(4, 5));
        assert!(tick_passed(0, u64::MAX));
        assert!(!tick_passed(u64::MAX, 0));
        assert!(tick_passed(i64::MAX as u64, 0));
        assert!(!tick_passed(1 << 63, 0));
    }

    #[test]
    fn fill_returns_unused_slots() {
        let mut r = ring(8, 16);
        {
            let mut f = r.reserve(16, 0);
            assert_eq!(f.len(), 8);
            assert!(f.take_one());
            assert_eq!(f.commit(2), Ok(()));
            assert_eq!(
                f.commit(6),
                Err(RxRingError::OverCommit {
                    committed: 6,
                    left: 5
                })
            );
            assert_eq!((f.len(), f.committed()), (5, 3));
        }
        assert_eq!(r.inuse(), 3);

        let f = r.reserve(16, 0);
        drop(f); // nothing committed
        assert_eq!(r.inuse(), 3);

        let mut f = r.reserve(2, 0);
        while f.take_one() {}
        assert!(f.is_empty());
        assert!(!f.take_one());
        assert_eq!(f.finish(), 2);
        assert_eq!(r.inuse(), 5);
    }

    #[test]
    fn fill_adjusts_like_get() {
        let mut r = ring(4, 16);
        let f = r.reserve(16, 0);
        assert_eq!(f.len(), 4);
        drop(f);
        let f = r.reserve(16, 1);
        assert_eq!(f.len(), 5);
        drop(f);
        assert_eq!((r.cwm(), r.inuse()), (5, 0));
    }

    #[cfg(feature = "std")]
    #[test]
    fn fill_returns_slots_on_unwind() {
        extern crate std;
        let mut r = ring(4, 16);
        let res = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            let mut f = r.reserve(16, 0);
            f.take_one();
            panic!("allocation blew up");
        }));
        assert!(res.is_err());
        assert_eq!(r.inuse(), 1);
    }

    #[test]
    fn errors_display() {
        extern crate alloc;
        use alloc::string::ToString;
        let e = RxRingError::OverRelease {
            released: 2,
            inuse: 1,
        };
        assert_eq!(
            e.to_string(),
            "rx ring release of 2 slots but only 1 in use"
        );
        let _: &dyn core::error::Error = &e;
    }
}

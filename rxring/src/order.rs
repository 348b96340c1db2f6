//! The rx mutex under a lock order ([`mpsafe_order`]): a [`LockedRxRing`]
//! is a [`Lock`] whose guard is the [`RxRingGuard`] proof.
//!
//! ```
//! use mpsafe_order::{Ctx, Ordered};
//! use mpsafe_rxring::{LockedRxRing, RxRing};
//! use mpsafe_serializer::RawSerializer;
//!
//! mpsafe_order::lock_order! { pub Ifnet, pub RxMutex }
//!
//! let rx: Ordered<RxMutex, LockedRxRing<RawSerializer>> =
//!     Ordered::new(LockedRxRing::new(RxRing::new(2, 8, 0)?, ()));
//! let mut ctx = Ctx::new();
//! let (mut ring, _ctx) = ctx.lock(&rx);
//! assert_eq!(ring.get(4, 0), 2);
//! # Ok::<(), mpsafe_rxring::RxRingError>(())
//! ```

use lock_api::RawMutex;
use mpsafe_order::Lock;

use crate::locked::{LockedRxRing, RxRingGuard};

impl<R: RawMutex, T> Lock for LockedRxRing<R, T> {
    type Guard<'a>
        = RxRingGuard<'a, R, T>
    where
        Self: 'a;

    #[inline]
    fn lock(&self) -> RxRingGuard<'_, R, T> {
        LockedRxRing::lock(self)
    }

    #[inline]
    fn try_lock(&self) -> Option<RxRingGuard<'_, R, T>> {
        LockedRxRing::try_lock(self)
    }
}

//! The blocking serializer under a lock order ([`mpsafe_order`]).
//!
//! A [`Serializer`] (and a [`SerializerMutex`], as any `lock_api` mutex) is a
//! [`Lock`]: declare it at a level with [`Ordered`] and take it with
//! [`Ctx::lock`]. The interrupt-handler entries and "serialize all" go
//! through [`OrderedSerializer`] and [`OrderedSerializers`].
//!
//! [`SerializerMutex`]: crate::SerializerMutex

use mpsafe_order::{Ctx, Held, Level, Lock, LockBefore, Ordered};

use crate::blocking::{Serialized, SerializedAll, Serializer, enter_all};
use crate::wait::Wait;

impl<W: Wait> Lock for Serializer<W> {
    type Guard<'a>
        = Serialized<'a, W>
    where
        Self: 'a;

    #[inline]
    fn lock(&self) -> Serialized<'_, W> {
        self.enter()
    }

    #[inline]
    fn try_lock(&self) -> Option<Serialized<'_, W>> {
        self.try_enter()
    }
}

/// The interrupt-handler entries of a [`Serializer`] declared at level `L`.
///
/// ```
/// use mpsafe_order::{Ctx, Ordered};
/// use mpsafe_serializer::{OrderedSerializer, Serializer};
///
/// mpsafe_order::lock_order! { pub Ifnet, pub Rx }
///
/// let ifnet: Ordered<Ifnet, Serializer> = Ordered::new(Serializer::new());
/// let ran = ifnet.handler_call(&mut Ctx::new(), |_serialized, _ctx| {
///     // `_ctx` is at `Ifnet`: the handler may take `Rx`, not `Ifnet` again.
/// });
/// assert!(ran.is_some());
/// ifnet.handler_disable(&mut Ctx::new());
/// assert!(ifnet.handler_call(&mut Ctx::new(), |_, _| ()).is_none());
/// ```
pub trait OrderedSerializer<L: Level, W: Wait> {
    /// [`Serializer::handler_call`], from a context that may take `L`; the
    /// handler gets the proof and a context at `L`.
    #[track_caller]
    fn handler_call<C, R>(
        &self,
        ctx: &mut Ctx<'_, C>,
        f: impl FnOnce(&Serialized<'_, W>, Ctx<'_, L>) -> R,
    ) -> Option<R>
    where
        C: LockBefore<L>;

    /// [`Serializer::handler_disable`], a barrier against a running
    /// handler: from a context that may take `L` (it enters the serializer).
    #[track_caller]
    fn handler_disable<C>(&self, ctx: &mut Ctx<'_, C>)
    where
        C: LockBefore<L>;
}

impl<L: Level, W: Wait> OrderedSerializer<L, W> for Ordered<L, Serializer<W>> {
    #[track_caller]
    #[inline]
    fn handler_call<C, R>(
        &self,
        ctx: &mut Ctx<'_, C>,
        f: impl FnOnce(&Serialized<'_, W>, Ctx<'_, L>) -> R,
    ) -> Option<R>
    where
        C: LockBefore<L>,
    {
        if !self.unordered().handlers_enabled() {
            return None;
        }
        let (guard, inner) = ctx.lock(self);
        guard.handlers_enabled().then(|| f(&guard, inner))
    }

    #[track_caller]
    #[inline]
    fn handler_disable<C>(&self, ctx: &mut Ctx<'_, C>)
    where
        C: LockBefore<L>,
    {
        let (guard, _) = ctx.lock(self);
        guard.handler_disable();
    }
}

/// "Serialize all" over an array of serializers declared together at level
/// `L`: the one place two locks of one level are held at once, so the
/// witness records them in index order and reports a thread that takes two
/// of them the other way round.
///
/// ```
/// use mpsafe_order::{Ctx, Ordered};
/// use mpsafe_serializer::{OrderedSerializers, Serializer};
///
/// mpsafe_order::lock_order! { pub TxRings }
///
/// let rings: Ordered<TxRings, [Serializer; 2]> = Ordered::new([Serializer::new(), Serializer::new()]);
/// let mut ctx = Ctx::new();
/// let (all, _ctx) = rings.enter_all(&mut ctx);
/// assert!(rings.unordered().iter().all(Serializer::is_held));
/// drop(all);
/// ```
pub trait OrderedSerializers<L: Level, W: Wait> {
    /// [`enter_all`](crate::enter_all), from a context that may take `L`.
    #[track_caller]
    #[allow(clippy::type_complexity)]
    fn enter_all<'b, C>(
        &'b self,
        ctx: &'b mut Ctx<'_, C>,
    ) -> (Held<'b, L, SerializedAll<'b, W>>, Ctx<'b, L>)
    where
        C: LockBefore<L>;
}

impl<L: Level, W: Wait, const N: usize> OrderedSerializers<L, W>
    for Ordered<L, [Serializer<W>; N]>
{
    #[track_caller]
    #[inline]
    fn enter_all<'b, C>(
        &'b self,
        ctx: &'b mut Ctx<'_, C>,
    ) -> (Held<'b, L, SerializedAll<'b, W>>, Ctx<'b, L>)
    where
        C: LockBefore<L>,
    {
        ctx.lock_all_with(self, |all| enter_all(all))
    }
}

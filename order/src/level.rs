//! Levels and the relation between them.

/// A level in a lock order: an uninhabited type (zero-sized, never built)
/// that names where a lock sits in the hierarchy.
///
/// Declare levels with [`lock_order!`](crate::lock_order), which also
/// implements [`LockAfter`] for every pair in the declared order and fills in
/// these constants; implement it by hand only for a level outside any chain.
pub trait Level: 'static {
    /// The name the [witness](crate::witness) prints.
    const NAME: &'static str;
    /// Which declaration the level belongs to (its module and line): the
    /// witness compares [`RANK`](Level::RANK)s only within one chain.
    const CHAIN: &'static str;
    /// Position in the chain, from 1 ([`Unlocked`] is 0): a lock may be taken
    /// only while every held lock of the same chain has a smaller rank.
    const RANK: u32;
    /// Whether a thread that holds a lock of this level may take the same
    /// lock again (WITNESS's `LO_RECURSABLE`, lockdep's recursive read
    /// locks): the [witness](crate::witness) lets such a re-acquisition
    /// through unchecked, since it cannot block, and still checks the
    /// outermost one against every other held lock. Declared with
    /// `(recursive)` after the level's name in [`lock_order!`](crate::lock_order).
    const RECURSIVE: bool = false;
}

/// The level of a context that holds no ordered lock: the root of every
/// order. [`Ctx::new`](crate::Ctx::new) starts here.
#[derive(Debug)]
pub enum Unlocked {}

impl Level for Unlocked {
    const NAME: &'static str = "Unlocked";
    const CHAIN: &'static str = "";
    const RANK: u32 = 0;
}

/// `B: LockAfter<A>`: a lock at level `B` may be taken while one at level
/// `A` is held. Implemented by [`lock_order!`](crate::lock_order) for every
/// ordered pair; write bounds with [`LockBefore`] instead.
pub trait LockAfter<A> {}

/// `A: LockBefore<B>`: while holding a lock at level `A`, a lock at level `B`
/// may be taken. Blanket-implemented from [`LockAfter`], as `Into` is from
/// `From`; the bound every checked acquisition carries.
pub trait LockBefore<B> {}

impl<A, B: LockAfter<A>> LockBefore<B> for A {}

/// Declares lock levels and their order, once: each level may be taken
/// while any level listed before it (and [`Unlocked`]) is held, and no other
/// way round.
///
/// Each entry declares an uninhabited `enum` (doc comments and `pub`
/// carried over) implementing [`Level`], and the macro implements
/// [`LockAfter`] for every pair `(earlier, later)`, so the relation is
/// transitive by construction and has no cycle. A level followed by
/// `(recursive)` is [`RECURSIVE`](Level::RECURSIVE): its locks may be taken
/// again by the thread that holds them (a big lock whose holder calls a
/// routine that takes it again). The types still never let a context at
/// that level take it again: the re-acquisition goes through a fresh
/// context (a callback's), which only the witness sees.
///
/// ```
/// mpsafe_order::lock_order! {
///     /// The kernel's giant lock, which its holder may take again.
///     pub BigLock (recursive),
///     /// The interface serializer.
///     pub Ifnet,
///     /// The send queue's mutex.
///     pub IfqMutex,
/// }
/// use mpsafe_order::{Level, LockBefore, Unlocked};
///
/// fn ordered<A: LockBefore<B>, B>() {}
/// ordered::<Unlocked, BigLock>();
/// ordered::<BigLock, IfqMutex>(); // transitive
/// assert_eq!(IfqMutex::RANK, 3);
/// assert_eq!(Ifnet::NAME, "Ifnet");
/// assert!(BigLock::RECURSIVE && !Ifnet::RECURSIVE);
/// ```
///
/// The reverse does not compile:
///
/// ```compile_fail,E0277
/// mpsafe_order::lock_order! { pub BigLock, pub Ifnet }
/// fn ordered<A: mpsafe_order::LockBefore<B>, B>() {}
/// ordered::<Ifnet, BigLock>();
/// ```
#[macro_export]
macro_rules! lock_order {
    ($($(#[$meta:meta])* $vis:vis $level:ident $(($rec:ident))?),+ $(,)?) => {
        $(
            $(#[$meta])*
            #[derive(Debug)]
            $vis enum $level {}
        )+
        $crate::lock_order!(@rank 1u32; $($level $(($rec))?),+);
        $crate::lock_order!(@pairs [$crate::Unlocked] $($level)+);
    };
    (@rank $rank:expr; $level:ident $(($rec:ident))? $(, $($rest:tt)*)?) => {
        impl $crate::Level for $level {
            const NAME: &'static str = ::core::stringify!($level);
            const CHAIN: &'static str =
                ::core::concat!(::core::module_path!(), ":", ::core::line!());
            const RANK: u32 = $rank;
            const RECURSIVE: bool = $crate::lock_order!(@recursive $($rec)?);
        }
        $crate::lock_order!(@rank $rank + 1; $($($rest)*)?);
    };
    (@rank $rank:expr;) => {};
    (@recursive recursive) => { true };
    (@recursive) => { false };
    (@pairs [$($before:path),*] $level:ident $($rest:ident)*) => {
        $(impl $crate::LockAfter<$before> for $level {})*
        $crate::lock_order!(@pairs [$($before,)* $level] $($rest)*);
    };
    (@pairs [$($before:path),*]) => {};
}

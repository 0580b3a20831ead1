"""Knowledge base as data: lock primitives, guards, allocation APIs, GFP composites, scopes.

Facts from docs/kernel-facts.md §1-§3 (Linux 6.12).  The walker looks names
up here; adding an API is adding a row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# Lock kinds: whether holding them may sleep, and whether lockdep records edges for them.
SLEEPING_KINDS = frozenset({"mutex", "rwsem", "percpu_rwsem", "rtnl", "console", "sock",
                            "srcu"})
#: Kinds whose (non-try) acquisition may block: the sleeping kinds but SRCU, whose read side
#: only bumps a per-CPU counter (§1.9) — waiting for readers is synchronize_srcu(), a
#: SLEEPING_CALL.  srcu_read_lock() under a spinlock is legal.
BLOCKING_KINDS = SLEEPING_KINDS - {"srcu"}
#: Kinds that spin and disable preemption (§1.2, §1.3; local_lock on a !PREEMPT_RT kernel,
#: §1.8, is preempt_disable()/local_irq_save() plus a lockdep map): sleeping while one is
#: held is "BUG: sleeping function called from invalid context".
SPINNING_KINDS = frozenset({"spin", "raw_spin", "rwlock", "local_lock"})
NO_EDGE_KINDS = frozenset({"rcu", "novalidate"})
#: Held kinds under which sleeping is a bug: the spinning ones, and an RCU read-side
#: critical section (rcu_read_lock/_bh/_sched: "Illegal context switch in RCU read-side
#: critical section", rcu_sleep_check() in __might_resched()).  Not SRCU, whose readers
#: may sleep.
ATOMIC_KINDS = SPINNING_KINDS | {"rcu"}


#: user accesses that may fault: they take &mm->mmap_lock for reading (see _table)
FAULTING = frozenset({"might_fault", "get_user", "put_user"})


@dataclass(frozen=True, slots=True)
class Prim:
    """One lock primitive: what it does to which argument.

    op: acquire | release | try (non-zero = acquired) | try0 (zero = acquired)
        | cond (non-zero = acquired, but taken blocking: atomic_dec_and_lock() spins on
          the lock like spin_lock(), so lockdep records edges into it, unlike a trylock)
        | assert | might (acquire+release at once)
    arg: index of the lock argument, or -1 for a fixed `name` (rtnl_lock(), cpus_read_lock()).
    template: how the lock expression is built from the argument ("{}" = as written).
    """

    op: str
    kind: str
    mode: str = "X"
    arg: int = 0
    name: str = ""
    template: str = "{}"
    subclass_arg: int = -1


def _table() -> dict[str, Prim]:
    t: dict[str, Prim] = {}

    def add(names: str, **kw) -> None:
        for n in names.split():
            t[n] = Prim(**kw)

    # mutex (§1.1)
    add("mutex_lock mutex_lock_io mutex_lock_nest_lock", op="acquire", kind="mutex")
    add("mutex_lock_nested mutex_lock_io_nested", op="acquire", kind="mutex", subclass_arg=1)
    add("mutex_lock_interruptible mutex_lock_killable", op="try0", kind="mutex")
    add("mutex_lock_interruptible_nested mutex_lock_killable_nested", op="try0", kind="mutex",
        subclass_arg=1)
    add("mutex_trylock", op="try", kind="mutex")
    add("mutex_unlock", op="release", kind="mutex")
    add("atomic_dec_and_mutex_lock refcount_dec_and_mutex_lock", op="cond", kind="mutex", arg=1)
    # spinlock_t / raw_spinlock_t (§1.2)
    add("spin_lock spin_lock_irq spin_lock_irqsave spin_lock_bh spin_lock_nest_lock",
        op="acquire", kind="spin")
    add("spin_lock_nested", op="acquire", kind="spin", subclass_arg=1)
    add("spin_lock_irqsave_nested", op="acquire", kind="spin", subclass_arg=2)
    add("spin_trylock spin_trylock_irq spin_trylock_irqsave spin_trylock_bh", op="try", kind="spin")
    add("spin_unlock spin_unlock_irq spin_unlock_irqrestore spin_unlock_bh", op="release", kind="spin")
    add("pte_unmap_unlock", op="release", kind="spin", arg=1)   # include/linux/mm.h:3085
    add("atomic_dec_and_lock atomic_dec_and_lock_irqsave refcount_dec_and_lock "
        "refcount_dec_and_lock_irqsave", op="cond", kind="spin", arg=1)
    add("raw_spin_lock raw_spin_lock_irq raw_spin_lock_irqsave raw_spin_lock_bh "
        "raw_spin_lock_nest_lock", op="acquire", kind="raw_spin")
    add("raw_spin_lock_nested", op="acquire", kind="raw_spin", subclass_arg=1)
    add("raw_spin_lock_irqsave_nested", op="acquire", kind="raw_spin", subclass_arg=2)
    add("raw_spin_trylock raw_spin_trylock_irq raw_spin_trylock_irqsave", op="try", kind="raw_spin")
    add("raw_spin_unlock raw_spin_unlock_irq raw_spin_unlock_irqrestore raw_spin_unlock_bh",
        op="release", kind="raw_spin")
    # rwlock_t (§1.3)
    add("read_lock read_lock_irq read_lock_irqsave read_lock_bh", op="acquire", kind="rwlock", mode="R")
    add("write_lock write_lock_irq write_lock_irqsave write_lock_bh", op="acquire", kind="rwlock")
    add("write_lock_nested", op="acquire", kind="rwlock", subclass_arg=1)
    add("read_trylock", op="try", kind="rwlock", mode="R")
    add("write_trylock", op="try", kind="rwlock")
    add("read_unlock read_unlock_irq read_unlock_irqrestore read_unlock_bh write_unlock "
        "write_unlock_irq write_unlock_irqrestore write_unlock_bh", op="release", kind="rwlock")
    # rw_semaphore (§1.4) and wrappers
    add("down_read down_read_non_owner", op="acquire", kind="rwsem", mode="S")
    add("down_read_nested", op="acquire", kind="rwsem", mode="S", subclass_arg=1)
    add("down_read_interruptible down_read_killable", op="try0", kind="rwsem", mode="S")
    add("down_read_killable_nested", op="try0", kind="rwsem", mode="S", subclass_arg=1)
    add("down_read_trylock", op="try", kind="rwsem", mode="S")
    add("down_write down_write_nest_lock", op="acquire", kind="rwsem")
    add("down_write_nested", op="acquire", kind="rwsem", subclass_arg=1)
    add("down_write_killable", op="try0", kind="rwsem")
    add("down_write_killable_nested", op="try0", kind="rwsem", subclass_arg=1)
    add("down_write_trylock", op="try", kind="rwsem")
    add("up_read up_write up_read_non_owner", op="release", kind="rwsem")
    add("mmap_read_lock", op="acquire", kind="rwsem", mode="S", template="&{}->mmap_lock")
    add("mmap_write_lock", op="acquire", kind="rwsem", template="&{}->mmap_lock")
    add("mmap_read_lock_killable", op="try0", kind="rwsem", mode="S", template="&{}->mmap_lock")
    add("mmap_write_lock_killable", op="try0", kind="rwsem", template="&{}->mmap_lock")
    add("mmap_read_trylock", op="try", kind="rwsem", mode="S", template="&{}->mmap_lock")
    add("mmap_read_unlock mmap_write_unlock", op="release", kind="rwsem", template="&{}->mmap_lock")
    add("inode_lock", op="acquire", kind="rwsem", template="&{}->i_rwsem")
    add("inode_lock_shared", op="acquire", kind="rwsem", mode="S", template="&{}->i_rwsem")
    add("inode_lock_nested", op="acquire", kind="rwsem", template="&{}->i_rwsem", subclass_arg=1)
    add("inode_trylock", op="try", kind="rwsem", template="&{}->i_rwsem")
    add("inode_unlock inode_unlock_shared", op="release", kind="rwsem", template="&{}->i_rwsem")
    add("i_mmap_lock_write", op="acquire", kind="rwsem", template="&{}->i_mmap_rwsem")
    add("i_mmap_lock_read", op="acquire", kind="rwsem", mode="S", template="&{}->i_mmap_rwsem")
    add("i_mmap_unlock_write i_mmap_unlock_read", op="release", kind="rwsem", template="&{}->i_mmap_rwsem")
    add("filemap_invalidate_lock", op="acquire", kind="rwsem", template="&{}->invalidate_lock")
    add("filemap_invalidate_lock_shared", op="acquire", kind="rwsem", mode="S", template="&{}->invalidate_lock")
    add("filemap_invalidate_unlock filemap_invalidate_unlock_shared", op="release", kind="rwsem",
        template="&{}->invalidate_lock")
    # percpu rwsem (§1.5)
    add("percpu_down_read", op="acquire", kind="percpu_rwsem", mode="S")
    add("percpu_down_read_trylock", op="try", kind="percpu_rwsem", mode="S")
    add("percpu_down_write", op="acquire", kind="percpu_rwsem")
    add("percpu_up_read percpu_up_write", op="release", kind="percpu_rwsem")
    add("cpus_read_lock", op="acquire", kind="percpu_rwsem", mode="S", arg=-1, name="cpu_hotplug_lock")
    add("cpus_write_lock", op="acquire", kind="percpu_rwsem", arg=-1, name="cpu_hotplug_lock")
    add("cpus_read_trylock", op="try", kind="percpu_rwsem", mode="S", arg=-1, name="cpu_hotplug_lock")
    add("cpus_read_unlock cpus_write_unlock", op="release", kind="percpu_rwsem", arg=-1,
        name="cpu_hotplug_lock")
    # local_lock_t (§1.8) and the hidden preload lock
    add("local_lock local_lock_irq local_lock_irqsave local_lock_nested_bh", op="acquire", kind="local_lock")
    add("local_unlock local_unlock_irq local_unlock_irqrestore local_unlock_nested_bh",
        op="release", kind="local_lock")
    add("idr_preload radix_tree_preload radix_tree_maybe_preload", op="acquire", kind="local_lock",
        arg=-1, name="lock")
    add("idr_preload_end radix_tree_preload_end", op="release", kind="local_lock", arg=-1, name="lock")
    # seqlock write side (§1.7)
    add("write_seqlock write_seqlock_irq write_seqlock_irqsave write_seqlock_bh read_seqlock_excl "
        "read_seqlock_excl_bh read_seqlock_excl_irq read_seqlock_excl_irqsave", op="acquire",
        kind="spin", template="&{}->lock")
    add("write_sequnlock write_sequnlock_irq write_sequnlock_irqrestore write_sequnlock_bh "
        "read_sequnlock_excl read_sequnlock_excl_bh read_sequnlock_excl_irq "
        "read_sequnlock_excl_irqrestore", op="release", kind="spin", template="&{}->lock")
    # RCU / SRCU (§1.9): RCU maps are check=0, no edges
    add("rcu_read_lock", op="acquire", kind="rcu", mode="R", arg=-1, name="rcu_read_lock")
    add("rcu_read_lock_bh", op="acquire", kind="rcu", mode="R", arg=-1, name="rcu_read_lock_bh")
    add("rcu_read_lock_sched", op="acquire", kind="rcu", mode="R", arg=-1, name="rcu_read_lock_sched")
    add("rcu_read_unlock", op="release", kind="rcu", arg=-1, name="rcu_read_lock")
    add("rcu_read_unlock_bh", op="release", kind="rcu", arg=-1, name="rcu_read_lock_bh")
    add("rcu_read_unlock_sched", op="release", kind="rcu", arg=-1, name="rcu_read_lock_sched")
    add("srcu_read_lock", op="acquire", kind="srcu", mode="R")
    add("srcu_read_unlock", op="release", kind="srcu")
    # lockdep annotations (§1.10)
    add("lock_map_acquire", op="acquire", kind="map")
    add("lock_map_acquire_read", op="acquire", kind="map", mode="R")
    add("lock_map_acquire_try", op="try", kind="map")
    add("lock_map_release", op="release", kind="map")
    add("might_lock might_lock_read", op="might", kind="map")
    # A user access may fault, and the fault handler takes the task's mmap_lock for reading
    # (arch/x86/mm/fault.c lock_mm_and_find_vma()); lockdep records that edge from every
    # held lock at the access: __might_fault() does might_lock_read(&current->mm->mmap_lock)
    # (mm/memory.c).  x86's get_user()/put_user() are macros that call might_fault() first
    # (arch/x86/include/asm/uaccess.h); copy_{to,from}_user() reach it through
    # include/linux/uaccess.h.  Not between pagefault_disable() and pagefault_enable(),
    # where an access fails instead of faulting (the "nofault" scope).
    add(" ".join(sorted(FAULTING)), op="might", kind="rwsem", mode="S", arg=-1,
        name="&mm->mmap_lock")
    add("lockdep_assert_held lockdep_assert_held_write lockdep_assert_held_read "
        "lockdep_assert_held_once", op="assert", kind="map")
    # subsystem wrappers (§1.11)
    add("rtnl_lock", op="acquire", kind="rtnl", arg=-1, name="rtnl_mutex")
    add("rtnl_trylock", op="try", kind="rtnl", arg=-1, name="rtnl_mutex")
    add("rtnl_unlock", op="release", kind="rtnl", arg=-1, name="rtnl_mutex")
    add("console_lock", op="acquire", kind="console", arg=-1, name="console_lock")
    add("console_trylock", op="try", kind="console", arg=-1, name="console_lock")
    add("console_unlock", op="release", kind="console", arg=-1, name="console_lock")
    add("lock_sock", op="acquire", kind="sock", template="sk_lock-{}")
    add("release_sock", op="release", kind="sock", template="sk_lock-{}")
    add("task_lock", op="acquire", kind="spin", template="&{}->alloc_lock")
    add("task_unlock", op="release", kind="spin", template="&{}->alloc_lock")
    add("xa_lock xa_lock_bh xa_lock_irq xa_lock_irqsave", op="acquire", kind="spin", template="&{}->xa_lock")
    add("xa_unlock xa_unlock_bh xa_unlock_irq xa_unlock_irqrestore", op="release", kind="spin",
        template="&{}->xa_lock")
    add("device_lock", op="acquire", kind="novalidate", template="&{}->mutex")
    add("device_unlock", op="release", kind="novalidate", template="&{}->mutex")
    return t


PRIMITIVES: dict[str, Prim] = _table()

#: Init primitives → index of the lock argument, whose text names the class (§2 N3).
INIT_PRIMS: dict[str, int] = {
    "mutex_init": 0, "spin_lock_init": 0, "raw_spin_lock_init": 0, "rwlock_init": 0,
    "init_rwsem": 0, "seqcount_init": 0, "seqlock_init": 0, "local_lock_init": 0,
    "percpu_init_rwsem": 0, "init_srcu_struct": 0, "init_waitqueue_head": 0,
    "init_swait_queue_head": 0, "devm_mutex_init": 1,
    # drm's managed mutex_init(): a macro that runs mutex_init(lock), one key per call site
    "drmm_mutex_init": 1,
}
#: Static definitions: DEFINE_X(name) names class `name` (§2 N1).
DEFINE_PRIMS: dict[str, str] = {
    "DEFINE_MUTEX": "mutex", "DEFINE_SPINLOCK": "spin", "DEFINE_RAW_SPINLOCK": "raw_spin",
    "DEFINE_RWLOCK": "rwlock", "DECLARE_RWSEM": "rwsem", "DEFINE_SRCU": "srcu",
    "DEFINE_STATIC_SRCU": "srcu", "DEFINE_PERCPU_RWSEM": "percpu_rwsem",
    "DEFINE_STATIC_PERCPU_RWSEM": "percpu_rwsem", "DEFINE_SEQLOCK": "spin",
}
#: Struct-member static initialisers (§2 N2): `.f = __SPIN_LOCK_UNLOCKED(e)` names `e`.
MEMBER_INITS = frozenset({"__MUTEX_INITIALIZER", "__SPIN_LOCK_UNLOCKED", "__RAW_SPIN_LOCK_UNLOCKED",
                          "__RWSEM_INITIALIZER", "INIT_LOCAL_LOCK", "__RW_LOCK_UNLOCKED"})

#: Guard types (§1.12) → the primitive they wrap, as the kernel headers define them.  The
#: guards a scanned tree declares with DEFINE_GUARD / DEFINE_LOCK_GUARD_* join them in that
#: scan's ScanContext (walk.py), never here: this table is read-only.
BUILTIN_GUARDS: Mapping[str, str] = MappingProxyType({
    "mutex": "mutex_lock", "mutex_try": "mutex_trylock", "mutex_intr": "mutex_lock_interruptible",
    "rwsem_read": "down_read", "rwsem_read_try": "down_read_trylock",
    "rwsem_read_intr": "down_read_interruptible", "rwsem_write": "down_write",
    "rwsem_write_try": "down_write_trylock", "raw_spinlock": "raw_spin_lock",
    "raw_spinlock_try": "raw_spin_trylock", "raw_spinlock_nested": "raw_spin_lock",
    "raw_spinlock_irq": "raw_spin_lock_irq", "raw_spinlock_irq_try": "raw_spin_trylock_irq",
    "raw_spinlock_bh": "raw_spin_lock_bh", "raw_spinlock_irqsave": "raw_spin_lock_irqsave",
    "raw_spinlock_irqsave_try": "raw_spin_trylock_irqsave", "spinlock": "spin_lock",
    "spinlock_try": "spin_trylock", "spinlock_irq": "spin_lock_irq",
    "spinlock_irq_try": "spin_trylock_irq", "spinlock_bh": "spin_lock_bh",
    "spinlock_bh_try": "spin_trylock_bh", "spinlock_irqsave": "spin_lock_irqsave",
    "spinlock_irqsave_try": "spin_trylock_irqsave", "read_lock": "read_lock",
    "read_lock_irq": "read_lock_irq", "read_lock_irqsave": "read_lock_irqsave",
    "write_lock": "write_lock", "write_lock_irq": "write_lock_irq",
    "write_lock_irqsave": "write_lock_irqsave", "local_lock": "local_lock",
    "local_lock_irq": "local_lock_irq", "local_lock_irqsave": "local_lock_irqsave",
    "local_lock_nested_bh": "local_lock_nested_bh", "srcu": "srcu_read_lock",
    "rcu": "rcu_read_lock", "cpus_read_lock": "cpus_read_lock", "rtnl": "rtnl_lock",
    "console_lock": "console_lock", "device": "device_lock", "task_lock": "task_lock",
})

#: Allocation APIs (§3.4): gfp argument index; None = always GFP_KERNEL.
ALLOCS: dict[str, int | None] = {
    "kmalloc": 1, "kzalloc": 1, "kmalloc_node": 1, "kzalloc_node": 1, "kcalloc": 2,
    "kmalloc_array": 2, "kcalloc_node": 2, "kmalloc_array_node": 2, "krealloc": 2,
    "krealloc_array": 3, "kmem_cache_alloc": 1, "kmem_cache_zalloc": 1, "kmem_cache_alloc_node": 1,
    "kmem_cache_alloc_lru": 2, "kvmalloc": 1, "kvzalloc": 1, "kvmalloc_node": 1, "kvzalloc_node": 1,
    "kvcalloc": 2, "kvmalloc_array": 2, "kvrealloc": 2, "vmalloc": None, "vzalloc": None,
    "vmalloc_node": None, "vzalloc_node": None, "__vmalloc": 1, "__vmalloc_node": 2,
    "alloc_pages": 0, "alloc_page": 0, "alloc_pages_node": 1, "__alloc_pages": 0,
    "__alloc_pages_node": 1, "alloc_pages_exact": 1, "__get_free_pages": 0, "__get_free_page": 0,
    "get_zeroed_page": 0, "folio_alloc": 0, "alloc_percpu": None, "__alloc_percpu": None,
    "alloc_percpu_gfp": 1, "__alloc_percpu_gfp": 2, "mempool_alloc": 1, "kstrdup": 1,
    "kstrndup": 2, "kmemdup": 2, "kmemdup_array": 3, "kasprintf": 0, "kvasprintf": 0,
    "idr_alloc": 4, "idr_alloc_cyclic": 4, "idr_alloc_u32": 4, "ida_alloc": 1, "ida_alloc_min": 2,
    "ida_alloc_max": 2, "ida_alloc_range": 3, "alloc_skb": 1, "__alloc_skb": 1,
    "dma_alloc_coherent": 3, "dma_pool_alloc": 1, "netdev_alloc_pcpu_stats": None,
    "xa_store": 3, "xa_insert": 3, "xa_alloc": 4, "xa_alloc_cyclic": 5,
}

#: Calls that enter page reclaim, with their gfp argument (None: reclaim with GFP_KERNEL).
#: Like an allocation, such a call is an acquisition of fs_reclaim for the caller, not a
#: call into the reclaim code: lockdep's own model (direct reclaim runs under the
#: fs_reclaim map, mm/page_alloc.c __perform_reclaim), so a lock held here gets the edge
#: L -> fs_reclaim and what reclaim takes gets fs_reclaim -> X from the reclaim roots
#: (static/slab_roots.py) — every cycle through reclaim is still a cycle, through
#: fs_reclaim.  Following the calls instead made every lock held around a memcg charge
#: precede every lock of every filesystem's writeback (reclaim_clean_pages_from_list ->
#: shrink_folio_list -> swap_writepage -> ->swap_rw), the largest join of the whole-kernel
#: call graph.  mm/vmscan.c, 6.12: try_to_free_pages:6513, mem_cgroup_shrink_node:6559,
#: try_to_free_mem_cgroup_pages:6598, reclaim_clean_pages_from_list:1584,
#: shrink_all_memory:7339, node_reclaim (after __node_reclaim).
RECLAIM_CALLS: dict[str, int | None] = {
    "try_to_free_pages": 2, "try_to_free_mem_cgroup_pages": 2, "mem_cgroup_shrink_node": 1,
    "node_reclaim": 1, "reclaim_clean_pages_from_list": None, "shrink_all_memory": None,
}
ALLOCS.update(RECLAIM_CALLS)

#: Header macros whose implementation may be in the scanned tree: name → (function, args).
#: An int maps the caller's argument at that index; a string is a literal argument.
CALL_ALIASES: dict[str, tuple[str, tuple[int | str, ...]]] = {
    "alloc_percpu": ("pcpu_alloc_noprof", ("sizeof", "align", "false", "GFP_KERNEL")),
    "__alloc_percpu": ("pcpu_alloc_noprof", (0, 1, "false", "GFP_KERNEL")),
    "alloc_percpu_gfp": ("pcpu_alloc_noprof", ("sizeof", "align", "false", 1)),
    "__alloc_percpu_gfp": ("pcpu_alloc_noprof", (0, 1, "false", 2)),
    "netdev_alloc_pcpu_stats": ("pcpu_alloc_noprof", ("sizeof", "align", "false", "GFP_KERNEL")),
    "percpu_counter_init": ("__percpu_counter_init_many", (0, 1, 2, "1", "&__key")),
    "percpu_counter_init_many": ("__percpu_counter_init_many", (0, 1, 2, 3, "&__key")),
    "percpu_counter_destroy": ("percpu_counter_destroy_many", (0, "1")),
}

#: GFP bits (§3.1) and composites (§3.2): names → set of bits.
_R, _K, _IO, _FS, _NOLOCKDEP, _ACC = "DIRECT_RECLAIM", "KSWAPD_RECLAIM", "IO", "FS", "NOLOCKDEP", "ACCOUNT"
GFP: dict[str, frozenset[str]] = {
    "__GFP_DIRECT_RECLAIM": frozenset({_R}), "__GFP_KSWAPD_RECLAIM": frozenset({_K}),
    "__GFP_RECLAIM": frozenset({_R, _K}), "__GFP_IO": frozenset({_IO}), "__GFP_FS": frozenset({_FS}),
    "__GFP_NOLOCKDEP": frozenset({_NOLOCKDEP}), "__GFP_ACCOUNT": frozenset({_ACC}),
    "GFP_KERNEL": frozenset({_R, _K, _IO, _FS}),
    "GFP_KERNEL_ACCOUNT": frozenset({_R, _K, _IO, _FS, _ACC}),
    "GFP_USER": frozenset({_R, _K, _IO, _FS}), "GFP_HIGHUSER": frozenset({_R, _K, _IO, _FS}),
    "GFP_HIGHUSER_MOVABLE": frozenset({_R, _K, _IO, _FS}), "GFP_TRANSHUGE": frozenset({_R, _IO, _FS}),
    "GFP_PGTABLE_KERNEL": frozenset({_R, _K, _IO, _FS}), "GFP_PGTABLE_USER": frozenset({_R, _K, _IO, _FS, _ACC}),
    "GFP_NOFS": frozenset({_R, _K, _IO}), "GFP_NOIO": frozenset({_R, _K}),
    "GFP_ATOMIC": frozenset({_K}), "GFP_NOWAIT": frozenset({_K}),
    "GFP_TRANSHUGE_LIGHT": frozenset({_IO, _FS}), "GFP_DMA": frozenset(), "GFP_DMA32": frozenset(),
    "0": frozenset(),
}
#: Bits that do not affect the reclaim annotation (zeroing, retry policy, placement…).
GFP_NEUTRAL_PREFIX = "__GFP_"

#: Task scopes (§3.3): call → (scope, +1 enter / -1 leave).
LOCKDEP_OFF = "lockdep_off"
#: between pagefault_disable() and pagefault_enable(): a user access cannot fault
NOFAULT = "nofault"
SCOPES: dict[str, tuple[str, int]] = {
    "memalloc_nofs_save": ("nofs", 1), "memalloc_nofs_restore": ("nofs", -1),
    "memalloc_noio_save": ("noio", 1), "memalloc_noio_restore": ("noio", -1),
    "memalloc_noreclaim_save": ("noreclaim", 1), "memalloc_noreclaim_restore": ("noreclaim", -1),
    # lockdep records nothing between lockdep_off() and lockdep_on() (the KASAN, KFENCE and
    # KCSAN reporters, sysrq), nor after debug_locks_off() (oops_enter, panic): no edge,
    # acquisition or call under them is one lockdep could report (kernel/locking/lockdep.c
    # lock_acquire returns early on lockdep_recursion / !debug_locks)
    "lockdep_off": (LOCKDEP_OFF, 1), "lockdep_on": (LOCKDEP_OFF, -1),
    "debug_locks_off": (LOCKDEP_OFF, 1), "__debug_locks_off": (LOCKDEP_OFF, 1),
    "pagefault_disable": (NOFAULT, 1), "pagefault_enable": (NOFAULT, -1),
}

#: Calls that never return and stop every other CPU before they take a lock
#: (kernel/panic.c vpanic: local_irq_disable, panic_other_cpus_shutdown, later
#: debug_locks_off): with one CPU left and interrupts off, no lock order taken inside them
#: can complete a deadlock, so lockgraph does not follow them.  Through panic() (reached
#: from add_taint, check_panic_on_warn, the hung-task and soft-lockup detectors...) every
#: console and trace dumper in the kernel was a callee of every warning.
TERMINAL = frozenset({"panic", "vpanic", "nmi_panic"})
#: Calls that never return (declared __noreturn in 6.12, or expanding to a trap): a
#: statement calling one ends its path, so a lock a branch still holds when it calls BUG()
#: is not held after the branches join (jffs2_erase_pending_blocks()' `else BUG();` kept
#: erase_completion_lock held into the mutex_lock() after the loop: a false cycle).
NORETURN = TERMINAL | frozenset({
    "BUG", "do_exit", "do_group_exit", "make_task_dead", "kthread_exit",
    "kthread_complete_and_exit", "__module_put_and_kthread_exit", "unreachable",
    "__builtin_unreachable", "__builtin_trap", "fortify_panic", "usercopy_abort"})

#: Calls that sleep without taking a lockdep-visible lock.
SLEEPING_CALLS = frozenset({
    "msleep", "ssleep", "usleep_range", "schedule", "schedule_timeout", "wait_for_completion",
    "wait_for_completion_interruptible", "wait_for_completion_killable", "synchronize_rcu",
    "synchronize_srcu", "flush_work", "flush_workqueue", "cancel_work_sync",
    "cancel_delayed_work_sync", "might_sleep", "cond_resched", "down", "down_interruptible",
    "down_killable", "wait_event", "wait_event_interruptible", "rcu_barrier", "vfree",
})

#: Blind spots listed last: an unresolved call to one of these hardly hides a lock edge
#: (a free hands memory back to the allocator; a byte-order helper takes nothing).
NOISE_CALLS = frozenset({"kfree", "kvfree", "kfree_sensitive", "kfree_const", "kfree_rcu",
                         "kvfree_rcu", "kmem_cache_free", "free_page", "free_pages",
                         "__free_page", "__free_pages", "put_page", "folio_put", "vfree"})
BYTE_ORDER = re.compile(r"(?:__)?(?:cpu_to_[bl]e(?:16|32|64)|[bl]e(?:16|32|64)_to_cpu)[ps]?"
                        r"|(?:__)?swab(?:16|32|64)[ps]?|(?:get|put)_unaligned(?:_[bl]e(?:16|32|64))?"
                        r"|[bl]e(?:16|32|64)_add_cpu|(?:__)?(?:hton|ntoh)[sl]")

#: Calls whose paths are not checked for sleeping: they never return and run with
#: oops_in_progress set, where __might_resched() stays silent (kernel/sched/core.c:8695).
NO_SLEEP_CHECK = frozenset({"panic", "vpanic", "nmi_panic"})

#: Macros and helpers assumed to take no lock and not sleep; calls to them are not blind
#: spots.  Kept narrow on purpose: anything else undefined in the scanned sources is.
LOCK_FREE = frozenset({
    "sizeof", "__alignof__", "_Alignof", "typeof", "__typeof__", "offsetof", "sizeof_field",
    "__same_type", "BUILD_BUG_ON", "static_assert", "__must_be_array", "abs", "__ffs", "ffs",
    "fls", "__fls", "ilog2", "is_power_of_2", "lockdep_assert_irqs_disabled",
    "lockdep_assert_irqs_enabled", "lockdep_assert_preemption_disabled",
    "in_interrupt", "in_task", "irqs_disabled", "current_gfp_context", "gfpflags_allow_blocking",
    "WARN_ON", "WARN_ON_ONCE", "WARN", "WARN_ONCE", "BUG_ON", "BUG", "likely", "unlikely",
    "READ_ONCE", "WRITE_ONCE", "sizeof", "min", "max", "min_t", "max_t", "clamp", "ARRAY_SIZE",
    "container_of", "list_add", "list_add_tail", "list_del", "list_del_init", "list_empty",
    "list_move", "list_move_tail", "list_first_entry", "list_entry", "INIT_LIST_HEAD",
    "hlist_add_head", "hlist_del", "hlist_del_init", "memset", "memcpy", "memmove", "memcmp",
    "strcmp", "strlen", "strscpy", "atomic_read", "atomic_set", "atomic_inc", "atomic_dec",
    "atomic_add", "atomic_sub", "atomic_inc_return", "atomic_dec_return", "atomic_dec_and_test",
    "atomic_long_read", "atomic_long_add", "atomic_long_sub", "atomic_long_inc",
    "atomic_long_dec", "atomic64_read", "atomic64_add", "refcount_inc", "refcount_dec_and_test",
    "refcount_set", "refcount_read", "set_bit", "clear_bit", "test_bit", "test_and_set_bit",
    "test_and_clear_bit", "__set_bit", "__clear_bit", "bitmap_zero", "bitmap_set",
    "bitmap_clear", "find_next_bit", "find_first_bit", "per_cpu_ptr", "this_cpu_ptr", "per_cpu",
    "this_cpu_read", "this_cpu_write", "this_cpu_add", "this_cpu_inc", "this_cpu_dec",
    "__this_cpu_read", "__this_cpu_write", "__this_cpu_add", "raw_cpu_ptr", "smp_processor_id",
    "raw_smp_processor_id", "preempt_disable", "preempt_enable", "local_irq_save",
    "local_irq_restore", "local_irq_disable", "local_irq_enable", "barrier", "smp_mb",
    "smp_wmb", "smp_rmb", "smp_store_release", "smp_load_acquire", "cpu_to_node", "IS_ERR",
    "PTR_ERR", "ERR_PTR", "IS_ERR_OR_NULL", "ERR_CAST", "offsetof", "ALIGN", "PAGE_ALIGN",
    "DIV_ROUND_UP", "roundup", "round_up", "round_down", "BIT", "GENMASK", "pr_debug",
    "pr_info", "pr_warn", "pr_err", "pr_notice", "printk", "dev_err", "dev_warn", "dev_info",
    "dev_dbg", "kmemleak_free_percpu", "rcu_dereference",
    "rcu_dereference_protected", "rcu_assign_pointer", "RCU_INIT_POINTER", "lockdep_is_held",
    "spin_is_locked", "mutex_is_locked", "num_possible_cpus", "for_each_possible_cpu",
    "for_each_online_cpu", "for_each_cpu", "list_for_each_entry", "list_for_each_entry_safe",
    "hlist_for_each_entry", "trace_printk", "swap", "cpumask_test_cpu", "jiffies_to_msecs",
    "msecs_to_jiffies", "time_after", "time_before", "get_order", "page_address",
    "virt_to_page",
})


def base_name(name: str) -> str:
    """`kmalloc_noprof` is `kmalloc` (§3.4: *_noprof = base name)."""
    return name[:-7] if name.endswith("_noprof") else name


#: Allocations from a slab cache: the sites where that cache's constructor runs.
CACHE_ALLOCS = frozenset({"kmem_cache_alloc", "kmem_cache_zalloc", "kmem_cache_alloc_node",
                          "kmem_cache_alloc_lru"})

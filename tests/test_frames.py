"""Stack-trace lines of every shape a dump_stack() prints become frames of `backtrace`.

`--dtor` and the destructor/reclaim contexts only see functions that reach a Report's
stacks, so a trace shape the lexer does not know makes a whole report's stack invisible
(format spec §2.6: arm32 prints `(func) from (caller)` pairs).
"""

from __future__ import annotations

import pytest

from lockgraph.ingest.logs import parse_text
from lockgraph.ingest.logs.lexer import parse_frame

#: (line as printed, function, unreliable, the caller an arm32 line names)
SHAPES = [
    # x86-64 (and arm64 >= 5.x, riscv, s390, mips): `%pS` with optional ? and [module]
    (" __mutex_lock+0x5d6/0xb40", "__mutex_lock", False, None),
    (" ? __pfx_kthread+0x10/0x10", "__pfx_kthread", True, None),
    (" nf_tables_trans_destroy_work+0x12/0x40 [nf_tables]", "nf_tables_trans_destroy_work", False, None),
    # old x86, arm64 <= 4.x, riscv, mips: `[<pc>] func+off/len`
    (" [<ffffffff81ca45ed>] dump_stack+0xc1/0x124", "dump_stack", False, None),
    ("[<ffff000008089e88>] dump_backtrace+0x0/0x1e0", "dump_backtrace", False, None),
    # arm32 CONFIG_BACKTRACE_VERBOSE, 6.x and 3.x (offset inside the first parentheses)
    ("[<80de0078>] (dump_backtrace) from [<80de0574>] (show_stack+0x28/0x2c)",
     "dump_backtrace", False, "show_stack"),
    ("[<c0013f0c>] (unwind_backtrace+0x0/0xe0) from [<c0011a54>] (show_stack+0x10/0x14)",
     "unwind_backtrace", False, "show_stack"),
    ("[<81100d6c>] (start_kernel) from [<00000000>] (0x0)", "start_kernel", False, None),
    # arm32 without CONFIG_BACKTRACE_VERBOSE (5.x+)
    (" unwind_backtrace from show_stack+0x18/0x1c", "unwind_backtrace", False, "show_stack"),
    (" foo_work from process_one_work+0x208/0x6a0 [foo]", "foo_work", False, "process_one_work"),
    # powerpc: `[sp] [pc] func+off/len`, `(unreliable)`, ELFv1 dot symbols
    ("[c000000000e0f7f0] [c000000000dd6c3c] dump_stack_lvl+0x74/0xa8 (unreliable)",
     "dump_stack_lvl", True, None),
    ("[c00000000ffe3b70] [c000000000014b5c] .show_stack+0x74/0x1d0", "show_stack", False, None),
    # scripts/decode_stacktrace.sh
    (" lock_release (kernel/locking/lockdep.c:470 kernel/locking/lockdep.c:5891)",
     "lock_release", False, None),
    (" __folio_batch_add_and_move (mm/swap.c:196 (discriminator 2))",
     "__folio_batch_add_and_move", False, None),
    (" ? rcu_read_unlock (include/linux/rcupdate.h:341)", "rcu_read_unlock", True, None),
]


@pytest.mark.parametrize("line,func,unreliable,caller", SHAPES, ids=[s[1] for s in SHAPES])
def test_every_trace_shape_is_a_frame(line, func, unreliable, caller):
    fr = parse_frame(line)
    assert fr is not None
    assert (fr["func"].lstrip("."), fr["q"], fr.get("caller")) == (func, unreliable, caller)


@pytest.mark.parametrize("line", [
    "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.10.2-1 04/01/2014",
    "Sending NMI from CPU 0 to CPUs 1:",
    "RCU used illegally from idle CPU!",
    "include/linux/rcupdate.h:341 Illegal context switch in RCU read-side critical section!",
    "Stopper: __balance_push_cpu_stop+0x0/0x2b0 <- finish_lock_switch+0x7d/0xd0",
    "Function entered at [<c0100060>] from [<b6f2ed3c>]",
])
def test_lines_that_only_look_like_frames_are_not(line):
    assert parse_frame(line) is None


ARM_REPORT = """\
WARNING: held lock freed!
6.12.0 #1 Not tainted
-------------------------
kworker/0:1/9 is freeing memory c2800000-c28003ff, with a lock still held there!
c2800010 (&obj->lock){+.+.}-{3:3}, at: obj_flush+0x10/0x40
1 lock held by kworker/0:1/9:
 #0: c2800010 (&obj->lock){+.+.}-{3:3}, at: obj_flush+0x10/0x40

stack backtrace:
CPU: 0 UID: 0 PID: 9 Comm: kworker/0:1 Not tainted 6.12.0 #1
Call trace: 
{frames}
"""


@pytest.mark.parametrize("verbose", [True, False])
def test_an_arm32_backtrace_keeps_every_frame_and_the_outermost_caller(verbose):
    chain = ["unwind_backtrace", "show_stack", "dump_stack_lvl", "debug_check_no_locks_freed",
             "kfree", "obj_dtor", "obj_put", "process_one_work", "worker_thread", "kthread",
             "ret_from_fork"]
    if verbose:
        frames = [f"[<c01{i:05x}>] ({a}) from [<c02{i:05x}>] ({b}+0x1c/0x40)"
                  for i, (a, b) in enumerate(zip(chain, chain[1:]))]
        frames.insert(3, " r5:00000000 r4:81260dfc")  # register lines between the pairs
    else:
        frames = [f" {a} from {b}+0x1c/0x40" for a, b in zip(chain, chain[1:])]
    (r,) = parse_text(ARM_REPORT.replace("{frames}", "\n".join(frames)), "arm.log").reports
    assert (r.kind, r.subject_lock.name) == ("held_lock_freed", "&obj->lock")
    assert r.backtrace == tuple(chain)

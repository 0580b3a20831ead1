"""The review-thread picture: roots, the locks they take, and only the edges that are wrong.

A whole lock graph is a hairball nobody reads (a /proc/lockdep dump has thousands of
dependencies).  What a reviewer needs is the focused part: each destructor or reclaim root,
the locks it takes, the outgoing edges that make a lock non-leaf, and the cycles; everything
else is collapsed into one note that says how much was left out, so the picture does not
pretend to be complete.

Node ids are synthetic (`n0`, `n1`, … in sorted-name order) and every name travels in a
quoted label: lockdep class names contain `:`, which pydot would read as a port, and quotes,
braces, `->`, blanks or backslashes that would otherwise break the DOT syntax.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from lockgraph.checks import CheckResult
from lockgraph.errors import InputError
from lockgraph.graph import FS_RECLAIM, best_evidence
from lockgraph.model import Edge, trim_stack

#: Edge styles by role, strongest last: an edge on a cycle is drawn as a cycle even when it
#: also makes a destructor lock non-leaf.
STYLES = {
    "takes": {"style": "dashed", "color": "gray40", "fontcolor": "gray30"},
    "ok": {"color": "gray40"},
    "nonleaf": {"color": "orangered", "penwidth": "1.6"},
    "context": {"style": "dotted", "color": "purple", "penwidth": "1.6", "fontcolor": "purple"},
    "cycle": {"color": "red3", "penwidth": "2.4", "fontcolor": "red3"},
}
RANK = {k: i for i, k in enumerate(STYLES)}

LEGEND = (
    '<<table border="0" cellborder="1" cellspacing="0" cellpadding="4">'
    '<tr><td colspan="2"><b>legend</b></td></tr>'
    '<tr><td>box</td><td align="left">root: slab destructor, constructor, reclaim entry</td></tr>'
    '<tr><td>ellipse</td><td align="left">lock class (<font color="darkgreen">green</font>: '
    'leaf, <font color="orangered">red</font>: not a leaf)</td></tr>'
    '<tr><td bgcolor="gold">fs_reclaim</td><td align="left">memory reclaim pseudo-lock</td></tr>'
    '<tr><td><font color="gray40">dashed</font></td><td align="left">root takes the lock '
    '(witness: function, file:line)</td></tr>'
    '<tr><td><font color="orangered">red</font></td><td align="left">dependency A → B that '
    'makes A non-leaf (acquiring function, file:line)</td></tr>'
    '<tr><td><font color="red3"><b>bold red</b></font></td><td align="left">dependency on a '
    'lock cycle</td></tr>'
    '<tr><td><font color="purple">dotted</font></td><td align="left">context a destructor runs '
    'in, closing a predicted cycle</td></tr>'
    '</table>>'
)


def quote(text: str) -> str:
    """A DOT string that shows `text` literally, whatever it contains."""
    esc = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "")
           .replace("\n", "\\n"))
    return f'"{esc}"'


@dataclass(slots=True)
class Focus:
    """The part of the result worth drawing, and what was left out."""

    roots: dict[str, str] = field(default_factory=dict)        # function -> kind
    locks: set[str] = field(default_factory=set)
    edges: dict[tuple[tuple[str, str], tuple[str, str]], tuple[str, str]] = field(
        default_factory=dict)                                  # (from, to) -> (role, label)
    bad_roots: set[str] = field(default_factory=set)
    omitted_locks: int = 0
    omitted_edges: int = 0

    def add(self, a: tuple[str, str], b: tuple[str, str], role: str, label: str) -> None:
        for kind, name in (a, b):
            if kind == "lock":
                self.locks.add(name)
        old = self.edges.get((a, b))
        if old is None or RANK[role] > RANK[old[0]]:
            self.edges[(a, b)] = (role, label or (old[1] if old else ""))


def _where(file: str, line: int, logs: frozenset[str]) -> str:
    """file:line, with a log named by its base name: a long log path on every edge would
    make the picture wider than any screen, and the report names the logs in full."""
    return f"{file.rsplit('/', 1)[-1] if file in logs else file}:{line}"


def _edge_label(e: Edge, logs: frozenset[str]) -> str:
    """The acquiring function and where: static stacks start with it, lockdep's end with it."""
    if e.source == "static" or (e.stack and " (" in e.stack[0]):
        fn = e.stack[0].split(" (", 1)[0] if e.stack else ""
    else:
        frames = trim_stack(e.stack)
        fn = frames[0] if frames else e.source
    where = _where(e.file, e.line, logs)
    return f"{fn}\n{where}" if fn else where


def _witness_label(steps: list[dict]) -> str:
    if not steps:
        return ""
    last = steps[-1]
    via = f"via {steps[1]['function']}\n" if len(steps) > 1 else ""
    return f"{via}{last['file']}:{last['line']}"


def focus(res: CheckResult, logs: frozenset[str] = frozenset()) -> Focus:
    G = res.graph
    F = Focus()

    def dep(a: str, b: str, role: str) -> None:
        if G.has_edge(a, b):
            F.add(("lock", a), ("lock", b), role, _edge_label(best_evidence(G, a, b), logs))

    def reached(root: str, lock: str, label: str) -> None:
        if root == FS_RECLAIM:   # runtime "taken under fs_reclaim": the lock is the root
            F.add(("lock", FS_RECLAIM), ("lock", lock), "takes", label)
            return
        F.add(("fn", root), ("lock", lock), "takes", label)
        F.roots.setdefault(root, "reclaim")

    # Roots found in the sources, with the witness of each lock.
    judged = {f.lock for f in res.findings if f.rule in ("LG102", "LG104")}
    for v in res.roots:
        r = v.root
        if r.kind == "dtor":
            F.roots[r.function] = "dtor"
            for lk in v.locks:
                reached(r.function, lk.lock, _witness_label(lk.witness))
            for x in v.strict_leaf.violations:
                dep(x.lock, x.to, "nonleaf")
            if v.strict_leaf.verdict == "violated" or v.splats:
                F.bad_roots.add(r.function)
        elif r.kind == "ctor" and v.ctor.sleeps_or_reclaims and v.ctor.atomic_sites:
            a = v.ctor.atomic_sites[0]
            more = f" (+{len(v.ctor.atomic_sites) - 1})" if len(v.ctor.atomic_sites) > 1 else ""
            F.roots[r.function] = (f"ctor, allocated atomically in\n{a.function}() "
                                   f"{a.file}:{a.line}{more}")
            F.bad_roots.add(r.function)
            for lk in v.locks:
                if lk.lock == FS_RECLAIM:
                    reached(r.function, FS_RECLAIM, _witness_label(lk.witness))
        elif r.kind == "reclaim":
            for lk in v.locks:
                if lk.lock in judged:
                    F.roots[r.function] = "reclaim"
                    reached(r.function, lk.lock, _witness_label(lk.witness))
    # Roots seen in logs: destructor frames, and reclaim contexts of locks with a finding.
    for lock, ctxs in sorted(res.dtor_locks.items()):
        for c in ctxs:
            F.roots[c.root] = "dtor"
            reached(c.root, lock, _where(c.evidence.file, c.evidence.line, logs))
            if lock in G and any(b != lock for b in G.successors(lock)):
                F.bad_roots.add(c.root)
        for b in sorted(G.successors(lock)) if lock in G else []:
            if b != lock:
                dep(lock, b, "nonleaf")
    for lock, ctxs in sorted(res.reclaim_locks.items()):
        if lock not in judged:
            continue
        for root in sorted({c.root for c in ctxs}):
            ev = next(c.evidence for c in ctxs if c.root == root)
            reached(root, lock, _where(ev.file, ev.line, logs))
            if root != FS_RECLAIM:
                F.bad_roots.add(root)
    # The paths the findings name: non-leaf edges, the way back into reclaim, cycles.
    for f in res.findings:
        locks = [p for p in f.path if p in G]
        if f.rule == "LG103":
            for a, b in zip(f.path, f.path[1:] + f.path[:1]):
                dep(a, b, "cycle")
        elif f.rule == "LG105":
            for a, b in zip(locks, locks[1:]):
                dep(a, b, "cycle")
            if len(locks) >= 2:
                F.add(("lock", locks[-1]), ("lock", locks[0]), "context",
                      "held while the destructor runs\n(predicted cycle)")
        else:
            for a, b in zip(locks, locks[1:]):
                dep(a, b, "nonleaf")
    F.omitted_locks = sum(1 for n in G if n not in F.locks)
    shown = {(a[1], b[1]) for a, b in F.edges if a[0] == b[0] == "lock"}
    F.omitted_edges = sum(1 for e in G.edges if e not in shown)
    return F


def focused_dot(res: CheckResult, logs: list[str] = ()):
    """The focused subgraph as a pydot graph (deterministic: sorted ids, sorted edges)."""
    import pydot

    F = focus(res, frozenset(logs))
    G = res.graph
    keys = sorted({("fn", r) for r in F.roots} | {("lock", n) for n in F.locks},
                  key=lambda k: (k[1], k[0]))
    ids = {k: f"n{i}" for i, k in enumerate(keys)}
    g = pydot.Dot("lockgraph", graph_type="digraph", rankdir="LR", fontsize="11",
                  labelloc="t", label=quote("lockgraph: roots, the locks they take, and the "
                                            "dependencies that violate the leaf rule"))
    g.set_node_defaults(fontsize="11", fontname="Helvetica")
    g.set_edge_defaults(fontsize="9", fontname="Helvetica")
    for k in keys:
        kind, name = k
        attrs: dict[str, str] = {"label": quote(name)}
        if kind == "fn":
            attrs.update(shape="box", style='"rounded,filled"',
                         fillcolor="mistyrose" if name in F.bad_roots else "honeydew",
                         label=quote(f"{name}()\n{F.roots[name]}"))
        elif name == FS_RECLAIM:
            attrs.update(shape="doubleoctagon", style="filled", fillcolor="gold")
        else:
            leaf = name not in G or not any(b != name for b in G.successors(name))
            attrs.update(shape="ellipse", color="darkgreen" if leaf else "orangered",
                         penwidth="1.4")
        g.add_node(pydot.Node(ids[k], **attrs))
    for (a, b), (role, label) in sorted(F.edges.items(), key=lambda kv: (ids[kv[0][0]],
                                                                       ids[kv[0][1]])):
        g.add_edge(pydot.Edge(ids[a], ids[b], label=quote(label), **STYLES[role]))
    g.add_node(pydot.Node("legend", shape="plaintext", fontsize="9", label=LEGEND))
    if F.omitted_locks or F.omitted_edges:
        g.add_node(pydot.Node("omitted", shape="note", fontsize="9", label=quote(
            f"{_n(F.omitted_locks, 'lock')} / "
            f"{_n(F.omitted_edges, 'dependency', 'dependencies')}\n"
            "not on a violation path omitted")))
    if not F.edges:
        g.add_node(pydot.Node("empty", shape="plaintext", label=quote(
            "no destructor or reclaim lock and no cycle to show")))
    return g


def _n(k: int, one: str, many: str = "") -> str:
    return f"{k} {one if k == 1 else (many or one + 's')}"


def check_dot(res: CheckResult, logs: list[str] = ()) -> str:
    """DOT text; `logs` are the input log paths as shown (labels name them briefly)."""
    return focused_dot(res, logs).to_string()


def run_dot(dot_text: str, fmt: str) -> bytes:
    """Render through graphviz's `dot`; a missing or failing `dot` is the user's to fix."""
    exe = shutil.which("dot")
    if exe is None:
        raise InputError(f"cannot write {fmt.upper()}: graphviz 'dot' not found on PATH "
                         "(Debian: apt-get install graphviz)", path="lockgraph")
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                          check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"graphviz 'dot -T{fmt}' failed: {msg[0] if msg else proc.returncode}",
                         path="lockgraph")
    return proc.stdout

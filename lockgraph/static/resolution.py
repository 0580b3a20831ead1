"""Names to definitions: the lockdep class of a lock expression (Resolver), the functions
a call may reach (CallGraph), and the calls that reach none (blind spots).

Both are resolved once, before any summary: the summaries and the edges ask the same
question of the same site again and again, and the call graph fixes the order the
summaries are computed in.
"""

from __future__ import annotations

import re
from collections import defaultdict

from lockgraph.static.callbacks import RESOLVED, add_callback_calls, callback_params
from lockgraph.static.facts import kb
from lockgraph.static.facts.scan import FileFacts
from lockgraph.static.facts.walk import FuncFacts, Held, LockExpr
from lockgraph.static.kinds import apply_kind_calls
from lockgraph.static.layered import TypeIndex
from lockgraph.static.opsparams import Tables, add_ops_calls, ops_sites
from lockgraph.static.owntables import OwnTables

#: An indirect call resolved by member name only (object type unknown) is followed when at
#: most this many functions are assigned to that member anywhere; beyond, it is a blind spot.
MAX_UNTYPED_TARGETS = 4
#: The same bound when the object's struct type is known.
MAX_TYPED_TARGETS = 8
IDENT = re.compile(r"[A-Za-z_]\w*")
#: `&F(args)->a.b`: a lock reached through a function's pointer result
_THROUGH_CALL = re.compile(r"^&?\s*\(?\s*([A-Za-z_]\w*)\s*\((?:[^()]|\([^()]*\))*\)\s*\)?\s*->\s*"
                           r"(\w+(?:\s*(?:->|\.)\s*\w+|\s*\[[^\]]*\])*)$")
_NONE: tuple[str, ...] = ()
_EMPTY: frozenset[str] = frozenset()


_NULL = frozenset({"NULL", "0", "(void *)0"})


def fid(f: FuncFacts) -> str:
    return f"{f.file}:{f.name}"


class Resolver:
    """Maps lock expressions at a site to lockdep class names (docs/kernel-facts.md §2)."""

    def __init__(self, files: list[FileFacts], funcs: dict[str, FuncFacts]) -> None:
        self.static: dict[str, set[str]] = defaultdict(set)       # ident -> names
        self.field: dict[tuple[str, str], set[str]] = defaultdict(set)
        #: (struct, field) -> names of init sites that reach it through a member chain
        #: (`spin_lock_init(&x->a.lock)` also inits `lock` of a's struct): a use written
        #: from the inner struct, or through another chain, finds its class here
        self.inner: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.types = TypeIndex(files)
        #: function name -> the struct its pointer result points to ("" when definitions
        #: disagree): `&EXT4_I(inode)->i_data_sem` is ext4_inode_info's i_data_sem
        self.returns: dict[str, str] = {}
        for f in funcs.values():
            for a in f.annotations:
                if a.startswith("returns("):
                    tag = a[8:-1]
                    self.returns[f.name] = tag if self.returns.get(f.name, tag) == tag else ""
        self.globals: dict[str, str] = {}
        self.kind_of_static: dict[str, str] = {}
        #: ident -> files defining a lock of that name (DEFINE_MUTEX(lock) in five files are
        #: five lockdep classes that only share a name)
        self.defined_in: dict[str, set[str]] = defaultdict(set)
        for ff in files:
            self.globals.update(ff.globals)
            for ident, kind, _ in ff.defines:
                self.static[ident].add(ident)
                self.kind_of_static[ident] = kind
                self.defined_in[ident].add(ff.path)
            for d in ff.desig:
                m = re.match(r"(\w+)\s*\(\s*(.*?)\s*\)$", d.value)
                if m and m.group(1) in kb.MEMBER_INITS and d.type:
                    self.field[(d.type, d.member)].add(m.group(2))
        added: list[tuple[tuple, set[str], bool]] = []   # (key, names, from init sites)
        for f in funcs.values():
            overrides: dict[tuple, set[str]] = defaultdict(set)
            inits: dict[tuple, set[str]] = defaultdict(set)
            for prim, lk, name, _line in f.inits:
                key = self.key_of(lk, f)
                if key is None:
                    continue
                (overrides if prim.startswith("lockdep_set_class") else inits)[key].add(name)
            for key, names in inits.items():
                added.append((key, overrides.get(key) or names, key not in overrides))
            for key, names in overrides.items():
                if key not in inits:
                    added.append((key, names, False))
        # One init-site name in several structs (`spin_lock_init(&q->lock)` for cxgb's cmdQ
        # and for swait_queue_head) is several lockdep classes, told apart by key as for
        # same_name(): each is named with its struct, or their edges join into false cycles.
        # A lockdep_set_class() key is one class wherever it is set: never split.
        owners: dict[str, set[str]] = defaultdict(set)
        for key, names, site in added:
            if key[0] != "static" and site:
                for n in names:
                    owners[n].add(key[0])
        for key, names, site in added:
            if key[0] != "static" and site:
                names = {same_struct(n, key[0]) if len(owners[n]) > 1 else n for n in names}
            self._add(key, names)

    def _add(self, key: tuple, names: set[str]) -> None:
        if key[0] == "static":
            self.static[key[1]] = (self.static[key[1]] - {key[1]}) | names
        else:
            self.field[key].update(names)
            for inner in self.inner_keys(key):
                self.inner[inner].update(names)

    def inner_keys(self, key: tuple[str, str]) -> list[tuple[str, str]]:
        """(struct, "a.b.lock") -> (struct of a, "b.lock"), (struct of a.b, "lock"): the
        same lock seen from each struct along its member chain (static/layered.py types
        the steps; an unknown step ends the list)."""
        tag, path = key
        steps = path.split(".")
        out = []
        for k in range(1, len(steps)):
            inner = self.types.member(self.types.struct(tag), ".".join(steps[:k]))
            if not inner:
                break
            out.append((inner, ".".join(steps[k:])))
        return out

    def type_of(self, var: str, f: FuncFacts) -> str:
        for typ, name in f.params:
            if name == var:
                return typ
        return f.locals.get(var) or self.globals.get(var, "")

    @staticmethod
    def _struct(typ: str) -> str:
        t = typ.replace("*", "").strip()
        return t[7:] if t.startswith("struct ") else t

    def key_of(self, lk: LockExpr, f: FuncFacts) -> tuple | None:
        if lk.fixed or not lk.root:
            return None
        if lk.percpu or (not lk.path and self._is_static(lk.root, f)):
            return ("static", lk.root)
        typ = self.type_of(lk.root, f)
        if typ and lk.path:
            return (self._struct(typ), lk.path)
        return None

    def _is_static(self, root: str, f: FuncFacts) -> bool:
        if any(n == root for _, n in f.params) or root in f.locals:
            return False
        return root in self.static or root in self.globals or root not in f.aliases

    def classes(self, lk: LockExpr, f: FuncFacts, depth: int = 0) -> list[str]:
        """Class names for a lock expression in function f; '@paramN' for a lock parameter."""
        if lk.text.startswith(RESOLVED):  # a callback's argument, resolved in its caller
            return [lk.text[len(RESOLVED):]]
        if lk.fixed:
            return [lk.fixed]
        if lk.text in _NULL:  # f(NULL) to a lock parameter: the callee locks nothing
            return []
        if not lk.root:
            return self._through_call(lk.text) or [_norm(lk.text)]
        for k, (typ, name) in enumerate(f.params):
            if name == lk.root and not lk.path and not lk.percpu:
                return [f"@param{k}"]
        # a local shadows a lock of the same name defined at file scope (here or elsewhere)
        if lk.root in f.aliases and not lk.percpu and depth < 3 and (
                lk.root in f.locals or lk.root not in self.static):
            alias = LockExpr.parse(f.aliases[lk.root])
            if alias.root and alias.root != lk.root:
                if not lk.path:
                    return self.classes(alias, f, depth + 1)
        key = self.key_of(lk, f)
        if key is not None:
            if key[0] == "static":
                names = self.static.get(key[1])
                if names == {key[1]} and f.file in self.defined_in.get(key[1], ()) \
                        and len(self.defined_in[key[1]]) > 1:
                    return [same_name(key[1], f.file)]
                return sorted(names) if names else [key[1]]
            names = self.field.get(key)
            if names:
                return sorted(names)
            # `&vma->vm_mm->mmap_lock` is mm_struct's mmap_lock: the class of its init sites
            names = self.through_members(key)
            if names:
                return names
        return [_norm(lk.text)]

    def through_members(self, key: tuple[str, str]) -> list[str]:
        """The init sites' names of (struct, path) seen from each struct along its member
        chain (inner_keys), the nearest that has any; [] when none has."""
        for k in [key] + self.inner_keys(key):
            names = self.field.get(k, _EMPTY) | self.inner.get(k, _EMPTY)
            if names:
                return sorted(names)
        return []

    def _through_call(self, text: str) -> list[str]:
        """The class of a lock reached through an accessor's result (`&EXT4_I(first)->
        i_data_sem`, `&task_rq(p)->__lock`): its struct's init sites, whatever the argument
        is called — else every spelling of the argument was a class of its own."""
        m = _THROUGH_CALL.match(text)
        tag = self.returns.get(m.group(1), "") if m else ""
        if not tag:
            return []
        path = re.sub(r"\s*\[[^\]]*\]", "", m.group(2))
        path = re.sub(r"\s*(->|\.)\s*", ".", path).strip(".")
        return self.through_members((tag, path))

    def kind_hint(self, name: str) -> str:
        k = self.kind_of_static.get(name.split(" (", 1)[0], "")
        return k.split(":", 1)[-1]

    def dropped(self, f: FuncFacts, d: frozenset[str]) -> frozenset[str]:
        """Class names of the caller locks (as written in f) a path dropped."""
        if not d:
            return _EMPTY
        return frozenset(c for text in d for c in self.classes(LockExpr.parse(text), f))

    def at_call(self, cls: str, c, f: FuncFacts) -> tuple[str, ...]:
        """A callee's class in the caller's terms: its lock parameter N is call c's
        argument N (a callee that drops the lock it was handed drops the caller's lock)."""
        if not cls.startswith("@param"):
            return (cls,)
        n = int(cls[6:].split("/")[0])
        return tuple(self.classes(LockExpr.parse(c.args[n]), f)) if n < len(c.args) else ()

    def held_classes(self, f: FuncFacts, held: tuple[Held, ...]) -> list[tuple[str, Held]]:
        """Each lock held at a site with its class name (subclass included), oldest first."""
        out = []
        for h in held:
            for c in self.classes(h.lock, f):
                out.append((c + (f"/{h.subclass}" if h.subclass else ""), h))
        return out


def same_name(ident: str, file: str) -> str:
    """The class of a lock defined as `ident` in `file` when other files define one of the
    same name: lockdep tells them apart by key (printing `lock`, `lock#2`...), a graph keyed
    by name must say which file's it is, or their edges would join into false cycles."""
    return f"{ident} ({file})"


def same_struct(name: str, tag: str) -> str:
    """The class named `name` by an init site of struct `tag`'s lock, when init sites of
    other structs give the same name."""
    return f"{name} (struct {tag})"


def assigned_function(value: str, f: FuncFacts, by_name) -> bool:
    """`p->fn = value` in f stores a function: value names one and is no parameter or local
    of f (`pool->disconnect = disconnect` stores the caller's callback, not a global
    function that happens to be called `disconnect`)."""
    return value in by_name and value not in f.locals and all(n != value for _, n in f.params)


def _norm(text: str) -> str:
    return text.replace(" ", "") if "," not in text else re.sub(r"\s+", " ", text)


class HeldNames:
    """Class names held at a call, memoised per call: the summaries ask once per callee and
    per pass over a component, and the callers index asks again.  Lives for one solve only
    (keyed by the call object's id)."""

    def __init__(self, res: Resolver) -> None:
        self.res = res
        self.memo: dict[int, frozenset[str]] = {}

    def __call__(self, c, f: FuncFacts) -> frozenset[str]:
        got = self.memo.get(id(c))
        if got is None:
            got = self.memo[id(c)] = frozenset(x for x, _ in self.res.held_classes(f, c.held))
        return got


class CallGraph:
    """targets[i][k]: the functions call k of function i may reach, and what is left blind.

    Indirect calls are followed through designated initialisers and `->member = fn`
    assignments, by the object's struct type when it is known; a member assigned to too many
    functions (notifiers, file operations) is a blind spot instead, or every caller would
    take every callee's locks."""

    def __init__(self, files: list[FileFacts], funcs: dict[str, FuncFacts],
                 by_name: dict[str, list[str]], res: Resolver, one_build: bool = False) -> None:
        self.funcs, self.by_name, self.res = funcs, by_name, res
        self.one_build = one_build
        self.unit = _translation_units(files)
        #: functions defined under a CONFIG condition (a choice prepass.py kept)
        conds = {ff.path: ff.conds for ff in files}
        self.conditional = {i for i, f in funcs.items() if conds[f.file].get(f.line)}
        self.member_targets: dict[str, set[str]] = defaultdict(set)
        self.typed_targets: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.types = types = res.types
        for ff in files:
            for d in ff.desig:
                v = d.value.lstrip("&").strip()
                if IDENT.fullmatch(v) and v in by_name:
                    # a table can only hold the functions its own file can name
                    fids = self.named(v, ff.path)
                    self.member_targets[d.member].update(fids)
                    tag = types.member(types.struct(d.type), d.outer) if d.type else ""
                    if tag:
                        self.typed_targets[(tag, d.member)].update(fids)
        for f in funcs.values():
            for base, member, value, _ in f.assigns:
                if assigned_function(value, f, by_name):
                    fids = self.named(value, f.file)
                    self.member_targets[member].update(fids)
                    tag = self._chain_type(base, f)
                    if tag:
                        self.typed_targets[(tag, member)].update(fids)
        self.targets: dict[str, tuple[tuple[str, ...], ...]] = {}
        self.unresolved: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self.blind: dict[str, frozenset[str]] = {}
        self.blind_calls: dict[str, tuple[tuple[int, str], ...]] = {}
        for i, f in funcs.items():
            self._resolve_calls(i, f)
        own = OwnTables(files, funcs, self.named, self.targets)
        for i in own.own:
            f = funcs[i]
            self.targets[i] = tuple(own.narrow(i, c.base, c.name, t) if c.member and c.base else t
                                    for c, t in zip(f.calls, self.targets[i]))
        sites = callback_params(funcs, self.targets, res.classes)
        add_callback_calls(funcs, self.targets, sites, self.resolve_call, res.classes,
                           self.unresolved, self.blind)
        # the functions some call reaches (callback calls included): a function none
        # reaches keeps its own resolution of what its callers would decide
        called = {j for row in self.targets.values() for t in row for j in t}
        self._resolved_at_callers(sites, called)
        tables = Tables(files, self.named)
        ops = ops_sites(funcs, self.targets, tables, res.classes)
        add_ops_calls(funcs, self.targets, ops, tables, res.classes, called, own)
        apply_kind_calls(funcs, self.targets)   # static/kinds.py

    def _chain_type(self, chain: str, f: FuncFacts) -> str:
        """The struct type of member chain `a->b.c` in f (static/layered.py), or ""."""
        if not chain:
            return ""
        root = IDENT.match(chain)
        return self.types.of_chain(chain, self.res.type_of(root.group(0), f)) if root else ""

    def _resolved_at_callers(self, sites, called: set[str]) -> None:
        """A call through a callback parameter is resolved at each call site
        (static/callbacks.py): no blind spot of a function that has callers.  One nothing
        calls keeps it (its callers are outside the scan)."""
        for j, per in sites.items():
            if j not in called or j not in self.blind:
                continue
            f = self.funcs[j]
            gone = {f"unresolved indirect call {f.params[k][1]}() in {f.name}()" for k in per}
            self.blind[j] -= gone
            if not self.blind[j]:
                del self.blind[j]
            kept = tuple(x for x in self.blind_calls.get(j, ()) if x[1] not in gone)
            if kept:
                self.blind_calls[j] = kept
            else:
                self.blind_calls.pop(j, None)

    def _resolve_calls(self, i: str, f: FuncFacts) -> None:
        row = []
        local_blind: set[str] = set()
        mine: list[tuple[int, str]] = []
        for k, c in enumerate(f.calls):
            t = tuple(self.resolve_call(f, c.name, c.member, c.base)) or _NONE
            row.append(t)
            if not t and c.name not in kb.LOCK_FREE and c.name not in kb.SLEEPING_CALLS \
                    and not c.name.isupper() and not c.name.startswith(("trace_", "__builtin")):
                pointer = c.member or any(n == c.name for _, n in f.params) or c.name in f.locals
                what = f"{c.base}->{c.name}()" if c.member and c.base else f"{c.name}()"
                label = (f"unresolved indirect call {what} in {f.name}()" if pointer
                         else f"missing definition of {what}")
                local_blind.add(label)
                self.unresolved[label].append((f.file, c.line))
                mine.append((k, label))
        if f.structure.startswith("unknown"):
            local_blind.add(f"structure unknown in {f.name}() ({f.file}:{f.line})")
        self.targets[i] = tuple(row)
        if mine:
            self.blind_calls[i] = tuple(mine)
        if local_blind:
            self.blind[i] = frozenset(local_blind)

    def resolve_call(self, caller: FuncFacts, name: str, member: bool, base: str = "") -> list[str]:
        if member:
            fids = self.member_targets.get(name, set())
            typed = False
            if base:  # where the object's struct type is known, only that type's tables
                typ = self._chain_type(base, caller)
                if typ and self.typed_targets.get((typ, name)):
                    fids = self.typed_targets[(typ, name)]
                    typed = True
            # the bound counts functions by name: one name defined per configuration (tiny
            # and tree RCU) is one target for the reader
            if len({self.funcs[i].name for i in fids}) > (MAX_TYPED_TARGETS if typed else MAX_UNTYPED_TARGETS):
                # a generic callback (notifier, file operations...): following every table
                # would make everything take everything; it is a blind spot instead
                return []
            return sorted(fids)
        if any(n == name for _, n in caller.params) or name in caller.locals:
            return []  # a call through a function-pointer variable
        return self.named(name, caller.file)

    def named(self, name: str, file: str) -> list[str]:
        """The definitions `name` written in `file` refers to: the file's own, its
        translation unit's, a public one, or a static one of a header or of its directory."""
        funcs = self.funcs
        cands = self.by_name.get(name) or self.by_name.get(name + "_noprof", [])  # alloc_hooks() wrappers
        if not cands:
            return []
        if self.one_build and len(cands) > 1:
            # the linker's rule: a strong definition replaces the __weak default.  Only for
            # one build (--config), whose every scanned file is linked (static/kbuild.py);
            # across configurations the default is linked wherever the override is not
            strong = [i for i in cands if "__weak" not in funcs[i].annotations]
            if any(not funcs[i].static for i in strong):
                cands = strong
        same = [i for i in cands if funcs[i].file == file]
        if same and not all(i in self.conditional for i in same):
            return same
        # only definitions some configurations leave out (a header's `#else` stub): the
        # definition the other configurations link may be elsewhere
        return same + [i for i in self._elsewhere(cands, file) if i not in same]

    def _elsewhere(self, cands: list[str], file: str) -> list[str]:
        funcs = self.funcs
        tu = self.unit.get(file)
        if tu is not None:  # a static function of a file the caller's includes (or is included by)
            mine = [i for i in cands if self.unit.get(funcs[i].file) == tu]
            if mine:
                return mine
        public = [i for i in cands if not funcs[i].static]
        if public:
            return public
        d = file.rsplit("/", 1)[0]
        # a static function elsewhere is reachable from its own directory (#include "x.c")
        # or, when a header defines it (static inline), from anywhere
        return [i for i in cands if funcs[i].file.endswith(".h")
                or funcs[i].file.rsplit("/", 1)[0] == d]

    def callers(self, held_names: HeldNames) -> dict[str, list[tuple[str, frozenset[str], int]]]:
        """callee -> (caller, classes held at the call, line): entry contexts read it."""
        out: dict[str, list[tuple[str, frozenset[str], int]]] = defaultdict(list)
        for i, f in self.funcs.items():
            for c, row in zip(f.calls, self.targets[i]):
                if not row:
                    continue
                held = held_names(c, f) if c.held else _EMPTY
                for j in row:
                    out[j].append((i, held, c.line))
        return dict(out)


def _translation_units(files: list[FileFacts]) -> dict[str, str]:
    """Files joined by `#include "x.c"` -> one name per translation unit (the smallest path
    in it); files that include no .c and are not included are absent."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    present = {ff.path for ff in files}
    for ff in files:
        for inc in ff.includes:
            if inc in present:
                a, b = find(ff.path), find(inc)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return {x: find(x) for x in parent}

#!/usr/bin/env python3
"""Reads the `crate::`, `super::` and `self::` paths of every module under src/ (unit tests
excluded) and fails when the module graph has a cycle. Every file is a node
(`source/mod.rs` is `source`, `source/http.rs` is `source::http`), so a child that uses its
parent and a parent that uses that child is a cycle too."""
import re, sys, pathlib

src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")

def module_of(path):
    parts = path.relative_to(src).with_suffix("").parts
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"

def node(target, known):
    # The longest known module that prefixes the path.
    parts = target.split("::")
    for n in range(len(parts), 0, -1):
        name = "::".join(parts[:n])
        if name in known:
            return name
    return None

files = [p for p in src.rglob("*.rs")]
known = {module_of(p) for p in files}
edges = {}
for path in files:
    text = path.read_text()
    text = text.split("#[cfg(test)]")[0]
    # Comments (doc links among them) are no dependency.
    text = "\n".join(line.split("//")[0] for line in text.splitlines())
    me = module_of(path)
    here = path.relative_to(src).with_suffix("").parts
    targets = set(re.findall(r"crate::((?:\w+::)*\w+)", text))
    parent = me.rsplit("::", 1)[0] if "::" in me else ""
    for m in re.findall(r"\bsuper::((?:\w+::)*\w+)", text):
        targets.add(f"{parent}::{m}" if parent else m)
    for m in re.findall(r"\bself::((?:\w+::)*\w+)", text):
        targets.add(f"{me}::{m}")
    if re.search(r"\bsuper::\{", text) and parent:
        targets.add(parent)
    for t in targets:
        n = node(t, known)
        if n and n != me and me != "crate":
            edges.setdefault(me, set()).add(n)

def find_cycle():
    state, stack = {}, []
    def visit(n):
        state[n] = 1; stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found: return found
        state[n] = 2; stack.pop()
        return None
    for n in sorted(known):
        if n not in state:
            found = visit(n)
            if found: return found
    return None

for n in sorted(edges):
    print(f"{n} -> {', '.join(sorted(edges[n]))}")
cycle = find_cycle()
if cycle:
    print("cycle: " + " -> ".join(cycle), file=sys.stderr)
    sys.exit(1)
print("module graph: no cycle")

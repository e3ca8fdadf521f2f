#!/usr/bin/env python3
"""Finds import cycles between the modules of each crate of the workspace.

A module is a source file (`foo.rs` or `foo/mod.rs` is module `foo`). An edge A -> B is any
`crate::b...` or `super::...` path in A's code (a `use` or an inline path) that names module B,
resolved to the deepest module file that exists. A parent naming its own child (dispatching to it,
re-exporting it) is ownership, not a dependency, and is not an edge; a child naming its parent
is. Test modules (`tests.rs`, `#[cfg(test)] mod tests`) are left out: they may reach anywhere.

Exit status 1 and the cycles printed when any crate has one; 0 otherwise.
Usage: scripts/module-cycles.py [CRATE_SRC_DIR ...]   (default: every crate's src/)
"""

import os
import re
import sys

CRATES = ["src", "domain/src", "pipeline/src", "projections/src", "api/src", "pbx-sim/src"]
PATH = re.compile(r"\b(crate|super(?:::super)*)::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)")
GROUP = re.compile(r"\b(crate|super(?:::super)*)::((?:[a-z_][a-z0-9_]*::)*)\{([^}]*)\}", re.S)


def modules(src):
    found = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs") or name == "tests.rs":
                continue
            rel = os.path.relpath(os.path.join(root, name), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            found[tuple(parts)] = os.path.join(root, name)
    return found


def strip_tests(text):
    marker = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    return text[: marker.start()] if marker else text


def strip_comments(text):
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def resolve(base, path, known):
    """The deepest known module named by `path` (a list of segments) from `base`."""
    best = None
    for length in range(1, len(path) + 1):
        candidate = tuple(base) + tuple(path[:length])
        if candidate in known:
            best = candidate
    return best


def edges_of(module, text, known):
    targets = set()
    text = strip_comments(strip_tests(text))
    uses = []
    for match in GROUP.finditer(text):
        head, prefix, inner = match.group(1), match.group(2), match.group(3)
        for item in re.split(r",", inner):
            item = item.strip().split(" as ")[0].strip()
            if item:
                uses.append((head, prefix + item.replace(" ", "")))
    for match in PATH.finditer(text):
        uses.append((match.group(1), match.group(2)))
    for head, rest in uses:
        segments = [s for s in rest.split("::") if s and s != "self"]
        if head == "crate":
            base = ()
        else:
            ups = head.count("super")
            # A mod.rs/lib.rs module's `super` is its parent; a file module's too.
            base = module[: max(len(module) - ups, 0)]
        target = resolve(base, segments, known)
        if target is None:
            target = tuple(base)
        if target == module or target[: len(module)] == module:
            continue  # itself, or its own descendant
        targets.add(target)
    return targets


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in graph:
        if node not in index:
            visit(node)
    return out


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    crates = sys.argv[1:] or [os.path.join(root, c) for c in CRATES]
    failed = False
    for src in crates:
        known = modules(src)
        graph = {}
        for module, path in known.items():
            with open(path, encoding="utf-8") as handle:
                graph[module] = edges_of(module, handle.read(), known)
        for component in cycles(graph):
            failed = True
            names = ", ".join("::".join(m) or "(root)" for m in component)
            print(f"{os.path.relpath(src, root)}: cycle among {names}")
    if not failed:
        print(f"no module cycles in {len(crates)} crates")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

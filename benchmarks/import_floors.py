"""Import floors of varinf's modules: the structure of the package, measured.

    python benchmarks/import_floors.py            # this checkout
    python benchmarks/import_floors.py PATH       # another checkout (e.g. a git worktree of an older commit)

floor(m) = 0 if module m imports no other varinf module, else 1 + the highest floor among the varinf
modules it imports (``import varinf.x`` and ``from varinf.x import ...``, at the top level or inside
functions). An import always goes to a lower floor unless there is a cycle (a cycle is reported).
Prints every module with its floor, line count and varinf imports, then files, lines and the highest floor.
"""
import ast, sys, pathlib
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1]) / "src" / "varinf"
mods = {}
for p in root.rglob("*.py"):
    rel = p.relative_to(root.parent).with_suffix("")
    name = ".".join(rel.parts)
    if name.endswith(".__init__"):
        name = name[:-9]
    mods[name] = p
def deps(name):
    tree = ast.parse(mods[name].read_text())
    out = set()
    for n in ast.walk(tree):
        targets = []
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = name.split(".") if mods[name].name == "__init__.py" else name.split(".")[:-1]
                base = base[:len(base) - (n.level - 1)]
                m = ".".join(base + ([n.module] if n.module else []))
            else:
                m = n.module or ""
            targets = [m] + [m + "." + a.name for a in n.names]
        elif isinstance(n, ast.Import):
            targets = [a.name for a in n.names]
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("varinf") and t != "varinf":
                out.add(t)
    return out
D = {m: deps(m) for m in mods}
floor = {}
def f(m, stack=()):
    if m in floor: return floor[m]
    if m in stack:
        print(f"import cycle through {m}")
        return 0
    floor[m] = 0 if not D[m] else 1 + max(f(d, stack + (m,)) for d in D[m])
    return floor[m]
for m in mods: f(m)
lines = {m: len(mods[m].read_text().splitlines()) for m in mods}
want = sorted(mods)
for m in want:
    if m in mods:
        print(f"{m:32s} floor {floor[m]:2d}  lines {lines[m]:4d}  imports {sorted(d.replace('varinf.','') for d in D[m])}")
    else:
        print(f"{m:32s} (absent)")
print(f"files {len(mods)}  lines {sum(lines.values())}  max floor {max(floor.values())}")

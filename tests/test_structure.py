"The package's modules import one another one way only: every import, at module level or inside a function, parsed"
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1]/'fastinterp'

def imports(path, package):
    "Modules of `package` that the file at `path` imports, wherever the import statement is"
    here = f"{package}.{path.stem}"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import): names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:  # relative to the package: `from . import x`, `from .x import y`
                base = '.'.join([package] + ([base] if base else []))
            # `from pkg import x` may name the module pkg.x, or a name of pkg's __init__
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else: continue
        found |= {n for n in names if n.startswith(package + '.') and n != here}
    return found

def graph(folder, package):
    "{module: modules it imports}, for the modules of the package in `folder` (its __init__ left out: nothing imports it)"
    mods = {f"{package}.{p.stem}": p for p in folder.glob('*.py') if p.stem != '__init__'}
    return {m: imports(p, package) & set(mods) for m, p in mods.items()}

def cycle(g):
    "One circle of imports in `g` as a list of modules (first = last), or None"
    state = {}
    def visit(m, path):
        state[m] = 'open'
        for n in sorted(g[m]):
            if state.get(n) == 'open': return path[path.index(n):] + [n]
            if n not in state and (c := visit(n, path + [n])): return c
        state[m] = 'done'
    for m in sorted(g):
        if m not in state and (c := visit(m, [m])): return c

def test_no_import_circle():
    g = graph(PACKAGE, 'fastinterp')
    assert len(g) > 10 and g['fastinterp.interpret']  # the package was read
    c = cycle(g)
    assert c is None, 'import circle: ' + ' -> '.join(c)

@pytest.mark.parametrize('files,expected', [
    # a circle closed inside a function, by a relative import
    ({'a.py': 'from .b import f\n', 'b.py': 'def f():\n    from . import a\n    return a\n'}, ['pkg.a', 'pkg.b', 'pkg.a']),
    ({'a.py': 'import pkg.b\n', 'b.py': 'from pkg.c import x\n', 'c.py': 'from .a import y\n'},
     ['pkg.a', 'pkg.b', 'pkg.c', 'pkg.a']),
    ({'a.py': 'from . import b\n', 'b.py': 'import os\nfrom .c import x\n', 'c.py': 'x = 1\n'}, None),  # one way
])
def test_the_circle_finder(tmp_path, files, expected):
    for name, src in files.items(): (tmp_path/name).write_text(src)
    assert cycle(graph(tmp_path, 'pkg')) == expected

def test_every_public_function_and_class_has_a_runnable_example():
    "The docstring examples are the documentation of the upstream PR; pytest runs them (--doctest-modules)"
    import importlib, inspect, pkgutil
    import fastinterp
    missing = []
    for m in pkgutil.iter_modules(fastinterp.__path__):
        mod = importlib.import_module(f'fastinterp.{m.name}')
        for name in getattr(mod, '__all__', []):
            o = getattr(mod, name)
            if (inspect.isfunction(o) or inspect.isclass(o)) and '>>>' not in (inspect.getdoc(o) or ''):
                missing.append(f'{m.name}.{name}')
    assert not missing, f"no example in the docstring of {', '.join(missing)}"
